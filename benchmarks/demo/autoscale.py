"""Act 6 of `gpusched demo`: the autoscaler daemon with a warm replica, on the test bed.

A real Prometheus scrapes the fleet simulator (benchmarks/fleet: one simulated vLLM
server per pod); the request load bursts and then drops; the InferenceAutoscaler
daemon runs in a thread of this process, as tests/autoscaler/test_autoscaler_integration.py
runs it. Prints a short timeline of what happened and why.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from kubernetes import client

from benchmarks.fleet.driver import Load
from benchmarks.testbed.crd import GROUP, PLURAL, VERSION, install_crd
from scheduler import contract

APP = "vllm"
COLD_START_S = 20


def _cond(pod, type_: str) -> str | None:
    return next((c.status for c in (pod.status.conditions or []) if c.type == type_), None)


class Timeline:
    """Polls the pods and the InferenceAutoscaler's Events; prints each change once,
    stamped with seconds since the act started."""

    def __init__(self, core: client.CoreV1Api, ns: str, t0: float):
        self.core, self.ns, self.t0 = core, ns, t0
        self.state: dict[str, str] = {}  # pod -> "loading" | "warm" | "serving"
        self.first: dict[tuple[str, str], float] = {}  # (pod, state) -> monotonic time first seen
        self.seen_events: set[str] = set()

    def say(self, msg: str) -> None:
        print(f"    t+{time.monotonic() - self.t0:5.1f}s  {msg}")

    def pods(self) -> list:
        return [p for p in self.core.list_namespaced_pod(self.ns, label_selector=f"app={APP}").items
                if not p.metadata.deletion_timestamp]

    def poll(self) -> None:
        now = time.monotonic()
        live = set()
        for p in self.pods():
            name = p.metadata.name
            live.add(name)
            if _cond(p, "Ready") == "True":
                s = "serving"
            elif _cond(p, "ContainersReady") == "True":
                s = "warm"
            else:
                s = "loading"
            self.first.setdefault((name, s), now)
            if self.state.get(name) != s:
                where = f" on {p.spec.node_name}" if p.spec.node_name else ""
                text = {"loading": f"pod {name} created{where}, loading weights (cold start {COLD_START_S}s)",
                        "warm": f"pod {name} loaded: warm, held out of traffic by the {contract.SERVING_GATE} gate",
                        "serving": f"pod {name} Ready: serving traffic"}[s]
                if s == "warm" and self.state.get(name) == "serving":
                    text = f"pod {name} demoted: back to warm, out of traffic"
                self.say(text)
                self.state[name] = s
        for gone in set(self.state) - live:
            self.say(f"pod {gone} deleted")
            del self.state[gone]
        evs = self.core.list_namespaced_event(self.ns).items
        for e in sorted(evs, key=lambda e: e.metadata.creation_timestamp):
            if e.involved_object.kind != "InferenceAutoscaler" or e.metadata.uid in self.seen_events:
                continue
            self.seen_events.add(e.metadata.uid)
            msg = e.message or ""
            head, _, why = msg.partition(": ")
            self.say(f"autoscaler {e.reason}: {head}")
            if why:
                self.say(f"  because {why[:170]}")

    def count(self, state: str) -> int:
        return sum(1 for s in self.state.values() if s == state)

    def wait(self, fn: Callable[[], Any], timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            out = fn()
            if out:
                return out
            time.sleep(0.25)
        raise RuntimeError(f"demo: timed out waiting for {what}")


def deployment(model: str, *, name: str = APP, replicas: int = 2, cold_start_s: float = COLD_START_S,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    """An inference Deployment of 1-GPU pods scheduled by gpusched; each pod takes
    `cold_start_s` to load (kwok's ready delay), then is held out of traffic by the
    serving readiness gate until something (the autoscaler) sets it True."""
    labels = {"app": name, **(labels or {})}
    spec: dict[str, Any] = {"schedulerName": contract.SCHEDULER_NAME, "terminationGracePeriodSeconds": 0,
                            "readinessGates": [{"conditionType": contract.SERVING_GATE}],
                            "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.9.0",
                                            "args": ["--model", model],
                                            "resources": {"limits": {contract.GPU_RESOURCE: "1"}}}]}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels,
                             "annotations": {contract.MODEL: model, contract.READY_DELAY: f"{cold_start_s:g}s"}},
                "spec": spec,
            },
        },
    }


def autoscaler(model: str, *, name: str = APP, min_replicas: int = 1, max_replicas: int = 4, warm: int = 1,
               cold_start_s: float = COLD_START_S, queue_target: float = 5,
               behavior: dict[str, Any] | None = None, slo: dict[str, Any] | None = None,
               service_rate: float | None = None, concurrency: int | None = None) -> dict[str, Any]:
    """An InferenceAutoscaler for `deployment(model, name=name)`; the defaults are the demo's.
    service_rate: spec.serviceRatePerReplica (req/s one replica sustains), which the
    queueing rule of an SLO needs when the daemon has not measured it; concurrency:
    spec.concurrencyPerReplica from the same load test."""
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}, "model": model,
        "minReplicas": min_replicas, "maxReplicas": max_replicas, "warmReplicas": warm,
        "coldStartSeconds": cold_start_s, "signals": [{"type": "queueDepth", "target": queue_target}],
        "behavior": behavior if behavior is not None else {
            "scaleDown": {"stabilizationWindowSeconds": 6, "periodSeconds": 5}, "panic": {"stableWindowSeconds": 4}},
    }
    if slo:
        spec["slo"] = slo
    if service_rate:
        spec["serviceRatePerReplica"] = round(service_rate, 3)
    if concurrency:
        spec["concurrencyPerReplica"] = concurrency
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceAutoscaler", "metadata": {"name": name},
            "spec": spec}


class Stack:
    """What an autoscaling run needs besides the cluster: a real Prometheus, the fleet
    simulator playing the inference servers of some workloads, and the autoscaler daemon
    in a thread of this process (as tests/autoscaler/test_autoscaler_integration.py runs
    it). Used by the demo's act 6 and by `gpusched bench e2e`'s autoscale phase.
    `stop()` tears down whatever was started, in reverse, and restores log levels."""

    # the demo's timeline and the bench's table say it shorter than the daemon's log
    QUIET = {"autoscaler": logging.ERROR, "scheduler.kube": logging.WARNING}

    def __init__(self, cluster, quiet: bool = True):
        self.cluster, self.api = cluster, cluster.api_client()
        self.prom = self.sim = self.daemon = None
        self._stops: list[Callable[[], None]] = []
        self._levels = {name: logging.getLogger(name).level for name in self.QUIET} if quiet else {}
        for name in self._levels:
            logging.getLogger(name).setLevel(self.QUIET[name])

    def start_fleet(self, workloads: list, *, keep_finished: bool = False) -> "Stack":
        """Prometheus, then the fleet simulator for `workloads` (benchmarks.fleet.exporter.Workload).
        keep_finished: keep every finished request for `sim.fleet.pop_finished()`."""
        from benchmarks.fleet.exporter import FleetSimulator
        from benchmarks.testbed.prometheus import Prometheus

        self.prom = Prometheus(self.cluster)
        self.prom.start()
        self._stops.append(self.prom.stop)
        self.sim = FleetSimulator(self.api, workloads, prometheus=self.prom)
        self.sim.fleet.keep_finished = keep_finished
        self.sim.start()
        self._stops.append(self.sim.stop)
        return self

    def add_stop(self, stop: Callable[[], None]) -> None:
        self._stops.append(stop)

    def start_daemon(self, ns: str, identity: str, on_decision=None, interval_s: float = 1.0) -> "Stack":
        """The InferenceAutoscaler daemon for `ns`, reading this stack's Prometheus."""
        from autoscaler.daemon import Autoscaler, Config

        assert self.prom is not None, "start_fleet first"
        cfg = Config(prometheus_url=self.prom.url, interval_s=interval_s, namespace=ns, watch_namespace=ns,
                     identity=identity, metrics_port=0, lease_duration_s=3.0, prometheus_timeout_s=1.0,
                     # the recent window as --recent-window's help says: twice the scrape interval
                     demote_wait_s=3.0, recent_window_s=2.0 * self.prom.scrape_interval_s)
        self.daemon, stop_event = Autoscaler(self.api, cfg, on_decision=on_decision), threading.Event()
        thread = threading.Thread(target=self.daemon.run, args=(stop_event,), name=f"{identity}-autoscaler",
                                  daemon=True)
        thread.start()
        self._stops.append(lambda: (stop_event.set(), thread.join(15)))
        return self

    def stop(self) -> None:
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception as exc:  # keep tearing down
                print(f"    (teardown: {exc})")
        self._stops = []
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)


def run(cluster, ns: str, model: str) -> None:
    """Act 6. Everything it starts is stopped before it returns or raises."""
    from benchmarks.fleet.exporter import Workload
    from benchmarks.fleet.model import ServiceModel

    api = cluster.api_client()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    stack = Stack(cluster)
    try:
        crd = install_crd(api)
        t0 = time.monotonic()
        tl = Timeline(core, ns, t0)
        apps.create_namespaced_deployment(ns, deployment(model))
        crd.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, autoscaler(model))
        print(f"    Deployment {APP}: 2 pods of 1 GPU, {COLD_START_S}s cold start, readiness gate "
              f"{contract.SERVING_GATE}; InferenceAutoscaler min 1 / max 4 / warm 1, queueDepth target 5 per "
              f"replica, scale-down window 6s; Prometheus + fleet simulator")
        w = Workload(ns, f"app={APP}", model, None, ServiceModel(max_batch=4))  # ~4.5 req/s per replica
        stack.start_fleet([w])
        prom, sim = stack.prom, stack.sim
        load = Load(sim, w, 1.0)
        stack.add_stop(load.stop)
        stack.start_daemon(ns, "gpusched-demo")
        tl.say("load 1 req/s; autoscaler daemon started (1s ticks)")

        tl.wait(lambda: tl.count("serving") == 1 and tl.count("warm") == 1, 60, "1 serving + 1 warm")
        warm_pod = next(n for n, s in tl.state.items() if s == "warm")
        tl.wait(lambda: prom.query(f'vllm:num_requests_waiting{{namespace="{ns}"}}'), 20, "metrics in Prometheus")

        load.set_rate(11.0)
        t_burst = time.monotonic()
        tl.say("BURST: 11 req/s (one replica serves ~4.5 req/s; the queue grows)")
        tl.wait(lambda: (warm_pod, "serving") in tl.first, 20, "the warm pod promoted")
        promoted_s = tl.first[(warm_pod, "serving")] - t_burst
        tl.say(f"=> warm pod {warm_pod} serving {promoted_s:.1f}s after the burst began "
               f"(a cold replica needs {COLD_START_S}s)")
        tl.wait(lambda: time.monotonic() > t_burst + 10, 15, "the burst")

        load.set_rate(1.0)
        t_drop = time.monotonic()
        tl.say("LOAD DROPS to 1 req/s")
        tl.wait(lambda: tl.count("serving") == 1 and tl.count("warm") == 1 and len(tl.state) == 2
                and apps.read_namespaced_deployment(APP, ns).spec.replicas == 2, 60, "back to 1 serving + 1 warm")
        st = crd.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, APP).get("status") or {}
        last = st.get("lastDecision") or {}
        tl.say(f"back to 1 serving + 1 warm {time.monotonic() - t_drop:.0f}s after the drop")
        print(f"    final: {tl.count('serving')} serving + {tl.count('warm')} warm pod, Deployment replicas "
              f"{apps.read_namespaced_deployment(APP, ns).spec.replicas}, IAS desiredReplicas "
              f"{st.get('desiredReplicas')} (rule {last.get('rule')})")
    finally:
        stack.stop()
