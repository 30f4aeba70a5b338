"""The chart's extender (deploy/manifests, rendered from deploy/chart/gpusched) on the real API
server: it applies, its RBAC is what the extender needs and nothing more, and the extender
runs under that ServiceAccount (its kube-scheduler's: it is that pod's sidecar), following
the scheduler's Lease."""
from __future__ import annotations

import subprocess
import sys

import pytest
import requests
import yaml

from benchmarks.testbed.cluster import free_port
from tests.deploy import manifests
from tests.helpers import eventually

pytestmark = pytest.mark.integration

SA = manifests.sa_user("gpusched-scheduler")
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{manifests.NAMESPACE}/leases/gpusched-scheduler"


def kubectl(cluster, *args: str) -> subprocess.CompletedProcess:
    return cluster.kubectl(*args)


@pytest.fixture(scope="module")
def applied(cluster):
    manifests.apply(cluster)
    yield  # left in place: other components' deploy tests share gpusched-system; the session cluster goes


@pytest.mark.parametrize("verb,resource,allowed", [
    ("list", "nodes", True),
    ("watch", "pods", True),
    ("get", "pods", True),
    ("create", "pods/binding", True),
    ("get", "secrets", False),          # no reading of credentials
    ("patch", "nodes", False),          # the agent writes Nodes, not the extender
    ("update", "pods", False),          # annotations travel on the Binding instead
    ("create", "clusterrolebindings", False),
    ("escalate", "clusterroles", False),
])
def test_extender_rbac(cluster, applied, verb, resource, allowed):
    resource, _, sub = resource.partition("/")
    r = kubectl(cluster, "auth", "can-i", verb, resource, *([f"--subresource={sub}"] if sub else []),
                f"--as={SA}", "--all-namespaces")
    assert (r.stdout.strip() == "yes") == allowed, (verb, resource, r.stdout, r.stderr)


def _hold_lease(cluster, holder: str) -> None:
    """Play gpusched's kube-scheduler: the chart's Deployment has no running pods on the test bed."""
    from datetime import datetime, timezone

    from scheduler.kube.client import raw
    api = cluster.api_client()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    spec = {"holderIdentity": holder, "acquireTime": now, "renewTime": now, "leaseDurationSeconds": 15}
    status, lease = raw(api, "GET", LEASE)
    if status == 200:
        lease["spec"] = spec
        raw(api, "PUT", LEASE, lease)
    else:
        raw(api, "POST", LEASE.rsplit("/", 1)[0], {"metadata": {"name": "gpusched-scheduler"}, "spec": spec})


def test_extender_serves_and_binds_under_its_service_account(cluster, applied, core, namespace, tmp_path):
    token = kubectl(cluster, "create", "token", "gpusched-scheduler", "-n", "gpusched-system").stdout.strip()
    assert token
    kc = tmp_path / "kubeconfig"
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    admin["users"] = [{"name": "extender", "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = "extender"
    kc.write_text(yaml.safe_dump(admin))
    # The session's nodes were reported once, at its start; this test may run after the default 600 s.
    config = tmp_path / "extender.yaml"
    # bind takes pods of this scheduler name only, and no scheduler serves it; the Lease as the
    # chart's ConfigMap names it (renewDeadline long: the test renews it by hand once)
    config.write_text("staleAfterSeconds: 86400\nschedulerName: by-hand\nleaderElection:\n"
                      f"  resourceNamespace: {manifests.NAMESPACE}\n  resourceName: gpusched-scheduler\n"
                      "  renewDeadlineSeconds: 600\n  identity: by-hand-pod\n")
    _hold_lease(cluster, "another-pod_0c1d")
    port, ops = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    cluster.spawn("extender-as-sa", [sys.executable, "-m", "scheduler.cli", "extender", "--kubeconfig", str(kc),
                                     "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{ops}",
                                     "--config", str(config)])
    try:
        cluster.wait_until("extender-as-sa", lambda: requests.get(f"http://127.0.0.1:{ops}/readyz", timeout=2).ok,
                           60, "ready")
        # a pod no scheduler picks up, bound by hand through the extender's verbs
        core.create_namespaced_pod(namespace, {
            "metadata": {"name": "manual", "annotations": {"gpusched.io/gpu-memory": "10Gi"}},
            "spec": {"schedulerName": "by-hand", "containers": [{"name": "c", "image": "x"}]}})
        pod = core.api_client.sanitize_for_serialization(core.read_namespaced_pod("manual", namespace))
        # another replica's kube-scheduler leads: this sidecar answers nothing (its RBAC let it watch the Lease)
        r = eventually(lambda: (x := requests.post(f"{url}/filter", json={"Pod": pod, "NodeNames": ["gpu-node-0000"]},
                                                   timeout=5)).status_code == 503 and "another-pod_0c1d" in x.text
                       and x.text, timeout=20)
        assert "not this pod's (by-hand-pod)" in r
        _hold_lease(cluster, "by-hand-pod_5e6f")  # this pod's kube-scheduler takes over
        eventually(lambda: requests.post(f"{url}/filter", json={"Pod": pod, "NodeNames": ["gpu-node-0000"]},
                                         timeout=5).status_code == 200, timeout=30)
        f = requests.post(f"{url}/filter", json={"Pod": pod, "NodeNames": ["gpu-node-0000"]}, timeout=5).json()
        assert f["NodeNames"] == ["gpu-node-0000"], f
        b = requests.post(f"{url}/bind", json={"PodName": "manual", "PodNamespace": namespace,
                                               "PodUID": pod["metadata"]["uid"], "Node": "gpu-node-0000"},
                          timeout=10).json()
        assert b == {"Error": ""}
        p = eventually(lambda: (q := core.read_namespaced_pod("manual", namespace)).spec.node_name and q, timeout=10)
        assert p.metadata.annotations["gpusched.io/gpu-ids"].isdigit()
    finally:
        cluster.stop_process("extender-as-sa")


@pytest.mark.parametrize("body", [
    b"{not json", b"[]", b'{"Pod": 5}', b'{"Pod": {"metadata": {"name": "x"}}, "NodeNames": [1]}',
    b"\xff\xfe", b'{"Pod": {"metadata": {"name": "x", "annotations": {"gpusched.io/gpu-memory": "1e30"}}},'
                 b' "NodeNames": ["gpu-node-0000"]}',
])
def test_bad_requests_get_4xx_or_a_reason_and_the_extender_keeps_serving(gpusched, body):
    for verb in ("filter", "prioritize", "bind"):
        r = gpusched.post(f"/{verb}", data=body)
        assert r.status_code in (200, 400), (verb, r.status_code, r.text)
        out = r.json()
        if r.status_code == 400:
            assert out["Error"]
        elif verb == "filter":  # the absurd quantity: the node is refused with the reason
            assert "larger than" in out["FailedAndUnresolvableNodes"]["gpu-node-0000"]
        elif verb == "prioritize":
            assert out == []  # score 0 for every node: kube-scheduler reads an unlisted host as 0
    assert gpusched.get("/healthz").ok
