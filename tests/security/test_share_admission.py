"""Annotation shares are opt-in where the DRA plugin runs (issue 13): on the test bed's real
kube-apiserver, the chart's defaults (extender.annotationShares `auto`, agent.dra.enabled
true) install ValidatingAdmissionPolicy gpusched-annotation-shares, which refuses a pod
asking GPU memory with the gpusched.io/gpu-memory annotation, whoever creates it, and says
why and what to do instead; a claim share is admitted; extender.annotationShares=true admits
annotation shares again."""
from __future__ import annotations

import re
import time

import pytest
from kubernetes import client

from scheduler import contract
from scheduler.claim_template import claim_template
from scheduler.kube.client import raw
from tests.deploy import manifests
from tests.helpers import eventually
from tests.security.test_ownership_admission import TENANT, as_user, enforced_tenant_ns, pod, status

pytestmark = pytest.mark.integration

# what the refusal must teach: why, what instead, and the value that turns them back on
WHY = "would not be isolated on the node (it sees every GPU"
ALLOCATOR = "kube-scheduler's allocator would not see the memory"
INSTEAD = "ResourceClaimTemplate of DeviceClass gpu.gpusched.io"
VALUE = "extender.annotationShares=true"


LEGACY_NS = "default"
LEGACY = f"legacy-share-{time.monotonic_ns() % 10**9}"
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?)?$")


@pytest.fixture(scope="module")
def refusing(cluster):
    # a pod made while annotation shares were still on (the helper's default), before the policy
    client.CoreV1Api(cluster.api_client()).create_namespaced_pod(LEGACY_NS, pod(LEGACY, {contract.GPU_MEMORY: "1Gi"}))
    manifests.apply(cluster, annotation_shares=False)  # the chart's defaults, as they are
    assert manifests.one("ValidatingAdmissionPolicy", manifests.ANNOTATION_SHARES_POLICY)
    yield
    manifests.allow_annotation_shares(cluster)  # the rest of the session places annotation shares
    client.CoreV1Api(cluster.api_client()).delete_namespaced_pod(LEGACY, LEGACY_NS, grace_period_seconds=0)


def echoed(value: str) -> str:
    """What the message may echo of the tenant's value: a plain quantity, else a placeholder
    (it lands in an Event, inside a command an admin may paste)."""
    return value if len(value) <= 32 and QUANTITY.match(value) else "<quantity>"


@pytest.fixture
def tenant_ns(cluster, core, namespace, refusing):
    yield from enforced_tenant_ns(cluster, core, namespace, {contract.GPU_MEMORY: "1Gi"},
                                  "annotation share policy enforced")


def claim_pod(name: str, template: str) -> dict:
    body = pod(name)
    body["spec"]["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": template}]
    body["spec"]["containers"][0]["resources"] = {"claims": [{"name": "gpu"}]}
    return body


# (who creates the pod, its annotations, HTTP status): the annotation is refused from anyone,
# a cluster admin too (the value, not an identity, says whether annotation shares are allowed)
CREATES = [
    ("tenant", {contract.GPU_MEMORY: "20Gi"}, 403),
    ("tenant", {contract.GPU_MEMORY: "20Gi", "example.com/team": "a"}, 403),
    ("admin", {contract.GPU_MEMORY: "38Gi"}, 403),
    ("tenant", {contract.GPU_MEMORY: "9" * 40 + "Gi"}, 403),  # not echoed: too long to be a quantity
    ("tenant", {contract.GPU_MEMORY: "1Gi$(curl x|sh)"}, 403),  # not echoed: not a quantity
    ("tenant", {contract.GPU_MEMORY: "1.5Gi`id`"}, 403),
    ("tenant", {"example.com/team": "a"}, 200),  # no share: not this policy's business
]


@pytest.mark.parametrize("who,annotations,want", CREATES)
def test_an_annotation_share_is_refused_with_what_to_do_instead(cluster, core, tenant_ns, who, annotations, want):
    api = as_user(cluster, TENANT) if who == "tenant" else core
    got, why = status(lambda: api.create_namespaced_pod(tenant_ns, pod(f"p-{time.monotonic_ns() % 10**9}",
                                                                        annotations)))
    assert got == want, why
    if want == 403:
        memory = echoed(annotations[contract.GPU_MEMORY])
        for part in (WHY, ALLOCATOR, INSTEAD, f"gpusched claim-template --memory {memory}", VALUE):
            assert part in why, (part, why)


def test_the_annotation_added_to_a_pending_pod_is_refused(cluster, tenant_ns):
    tenant = as_user(cluster, TENANT)
    tenant.create_namespaced_pod(tenant_ns, pod("later"))
    got, why = status(lambda: tenant.patch_namespaced_pod(
        "later", tenant_ns, {"metadata": {"annotations": {contract.GPU_MEMORY: "20Gi"}}}))
    assert got == 403 and INSTEAD in why, why
    got, why = status(lambda: tenant.patch_namespaced_pod("later", tenant_ns, {"metadata": {"labels": {"x": "y"}}}))
    assert got == 200, why


def test_the_annotation_added_through_pods_status_is_refused(cluster, core, tenant_ns):
    """The pod status strategy keeps metadata changes made through pods/status."""
    core.create_namespaced_pod(tenant_ns, pod("via-status"))
    got, why = status(lambda: core.patch_namespaced_pod_status(
        "via-status", tenant_ns, {"metadata": {"annotations": {contract.GPU_MEMORY: "20Gi"}}}))
    assert got == 403 and INSTEAD in why, why
    assert contract.GPU_MEMORY not in (core.read_namespaced_pod("via-status", tenant_ns).metadata.annotations or {})


# (the legacy pod's new annotations, through pods or pods/status, HTTP status, what the message
# echoes): a pod made while annotation shares were on ("1Gi") keeps its value or drops it; a
# changed value would make the extender recount it by the tenant's word
LEGACY_UPDATES = [
    ({contract.GPU_MEMORY: "80Gi"}, "pods", 403, "80Gi"),  # grown 1Gi -> 80Gi
    ({contract.GPU_MEMORY: "1Mi"}, "pods", 403, "1Mi"),  # shrunk
    ({contract.GPU_MEMORY: "80Gi"}, "pods/status", 403, "80Gi"),
    ({contract.GPU_MEMORY: "1Gi$(curl x|sh)"}, "pods", 403, "<quantity>"),
    ({contract.GPU_MEMORY: "1Gi", "example.com/team": "a"}, "pods", 200, None),  # value kept
]


@pytest.mark.parametrize("annotations,via,want,shown", LEGACY_UPDATES)
def test_a_legacy_pods_value_may_not_change(core, tenant_ns, annotations, via, want, shown):
    patch = core.patch_namespaced_pod_status if via == "pods/status" else core.patch_namespaced_pod
    got, why = status(lambda: patch(LEGACY, LEGACY_NS, {"metadata": {"annotations": annotations}}))
    assert got == want, why
    if want == 403:
        assert "may not change" in why and f"--memory {shown}`" in why, why
        assert "curl" not in why, why
    assert core.read_namespaced_pod(LEGACY, LEGACY_NS).metadata.annotations[contract.GPU_MEMORY] == "1Gi"


def test_a_legacy_pod_may_drop_its_annotation(core, tenant_ns):
    """Runs after the updates above: dropping the value is allowed (the pod is no longer counted
    as a share; docs/ownership.md says what legacy pods may do)."""
    got, why = status(lambda: core.patch_namespaced_pod(
        LEGACY, LEGACY_NS, {"metadata": {"annotations": {contract.GPU_MEMORY: None}}}))
    assert got == 200, why
    assert contract.GPU_MEMORY not in (core.read_namespaced_pod(LEGACY, LEGACY_NS).metadata.annotations or {})


def test_a_claim_share_from_the_cli_template_is_admitted(cluster, tenant_ns):
    """What the refusal points to: `gpusched claim-template`'s object, as the API server takes it."""
    template = claim_template(memory="20Gi", namespace=tenant_ns)
    code, _ = raw(cluster.api_client(), "POST", f"/apis/resource.k8s.io/v1/namespaces/{tenant_ns}/resourceclaimtemplates",
                  template)
    assert code == 201
    got, why = status(lambda: as_user(cluster, TENANT).create_namespaced_pod(
        tenant_ns, claim_pod("claim-share", template["metadata"]["name"])))
    assert got == 200, why


def test_a_replicasets_annotation_share_pods_are_refused_and_it_says_why(cluster, apps, core, tenant_ns):
    """Tenants mostly create Deployments: the ReplicaSet controller's pod creates are refused too,
    and its FailedCreate Event carries the same message."""
    template = pod("x", {contract.GPU_MEMORY: "20Gi"})
    apps.create_namespaced_deployment(tenant_ns, {
        "metadata": {"name": "shares"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "shares"}},
                 "template": {"metadata": {"labels": {"app": "shares"}, "annotations": template["metadata"]["annotations"]},
                              "spec": template["spec"]}}})

    def refused():
        evs = core.list_namespaced_event(tenant_ns).items
        return [e.message for e in evs if e.reason == "FailedCreate" and INSTEAD in (e.message or "")]
    assert eventually(refused, timeout=60, what="FailedCreate with the policy's message")
    assert not core.list_namespaced_pod(tenant_ns, label_selector="app=shares").items
    apps.delete_namespaced_deployment("shares", tenant_ns)


def test_with_the_value_on_an_annotation_share_is_admitted(cluster, tenant_ns):
    """extender.annotationShares=true renders no policy (tests/deploy/test_chart.py); on the API
    server that is the policy gone. Runs last in this module: the policy stays gone."""
    manifests.allow_annotation_shares(cluster)
    got, why = status(lambda: as_user(cluster, TENANT).create_namespaced_pod(
        tenant_ns, pod("legacy-share", {contract.GPU_MEMORY: "20Gi"})))
    assert got == 200, why
