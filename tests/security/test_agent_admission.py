"""Issue #14, finding 4: the agent's namespace (Pod Security `privileged`, for the cache
hostPath) admitted seccomp Unconfined, SELinux spc_t, an unsafe sysctl, AppArmor
Unconfined, an unmasked /proc and a privileged root SYS_ADMIN ephemeral container.
Issue #16: the agent reads GPU processes' cgroups through the host's /proc, mounted
read-only; the policy admits exactly that (read-only, whole) and still no hostPID.

Issue #13: the DRA kubelet plugin writes in root-owned host directories; the policy admits
UID 0 and those directories for exactly the chart's gpusched-dra-plugin pod and nothing near it.

On the test bed's real kube-apiserver with the chart's rendered manifests: the
gpusched-agent-namespace-pods ValidatingAdmissionPolicy holds every pod there to the
restricted profile (plus the cache hostPath), ephemeral containers included. Each
finding is one row; the agent's own pod, the DRA plugin's pod and a `kubectl debug
--profile=restricted` container are still admitted, so the denials are not a blanket refusal.
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


# --- the DRA plugin: root, with exactly the chart's shape ----------------------------------

DRA_PATHS = ["/var/lib/kubelet/plugins/gpu.gpusched.io", "/var/lib/kubelet/plugins_registry", "/var/run/cdi"]


def dra_plugin_pod() -> dict:
    """The chart's gpusched-dra-plugin pod, from its DaemonSet's template, never scheduled."""
    template = manifests.one("DaemonSet", "gpusched-dra-plugin")["spec"]["template"]
    spec = copy.deepcopy(template["spec"])
    spec.pop("runtimeClassName", None)  # the test bed has no RuntimeClass nvidia
    spec.pop("affinity", None)
    spec["nodeSelector"] = {"nobody": "schedules-this"}
    return {"metadata": {"generateName": "sec-dra-", "labels": template["metadata"]["labels"]}, "spec": spec}


def _plugin(pod: dict) -> dict:
    return pod["spec"]["containers"][0]


def _sc(pod: dict) -> dict:
    return _plugin(pod)["securityContext"]


def _extra_host_path(path: str, read_only: bool = True):
    def change(pod):
        pod["spec"]["volumes"].append({"name": "extra", "hostPath": {"path": path}})
        _plugin(pod)["volumeMounts"].append({"name": "extra", "mountPath": "/host/extra", "readOnly": read_only})
    return change


def _root_sidecar(pod):
    sidecar = {"name": "sidecar", "image": "busybox", "command": ["sleep", "1d"],
               "securityContext": {"runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
                                   "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}}
    pod["spec"]["containers"].append(sidecar)


def _set(path: str, value):
    """A change to the plugin container (or, with a 'spec.' prefix, the pod): dotted path, value."""
    def change(pod):
        keys = path.split(".")
        target = pod["spec"] if keys[0] == "spec" else _plugin(pod)
        keys = keys[1:] if keys[0] == "spec" else keys
        for k in keys[:-1]:
            target = target.setdefault(k, {})
        target[keys[-1]] = value
    return change


def _volume(name: str, **host_path):
    def change(pod):
        (v,) = [v for v in pod["spec"]["volumes"] if v["name"] == name]
        v["hostPath"] = host_path
    return change


def _mount(volume: dict, path: str):
    def change(pod):
        pod["spec"]["volumes"].append(volume)
        _plugin(pod)["volumeMounts"].append({"name": volume["name"], "mountPath": path, "readOnly": True})
    return change


def _env(*extra):
    def change(pod):
        _plugin(pod)["env"] = [e for e in _plugin(pod)["env"] if e["name"] not in {x["name"] for x in extra}] + \
            list(extra)
    return change


# (case, change to the chart's plugin pod): each is refused with the policy's message
DRA_REFUSED = [
    # the six of issue #13
    ("root-in-another-container", _root_sidecar),
    ("extra-hostpath-root-read-only", _extra_host_path("/")),
    ("extra-hostpath-model-cache", _extra_host_path("/var/cache/gpusched/models")),  # fine for the agent, not here
    ("host-proc-writable", _extra_host_path("/proc", read_only=False)),
    ("host-proc-read-only-in-the-root-pod", _extra_host_path("/proc")),
    ("capability-added-dac-override", _set("securityContext.capabilities", {"drop": ["ALL"], "add": ["DAC_OVERRIDE"]})),
    ("capability-added-sys-admin", _set("securityContext.capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]})),
    ("privileged", lambda p: _sc(p).update(privileged=True, allowPrivilegeEscalation=True)),
    # and what else would make it other than the chart's container
    ("root-in-an-init-container", lambda p: p["spec"].setdefault("initContainers", []).append(
        {k: v for k, v in copy.deepcopy(_plugin(p)).items() if k not in ("livenessProbe", "ports")} | {"name": "init"})),
    ("capabilities-not-dropped", _set("securityContext.capabilities", {})),
    ("privilege-escalation", _set("securityContext.allowPrivilegeEscalation", True)),
    ("writable-root-filesystem", _set("securityContext.readOnlyRootFilesystem", False)),
    ("seccomp-unconfined", _set("securityContext.seccompProfile", {"type": "Unconfined"})),
    ("seccomp-localhost", lambda p: (_sc(p).update(seccompProfile={"type": "Localhost", "localhostProfile": "x.json"}),
                                     p["spec"]["securityContext"].update(seccompProfile={"type": "Localhost",
                                                                                         "localhostProfile": "x.json"}))),
    ("host-pid", _set("spec.hostPID", True)),
    ("host-network", _set("spec.hostNetwork", True)),
    ("another-service-account", _set("spec.serviceAccountName", "default")),
    ("another-container-name", _set("name", "plugin")),
    ("another-image", _set("image", "busybox")),
    ("a-command", _set("command", ["sh", "-c", "exec gpusched \"$@\""])),
    ("other-args", lambda p: _plugin(p)["args"].append("--nvidia-cdi")),
    ("exec-liveness-probe", _set("livenessProbe", {"exec": {"command": ["sh", "-c", "id"]}})),
    ("post-start-hook", _set("lifecycle", {"postStart": {"exec": {"command": ["sh", "-c", "id"]}}})),
    ("ld-preload", _env({"name": "LD_PRELOAD", "value": "/var/run/cdi/x.so"})),
    ("node-name-forged", _env({"name": "NODE_NAME", "value": "gpu-node-0001"})),
    ("env-from", _set("envFrom", [{"configMapRef": {"name": "x"}}])),
    ("kubelet-plugins-parent-dir", _volume("plugin", path="/var/lib/kubelet/plugins", type="DirectoryOrCreate")),
    ("cdi-dir-any-type", _volume("cdi", path="/var/run/cdi")),
    ("cdi-dir-trailing-slash", _volume("cdi", path="/var/run/cdi/", type="DirectoryOrCreate")),
    ("etc-cdi", _volume("cdi", path="/etc/cdi", type="DirectoryOrCreate")),
    # code or config where the root process reads it: mounts, working dir and env values are the chart's
    ("configmap-in-site-packages", _mount({"name": "code", "configMap": {"name": "evil"}},
                                          "/opt/gpusched/lib/python3.11/site-packages/evil")),
    ("configmap-at-home", _mount({"name": "code", "configMap": {"name": "evil"}}, "/tmp/.local")),
    ("tmp-from-a-configmap", lambda p: [v.update({"configMap": {"name": "evil"}}) or v.pop("emptyDir")
                                        for v in p["spec"]["volumes"] if v["name"] == "tmp"]),
    ("cdi-mounted-elsewhere", lambda p: [m.update(mountPath="/opt/gpusched") for m in _plugin(p)["volumeMounts"]
                                         if m["name"] == "cdi"]),
    ("a-sub-path", lambda p: [m.update(subPath="x") for m in _plugin(p)["volumeMounts"] if m["name"] == "tmp"]),
    ("working-dir", _set("workingDir", "/var/run/cdi")),
    ("home-elsewhere", _env({"name": "HOME", "value": "/var/run/cdi"})),
    ("driver-capabilities-all", _env({"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "all"})),
]


@pytest.mark.parametrize("change", [r[1] for r in DRA_REFUSED], ids=[r[0] for r in DRA_REFUSED])
def test_dra_plugin_pod_refused_when_not_exactly_the_charts(policy, core, change):
    pod = dra_plugin_pod()
    change(pod)
    eventually(lambda: denied_by_policy(create(core, pod)), timeout=10, what="the policy denies it")


def test_the_charts_own_dra_plugin_pod_is_admitted(policy, core):
    pod = dra_plugin_pod()
    spec = pod["spec"]
    # the shape admitted: UID 0 with no capability, read-only root, the three directories only
    assert spec["securityContext"]["runAsUser"] == 0 and _sc(pod)["capabilities"] == {"drop": ["ALL"]}
    assert _sc(pod)["readOnlyRootFilesystem"] is True and not spec.get("hostPID") and not spec.get("hostNetwork")
    assert [v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v] == DRA_PATHS
    exc = create(core, pod)  # the ServiceAccount admission plugin adds its token volume first: the real path
    assert exc is None, exc.body


# The plugin's directories stay closed to every other pod, root or not.
# (case, volumes and mounts of an agent-shaped, non-root pod)
DRA_PATHS_ELSEWHERE = [
    (f"non-root-pod-mounts-{p.rsplit('/', 1)[-1]}", {"volumes": [{"name": "cache", "hostPath": {"path": CACHE}},
                                                                  {"name": "d", "hostPath": {"path": p,
                                                                                             "type": "Directory"}}],
                                                      "mounts": [{"name": "d", "mountPath": "/d", "readOnly": True}]})
    for p in DRA_PATHS
]


@pytest.mark.parametrize("changes", [r[1] for r in DRA_PATHS_ELSEWHERE], ids=[r[0] for r in DRA_PATHS_ELSEWHERE])
def test_dra_directories_refused_outside_the_plugin_pod(policy, core, changes):
    pod = agent_shaped_pod(**copy.deepcopy(changes))
    eventually(lambda: denied_by_policy(create(core, pod)), timeout=10, what="the policy denies it")


def test_no_ephemeral_container_joins_the_root_plugin_pod(policy, core):
    """Not even a restricted one: it would share the pod's volumes, the host directories
    the root process writes. Debug the plugin from the node (`kubectl debug node/...`)."""
    pod = dra_plugin_pod()
    pod["metadata"] = {"name": f"sec-dra-ephemeral-{os.getpid() % 100000}"}
    core.create_namespaced_pod(NS, pod)
    try:
        debug = {"name": "debug", "image": "busybox", "securityContext": RESTRICTED_DEBUG}
        exc = add_ephemeral(core, pod["metadata"]["name"], debug)
        assert denied_by_policy(exc), exc.body if exc else "admitted"
    finally:
        core.delete_namespaced_pod(pod["metadata"]["name"], NS, grace_period_seconds=0)


def test_the_daemonset_controller_creates_the_plugin_pod_and_kwok_runs_it(policy, core, apps):
    """The path a cluster takes: the DaemonSet controller (its own ServiceAccount) creates the
    pod from the chart's template, admission included, the scheduler places it, and kwok, which
    runs no container, reports it Running. On a kwok node of its own, under a name and labels of
    its own (the chart's DaemonSet is applied too, and on the test bed, which has no RuntimeClass
    nvidia, makes no pods)."""
    from benchmarks.testbed.nodes import node_body
    from benchmarks.testbed.profiles import NodeSpec

    tag = str(os.getpid() % 100000)
    node = f"dra-ds-{tag}"
    core.create_node(node_body(NodeSpec(node, 0, "none", 0, labels={"gpusched-test/dra-ds": tag})))
    ds = copy.deepcopy(manifests.one("DaemonSet", "gpusched-dra-plugin"))
    name = f"sec-dra-ds-{tag}"
    ds["metadata"] = {"name": name, "namespace": NS}
    ds["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/name": name}}
    template = ds["spec"]["template"]
    template["metadata"]["labels"] = {"app.kubernetes.io/name": name}
    template["spec"].pop("runtimeClassName")
    template["spec"]["nodeSelector"] = {"gpusched-test/dra-ds": tag}
    apps.create_namespaced_daemon_set(NS, ds)
    try:
        def running():
            pods = core.list_namespaced_pod(NS, label_selector=f"app.kubernetes.io/name={name}").items
            return pods if [p for p in pods if p.spec.node_name == node and p.status.phase == "Running"] else None
        (pod,) = eventually(running, timeout=60, what="the plugin pod Running on the kwok node")
        c = pod.spec.containers[0]
        assert (pod.spec.security_context.run_as_user, c.security_context.capabilities.drop) == (0, ["ALL"])
        assert sorted(v.host_path.path for v in pod.spec.volumes if v.host_path) == sorted(DRA_PATHS)
    finally:
        apps.delete_namespaced_daemon_set(name, NS)
        core.delete_node(node)
