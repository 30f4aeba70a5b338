"""Issue 14, item 1: an InferenceAutoscaler in tenant-a named tenant-b's Deployment
through its scaleTargetRef (``../../tenant-b/deployments/victim``) and the autoscaler,
allowed to patch deployments/scale everywhere, scaled it. On the real API server:

1. the CRD refuses such a name (today's main admitted it);
2. the daemon, handed the object as if it had been stored before the schema was
   tightened, refuses it and leaves the victim alone (today's main scaled it to 7);
3. the chart's RBAC lets the autoscaler's ServiceAccount scale only in the namespaces
   listed in autoscaler.namespaces: `kubectl auth can-i` rows, and a real PATCH of the
   victim's scale with its token is Forbidden (today's main: a ClusterRole allowed it).
"""
from __future__ import annotations

import json
import time

import pytest
from kubernetes.client.rest import ApiException

from scheduler.kube.client import raw
from tests.autoscaler import bed
from tests.helpers import eventually, gpu_deployment

pytestmark = pytest.mark.integration

ATTACK = "../../{victim_ns}/deployments/victim"


@pytest.fixture
def victim_ns(core):
    name = f"tenant-b-{time.monotonic_ns() % 10**8}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def victim(apps, victim_ns):
    apps.create_namespaced_deployment(victim_ns, gpu_deployment("victim", 1, gpus=0))
    return victim_ns


@pytest.fixture(scope="module")
def crd(cluster):
    bed.install_crd(cluster)


def test_crd_refuses_a_target_name_that_is_a_path(cluster, crd, namespace, victim):
    body = bed.ias_body("evil", ATTACK.format(victim_ns=victim), minReplicas=7, maxReplicas=7)
    with pytest.raises(ApiException) as e:
        bed.create_ias(cluster, namespace, body)
    assert e.value.status == 422
    msg = json.loads(e.value.body)["message"]
    assert "spec.scaleTargetRef.name" in msg and "should match" in msg, msg


def test_daemon_refuses_an_object_stored_before_the_schema(cluster, namespace, victim, apps):
    from autoscaler.daemon import Autoscaler, Config

    obj = bed.ias_body("evil", ATTACK.format(victim_ns=victim), minReplicas=7, maxReplicas=7)
    obj["metadata"].update(namespace=namespace, uid="u-1", generation=1)
    d = Autoscaler(cluster.api_client(), Config(prometheus_url="http://127.0.0.1:9", identity="sec-test",
                                                metrics_port=0, watch_namespace=namespace, prewarm=False))
    assert d.reconcile(obj, time.time()) is None
    assert apps.read_namespaced_deployment("victim", victim).spec.replicas == 1
    assert d.metrics.errors.labels("spec")._value.get() == 1  # InvalidSpec, not an API call
    _, evs = raw(cluster.api_client(), "GET", f"/api/v1/namespaces/{namespace}/events")
    (ev,) = [e for e in evs["items"] if e["involvedObject"]["name"] == "evil"]
    assert ev["reason"] == "InvalidSpec" and "DNS-1123" in ev["message"]


def test_the_service_account_scales_only_in_listed_namespaces(cluster, namespace, victim, tmp_path):
    bed.apply(cluster, bed.autoscaler_rbac([namespace]), tmp_path / "rbac.yaml")
    # RBAC answers, as a tenant or an auditor would ask them
    eventually(lambda: bed.can_i(cluster, "patch", "deployments.apps/scale", namespace), timeout=20,
               what="the RoleBinding in the listed namespace")
    assert not bed.can_i(cluster, "patch", "deployments.apps/scale", victim)
    assert not bed.can_i(cluster, "patch", "deployments.apps/scale", "kube-system")
    assert not bed.can_i(cluster, "patch", "deployments.apps/scale", None)
    # and the API server's answer to the PATCH itself, with the ServiceAccount's token
    sa = bed.api_from(bed.sa_kubeconfig(cluster, tmp_path / "sa.kubeconfig"))
    with pytest.raises(ApiException) as e:
        raw(sa, "PATCH", f"/apis/apps/v1/namespaces/{victim}/deployments/victim/scale", {"spec": {"replicas": 7}},
            content_type="application/merge-patch+json")
    assert e.value.status == 403
    from kubernetes import client
    assert client.AppsV1Api(cluster.api_client()).read_namespaced_deployment("victim", victim).spec.replicas == 1
