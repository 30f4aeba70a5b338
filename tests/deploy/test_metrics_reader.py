"""The identity the scheduler's ServiceMonitor scrapes kube-scheduler's /metrics with, on the
test bed's real kube-apiserver and kube-controller-manager: the token controller fills its
Secret, and the API server lets that token GET /metrics (what kube-scheduler's delegated
authorization asks it) and nothing else. The ServiceMonitor itself needs prometheus-operator's
CRDs, which the test bed lacks: test_monitoring.py checks how it refers to this Secret."""
from __future__ import annotations

import base64

import pytest
import requests
import yaml

from tests.deploy import manifests
from tests.helpers import eventually

pytestmark = pytest.mark.integration

READER = "gpusched-metrics-reader"


@pytest.fixture(scope="module")
def token(cluster) -> str:
    mod = manifests.render_module()
    docs = manifests.load_docs(mod.helm_template(manifests.helm_binary(), "--set", "serviceMonitor.enabled=true"))
    keep = [d for d in docs if d["kind"] == "Namespace" or d["metadata"]["name"].startswith(READER)]
    assert {d["kind"] for d in keep} == {"Namespace", "ServiceAccount", "Secret", "ClusterRole", "ClusterRoleBinding"}
    path = cluster.dir / "gpusched-metrics-reader.yaml"
    path.write_text(yaml.safe_dump_all(keep))
    r = cluster.kubectl("apply", "--server-side", "-f", str(path))
    assert r.returncode == 0, r.stderr

    def issued() -> str:
        r = cluster.kubectl("get", "secret", f"{READER}-token", "-n", manifests.NAMESPACE,
                            "-o", "jsonpath={.data.token}")
        return base64.b64decode(r.stdout).decode() if r.returncode == 0 and r.stdout else ""

    eventually(issued, timeout=60, what="the token controller fills gpusched-metrics-reader-token")
    yield issued()
    cluster.kubectl("delete", "clusterrolebinding", READER, "--ignore-not-found")
    cluster.kubectl("delete", "clusterrole", READER, "--ignore-not-found")
    cluster.kubectl("delete", "-n", manifests.NAMESPACE, "secret", f"{READER}-token", "--ignore-not-found")
    cluster.kubectl("delete", "-n", manifests.NAMESPACE, "serviceaccount", READER, "--ignore-not-found")


#  path the token is sent to                                  -> status   why
READS = [
    ("/metrics",                                                 200, "the one thing it is for"),
    (f"/api/v1/namespaces/{manifests.NAMESPACE}/secrets",        403, "not even its own namespace's Secrets"),
    ("/api/v1/pods",                                             403, "no resource at all"),
    ("/api/v1/nodes",                                            403, "no resource at all"),
    ("/debug/pprof/",                                            403, "no other non-resource path"),
    ("/readyz",                                                  200, "system:public-info-viewer: every user"),
]


@pytest.mark.parametrize("path, status, why", READS, ids=[r[0] for r in READS])
def test_the_token_may_read_metrics_and_nothing_else(cluster, token, path, status, why):
    r = requests.get(cluster.server + path, headers={"Authorization": f"Bearer {token}"},
                     verify=str(cluster.pki.ca_cert), timeout=10)
    assert r.status_code == status, (path, why, r.status_code, r.text[:200])


def test_without_the_token_metrics_are_refused(cluster, token):
    r = requests.get(cluster.server + "/metrics", verify=str(cluster.pki.ca_cert), timeout=10)
    assert r.status_code in (401, 403), r.status_code
