"""The autoscale phase of `gpusched bench e2e`: the autoscaler daemon on the test bed,
driven by a compressed window of the Azure LLM inference trace.

On the test bed's cluster (control plane, kwok GPU nodes, the gpusched scheduler and
extender already running), one run:
1. sizes the static baseline offline with the pure fleet model
   (benchmarks.fleet.model): the smallest fixed replica count, always Ready, for which
   `percentile` of the window's requests wait at most the queue-wait SLO (capped at
   --as-max-replicas): what a capacity planner who knows the window's peak would run;
2. creates two Deployments of 1-GPU pods scheduled by gpusched, each pod taking
   `cold_start_s` to load (kwok's ready delay): `autoscaled` (gated by
   gpusched.io/serving, with an InferenceAutoscaler: min 1, warm pool, queueDepth
   signal, queue-wait SLO, serviceRatePerReplica = what one replica of the fleet model
   sustains on the window's requests, measured offline, and concurrencyPerReplica from
   the same test) and `static` (that fixed count; same gate, set True as
   soon as a pod is loaded), in two namespaces;
3. once the static pods are Ready and the autoscaled ones loaded, starts a real
   Prometheus, the fleet simulator (one simulated vLLM server per pod, both
   Deployments) and the autoscaler daemon (benchmarks.demo.autoscale.Stack, as the demo runs it);
4. replays the warm-up and then the window to both Deployments at once, the same
   requests: a row at trace time t (from the warm-up's start) arrives
   `lead_s + t / compression` seconds after the fleet started; then waits for the requests
   in flight to finish (at most `drain_s`);
5. samples every `sample_s`: pods bound (GPUs held), serving and warm replicas,
   the Deployment's replicas; the daemon's decisions come through its on_decision hook.
   A promotion (from the window's start on) is "from the warm pool" when the pod had
   been loaded and idle for more than two samples, else of a fresh pod just loaded.

The warm-up (`warmup_s`, 300 trace seconds by default: minutes 5-10 before minutes
10-20, 90 s of wall time) is the trace that precedes the window, replayed first and not
scored. A Deployment in production has been running before any window one measures:
without it the autoscaled Deployment met the window's opening burst (~40 req/s) at
minReplicas with no history, while the static baseline, sized with hindsight, was Ready
from the start; no reactive policy absorbs that within a 20 s cold start, so the phase
measured the start-up, not the policy (81% within the SLO against static's 99.8%).
Replaying the minutes before the window puts the daemon in the state the trace puts it
in: its replica count, its stabilisation and panic windows, its forecasts and Prometheus'
rates all see real history; preferred to starting at the replicas the preceding minute's
rate needs (what `gpusched bench autoscale` does offline), which gives the count but no
history. 300 trace seconds is the scale-down stabilisation window (the longest window the
daemon reads that the trace before the window can fill: the warm pool's
max(600 s, 8 cold starts) of wall time would need 2,000 trace seconds). Both Deployments
serve the warm-up; the static count is the fewest that meet the SLO on the window having
served the warm-up (the warm-up's backlog carries over). SLO attainment, GPU-hours,
replicas and scale events are over the scored window only, for both Deployments; the
warm-up's own attainment is reported beside it, and the misses per 10 s of the window.

SLO attainment is over every request of the window: one that had not started running
(resp. produced its first token) within the bound when the run ended, or was
aborted, is a miss. Times are the fleet model's simulated seconds, which run at wall
speed; the trace is compressed, so GPU-hours are reported both on the wall clock and
scaled to the trace's time (x compression). The autoscaler's windows are compressed
with the trace: scale-down stabilisation 300 s / compression, panic stable window
60 s / compression (HPA's and Knative's defaults); and so is a pod's load by default
(`COLD_START_TRACE_S`, 20 trace seconds: 6 s of wall time at x3.33). A 20 s wall load
at x3.33 is 67 s of the trace's time: 3.3x the wait the trace's requests would see for a
20 s load in production, and longer than the sim bench's cold tiers (15 s of container
start plus the weights); with it the first 20 s of the window miss whatever the policy
does (see docs/benchmarks.md). `--as-cold-start 20` still runs that case.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from autoscaler.queueing import effective_concurrency
from benchmarks.autoscale.service import seconds_alone
from benchmarks.fleet.model import Fleet, Request, ServiceModel, Trace, TraceRow, read_trace
from benchmarks.traces import azure_dir
from scheduler import contract



def default_trace() -> Path:
    """The Azure code trace (benchmarks/traces.py says where traces are found)."""
    return azure_dir() / "AzureLLMInferenceTrace_code.csv"


MODEL = "meta-llama/Llama-3.1-8B-Instruct"
# A pod's load in trace seconds (the sim bench's fastest cold tier is 15 s of container start
# plus the weights); on the test bed it is compressed with the trace, as the daemon's windows are
COLD_START_TRACE_S = 20.0
AUTOSCALED, STATIC = "autoscaled", "static"


@dataclass(frozen=True)
class Settings:
    trace: str = field(default_factory=lambda: str(default_trace()))
    window_start_s: float = 600.0  # trace seconds: minutes 10-20 of the code trace hold two bursts and idle gaps
    window_s: float = 600.0
    # trace seconds before the window replayed first and not scored: the history a running
    # Deployment has (see the module docstring); 300 = the scale-down stabilisation window
    warmup_s: float = 300.0
    compression: float = 10 / 3  # 10 minutes of trace in 3
    # wall seconds from a pod's creation to loaded; None: COLD_START_TRACE_S compressed with the trace
    cold_start_s: float | None = None
    max_replicas: int = 16
    warm: int = 1
    queue_target: float = 5.0  # waiting requests per replica (WVA's saturation point)
    queue_wait_slo_s: float = 2.0
    ttft_slo_s: float = 5.0
    percentile: float = 0.99
    static: bool = True
    lead_s: float = 15.0  # fleet start to the first request: Prometheus scrapes, the daemon settles
    drain_s: float = 60.0
    sample_s: float = 1.0

    def __post_init__(self) -> None:
        if self.cold_start_s is None:  # frozen: set once, as the field's default would be
            object.__setattr__(self, "cold_start_s", round(COLD_START_TRACE_S / self.compression, 2)
                               if self.compression > 0 else COLD_START_TRACE_S)

    def check(self) -> None:
        for name in ("window_s", "compression", "sample_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("window_start_s", "warmup_s", "cold_start_s", "lead_s", "drain_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.warmup_s > self.window_start_s:
            raise ValueError(f"warmup_s {self.warmup_s:g} is longer than the trace before the window: "
                             f"window_start_s {self.window_start_s:g}")
        if self.max_replicas < 1 or self.warm < 0:
            raise ValueError("max_replicas must be >= 1 and warm >= 0")
        if not 0 < self.percentile < 1:
            raise ValueError(f"percentile must be in (0, 1), got {self.percentile}")


# ---------------------------------------------------------------- pure parts

def window(rows: Sequence[TraceRow], start_s: float, length_s: float) -> list[TraceRow]:
    """Rows with start_s <= t < start_s + length_s, times shifted so the window starts at 0."""
    return [TraceRow(r.t - start_s, r.prompt_tokens, r.output_tokens) for r in rows
            if start_s <= r.t < start_s + length_s]


def scored(done: Sequence[Request], from_s: float) -> list[Request]:
    """The requests that arrived at or after `from_s` (the end of the warm-up, simulated seconds)."""
    return [r for r in done if r.arrival >= from_s - 1e-9]  # arrival and from_s are computed alike


def peak_rate(rows: Sequence[TraceRow], compression: float, bucket_s: float = 10.0) -> float:
    """Highest arrival rate (requests per wall second) over `bucket_s` buckets of the compressed window."""
    if not rows:
        return 0.0
    t = np.array([r.t / compression for r in rows])
    return float(np.bincount((t // bucket_s).astype(int)).max() / bucket_s)


@dataclass
class Attainment:
    requests: int
    finished: int
    aborted: int
    queue_wait_ok: float  # share of all requests admitted within the queue-wait bound
    ttft_ok: float  # share of all requests with a first token within the TTFT bound
    queue_wait_p50_s: float | None
    queue_wait_p99_s: float | None
    ttft_p50_s: float | None
    ttft_p99_s: float | None


def attainment(done: Sequence[Request], total: int, queue_wait_s: float, ttft_s: float) -> Attainment:
    """SLO attainment over `total` requests, of which `done` finished or were aborted; the
    rest (still waiting or running at the end) and aborted ones count as misses unless
    their wait already met the bound."""
    ok_wait = sum(1 for r in done if not r.aborted and r.queue_wait is not None and r.queue_wait <= queue_wait_s)
    ok_ttft = sum(1 for r in done if not r.aborted and r.ttft is not None and r.ttft <= ttft_s)
    waits = [r.queue_wait for r in done if r.queue_wait is not None and not r.aborted]
    ttfts = [r.ttft for r in done if r.ttft is not None and not r.aborted]
    q = lambda xs, p: None if not xs else round(float(np.percentile(xs, p)), 3)  # noqa: E731
    n = max(total, 1)
    return Attainment(total, sum(1 for r in done if not r.aborted), sum(1 for r in done if r.aborted),
                      round(ok_wait / n, 4), round(ok_ttft / n, 4), q(waits, 50), q(waits, 99), q(ttfts, 50),
                      q(ttfts, 99))


def offline(rows: Sequence[TraceRow], compression: float, replicas: int, service: ServiceModel,
            drain_s: float) -> list[Request]:
    """The window through `replicas` always-Ready replicas of the pure fleet model."""
    fleet = Fleet()
    fleet.add_model("m", Trace(rows, compression=compression), service)
    for i in range(replicas):
        fleet.set_replica(f"r{i}", "m", True, 0.0)
    end = (rows[-1].t / compression if rows else 0.0) + drain_s
    t = 0.0
    while t < end:  # steps bound the work per advance; the result does not depend on them
        t = min(t + 10.0, end)
        fleet.advance(t)
    return fleet.pop_finished()


def service_rate(rows: Sequence[TraceRow], service: ServiceModel) -> float:
    """Requests/s one replica of the fleet model sustains on this mix of requests: the
    window compressed until all of it queues at once (x100), through one replica."""
    if not rows:
        return 0.0
    done = offline(rows, 100.0, 1, service, drain_s=100.0 * len(rows))
    served = [r for r in done if not r.aborted and r.finished is not None]
    span = max(r.finished for r in served) - min(r.arrival for r in served) if served else 0.0
    return len(served) / span if span > 0 else 0.0


def concurrency(rows: Sequence[TraceRow], service: ServiceModel, rate: float) -> int:
    """spec.concurrencyPerReplica from the same offline load test as ``rate``: its
    throughput times the mean time one request of the window takes alone (the sim bench's
    seconds_alone over every row, then autoscaler.queueing.effective_concurrency), as the
    CRD's description tells a user to set it; 1 when the window has no request."""
    if not rows or rate <= 0:
        return 1
    alone = seconds_alone(rows, service, n=len(rows))
    return effective_concurrency(rate, alone, service.max_batch) if alone > 0 else 1


def autoscaled(s: Settings, rate: float, conc: int) -> dict[str, Any]:
    """The InferenceAutoscaler of the autoscaled Deployment: its windows compressed with
    the trace, the load test's rate and concurrency."""
    from benchmarks.demo import autoscale as da

    behavior = {"scaleDown": {"stabilizationWindowSeconds": round(300 / s.compression, 1)},
                "panic": {"stableWindowSeconds": round(60 / s.compression, 1)}}
    slo = {"queueWaitSeconds": s.queue_wait_slo_s, "ttftSeconds": s.ttft_slo_s, "percentile": s.percentile}
    return da.autoscaler(MODEL, name=AUTOSCALED, min_replicas=1, max_replicas=s.max_replicas, warm=s.warm,
                         cold_start_s=s.cold_start_s, queue_target=s.queue_target, behavior=behavior, slo=slo,
                         service_rate=rate, concurrency=conc)


def size_static(rows: Sequence[TraceRow], compression: float, service: ServiceModel, s: Settings,
                warmup_s: float = 0.0) -> tuple[int, float]:
    """(smallest fixed replica count meeting the queue-wait SLO offline, its attainment);
    max_replicas if none does. `rows` start with `warmup_s` trace seconds of warm-up that the
    replicas serve (its backlog carries into the window) but that is not scored."""
    best = 0.0
    total = sum(1 for r in rows if r.t >= warmup_s)
    for n in range(1, s.max_replicas + 1):
        done = scored(offline(rows, compression, n, service, s.drain_s), warmup_s / compression)
        a = attainment(done, total, s.queue_wait_slo_s, s.ttft_slo_s)
        best = a.queue_wait_ok
        if best >= s.percentile:
            return n, best
    return s.max_replicas, best


def replicas_summary(samples: Sequence[dict], key: str, since: float = float("-inf")) -> dict[str, float]:
    v = [x[key] for x in samples if x["t"] >= since]
    return {"min": min(v, default=0), "mean": round(float(np.mean(v)), 2) if v else 0.0, "max": max(v, default=0)}


def gpu_seconds(samples: Sequence[dict], key: str, since: float = float("-inf")) -> float:
    """Integral of GPUs held (pods bound, 1 GPU each) over the samples' wall times from
    `since` on (the end of the warm-up); a sample holds until the next one."""
    out = 0.0
    for a, b in zip(samples, samples[1:]):
        out += a[key] * max(0.0, b["t"] - max(a["t"], since))
    return out


def misses_by_bin(arrivals: Sequence[float], done: Sequence[Request], queue_wait_s: float, from_s: float,
                  bin_s: float) -> list[dict]:
    """Per `bin_s` seconds from `from_s`: requests that arrived, and those that missed the
    queue-wait bound (arrived, less those admitted within it: never admitted is a miss)."""
    a = np.asarray(arrivals, dtype=float)
    ok = np.array([r.arrival for r in done if not r.aborted and r.queue_wait is not None
                   and r.queue_wait <= queue_wait_s], dtype=float)
    n = int((a.max() - from_s) // bin_s) + 1 if a.size else 0
    idx = lambda x: np.clip(((x - from_s) // bin_s).astype(int), 0, max(n - 1, 0))  # noqa: E731
    arrived = np.bincount(idx(a), minlength=n) if n else np.zeros(0, int)
    met = np.bincount(idx(ok), minlength=n) if n and ok.size else np.zeros(n, int)
    return [{"t": round(from_s + i * bin_s, 2), "arrived": int(arrived[i]), "missed": int(arrived[i] - met[i])}
            for i in range(n)]


def scale_events(samples: Sequence[dict], key: str = "deployment_replicas") -> list[dict]:
    out, prev = [], None
    for x in samples:
        if prev is not None and x[key] != prev:
            out.append({"t": x["t"], "from": prev, "to": x[key]})
        prev = x[key]
    return out


# ---------------------------------------------------------------- the run on the test bed

def _pods(api, ns: str) -> list[dict]:
    from scheduler.kube.client import raw
    _, body = raw(api, "GET", f"/api/v1/namespaces/{ns}/pods", timeout=10)
    return body["items"]


def _cond(pod: dict, type_: str) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def _serve_loaded(api, ns: str, pods: list[dict] | None = None) -> int:
    """Set the serving gate True on every loaded pod of `ns` that lacks it; returns how
    many pods are Ready. The static baseline goes through the same readiness gate as the
    autoscaled pods: on the test bed a gated, serving pod that the node lifecycle
    controller marks not Ready (a kwok node lease renewed late on a busy machine) is made
    Ready again by kwok's pod-serve stage, while an ungated one would stay out of traffic."""
    from autoscaler.kube import set_serving
    ready = 0
    for p in pods if pods is not None else _pods(api, ns):
        if p["metadata"].get("deletionTimestamp"):
            continue
        ready += _cond(p, "Ready")
        if _cond(p, "ContainersReady") and not _cond(p, contract.SERVING_GATE):
            set_serving(api, ns, p["metadata"]["name"], True, "StaticBaseline",
                        "the static baseline serves when loaded")
    return ready


def _wait(check, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"e2e autoscale: {what} not met within {timeout:.0f}s")


def run(cluster, s: Settings | None = None) -> dict[str, Any]:
    """The autoscale phase on a running test bed (gpusched scheduler up). Everything it
    starts is stopped, and its namespaces deleted, before it returns or raises."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from benchmarks.demo import autoscale as da
    from benchmarks.fleet.exporter import Workload

    s = s or Settings()
    s.check()
    # replayed: the warm-up, then the window, from 0 (trace seconds); scored: the window
    fed = window(read_trace(s.trace), s.window_start_s - s.warmup_s, s.warmup_s + s.window_s)
    rows = window(fed, s.warmup_s, s.window_s)
    if not rows:
        raise ValueError(f"{s.trace}: no requests between {s.window_start_s:g}s and "
                         f"{s.window_start_s + s.window_s:g}s of the trace")
    n_warmup = len(fed) - len(rows)
    scored_from = s.lead_s + s.warmup_s / s.compression  # wall (simulated) seconds since the fleet started
    service = ServiceModel()
    t_size = time.monotonic()
    static_n, static_offline = (size_static(fed, s.compression, service, s, s.warmup_s) if s.static
                                else (0, 0.0))
    # The queueing rule of the SLO needs a service rate; the daemon does not measure one on
    # the fleet simulator, and without it it never scales down (missing data holds).
    rate = service_rate(rows, service)
    conc = concurrency(rows, service, rate)
    sizing_s = time.monotonic() - t_size

    api = cluster.api_client()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    stamp = int(time.time())
    ns = {AUTOSCALED: f"e2e-autoscaled-{stamp}", STATIC: f"e2e-static-{stamp}"}
    kinds = [AUTOSCALED] + ([STATIC] if s.static else [])
    ias = autoscaled(s, rate, conc)
    behavior = ias["spec"]["behavior"]
    decisions: list[dict] = []
    stack = da.Stack(cluster)
    t_setup = time.monotonic()
    try:
        crd = da.install_crd(api)
        for k in kinds:
            core.create_namespace({"metadata": {"name": ns[k]}})
        _wait(lambda: all(_sa(core, ns[k]) for k in kinds), 60, "default ServiceAccounts")
        apps.create_namespaced_deployment(ns[AUTOSCALED], da.deployment(
            MODEL, name=AUTOSCALED, replicas=1 + s.warm, cold_start_s=s.cold_start_s))
        crd.create_namespaced_custom_object(da.GROUP, da.VERSION, ns[AUTOSCALED], da.PLURAL, ias)
        if s.static:
            apps.create_namespaced_deployment(ns[STATIC], da.deployment(
                MODEL, name=STATIC, replicas=static_n, cold_start_s=s.cold_start_s))
            _wait(lambda: _serve_loaded(api, ns[STATIC]) >= static_n, 120 + s.cold_start_s,
                  f"{static_n} static pods serving")
        _wait(lambda: sum(_cond(p, "ContainersReady") for p in _pods(api, ns[AUTOSCALED])) >= 1 + s.warm,
              120 + s.cold_start_s, "the autoscaled pods loaded")

        workloads = {k: Workload(ns[k], f"app={k}", MODEL, Trace(fed, compression=s.compression, start=s.lead_s),
                                 service) for k in kinds}
        stack.start_fleet(list(workloads.values()), keep_finished=True)
        sim = stack.sim
        stack.start_daemon(ns[AUTOSCALED], f"e2e-{stamp}", on_decision=lambda key, now, obs, d: decisions.append(
            {"t": round(sim.sim_now(), 2), "replicas": d.replicas, "warm": d.warm, "rule": d.rule,
             "reason": d.reason[:300]}))
        setup_s = time.monotonic() - t_setup

        end_feed = s.lead_s + fed[-1].t / s.compression
        done: dict[str, list[Request]] = {k: [] for k in kinds}
        samples: list[dict] = []
        states: dict[str, str] = {}  # autoscaled pod -> loading | warm | serving
        warm_since: dict[str, float] = {}
        promotions = {"from_warm_pool": 0, "cold": 0}
        promoted: set[str] = set()
        while True:
            now = sim.sim_now()
            with sim.lock:
                for r in sim.fleet.pop_finished():
                    done[next(k for k in kinds if workloads[k].key == r.model)].append(r)
                stats = {k: sim.fleet.stats(workloads[k].key) for k in kinds}
            pods = sim.pods()
            x: dict[str, Any] = {"t": round(now, 2), "arrived": stats[AUTOSCALED].arrived}
            for k in kinds:
                listed = [p for p in _pods(api, ns[k]) if not p["metadata"].get("deletionTimestamp")]
                mine = [st for key, st in pods.items() if key.startswith(ns[k] + "/")]
                x[f"{k}_gpus"] = sum(1 for p in listed if (p.get("spec") or {}).get("nodeName"))
                x[f"{k}_serving"] = sum(1 for st in mine if st.running and st.ready)
                x[f"{k}_warm"] = sum(1 for st in mine if st.running and not st.ready)
                if k == STATIC:
                    _serve_loaded(api, ns[k], listed)  # a replaced pod serves once loaded, as its first ones did
                if k == AUTOSCALED:
                    for p in listed:
                        name = p["metadata"]["name"]
                        st = "serving" if _cond(p, "Ready") else "warm" if _cond(p, "ContainersReady") else "loading"
                        before = states.get(name)
                        if st == "warm" and before != "warm":
                            warm_since[name] = now
                        # once per pod: a serving pod the node controller marks not Ready and kwok
                        # makes Ready again (see _serve_loaded) is not promoted twice
                        if st == "serving" and name not in promoted:
                            promoted.add(name)
                            # idle in the pool for more than two samples: a promotion, not a fresh pod's first tick
                            pooled = before == "warm" and now - warm_since.get(name, now) > 2 * s.sample_s
                            if now >= scored_from:
                                promotions["from_warm_pool" if pooled else "cold"] += 1
                        states[name] = st
                    for gone in set(states) - {p["metadata"]["name"] for p in listed}:
                        del states[gone]
                    x["loading"] = sum(1 for v in states.values() if v == "loading")
                    x["deployment_replicas"] = int(apps.read_namespaced_deployment(AUTOSCALED, ns[k]).spec.replicas)
            samples.append(x)
            finished_all = all(stats[k].finished + stats[k].aborted >= len(fed) for k in kinds)
            if now >= end_feed and (finished_all or now >= end_feed + s.drain_s):
                break
            time.sleep(max(0.0, s.sample_s - (sim.sim_now() - now)))
        daemon = stack.daemon
        actions = {a: int(daemon.metrics.registry.get_sample_value(
            "gpusched_autoscaler_actions_total", {"action": a}) or 0) for a in ("promote", "demote", "scale")}
        ias_status = crd.get_namespaced_custom_object(da.GROUP, da.VERSION, ns[AUTOSCALED], da.PLURAL,
                                                      AUTOSCALED).get("status") or {}
    finally:
        stack.stop()
        for k in kinds:
            try:
                core.delete_namespace(ns[k])
            except ApiException:
                pass

    out_rows, misses = [], {}
    arrivals = [scored_from + r.t / s.compression for r in rows]
    for k in kinds:
        mine = scored(done[k], scored_from)
        a = attainment(mine, len(rows), s.queue_wait_slo_s, s.ttft_slo_s)
        w = attainment([r for r in done[k] if r.arrival < scored_from - 1e-9], n_warmup, s.queue_wait_slo_s,
                       s.ttft_slo_s) if n_warmup else None
        misses[k] = misses_by_bin(arrivals, mine, s.queue_wait_slo_s, scored_from, 10.0)
        gs = gpu_seconds(samples, f"{k}_gpus", since=scored_from)
        row = {"deployment": k, **a.__dict__,
               "gpu_hours_wall": round(gs / 3600, 4), "gpu_hours_trace": round(gs * s.compression / 3600, 3),
               "serving": replicas_summary(samples, f"{k}_serving", scored_from),
               "gpus": replicas_summary(samples, f"{k}_gpus", scored_from),
               "warmup_queue_wait_ok": w.queue_wait_ok if w else None}
        if k == AUTOSCALED:
            ev = [e for e in scale_events(samples) if e["t"] >= scored_from]
            row.update(scale_ups=sum(1 for e in ev if e["to"] > e["from"]),
                       scale_downs=sum(1 for e in ev if e["to"] < e["from"]), promotions=promotions,
                       daemon_actions=actions)
        else:
            row.update(replicas=static_n, offline_queue_wait_ok=round(static_offline, 4))
        out_rows.append(row)
    return {
        "params": {"trace": s.trace, "window_start_s": s.window_start_s, "window_s": s.window_s,
                   "compression": round(s.compression, 4), "requests": len(rows), "warmup_s": s.warmup_s,
                   "warmup_requests": n_warmup, "warmup_wall_s": round(s.warmup_s / s.compression, 1),
                   "scored_from_s": round(scored_from, 2),
                   "peak_rate_per_s": round(peak_rate(rows, s.compression), 2),
                   "wall_window_s": round(rows[-1].t / s.compression, 1), "cold_start_s": s.cold_start_s,
                   "cold_start_trace_s": round(s.cold_start_s * s.compression, 1),
                   "max_replicas": s.max_replicas, "warm": s.warm, "queue_target": s.queue_target,
                   "queue_wait_slo_s": s.queue_wait_slo_s, "ttft_slo_s": s.ttft_slo_s, "percentile": s.percentile,
                   "behavior": behavior, "service_rate_per_replica": round(rate, 3),
                   "concurrency_per_replica": conc, "model": MODEL,
                   "service": service.__dict__, "static_replicas": static_n,
                   "static_sizing_s": round(sizing_s, 1), "setup_s": round(setup_s, 1), "lead_s": s.lead_s,
                   "pod": f"1 GPU, scheduled by {contract.SCHEDULER_NAME}"},
        "rows": out_rows,
        "scale_events": scale_events(samples),  # warm-up included: t < scored_from_s
        "misses_by_10s": misses,
        "ias_status": {k: ias_status.get(k) for k in ("currentReplicas", "desiredReplicas", "warmReplicas")},
        "decisions": decisions,
        "samples": samples,
    }


def _sa(core, ns: str) -> bool:
    from kubernetes.client.rest import ApiException
    try:
        core.read_namespaced_service_account("default", ns)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


# ---------------------------------------------------------------- output

def table(result: dict[str, Any]) -> str:
    p = result["params"]
    out = [f"| deployment | replicas serving min/mean/max | GPU-hours (trace time) | requests "
           f"| queue wait <= {p['queue_wait_slo_s']:g} s | TTFT <= {p['ttft_slo_s']:g} s | p99 queue wait s "
           f"| p99 TTFT s | scale ups / downs | promotions from warm pool / of fresh pods |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in result["rows"]:
        sv = r["serving"]
        name = r["deployment"] if r["deployment"] == AUTOSCALED else f"static ({r['replicas']})"
        scale = f"{r['scale_ups']} / {r['scale_downs']}" if "scale_ups" in r else "-"
        promo = (f"{r['promotions']['from_warm_pool']} / {r['promotions']['cold']}" if "promotions" in r else "-")
        out.append(f"| {name} | {sv['min']} / {sv['mean']:.1f} / {sv['max']} | {r['gpu_hours_trace']:.2f} | "
                   f"{r['requests']:,} | {100 * r['queue_wait_ok']:.1f}% | {100 * r['ttft_ok']:.1f}% | "
                   f"{fmt(r['queue_wait_p99_s'])} | {fmt(r['ttft_p99_s'])} | {scale} | {promo} |")
    return "\n".join(out)


def params_line(result: dict[str, Any]) -> str:
    p = result["params"]
    return (f"e2e autoscale: {Path(p['trace']).name} seconds {p['window_start_s']:g}-"
            f"{p['window_start_s'] + p['window_s']:g} ({p['requests']:,} requests, peak {p['peak_rate_per_s']:.1f} "
            f"req/s) compressed x{p['compression']:.2f} into {p['wall_window_s']:.0f} s, "
            + (f"after a warm-up of the {p['warmup_s']:g} trace seconds before it ({p['warmup_requests']:,} "
               f"requests, {p['warmup_wall_s']:g} s, not scored)" if p.get("warmup_s") else "started cold (no warm-up)")
            + f"; 1-GPU pods of {p['model']} "
            f"scheduled by gpusched, {p['cold_start_s']:g} s cold start ({p['cold_start_s'] * p['compression']:.0f} s of "
            f"trace); InferenceAutoscaler min 1 / max "
            f"{p['max_replicas']} / warm {p['warm']}, queueDepth target {p['queue_target']:g}, SLO queue wait "
            f"{p['queue_wait_slo_s']:g} s at p{100 * p['percentile']:g}; static = {p['static_replicas']} replicas "
            f"(the fewest meeting the SLO offline); real Prometheus + fleet simulator")


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = result["samples"]
    t = [x["t"] for x in xs]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    rate = [0.0] + [(b["arrived"] - a["arrived"]) / max(b["t"] - a["t"], 1e-9) for a, b in zip(xs, xs[1:])]
    ax1.plot(t, rate, color="grey", linewidth=0.8)
    ax1.set(ylabel="requests/s arriving", title="compressed trace window")
    ax2.step(t, [x["autoscaled_serving"] for x in xs], where="post", label="autoscaled: serving")
    ax2.step(t, [x["autoscaled_warm"] for x in xs], where="post", label="autoscaled: warm", linestyle=":")
    ax2.step(t, [x["autoscaled_gpus"] for x in xs], where="post", label="autoscaled: GPUs held", linewidth=0.8)
    if any("static_serving" in x for x in xs):
        ax2.step(t, [x.get("static_serving", 0) for x in xs], where="post", label="static: serving", color="black")
    ax2.set(xlabel="seconds since the fleet started (wall)", ylabel="replicas")
    ax2.legend(fontsize=8)
    scored_from = result["params"].get("scored_from_s")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if scored_from:
            ax.axvspan(0, scored_from, color="grey", alpha=0.12, linewidth=0)  # the warm-up: not scored
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
