"""Issue #14, finding 4: the agent's namespace (Pod Security `privileged`, for the cache
hostPath) admitted seccomp Unconfined, SELinux spc_t, an unsafe sysctl, AppArmor
Unconfined, an unmasked /proc and a privileged root SYS_ADMIN ephemeral container.
Issue #16: the agent reads GPU processes' cgroups through the host's /proc, mounted
read-only; the policy admits exactly that (read-only, whole) and still no hostPID.

On the test bed's real kube-apiserver with the chart's rendered manifests: the
gpusched-agent-namespace-pods ValidatingAdmissionPolicy holds every pod there to the
restricted profile (plus the cache hostPath), ephemeral containers included. Each
finding is one row; the agent's own pod and a `kubectl debug --profile=restricted`
container are still admitted, so the denials are not a blanket refusal.
"""
from __future__ import annotations

import copy
import os

import pytest
from kubernetes.client.exceptions import ApiException

from tests.deploy import manifests
from tests.helpers import eventually

pytestmark = pytest.mark.integration

NS = manifests.AGENT_NAMESPACE
POLICY = "gpusched-agent-namespace-pods"
CACHE = "/var/cache/gpusched/models"
DENIED_BY_POLICY = "gpusched agent's namespace"  # every message of the policy says so


def agent_shaped_pod(**changes) -> dict:
    """The agent's pod shape (restricted-grade, the cache hostPath), never scheduled."""
    sc = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    sc.update(changes.pop("container_sc", {}))
    pod_sc = {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
    pod_sc.update(changes.pop("pod_sc", {}))
    container = {"name": "c", "image": "x", "securityContext": sc}
    if "mounts" in changes:
        container["volumeMounts"] = changes.pop("mounts")
    spec = {"securityContext": pod_sc, "nodeSelector": {"nobody": "schedules-this"},
            "containers": [container],
            "volumes": [{"name": "cache", "hostPath": {"path": CACHE}}]}
    meta = {"generateName": "sec-probe-", "annotations": changes.pop("annotations", {})}
    spec.update(changes)
    return {"metadata": meta, "spec": spec}


def create(core, pod: dict) -> ApiException | None:
    """None when admitted (server dry-run), else the refusal."""
    try:
        core.create_namespaced_pod(NS, pod, dry_run="All")
    except ApiException as exc:
        return exc
    return None


def denied_by_policy(exc: ApiException | None) -> bool:
    return exc is not None and exc.status in (403, 422) and DENIED_BY_POLICY in (exc.body or "")


@pytest.fixture(scope="module")
def policy(cluster, core):
    manifests.apply(cluster)
    # A policy update is loaded asynchronously: wait for the type checker to see this
    # generation, then for a denial the policy has always made (host network).
    def observed():
        obj = cluster.kubectl("get", "validatingadmissionpolicy", POLICY,
                              "-o", "jsonpath={.metadata.generation} {.status.observedGeneration}")
        gen, _, seen = obj.stdout.partition(" ")
        return obj.returncode == 0 and gen and gen == seen
    eventually(observed, timeout=60, what="policy type-checked")
    eventually(lambda: denied_by_policy(create(core, agent_shaped_pod(hostNetwork=True))), timeout=60,
               what="policy enforced")


PROC = {"volumes": [{"name": "cache", "hostPath": {"path": CACHE}}, {"name": "proc", "hostPath": {"path": "/proc"}}]}
PROC_RO = {**PROC, "mounts": [{"name": "proc", "mountPath": "/host/proc", "readOnly": True}]}

# (finding, changes to the agent-shaped pod); each was admitted before the fix.
FINDINGS = [
    ("seccomp-unconfined-pod", {"pod_sc": {"seccompProfile": {"type": "Unconfined"}}}),
    ("seccomp-unconfined-container", {"container_sc": {"seccompProfile": {"type": "Unconfined"}}}),
    ("seccomp-unset", {"pod_sc": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": None}}),
    ("selinux-spc_t-pod", {"pod_sc": {"seLinuxOptions": {"type": "spc_t"}}}),
    ("selinux-spc_t-container", {"container_sc": {"seLinuxOptions": {"type": "spc_t"}}}),
    ("sysctl-kernel.msgmax", {"pod_sc": {"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]}}),
    ("apparmor-unconfined-pod", {"pod_sc": {"appArmorProfile": {"type": "Unconfined"}}}),
    ("apparmor-unconfined-container", {"container_sc": {"appArmorProfile": {"type": "Unconfined"}}}),
    ("apparmor-unconfined-annotation", {"annotations": {"container.apparmor.security.beta.kubernetes.io/c":
                                                        "unconfined"}}),
    # Unmasked needs a user namespace to pass the API server's own validation
    ("procmount-unmasked", {"hostUsers": False, "container_sc": {"procMount": "Unmasked"}}),
    ("run-as-uid-0", {"pod_sc": {"runAsUser": 0}}),
    ("hostpath-volume-type-not-restricted", {"volumes": [{"name": "cache", "hostPath": {"path": CACHE}},
                                                         {"name": "n", "nfs": {"server": "x", "path": "/"}}]}),
    # issue #16: the host's /proc is the agent's, read-only and whole; nothing wider
    ("host-pid", {"hostPID": True}),
    ("host-pid-with-proc-read-only", {"hostPID": True, **PROC_RO}),
    ("host-proc-writable", {**PROC, "mounts": [{"name": "proc", "mountPath": "/host/proc"}]}),
    ("host-proc-readonly-false", {**PROC, "mounts": [{"name": "proc", "mountPath": "/host/proc", "readOnly": False}]}),
    ("host-proc-subpath", {**PROC, "mounts": [{"name": "proc", "mountPath": "/host/root", "readOnly": True,
                                               "subPath": "1/root"}]}),
    ("host-proc-subpathexpr", {**PROC, "mounts": [{"name": "proc", "mountPath": "/host/me", "readOnly": True,
                                                   "subPathExpr": "$(POD)"}]}),
    ("hostpath-under-proc", {"volumes": [{"name": "cache", "hostPath": {"path": CACHE}},
                                         {"name": "r", "hostPath": {"path": "/proc/1/root"}}],
                             "mounts": [{"name": "r", "mountPath": "/host/root", "readOnly": True}]}),
    ("hostpath-proc-trailing-slash", {"volumes": [{"name": "cache", "hostPath": {"path": CACHE}},
                                                  {"name": "p", "hostPath": {"path": "/proc/"}}],
                                      "mounts": [{"name": "p", "mountPath": "/host/proc", "readOnly": True}]}),
    ("hostpath-sys-read-only", {"volumes": [{"name": "cache", "hostPath": {"path": CACHE}},
                                            {"name": "s", "hostPath": {"path": "/sys"}}],
                                "mounts": [{"name": "s", "mountPath": "/host/sys", "readOnly": True}]}),
    ("hostpath-root-read-only", {"volumes": [{"name": "cache", "hostPath": {"path": CACHE}},
                                             {"name": "r", "hostPath": {"path": "/"}}],
                                 "mounts": [{"name": "r", "mountPath": "/host", "readOnly": True}]}),
]


@pytest.mark.parametrize("changes", [r[1] for r in FINDINGS], ids=[r[0] for r in FINDINGS])
def test_agent_namespace_denies(policy, core, changes):
    pod = agent_shaped_pod(**copy.deepcopy(changes))
    eventually(lambda: denied_by_policy(create(core, pod)), timeout=10, what="the policy denies it")


@pytest.mark.parametrize("changes", [
    {},
    {"pod_sc": {"appArmorProfile": {"type": "RuntimeDefault"}, "seLinuxOptions": {"type": "container_t"}}},
    {"volumes": [{"name": "cache", "hostPath": {"path": CACHE}}, {"name": "nv", "hostPath": {"path": "/dev/null"}},
                 {"name": "tmp", "emptyDir": {}}]},
    PROC_RO,
    {"volumes": PROC["volumes"], "mounts": [{"name": "proc", "mountPath": "/host/proc", "readOnly": True,
                                              "recursiveReadOnly": "IfPossible"}]},
], ids=["agent-shaped", "explicit-runtime-defaults", "toolkit-volume-mount-mode", "host-proc-read-only",
        "host-proc-recursive-read-only"])
def test_agent_namespace_admits_what_the_agent_needs(policy, core, changes):
    exc = create(core, agent_shaped_pod(**copy.deepcopy(changes)))
    assert exc is None, exc.body


def test_the_charts_own_agent_pod_is_admitted(policy, core):
    ds = manifests.one("DaemonSet", "gpusched-agent")
    template = ds["spec"]["template"]
    pod = {"metadata": {"generateName": "sec-agent-", "labels": template["metadata"]["labels"]},
           "spec": {**template["spec"], "nodeSelector": {"nobody": "schedules-this"}}}
    pod["spec"].pop("runtimeClassName", None)  # the test bed has no RuntimeClass nvidia
    pod["spec"].pop("affinity", None)
    # the shape this test admits: the host's /proc read-only for --proc-root, no hostPID
    assert [v["hostPath"]["path"] for v in pod["spec"]["volumes"] if "hostPath" in v][-1] == "/proc"
    assert "--proc-root=/host/proc" in pod["spec"]["containers"][0]["args"]
    assert not pod["spec"].get("hostPID")
    exc = create(core, pod)
    assert exc is None, exc.body


@pytest.fixture
def running_pod(policy, core):
    """A real (unscheduled) agent-shaped pod to attach ephemeral containers to."""
    pod = agent_shaped_pod()
    pod["metadata"] = {"name": f"sec-ephemeral-{os.getpid() % 100000}"}
    core.create_namespaced_pod(NS, pod)
    yield pod["metadata"]["name"]
    core.delete_namespaced_pod(pod["metadata"]["name"], NS, grace_period_seconds=0)


def add_ephemeral(core, pod: str, container: dict) -> ApiException | None:
    try:
        core.patch_namespaced_pod_ephemeralcontainers(
            pod, NS, {"spec": {"ephemeralContainers": [container]}}, dry_run="All",
            _content_type="application/strategic-merge-patch+json")
    except ApiException as exc:
        return exc
    return None


def test_privileged_root_ephemeral_container_is_denied(core, running_pod):
    debug = {"name": "debug", "image": "busybox", "targetContainerName": "c",
             "securityContext": {"privileged": True, "runAsUser": 0, "runAsNonRoot": False,
                                 "allowPrivilegeEscalation": True, "capabilities": {"add": ["SYS_ADMIN"]}}}
    exc = add_ephemeral(core, running_pod, debug)
    assert denied_by_policy(exc), exc.body if exc else "admitted"
    assert "ephemeralContainers" in exc.body


def test_ephemeral_container_without_security_context_is_denied(core, running_pod):
    # `kubectl debug` with its default (legacy) profile: root unless the image says otherwise
    exc = add_ephemeral(core, running_pod, {"name": "debug", "image": "busybox"})
    assert denied_by_policy(exc), exc.body if exc else "admitted"


@pytest.fixture
def running_pod_with_proc(policy, core):
    """An agent-shaped pod with the host's /proc volume, mounted read-only by its container."""
    pod = agent_shaped_pod(**copy.deepcopy(PROC_RO))
    pod["metadata"] = {"name": f"sec-ephemeral-proc-{os.getpid() % 100000}"}
    core.create_namespaced_pod(NS, pod)
    yield pod["metadata"]["name"]
    core.delete_namespaced_pod(pod["metadata"]["name"], NS, grace_period_seconds=0)


# (case, the debug container's /proc mount, admitted): the pod's /proc volume is no way
# for a debug container to reach the host's /proc writable (the API server's own
# validation refuses any subPath in an ephemeral container)
RESTRICTED_DEBUG = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"}}
EPHEMERAL_PROC = [
    ("read-only", {"name": "proc", "mountPath": "/host/proc", "readOnly": True}, True),
    ("writable", {"name": "proc", "mountPath": "/host/proc"}, False),
]


@pytest.mark.parametrize("mount, admitted", [r[1:] for r in EPHEMERAL_PROC], ids=[r[0] for r in EPHEMERAL_PROC])
def test_ephemeral_container_mounts_host_proc_only_read_only(core, running_pod_with_proc, mount, admitted):
    debug = {"name": "debug", "image": "busybox", "securityContext": RESTRICTED_DEBUG, "volumeMounts": [mount]}
    exc = add_ephemeral(core, running_pod_with_proc, debug)
    if admitted:
        assert exc is None, exc.body
    else:
        assert denied_by_policy(exc), exc.body if exc else "admitted"
        assert "/proc only read-only" in exc.body


def test_restricted_debug_container_is_admitted(core, running_pod):
    # what `kubectl debug --profile=restricted` sends
    debug = {"name": "debug", "image": "busybox", "securityContext": RESTRICTED_DEBUG}
    exc = add_ephemeral(core, running_pod, debug)
    assert exc is None, exc.body


def test_policy_type_checks_clean(cluster, policy):
    """A CEL typo shows as a type-checking warning, and such an expression never denies."""
    r = cluster.kubectl("get", "validatingadmissionpolicy", POLICY, "-o", "jsonpath={.status.typeChecking}")
    assert r.returncode == 0, r.stderr
    assert "expressionWarnings" not in r.stdout, r.stdout
