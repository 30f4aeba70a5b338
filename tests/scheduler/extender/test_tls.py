"""Mutual TLS between kube-scheduler and the extender on the test bed: the real kube-scheduler
verifies the extender's certificate through the extender's tlsConfig (caData) and presents
its own (certFile, keyFile), which the extender requires of every caller."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.testbed import pki as pkimod
from benchmarks.testbed.stack import GpuschedScheduler
from scheduler import contract
from tests.helpers import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_scheduler(cluster):
    g = GpuschedScheduler(cluster, tls=True, name="gpusched-tls")
    g.start()
    yield g
    g.stop()


def test_pods_schedule_and_bind_through_an_https_extender(tls_scheduler, core, namespace):
    body = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "tls-share", "annotations": {contract.GPU_MEMORY: "20Gi"}},
        "spec": {"schedulerName": "gpusched-tls", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.0"}]},
    }
    core.create_namespaced_pod(namespace, body)
    pod = eventually(lambda: (p := core.read_namespaced_pod("tls-share", namespace)).spec.node_name and p,
                     timeout=60, what="tls-share bound")
    # Only our bind writes gpu-ids: the pod went filter -> prioritize -> bind over HTTPS.
    assert pod.metadata.annotations.get(contract.GPU_IDS, "").isdigit()
    assert 'gpusched_extender_decisions_total{result="bound",verb="bind"}' in tls_scheduler.metrics()


def connection_counts(g) -> dict[str, float]:
    """The verbs port's connections accepted ("accepted") and closed by reason, from /metrics."""
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(g.metrics()):
        for s in fam.samples:
            if s.labels.get("port") != "verbs":
                continue
            if s.name == "gpusched_extender_connections_accepted_total":
                out["accepted"] = s.value
            elif s.name == "gpusched_extender_connections_closed_total":
                out[s.labels["reason"]] = s.value
    return out


def test_kube_scheduler_reuses_its_tls_connections_for_pods_one_after_another(tls_scheduler, core, namespace):
    # 6 pods, each created once the last is bound: filter, prioritize and bind, 18 calls over
    # HTTPS. Go's client keeps up to 2 idle connections per host (MaxIdleConnsPerHost, which
    # kube-scheduler leaves at Go's default): with no overlap it needs no more than 2 in all,
    # and the extender hangs up on none of them.
    before = connection_counts(tls_scheduler)
    for i in range(6):
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"reuse-{i}"},
            "spec": {"schedulerName": "gpusched-tls", "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.0",
                                     "resources": {"limits": {contract.GPU_RESOURCE: "1"}}}]},
        }
        core.create_namespaced_pod(namespace, body)
        eventually(lambda name=f"reuse-{i}": core.read_namespaced_pod(name, namespace).spec.node_name,
                   timeout=60, what=f"reuse-{i} bound")
    after = connection_counts(tls_scheduler)
    diff = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}
    assert diff.get("accepted", 0) <= 2, diff
    assert set(diff) <= {"accepted", "peer"}, diff  # kube-scheduler may drop one; the extender closes none


def test_plain_http_and_untrusted_clients_are_refused_and_the_extender_keeps_serving(tls_scheduler, tmp_path):
    g = tls_scheduler
    plain = g.url.replace("https://", "http://")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{plain}/healthz", timeout=5)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{g.url}/healthz", timeout=5, verify=True)  # system CAs do not know ours
    # trusting the server is not enough: no client certificate, or one from another CA, is refused
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"{g.url}/filter", data=b"{}", timeout=5, verify=g.verify)
    other = pkimod.create_extender_tls(tmp_path, "stranger")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"{g.url}/filter", data=b"{}", timeout=5, verify=g.verify,
                      cert=(str(other.client_cert), str(other.client_key)))
    # A client that connects and never handshakes does not hold up others.
    idle = socket.create_connection(("127.0.0.1", g.port))
    try:
        assert requests.get(f"{g.url}/healthz", timeout=5, verify=g.verify, cert=g.cert).text == "ok"
        assert g.get("/healthz").text == "ok"  # the metrics port: plain HTTP, no certificate
        assert g.post("/filter", data=b"{}").status_code == 400  # in, and judged on the body
    finally:
        idle.close()


def test_a_mismatched_key_is_one_clear_line(tmp_path, cluster):
    g = GpuschedScheduler(cluster, tls=True, name="gpusched-tls-bad")
    other = GpuschedScheduler(cluster, tls=True, name="gpusched-tls-other")
    cert, key = g._tls_args[1], other._tls_args[3]
    r = subprocess.run([sys.executable, "-m", "scheduler.cli", "extender", "--kubeconfig", str(cluster.kubeconfig),
                        "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--tls-cert-file", cert,
                        "--tls-private-key-file", key],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "cannot use TLS certificate" in r.stderr and "Traceback" not in r.stderr
