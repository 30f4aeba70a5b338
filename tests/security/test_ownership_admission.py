"""GPU ownership cannot be forged (issue 13): on the test bed's real kube-apiserver, the
chart's ValidatingAdmissionPolicy gpusched-gpu-ownership lets only the extender's
ServiceAccount write a pod's gpusched.io/gpu-ids and gpusched.io/placement (through its
Binding), and refuses a gpu-memory share created straight onto a node."""
from __future__ import annotations

import json
import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from scheduler import contract
from tests.deploy import manifests
from tests.helpers import eventually

pytestmark = pytest.mark.integration

TENANT = "ownership-tenant"  # a user who may create and edit pods in one namespace, nothing more
NODE = "ownership-no-such-node"  # bindings go here: no kwok node, no GPU accounting touched
REFUSED = "are written only by gpusched's extender"


def as_user(cluster, user: str) -> client.CoreV1Api:
    api = cluster.api_client()
    api.default_headers["Impersonate-User"] = user
    return client.CoreV1Api(api)


def pod(name: str, annotations: dict[str, str] | None = None, node: str | None = None) -> dict:
    spec: dict = {"schedulerName": "nobody", "containers": [{"name": "c", "image": "vllm/vllm-openai:v0.9.0"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations or {}},
            "spec": spec}


def binding(name: str, annotations: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "annotations": annotations},
            "target": {"kind": "Node", "name": NODE}}


def status(call) -> tuple[int, str]:
    try:
        call()
    except ApiException as exc:
        return exc.status, json.loads(exc.body or "{}").get("message", "")
    return 200, ""


@pytest.fixture(scope="module")
def policy(cluster):
    # the chart as a kubectl user applies it: RBAC and the policies; with extender.annotationShares=true,
    # since the spec.nodeName rows are about annotation shares (the legacy path; claims by default)
    manifests.apply(cluster, annotation_shares=True)
    assert manifests.one("ValidatingAdmissionPolicy", "gpusched-gpu-ownership")


def tenant_in(cluster, namespace: str) -> client.CoreV1Api:
    """TENANT's client, after a Role and RoleBinding let it create, get, update and patch
    pods in ``namespace`` (and nothing else)."""
    rbac = client.RbacAuthorizationV1Api(cluster.api_client())
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "tenant"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "update", "patch"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "tenant"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                    "name": "tenant"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT}]})
    return as_user(cluster, TENANT)


def enforced_tenant_ns(cluster, core, namespace: str, forged: dict[str, str], what: str):
    """The body of a tenant_ns fixture: yields `namespace` once a policy refuses the tenant's
    pod annotated `forged`, and removes the namespace's pods afterwards."""
    tenant = tenant_in(cluster, namespace)
    # the API server loads a new policy asynchronously: wait until it refuses a forged pod
    eventually(lambda: status(lambda: tenant.create_namespaced_pod(
        namespace, pod(f"probe-{time.monotonic_ns() % 10**9}", forged)))[0] == 403, timeout=60, what=what)
    yield namespace
    # pods bound to a node that does not exist have no kubelet to confirm their deletion:
    # remove them at once instead of waiting out PodGC's quarantine in the namespace teardown
    core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)


@pytest.fixture
def tenant_ns(cluster, core, namespace, policy):
    yield from enforced_tenant_ns(cluster, core, namespace, {contract.GPU_IDS: "0"}, "ownership policy enforced")


# (annotations a tenant writes on a new pod, spec.nodeName, HTTP status, message part)
CREATES = [
    ({contract.GPU_IDS: "0,1,2,3,4,5,6,7"}, None, 403, REFUSED),
    ({contract.PLACEMENT: '{"node":"gpu-node-0020","gpus":[0]}'}, None, 403, REFUSED),
    # issue 13's forgery: 10m of CPU "holding" 80Gi of GPU 0..7 on a node it was never scheduled to
    ({contract.GPU_MEMORY: "80Gi", contract.GPU_IDS: "0,1,2,3,4,5,6,7"}, "gpu-node-0002", 403, REFUSED),
    ({contract.GPU_MEMORY: "80Gi"}, "gpu-node-0002", 403, "must be placed by the gpusched scheduler"),
    # asking is fine: the share request itself, or a pod pinned by nodeName without a share
    ({contract.GPU_MEMORY: "80Gi"}, None, 200, ""),
    ({"example.com/team": "a"}, NODE, 200, ""),
]


@pytest.mark.parametrize("annotations,node,want,message", CREATES)
def test_a_tenant_cannot_create_a_pod_with_self_written_ownership(cluster, tenant_ns, annotations, node, want,
                                                                  message):
    tenant = as_user(cluster, TENANT)
    name = f"p-{time.monotonic_ns() % 10**9}"
    got, why = status(lambda: tenant.create_namespaced_pod(tenant_ns, pod(name, annotations, node)))
    assert got == want, why
    assert message in why
    if want == 403:
        assert TENANT in why or "spec.nodeName" in why  # says who may not, or what to do instead


def test_only_the_extenders_binding_writes_ownership_and_nobody_else_may_change_it(cluster, core, tenant_ns):
    tenant = as_user(cluster, TENANT)
    # the extender is a sidecar of gpusched's kube-scheduler and runs as its pod's ServiceAccount
    ext = as_user(cluster, manifests.sa_user("gpusched-scheduler"))
    sched = as_user(cluster, "system:kube-scheduler")  # the cluster's default kube-scheduler
    for name in ("a", "b"):
        tenant.create_namespaced_pod(tenant_ns, pod(name))
    ours = {contract.GPU_IDS: "3", contract.PLACEMENT: json.dumps({"node": NODE, "gpus": [3]})}

    # a tenant adding ownership to its pending pod afterwards: refused
    got, why = status(lambda: tenant.patch_namespaced_pod("a", tenant_ns, {"metadata": {"annotations": ours}}))
    assert got == 403 and REFUSED in why, why
    # another identity allowed to bind (the default kube-scheduler) may bind, but not write ownership
    got, why = status(lambda: sched.create_namespaced_pod_binding("b", tenant_ns, binding("b", ours),
                                                                  _preload_content=False))
    assert got == 403 and REFUSED in why, why
    got, why = status(lambda: sched.create_namespaced_pod_binding("b", tenant_ns, binding("b", {}),
                                                                  _preload_content=False))
    assert got == 200, why
    # the extender's Binding carries them onto the pod
    got, why = status(lambda: ext.create_namespaced_pod_binding("a", tenant_ns, binding("a", ours),
                                                                _preload_content=False))
    assert got == 200, why
    a = core.read_namespaced_pod("a", tenant_ns)
    assert a.spec.node_name == NODE and a.metadata.annotations[contract.GPU_IDS] == "3"
    # once written, the tenant may not change or remove them, but may edit the rest of the pod
    for change in ({contract.GPU_IDS: "0"}, {contract.GPU_IDS: None}, {contract.PLACEMENT: None}):
        got, why = status(lambda change=change: tenant.patch_namespaced_pod("a", tenant_ns,
                                                                             {"metadata": {"annotations": change}}))
        assert got == 403 and REFUSED in why, (change, why)
    got, why = status(lambda: tenant.patch_namespaced_pod("a", tenant_ns, {"metadata": {"labels": {"x": "y"}}}))
    assert got == 200, why
    assert core.read_namespaced_pod("a", tenant_ns).metadata.annotations[contract.GPU_IDS] == "3"
