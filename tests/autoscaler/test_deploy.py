"""The chart's autoscaler (deploy/manifests, rendered from deploy/chart/gpusched) on the real API server: it applies (its pods pass the restricted
Pod Security level), its RBAC is what the autoscaler needs and nothing more, the
admission policy limits its Node writes to the prefetch annotation, and the daemon
does its whole job (Lease, promote, scale, status, Events) under that ServiceAccount."""
from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml
from kubernetes.client.rest import ApiException

from scheduler import contract
from scheduler.kube.client import raw
from tests.deploy import manifests
from tests.helpers import eventually, gpu_deployment

pytestmark = pytest.mark.integration

SA = manifests.sa_user("gpusched-autoscaler")


def kubectl(cluster, *args: str) -> subprocess.CompletedProcess:
    return cluster.kubectl(*args)


@pytest.fixture(scope="module")
def applied(cluster):
    manifests.apply(cluster)
    yield
    # the autoscaler's objects only, not the Namespace: other components' deploy tests share
    # gpusched-system (and re-apply the manifests when they need them)
    kubectl(cluster, "delete", "--wait=false", "--ignore-not-found",
            "validatingadmissionpolicybinding/gpusched-autoscaler-prefetch-only",
            "validatingadmissionpolicy/gpusched-autoscaler-prefetch-only",
            "clusterrolebinding/gpusched-autoscaler", "clusterrole/gpusched-autoscaler",
            "clusterrole/gpusched-autoscaler-tenant")
    kubectl(cluster, "delete", "--wait=false", "--ignore-not-found", "-n", manifests.NAMESPACE,
            "deployment/gpusched-autoscaler", "poddisruptionbudget/gpusched-autoscaler",
            "rolebinding/gpusched-autoscaler-lease", "role/gpusched-autoscaler-lease", "serviceaccount/gpusched-autoscaler")


@pytest.fixture(scope="module")
def sa_api(cluster, applied, tmp_path_factory):
    from kubernetes import config as kconfig
    from kubernetes.client import ApiClient, Configuration

    token = kubectl(cluster, "create", "token", "gpusched-autoscaler", "-n", "gpusched-system").stdout.strip()
    assert token
    kc = tmp_path_factory.mktemp("sa") / "kubeconfig"
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    admin["users"] = [{"name": "autoscaler", "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = "autoscaler"
    kc.write_text(yaml.safe_dump(admin))
    cfg = Configuration()
    kconfig.load_kube_config(config_file=str(kc), client_configuration=cfg)
    return ApiClient(cfg)


# --all-namespaces: with the default autoscaler.namespaces (none), nothing namespaced is granted;
# tests/security/test_autoscaler_rbac.py has the rows of a listed namespace
@pytest.mark.parametrize("verb,resource,allowed", [
    ("watch", "inferenceautoscalers.gpusched.io", False),
    ("patch", "inferenceautoscalers.gpusched.io/status", False),
    ("update", "inferenceautoscalers.gpusched.io", False),    # never its users' specs
    ("delete", "inferenceautoscalers.gpusched.io", False),
    ("watch", "deployments.apps", False),
    ("patch", "deployments.apps/scale", False),
    ("patch", "deployments.apps", False),                     # only the scale subresource
    ("update", "deployments.apps", False),
    ("list", "replicasets.apps", False),
    ("list", "pods", True),                                   # pre-warming: GPUs taken per node
    ("watch", "pods", False),
    ("patch", "pods/status", False),
    ("patch", "pods", False),
    ("delete", "pods", False),                                # the ReplicaSet deletes pods
    ("create", "pods", False),
    ("patch", "nodes", True),                                 # prefetch only: see the policy test
    ("delete", "nodes", False),
    ("create", "events", False),
    ("get", "secrets", False),
    ("list", "configmaps", False),
    ("create", "clusterrolebindings", False),
    ("escalate", "clusterroles", False),
])
def test_autoscaler_rbac(cluster, applied, verb, resource, allowed):
    resource, _, sub = resource.partition("/")
    r = kubectl(cluster, "auth", "can-i", verb, resource, *([f"--subresource={sub}"] if sub else []),
                f"--as={SA}", "--all-namespaces")
    assert (r.stdout.strip() == "yes") == allowed, (verb, resource, r.stdout, r.stderr)


@pytest.mark.parametrize("verb,name,allowed", [
    ("create", "", True), ("get", "gpusched-autoscaler", True), ("update", "gpusched-autoscaler", True),
    ("update", "gpusched-scheduler", False), ("delete", "gpusched-autoscaler", False),
])
def test_lease_role_is_namespaced_and_named(cluster, applied, verb, name, allowed):
    target = f"leases.coordination.k8s.io/{name}" if name else "leases.coordination.k8s.io"
    r = kubectl(cluster, "auth", "can-i", verb, target, f"--as={SA}", "-n", "gpusched-system")
    assert (r.stdout.strip() == "yes") == allowed, (verb, name, r.stdout)
    r = kubectl(cluster, "auth", "can-i", "update", "leases.coordination.k8s.io/gpusched-autoscaler",
                f"--as={SA}", "-n", "default")
    assert r.stdout.strip() == "no"


def test_its_pods_pass_restricted_pod_security(cluster, applied, apps):
    dep = eventually(lambda: (d := apps.read_namespaced_deployment("gpusched-autoscaler", "gpusched-system"))
                     .status.replicas == 2 and d, timeout=30, what="2 autoscaler pods created")
    assert dep.spec.template.spec.security_context.run_as_non_root
    c = dep.spec.template.spec.containers[0].security_context
    assert c.read_only_root_filesystem and c.capabilities.drop == ["ALL"] and not c.allow_privilege_escalation


def test_node_writes_limited_to_the_prefetch_annotation(cluster, sa_api, core):
    from autoscaler import kube
    node = "gpu-node-0001"
    before = core.read_node(node).metadata.annotations.get(contract.PREFETCH)
    try:
        assert kube.add_prefetch(sa_api, node, "org/prewarm-test") in (True, False)
        entries = json.loads(core.read_node(node).metadata.annotations[contract.PREFETCH])
        assert {"model": "org/prewarm-test"} in entries
        for body in ({"metadata": {"labels": {"x": "y"}}}, {"metadata": {"annotations": {contract.GPUS: "[]"}}},
                     {"spec": {"unschedulable": True}}):
            with pytest.raises(ApiException) as e:
                raw(sa_api, "PATCH", f"/api/v1/nodes/{node}", body, content_type="application/merge-patch+json")
            assert e.value.status in (403, 422), body
            assert "gpusched autoscaler may" in (e.value.body or str(e.value)), e.value.body
    finally:
        value = before if before is not None else None
        core.patch_node(node, {"metadata": {"annotations": {contract.PREFETCH: value}}})


def test_daemon_runs_under_its_service_account(cluster, sa_api, apps, api_admin, namespace, tmp_path):
    """Lease, pod informer, promote, scale, status and Events with the deployed RBAC, the
    namespace listed in autoscaler.namespaces (its RoleBinding applied).
    The signal is a constant PromQL (no fleet needed): vector(12) per replica, target 5."""
    from autoscaler.daemon import Autoscaler, Config
    from benchmarks.testbed.prometheus import Prometheus
    from tests.autoscaler import bed
    import threading

    ns = namespace
    bed.apply(cluster, [d for d in bed.autoscaler_rbac([ns]) if d["kind"] == "RoleBinding"], tmp_path / "rb.yaml")
    prom = Prometheus(cluster)
    prom.start()
    stop = threading.Event()
    try:
        apps.create_namespaced_deployment(ns, gpu_deployment("llm", 2, annotations={contract.READY_DELAY: "1s"},
                                                             readiness_gates=[contract.SERVING_GATE]))
        _, _ = raw(api_admin, "POST", f"/apis/gpusched.io/v1alpha1/namespaces/{ns}/inferenceautoscalers", {
            "apiVersion": "gpusched.io/v1alpha1", "kind": "InferenceAutoscaler", "metadata": {"name": "llm"},
            "spec": {"scaleTargetRef": {"name": "llm"}, "minReplicas": 1, "maxReplicas": 4, "warmReplicas": 1,
                     "signals": [{"type": "promql", "target": 5, "query": "vector(12)"}]}})
        cfg = Config(prometheus_url=prom.url, interval_s=1.0, namespace="gpusched-system", watch_namespace=ns,
                     identity="sa-test", metrics_port=0, lease_duration_s=3.0, prometheus_timeout_s=2.0)
        d = Autoscaler(sa_api, cfg)
        t = threading.Thread(target=d.run, args=(stop,), daemon=True)
        t.start()
        # 1 serving (minReplicas) -> 12/5 per replica -> ceil(1*12/5) = 3 serving + 1 warm
        eventually(lambda: apps.read_namespaced_deployment("llm", ns).spec.replicas == 4, timeout=30,
                   what="scaled to 3 serving + 1 warm")
        st = eventually(lambda: (s := _ias(api_admin, ns).get("status") or {}).get("desiredReplicas") == 3 and s,
                        timeout=15)
        assert {c["type"]: c["status"] for c in st["conditions"]}["AbleToScale"] == "True"
        _, evs = raw(api_admin, "GET", f"/api/v1/namespaces/{ns}/events")
        assert any(e["reason"] == "SuccessfulRescale" and e["reportingInstance"] == "sa-test" for e in evs["items"])
        assert d.metrics.errors.labels("actuation")._value.get() == 0
        assert d.metrics.errors.labels("status")._value.get() == 0
        assert d.metrics.errors.labels("event")._value.get() == 0
    finally:
        stop.set()
        time.sleep(1.5)
        prom.stop()


@pytest.fixture
def api_admin(cluster):
    return cluster.api_client()


def _ias(api, ns):
    return raw(api, "GET", f"/apis/gpusched.io/v1alpha1/namespaces/{ns}/inferenceautoscalers/llm")[1]
