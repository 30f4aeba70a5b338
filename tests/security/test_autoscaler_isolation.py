"""Issue 14, item 7: one object froze every tenant's autoscaling. serviceRatePerReplica
1e-6, concurrencyPerReplica 4096 and maxReplicas 2^31-1 with an slo passed the CRD;
replicas_for_slo then ran ~400 s per call, the tick waited for every object, /healthz
said 503, and SIGTERM did not stop the process.

1. the CRD refuses those values (today's main admitted them);
2. the queueing bound with exactly those inputs returns at once, in a real process
   (today's main: ~400 s, killed by the timeout);
3. a real `python -m autoscaler` process on the real API server and a real Prometheus,
   with one object made slow by a tenant's heavy PromQL (Prometheus stops each at the
   client's timeout) and one ordinary object beside it: the ordinary one
   is scaled and follows a spec change, /healthz stays 200 throughout, the slow one
   gets a ReconcileSlow Event, and SIGTERM ends the process within seconds while the
   slow reconcile is still running (today's main: every tick waits ~24 s, /healthz
   goes 503 after 19 s, SIGTERM waits for the tick and the executor's threads).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from kubernetes.client.rest import ApiException

from benchmarks.testbed.cluster import free_port
from scheduler import contract
from scheduler.kube.client import raw
from tests.autoscaler import bed
from tests.helpers import eventually, gpu_deployment

pytestmark = pytest.mark.integration

ISSUE_SPEC = {"serviceRatePerReplica": 0.000001, "concurrencyPerReplica": 4096, "maxReplicas": 2147483647,
              "slo": {"queueWaitSeconds": 1}}
# ~9 s of Prometheus CPU when left alone; the autoscaler has Prometheus stop it at its timeout
HEAVY = "count(count_over_time(vector(1)[1h:1ms]))"
SLOW_SIGNALS = 8
PROM_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def crd(cluster):
    bed.install_crd(cluster)


@pytest.mark.parametrize("change,field", [
    ({}, "maxReplicas"),
    ({"maxReplicas": 100}, "serviceRatePerReplica"),
])
def test_crd_refuses_the_pathological_object(cluster, crd, namespace, change, field):
    body = bed.ias_body("frozen", "llm", **{**ISSUE_SPEC, **change})
    with pytest.raises(ApiException) as e:
        bed.create_ias(cluster, namespace, body)
    assert e.value.status == 422
    assert f"spec.{field}" in json.loads(e.value.body)["message"]


def test_the_queueing_bound_returns_at_once_for_the_issue_inputs():
    code = ("from autoscaler.policy import replicas_for_slo\n"  # where the daemon takes it from
            "print(replicas_for_slo(1.0, 1e-6, 0.8, 1.0, 0.99, 2**31 - 1, 4096)[0])")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=bed.ROOT,
                       env={**os.environ, "PYTHONPATH": str(bed.ROOT)})
    took = time.monotonic() - t0
    print(f"replicas_for_slo on the issue's inputs: {r.stdout.strip()} replicas, process {took:.2f} s")
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) >= 1_250_000  # ceil(1 / (1e-6 * 0.8)): the utilisation bound


def _events(api, ns, reason):
    _, body = raw(api, "GET", f"/api/v1/namespaces/{ns}/events")
    return [e for e in body["items"] if e["reason"] == reason]


def test_a_slow_object_neither_freezes_the_others_nor_holds_sigterm(cluster, crd, prom, apps, namespace, tmp_path):
    api = cluster.api_client()
    ns = namespace
    proc = None
    try:
        for name in ("slow", "fast"):
            apps.create_namespaced_deployment(ns, gpu_deployment(
                name, 1, gpus=0, annotations={contract.READY_DELAY: "1s"}, readiness_gates=[contract.SERVING_GATE]))
        raw(api, "POST", bed.ias_path(ns), bed.ias_body("slow", "slow", signals=[
            # each reads 1 against a target of 1 when Prometheus answers in time (on a fast or
            # idle machine it may): a hold either way, so any scaling of `slow` is a bug
            {"type": "promql", "target": 1, "query": f"{HEAVY} * 0 + 1 + 0 * {i}", "name": f"heavy-{i}"}
            for i in range(SLOW_SIGNALS)]))
        raw(api, "POST", bed.ias_path(ns), bed.ias_body("fast", "fast"))  # vector(12) vs 5: 3 replicas
        port = free_port()
        log = open(tmp_path / "autoscaler.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "autoscaler", "--kubeconfig", str(cluster.kubeconfig), "--prometheus-url", prom.url,
             "--interval", "1", "--namespace", ns, "--watch-namespace", ns,
             "--identity", "sec-isolation", "--lease-duration", "3", "--metrics-port", str(port),
             "--metrics-addr", "127.0.0.1", "--prometheus-timeout", str(PROM_TIMEOUT_S), "--no-prewarm"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(bed.ROOT)}, cwd=bed.ROOT)
        eventually(lambda: apps.read_namespaced_deployment("fast", ns).spec.replicas == 3, timeout=60,
                   what="the ordinary object scaled: ceil(1 * 12 / 5) = 3")
        eventually(lambda: _events(api, ns, "ReconcileSlow"), timeout=30, what="a ReconcileSlow Event")
        # for longer than one slow reconcile (8 x 3 s) and today's /healthz limit (19 s):
        # every probe answers 200, and the ordinary object follows a spec change
        raw(api, "PATCH", bed.ias_path(ns, "fast"), {"spec": {"minReplicas": 4}},
            content_type="application/merge-patch+json")
        t_patch = time.monotonic()
        followed = None
        probes = []
        while time.monotonic() - t_patch < 30:
            r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            probes.append((r.status_code, r.text.strip()))
            if followed is None and apps.read_namespaced_deployment("fast", ns).spec.replicas == 4:
                followed = time.monotonic() - t_patch
            time.sleep(1)
        print(f"\nspec change followed after {followed} s; {len(probes)} /healthz probes, "
              f"{sum(c != 200 for c, _ in probes)} not 200")
        assert all(c == 200 for c, _ in probes), [p for p in probes if p[0] != 200][:3]
        assert followed is not None and followed < 10
        # the slow object is reconciled (slowly) and, reading 1 against 1 where it reads at all, held
        assert apps.read_namespaced_deployment("slow", ns).spec.replicas == 1
        # SIGTERM while a slow reconcile runs
        proc.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        proc.wait(timeout=30)
        took = time.monotonic() - t_term
        print(f"SIGTERM -> exit in {took:.1f} s (exit code {proc.returncode})")
        assert took < 8 and proc.returncode == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
