"""The chart's rendered manifests on the test bed's real kube-apiserver: they apply with
server-side apply (twice: the second is a no-op), the TLS variant applies too (server
dry-run), and each ServiceAccount may do what its component needs and nothing more:
a `kubectl auth can-i --as=system:serviceaccount:...` table, allowed and denied rows, plus
the admission policies that narrow the Node patches RBAC cannot narrow."""
from __future__ import annotations

import base64
import os
import subprocess
import time
import urllib.parse

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.deploy import manifests
from tests.helpers import eventually

pytestmark = pytest.mark.integration

# The extender is a sidecar of gpusched's kube-scheduler: one pod, one ServiceAccount, both sets of rights
EXT = SCHED = "gpusched-scheduler"
AGENT, AUTO, DRA = "gpusched-agent", "gpusched-autoscaler", "gpusched-dra-plugin"
ALL = None  # --all-namespaces
SYS = manifests.NAMESPACE

# (service account, verb, resource[/subresource][/name], namespace, allowed, why)
CAN_I = [
    # extender: reads Nodes and Pods, binds through pods/binding
    (EXT, "list", "nodes", ALL, True, "snapshot"),
    (EXT, "watch", "pods", ALL, True, "snapshot"),
    (EXT, "create", "pods/binding", ALL, True, "bind verb"),
    (EXT, "create", "events", ALL, True, "Events on Nodes whose report it does not trust"),
    (EXT, "list", "resourceclaims.resource.k8s.io", ALL, True, "DRA allocations in the snapshot"),
    (EXT, "watch", "resourceclaims.resource.k8s.io", ALL, True, "DRA allocations in the snapshot"),
    (EXT, "watch", "resourceslices.resource.k8s.io", ALL, True, "the devices a claim pod's allocator may pick"),
    (EXT, "create", "resourceslices.resource.k8s.io", ALL, False, "publishes no devices: the DRA plugin does"),
    (EXT, "update", "deviceclasses.resource.k8s.io", ALL, False, "the chart's DeviceClass is the admin's"),
    (EXT, "get", "secrets", ALL, False, "no credentials"),
    (EXT, "get", "secrets", SYS, False, "not even its own namespace's"),
    (EXT, "patch", "nodes", ALL, False, "the agent writes Nodes"),
    (EXT, "update", "pods", ALL, False, "annotations travel on the Binding"),
    (EXT, "create", "clusterrolebindings", ALL, False, "no RBAC writes"),
    (EXT, "escalate", "clusterroles", ALL, False, "no escalation"),
    (EXT, "bind", "clusterroles", ALL, False, "no binding of roles"),
    (EXT, "impersonate", "serviceaccounts", ALL, False, "no impersonation"),
    # kube-scheduler: system:kube-scheduler + its own Lease
    (SCHED, "create", "pods/binding", ALL, True, "binds pods"),
    (SCHED, "watch", "nodes", ALL, True, "scheduler cache"),
    (SCHED, "delete", "pods", ALL, True, "preemption: every kube-scheduler may (system:kube-scheduler)"),
    (SCHED, "create", "leases.coordination.k8s.io", SYS, True, "leader election"),
    (SCHED, "update", "leases.coordination.k8s.io/gpusched-scheduler", SYS, True, "its own Lease"),
    (SCHED, "watch", "leases.coordination.k8s.io/gpusched-scheduler", SYS, True, "the sidecar follows the Lease"),
    (SCHED, "update", "leases.coordination.k8s.io/gpusched-autoscaler", SYS, False, "not another's Lease"),
    (SCHED, "watch", "leases.coordination.k8s.io/gpusched-autoscaler", SYS, False, "nor watches another's"),
    (SCHED, "get", "secrets", ALL, False, "no credentials"),
    (SCHED, "patch", "nodes", ALL, False, "schedules, writes no Node"),
    (SCHED, "create", "pods", ALL, False, "creates no pods"),
    (SCHED, "update", "deployments.apps", ALL, False, "no workload writes"),
    (SCHED, "create", "clusterrolebindings", ALL, False, "no RBAC writes"),
    (SCHED, "escalate", "clusterroles", ALL, False, "no escalation"),
    (SCHED, "bind", "clusterroles", ALL, False, "no binding of roles"),
    # agent: get/list/patch Nodes (narrowed to its own Node by admission policy), Events
    (AGENT, "get", "nodes", ALL, True, "reads its Node"),
    (AGENT, "list", "nodes", ALL, True, "fieldSelector on its Node"),
    (AGENT, "patch", "nodes", ALL, True, "RBAC cannot say 'own Node': see the policy tests"),
    (AGENT, "create", "events", ALL, True, "Events on its Node"),
    (AGENT, "create", "events.events.k8s.io", ALL, True, "Events on its Node"),
    (AGENT, "delete", "nodes", ALL, False, "no Node deletes"),
    (AGENT, "update", "nodes/status", ALL, False, "kubelet's business"),
    (AGENT, "get", "secrets", ALL, False, "no credentials"),
    (AGENT, "list", "pods", ALL, True, "its node's, to name GPU processes' pods (agent.podGpuMetrics)"),
    (AGENT, "get", "pods", ALL, False, "lists its node's pods, gets none"),
    (AGENT, "watch", "pods", ALL, False, "lists its node's pods, watches none"),
    (AGENT, "delete", "pods", ALL, False, "deletes no pods"),
    (AGENT, "create", "pods", ALL, False, "creates no pods"),
    (AGENT, "create", "clusterrolebindings", ALL, False, "no RBAC writes"),
    (AGENT, "escalate", "clusterroles", ALL, False, "no escalation"),
    (AGENT, "bind", "clusterroles", ALL, False, "no binding of roles"),
    (AGENT, "create", "resourceslices.resource.k8s.io", ALL, False, "the DRA plugin publishes, not the agent"),
    (AGENT, "get", "resourceclaims.resource.k8s.io", ALL, False, "the DRA plugin reads claims, not the agent"),
    # the DRA kubelet plugin (root on the node): its Node's ResourceSlice by name (narrowed to it by
    # admission policy), the claims the kubelet names, its Node's UID; nothing else
    (DRA, "create", "resourceslices.resource.k8s.io", ALL, True, "RBAC cannot say 'own node': see the policy"),
    (DRA, "update", "resourceslices.resource.k8s.io", ALL, True, "a GPU lost or back"),
    (DRA, "delete", "resourceslices.resource.k8s.io", ALL, True, "its slice, when no GPU is left"),
    (DRA, "list", "resourceslices.resource.k8s.io", ALL, False, "reads its slice by name"),
    (DRA, "watch", "resourceslices.resource.k8s.io", ALL, False, "reads its slice by name"),
    (DRA, "get", "resourceclaims.resource.k8s.io", ALL, True, "the claims the kubelet names"),
    (DRA, "list", "resourceclaims.resource.k8s.io", ALL, False, "never browses claims"),
    (DRA, "update", "resourceclaims.resource.k8s.io/status", ALL, False, "kube-scheduler allocates"),
    (DRA, "update", "deviceclasses.resource.k8s.io", ALL, False, "the chart's DeviceClass is the admin's"),
    (DRA, "get", "nodes", ALL, True, "its Node's UID, the slice's owner"),
    (DRA, "list", "nodes", ALL, False, "gets its Node by name"),
    (DRA, "patch", "nodes", ALL, False, "the agent writes the Node report"),
    (DRA, "list", "pods", ALL, False, "reads no pods"),
    (DRA, "create", "events", ALL, False, "the agent records Events"),
    (DRA, "get", "secrets", ALL, False, "no credentials"),
    (DRA, "get", "secrets", manifests.AGENT_NAMESPACE, False, "not even its own namespace's"),
    (DRA, "create", "pods", ALL, False, "creates no pods"),
    (DRA, "create", "pods/exec", manifests.AGENT_NAMESPACE, False, "no way into the agent"),
    (DRA, "create", "serviceaccounts/token", ALL, False, "mints no tokens"),
    (DRA, "create", "clusterrolebindings", ALL, False, "no RBAC writes"),
    (DRA, "escalate", "clusterroles", ALL, False, "no escalation"),
    (DRA, "bind", "clusterroles", ALL, False, "no binding of roles"),
    (DRA, "impersonate", "serviceaccounts", ALL, False, "no impersonation"),
    # autoscaler: prefetch on Nodes, its Lease; InferenceAutoscalers, Deployment scale, pod status and
    # Events only in the namespaces listed in autoscaler.namespaces (none by default; see
    # tests/security/test_autoscaler_rbac.py for a listed one)
    (AUTO, "watch", "inferenceautoscalers.gpusched.io", ALL, False, "only in listed namespaces"),
    (AUTO, "patch", "inferenceautoscalers.gpusched.io/status", ALL, False, "only in listed namespaces"),
    (AUTO, "update", "inferenceautoscalers.gpusched.io", ALL, False, "never its users' specs"),
    (AUTO, "patch", "deployments.apps/scale", ALL, False, "only in listed namespaces"),
    (AUTO, "patch", "deployments.apps/scale", "kube-system", False, "never kube-system unless listed"),
    (AUTO, "patch", "deployments.apps", ALL, False, "only the scale subresource"),
    (AUTO, "patch", "pods/status", ALL, False, "only in listed namespaces"),
    (AUTO, "patch", "nodes", ALL, True, "prefetch annotation only: see the policy tests"),
    (AUTO, "update", "leases.coordination.k8s.io/gpusched-autoscaler", SYS, True, "its own Lease"),
    (AUTO, "update", "leases.coordination.k8s.io/gpusched-scheduler", SYS, False, "not another's Lease"),
    (AUTO, "delete", "pods", ALL, False, "the ReplicaSet deletes pods"),
    (AUTO, "create", "pods", ALL, False, "creates no pods"),
    (AUTO, "delete", "nodes", ALL, False, "no Node deletes"),
    (AUTO, "get", "secrets", ALL, False, "no credentials"),
    (AUTO, "list", "configmaps", ALL, False, "no configmaps"),
    (AUTO, "create", "clusterrolebindings", ALL, False, "no RBAC writes"),
    (AUTO, "escalate", "clusterroles", ALL, False, "no escalation"),
    (AUTO, "bind", "clusterroles", ALL, False, "no binding of roles"),
]


def _doc_table(path, heading: str) -> list[tuple[str, str, bool]]:
    """(verb, resource, allowed) of the markdown table after `heading`: each row's verbs x
    resources, "(...)" notes dropped."""
    import re
    text = path.read_text()
    rows = []
    for line in text[text.index(heading):].splitlines()[1:]:
        if line.startswith("| ") and not line.startswith("| verb"):
            verbs, resources, answer = (re.sub(r"\(.*?\)", "", c).strip() for c in line.strip("|").split("|"))
            rows += [(v.strip(), r.strip(), answer.startswith("yes"))
                     for v in verbs.split(",") for r in resources.split(",") if r.strip()]
        elif rows and not line.startswith("|"):
            break
    return rows


def test_the_security_docs_dra_plugin_table_is_the_tested_one():
    """Each row of docs/security.md's table for the DRA plugin is a CAN_I row with the same answer."""
    doc = _doc_table(manifests.ROOT / "docs" / "security.md", "The DRA kubelet plugin")
    tested = {(verb, res.split(".")[0] if "/" not in res else res.split(".")[0] + "/" + res.split("/")[1]): allowed
              for sa, verb, res, _, allowed, _ in CAN_I if sa == DRA}
    assert len(doc) >= 20
    for verb, res, allowed in doc:
        short = res.split(".")[0] if "/" not in res else res.split(".")[0] + "/" + res.split("/")[1]
        assert (verb, short) in tested, f"docs/security.md: {verb} {res} has no can-i row"
        assert tested[(verb, short)] == allowed, f"docs/security.md: {verb} {res} says {allowed}"


@pytest.fixture(scope="module")
def applied(cluster):
    manifests.apply(cluster, annotation_shares=False)  # the chart's defaults, every object of them
    yield  # left in place (the session cluster goes at the end), but for the refusal of annotation
    manifests.allow_annotation_shares(cluster)  # shares, which later tests in the session place


def test_rendered_manifests_apply_and_every_object_exists(cluster, applied):
    for d in manifests.docs():
        ns = d["metadata"].get("namespace")
        r = cluster.kubectl("get", f"{d['kind'].lower()}.{d['apiVersion'].split('/')[0] if '/' in d['apiVersion'] else ''}".rstrip("."),
                            d["metadata"]["name"], *(["-n", ns] if ns else []), "-o", "name")
        assert r.returncode == 0, (d["kind"], d["metadata"]["name"], r.stderr)


def test_second_apply_changes_nothing(cluster, applied):
    r = cluster.kubectl("diff", "--server-side", "-f", str(manifests.RENDERED))
    assert r.returncode == 0, r.stdout + r.stderr  # 0: no differences, 1: differences, >1: error


def test_tls_and_prefetch_variant_applies(cluster, applied):
    """helm template output with TLS and prefetch on applies too (server dry-run; the
    Prometheus Operator objects are left out, the test bed has no such CRDs)."""
    helm = manifests.helm_binary()
    mod = manifests.render_module()
    ca = base64.b64encode(cluster.pki.ca_cert.read_bytes()).decode()
    text = mod.helm_template(helm, "--set", "extender.tls.enabled=true", "--set", f"extender.tls.caData={ca}",
                             "--set", "agent.modelStores[0]=https://models.example/store",
                             "--set", "autoscaler.prewarm=false")
    path = cluster.dir / "gpusched-tls.yaml"
    path.write_text(text)
    r = cluster.kubectl("apply", "--server-side", "--dry-run=server", "--force-conflicts", "-f", str(path))
    assert r.returncode == 0, r.stderr
    assert "violate PodSecurity" not in r.stderr


def test_restricted_namespace_admits_the_pods(cluster, applied, apps):
    """The Deployments' pods pass Pod Security `restricted` (enforced in gpusched-system)."""
    for name, replicas in ((SCHED, 2), (AUTO, 2)):
        eventually(lambda name=name, replicas=replicas:
                   (apps.read_namespaced_deployment(name, SYS).status.replicas or 0) == replicas,
                   timeout=30, what=f"{name} pods created")


@pytest.mark.parametrize("sa,verb,resource,namespace,allowed,why", CAN_I,
                         ids=[f"{r[0].removeprefix('gpusched-')}-{r[1]}-{r[2]}-{'ns' if r[3] else 'all'}-"
                              f"{'yes' if r[4] else 'no'}" for r in CAN_I])
def test_can_i(cluster, applied, sa, verb, resource, namespace, allowed, why):
    parts = resource.split("/")
    name = sub = None
    if len(parts) == 2:
        # "pods/binding" is a subresource; "leases.coordination.k8s.io/NAME" a named object
        if parts[0].startswith("leases."):
            name = parts[1]
        else:
            sub = parts[1]
    target = f"{parts[0]}/{name}" if name else parts[0]
    cmd = ["auth", "can-i", verb, target, *([f"--subresource={sub}"] if sub else []),
           f"--as={manifests.sa_user(sa)}", *(["-n", namespace] if namespace else ["--all-namespaces"])]
    r = cluster.kubectl(*cmd)
    assert r.stdout.strip() in ("yes", "no"), (cmd, r.stdout, r.stderr)
    assert (r.stdout.strip() == "yes") == allowed, (f"kubectl {' '.join(cmd)} -> {r.stdout.strip()}; expected "
                                                    f"{'yes' if allowed else 'no'} ({why})")


def _as(cluster, sa: str, node: str | None = None) -> client.CoreV1Api:
    api = cluster.api_client()
    api.default_headers["Impersonate-User"] = manifests.sa_user(sa)
    if node is not None:
        key = urllib.parse.quote("authentication.kubernetes.io/node-name", safe="")
        api.default_headers[f"Impersonate-Extra-{key}"] = node
    return client.CoreV1Api(api)


def _patch_status(api: client.CoreV1Api, node: str, body: dict) -> int:
    try:
        api.patch_node(node, body, _content_type="application/merge-patch+json")
    except ApiException as exc:
        return exc.status
    return 200


# What RBAC allows but the admission policies refuse: "patch other nodes".
# (agent on node A, node patched, body, expected HTTP status)
NODE_PATCHES = [
    ("agent", "own", {"metadata": {"annotations": {"gpusched.io/reported-at": "x"}}}, 200),
    ("agent", "other", {"metadata": {"annotations": {"gpusched.io/reported-at": "x"}}}, 403),
    ("agent", "own", {"metadata": {"labels": {"node-role.kubernetes.io/x": ""}}}, 403),
    ("agent", "own", {"spec": {"unschedulable": True}}, 403),
    ("autoscaler", "any", {"metadata": {"annotations": {"gpusched.io/prefetch": "[]"}}}, 200),
    ("autoscaler", "any", {"metadata": {"annotations": {"gpusched.io/gpus": "[]"}}}, 403),
    ("autoscaler", "any", {"spec": {"unschedulable": True}}, 403),
]


@pytest.fixture
def two_nodes(core):
    names = [f"deploy-policy-{i}-{time.monotonic_ns() % 100000}" for i in range(2)]
    for n in names:
        core.create_node({"metadata": {"name": n}})
    yield names
    for n in names:
        core.delete_node(n)


def test_admission_policies_narrow_node_patches(cluster, applied, two_nodes):
    own, other = two_nodes
    agent = _as(cluster, AGENT, own)
    # the API server loads new policies asynchronously: wait until the agent is refused another Node
    eventually(lambda: _patch_status(agent, other, {"metadata": {"labels": {"p": str(time.monotonic_ns())}}}) == 403,
               timeout=60, what="admission policies enforced")
    autoscaler = _as(cluster, AUTO)
    eventually(lambda: _patch_status(autoscaler, other, {"metadata": {"labels": {"p": str(time.monotonic_ns())}}})
               == 403, timeout=60, what="autoscaler policy enforced")
    for who, target, body, status in NODE_PATCHES:
        api = agent if who == "agent" else autoscaler
        node = other if target == "other" else own
        assert _patch_status(api, node, body) == status, (who, target, body)


def test_helm_install_takes_over_the_kubectl_applied_objects(cluster, applied):
    """`helm install` itself against the real API server (CRD from crds/, every template), over
    the objects kubectl applied (--take-ownership): the chart and the manifests are the same
    objects. Left installed (an uninstall would take the objects other modules use); the
    session cluster goes at the end."""
    helm = manifests.helm_binary()
    env = {f"HELM_{d.upper()}_HOME": str(cluster.dir / "helm" / d) for d in ("cache", "config", "data")}
    r = subprocess.run([str(helm), "upgrade", "--install", "gpusched", str(manifests.CHART), "--namespace", "default",
                        "--take-ownership", f"--kubeconfig={cluster.kubeconfig}", "--wait=false"],
                       capture_output=True, text=True, env={**os.environ, **env}, check=False, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([str(helm), "get", "manifest", "gpusched", "--namespace", "default",
                        f"--kubeconfig={cluster.kubeconfig}"], capture_output=True, text=True,
                       env={**os.environ, **env}, check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    key = lambda d: (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, manifests.load_docs(r.stdout))) == sorted(map(key, manifests.docs()))
    # and a kubectl apply of the manifests afterwards still changes nothing
    r = cluster.kubectl("diff", "--server-side", "-f", str(manifests.RENDERED))
    assert r.returncode == 0, r.stdout + r.stderr


_RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def _agent_ns_pod(**changes) -> dict:
    """A pod shaped like the agent's (restricted-grade, the cache hostPath), with changes."""
    sc = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    sc.update(changes.pop("container_sc", {}))
    spec = {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "nodeSelector": {"nobody": "schedules-this"},
            "containers": [{"name": "c", "image": "x", "securityContext": sc}],
            "volumes": [{"name": "cache", "hostPath": {"path": "/var/cache/gpusched/models"}}]}
    spec.update(changes)
    return {"metadata": {"generateName": "vap-probe-"}, "spec": spec}


# Pods in the agent's namespace (Pod Security privileged, for the one hostPath): the
# gpusched-agent-namespace-pods policy admits the agent's shape and nothing broader.
AGENT_NS_PODS = [
    ("agent-shaped", {}, True),
    ("other-hostPath", {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}, False),
    ("privileged", {"container_sc": {"privileged": True, "allowPrivilegeEscalation": True}}, False),
    ("added-capability", {"container_sc": {"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}}, False),
    ("escalation", {"container_sc": {"allowPrivilegeEscalation": True}}, False),
    ("host-network", {"hostNetwork": True}, False),
    ("host-pid", {"hostPID": True}, False),
    ("host-proc-read-only", {"volumes": [{"name": "proc", "hostPath": {"path": "/proc"}}],
                             "containers": [{"name": "c", "image": "x", "securityContext": _RESTRICTED,
                                             "volumeMounts": [{"name": "proc", "mountPath": "/host/proc",
                                                               "readOnly": True}]}]}, True),
    ("host-proc-writable", {"volumes": [{"name": "proc", "hostPath": {"path": "/proc"}}],
                            "containers": [{"name": "c", "image": "x", "securityContext": _RESTRICTED,
                                            "volumeMounts": [{"name": "proc", "mountPath": "/host/proc"}]}]},
     False),
    ("root", {"securityContext": {"runAsNonRoot": False, "seccompProfile": {"type": "RuntimeDefault"}}}, False),
]


@pytest.mark.parametrize("changes,admitted", [r[1:] for r in AGENT_NS_PODS], ids=[r[0] for r in AGENT_NS_PODS])
def test_agent_namespace_admits_only_agent_shaped_pods(cluster, applied, core, changes, admitted):
    ns = manifests.AGENT_NAMESPACE

    def create():
        try:
            return core.create_namespaced_pod(ns, _agent_ns_pod(**dict(changes)), dry_run="All")
        except ApiException as exc:
            assert exc.status in (403, 422), exc.body
            assert "gpusched agent's namespace" in exc.body, exc.body
            return None

    if admitted:
        assert create() is not None
    else:  # the policy loads asynchronously after the apply
        eventually(lambda: create() is None, timeout=60, what="policy denies")
