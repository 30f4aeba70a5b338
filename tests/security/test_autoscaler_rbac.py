"""The autoscaler's RBAC with a namespace listed in autoscaler.namespaces, on the real API
server: `kubectl auth can-i --as=system:serviceaccount:gpusched-system:gpusched-autoscaler`,
row by row. It may act in the listed namespace and nowhere else (issue 14, item 1: it
could patch deployments/scale in every namespace, kube-system included). The rows are
the table in docs/security-autoscaler.md."""
from __future__ import annotations

import pytest

from tests.autoscaler import bed

pytestmark = pytest.mark.integration

LISTED, OTHER, SYSTEM, ALL = "listed", "other", "kube-system", None

# (verb, resource[/subresource], where, allowed, why)
CAN_I = [
    ("patch", "deployments.apps/scale", LISTED, True, "scales the targets of its namespaces"),
    ("patch", "deployments.apps/scale", OTHER, False, "a namespace that did not opt in"),
    ("patch", "deployments.apps/scale", SYSTEM, False, "never kube-system unless listed"),
    ("patch", "deployments.apps/scale", ALL, False, "no cluster-wide grant"),
    ("get", "deployments.apps", LISTED, True, "reads its targets"),
    ("get", "deployments.apps", OTHER, False, "reads no other Deployment"),
    ("patch", "deployments.apps", LISTED, False, "only the scale subresource"),
    ("update", "deployments.apps", LISTED, False, "only the scale subresource"),
    ("watch", "inferenceautoscalers.gpusched.io", LISTED, True, "its objects"),
    ("watch", "inferenceautoscalers.gpusched.io", ALL, False, "only listed namespaces"),
    ("patch", "inferenceautoscalers.gpusched.io/status", LISTED, True, "status"),
    ("patch", "inferenceautoscalers.gpusched.io/status", OTHER, False, "only listed namespaces"),
    ("update", "inferenceautoscalers.gpusched.io", LISTED, False, "never its users' specs"),
    ("patch", "pods/status", LISTED, True, "the gpusched.io/serving condition"),
    ("patch", "pods/status", OTHER, False, "only listed namespaces"),
    ("patch", "pods/status", SYSTEM, False, "never kube-system unless listed"),
    ("watch", "pods", LISTED, True, "its targets' pods"),
    ("list", "pods", ALL, True, "pre-warming: the GPUs taken per node (autoscaler.prewarm=false drops it)"),
    ("list", "resourceclaims.resource.k8s.io", ALL, True, "pre-warming: the GPU memory claim shares hold"),
    ("watch", "resourceclaims.resource.k8s.io", ALL, False, "listed once per pre-warm, never watched"),
    ("update", "resourceclaims.resource.k8s.io/status", ALL, False, "kube-scheduler allocates claims"),
    ("delete", "pods", LISTED, False, "the ReplicaSet deletes pods"),
    ("create", "pods", LISTED, False, "creates no pods"),
    ("list", "replicasets.apps", LISTED, True, "during a rollout"),
    ("create", "events", LISTED, True, "Events on its objects"),
    ("create", "events", OTHER, False, "only listed namespaces"),
    ("patch", "nodes", ALL, True, "prefetch annotation only (admission policy)"),
    ("delete", "nodes", ALL, False, "no Node deletes"),
    ("get", "secrets", LISTED, False, "no credentials"),
    ("list", "configmaps", LISTED, False, "no configmaps"),
    ("create", "rolebindings.rbac.authorization.k8s.io", LISTED, False, "cannot opt a namespace in itself"),
    ("bind", "clusterroles.rbac.authorization.k8s.io", ALL, False, "no binding of roles"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", ALL, False, "no escalation"),
]


@pytest.fixture(scope="module")
def namespaces(cluster, tmp_path_factory):
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    # can-i answers "no" for a resource the server does not serve: the rows on
    # inferenceautoscalers need the CRD whichever test ran before
    bed.install_crd(cluster)
    listed, other = "sec-rbac-listed", "sec-rbac-other"
    for ns in (listed, other):
        try:
            core.create_namespace({"metadata": {"name": ns}})
        except client.ApiException as e:
            if e.status != 409:
                raise
    bed.apply(cluster, bed.autoscaler_rbac([listed]), tmp_path_factory.mktemp("rbac") / "rbac.yaml")
    from tests.helpers import eventually
    eventually(lambda: bed.can_i(cluster, "patch", "deployments.apps/scale", listed), timeout=20,
               what="the RoleBinding in effect")
    yield {LISTED: listed, OTHER: other, SYSTEM: "kube-system", ALL: None}


@pytest.mark.parametrize("verb,resource,where,allowed,why", CAN_I,
                         ids=[f"{r[0]}-{r[1]}-{r[2] or 'all'}-{'yes' if r[3] else 'no'}" for r in CAN_I])
def test_can_i(cluster, namespaces, verb, resource, where, allowed, why):
    got = bed.can_i(cluster, verb, resource, namespaces[where])
    assert got == allowed, (f"kubectl auth can-i {verb} {resource} --as={bed.SA} "
                            f"{'-n ' + namespaces[where] if where else '--all-namespaces'} -> "
                            f"{'yes' if got else 'no'}; expected {'yes' if allowed else 'no'} ({why})")
