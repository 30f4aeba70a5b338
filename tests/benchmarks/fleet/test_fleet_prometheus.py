"""The fleet simulator on the test bed: kwok pods, a real Prometheus scraping the simulated
vLLM servers, DCGM exporters and router queue."""
from __future__ import annotations

import pytest

from benchmarks.fleet.exporter import FleetSimulator, Workload
from benchmarks.fleet.model import ServiceModel, burst
from benchmarks.testbed.prometheus import Prometheus
from scheduler.contract import SERVING_GATE
from tests.helpers import condition, eventually, gpu_deployment

pytestmark = pytest.mark.integration

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def test_burst_shows_in_prometheus_per_pod_and_at_the_router(cluster, apps, core, namespace):
    labels = {"fleet": "llm"}
    apps.create_namespaced_deployment(namespace, gpu_deployment("llm", 2, labels=labels))
    # a warm replica: running, loaded, held out of traffic by the readiness gate
    apps.create_namespaced_deployment(namespace, gpu_deployment("llm-warm", 1, labels=labels,
                                                                readiness_gates=[SERVING_GATE]))

    def started():
        pods = core.list_namespaced_pod(namespace, label_selector="fleet=llm").items
        ready = [p.metadata.name for p in pods if condition(p, "Ready") and condition(p, "Ready").status == "True"]
        warm = [p.metadata.name for p in pods if p.metadata.name.startswith("llm-warm")
                and condition(p, "ContainersReady") and condition(p, "ContainersReady").status == "True"]
        return (ready, warm) if len(pods) == 3 and len(ready) == 2 and len(warm) == 1 else None

    serving, (warm,) = eventually(started, timeout=60, what="2 pods Ready and 1 warm")

    prom = Prometheus(cluster)
    prom.start()
    # 2 replicas x batch 4 x (100/10,000 + 50/56.6 s) serve ~9 req/s; 40 req/s from t=2 s queues
    service = ServiceModel(max_batch=4)
    load = burst(1.0, 40.0, at=2.0, duration=120.0)
    sim = FleetSimulator(cluster.api_client(), [Workload(namespace, "fleet=llm", MODEL, load, service)],
                         prometheus=prom)
    try:
        sim.start()
        ns = f'namespace="{namespace}"'

        def waiting():
            res = prom.query(f"sum(vllm:num_requests_waiting{{{ns}}})")
            return res and float(res[0]["value"][1]) > 0
        eventually(waiting, timeout=30, interval=0.5, what="waiting requests in Prometheus")

        def running_per_pod():
            res = prom.query(f"vllm:num_requests_running{{{ns}}}")
            running = {r["metric"].get("pod"): float(r["value"][1]) for r in res}
            # full batches on the serving pods during the burst; the warm one is gated out: no traffic
            return res if running == {**{p: 4.0 for p in serving}, warm: 0.0} else None
        res = eventually(running_per_pod, timeout=30, interval=0.5, what="a running series per pod")
        for r in res:
            m = r["metric"]
            assert (m["namespace"], m["model_name"], m["engine"]) == (namespace, MODEL, "0"), m
        assert sim.metrics(namespace, warm).success_total == 0

        def gpu_util():
            res = prom.query(f"DCGM_FI_DEV_GPU_UTIL{{{ns}}}")
            return {r["metric"]["pod"]: r["metric"] for r in res} if len(res) == 3 else None
        dcgm = eventually(gpu_util, timeout=30, interval=0.5, what="DCGM series for the 3 pods")
        assert all(m["Hostname"] and m["UUID"] and m["modelName"] for m in dcgm.values())

        # no Ready replica left (the warm one stays gated): demand shows at the router target
        apps.patch_namespaced_deployment_scale("llm", namespace, {"spec": {"replicas": 0}})

        def router():
            res = prom.query(f'vllm:num_requests_waiting{{{ns},model="{MODEL}",pod=""}}')
            return res if res and float(res[0]["value"][1]) > 0 else None
        (series,) = eventually(router, timeout=30, interval=0.5, what="router queue in Prometheus")
        assert series["metric"]["model_name"] == MODEL
        assert sim.router_waiting(sim.workloads[0]) > 0
    finally:
        sim.stop()
        prom.stop()
    assert sim.threads_alive() == []
