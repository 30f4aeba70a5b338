"""The trace simulator of `gpusched bench autoscale`: pods, GPUs, caches, scrapes and
controllers around the fleet queueing model (benchmarks.fleet.model), on a simulated
clock. Seeded and deterministic: no wall clock, no threads.

One run = one policy over one trace: every model of the trace is one workload (its
own Deployment, its own controller) on one shared GPU pool. Each simulated second:
1. the fleet serves requests up to ``t`` (arrivals, queueing, batching);
2. pod life: pods waiting for a GPU get one if the pool has room; loads finish
   (cold start = container start + bytes / bandwidth of the weights' tier,
   benchmarks.autoscale.service); promotions finish (``promote_s``); deleted pods
   leave traffic at once and give their GPU back when drained (or after
   ``grace_s``, aborting what they still run);
3. Prometheus scrapes every ``scrape_s``: per pod waiting, running, completions and GPU
   utilisation (read as the daemon's queries read them: the arrival rate through
   benchmarks.autoscale.promql); per model the requests arrived so far (the gateway's
   counter, for activation) and the router queue (requests waiting for a first Ready
   replica);
4. controllers whose interval is due read what was scraped and act: promote/demote
   pods through the serving gate, set the Deployment's replicas. A shrink deletes pods
   in the ReplicaSet controller's order (not Ready first, loading before loaded,
   newest first). A controller with a wake path (ours with minReplicas 0) also hears
   from the gateway's fallback: the first request of the second that found its model
   without a Ready pod calls the activation endpoint at its arrival time, and a model at
   zero is reconciled in that second, out of schedule (the daemon's wake pass).
GPU time is counted from the moment a pod gets a GPU until it gives it back,
whatever the pod is doing (loading, warm, serving or draining), over the trace (first
to last arrival); the run goes on after it, without controllers, until every request
is served, so late requests are scored too.

Granularity: pod transitions take effect at the first whole simulated second at or
after they are due (a load that ends at 47.3 s serves from 48 s); requests are served
in continuous time between those seconds.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from autoscaler.signals import RATE_WINDOW_S, Reading
from autoscaler.warmpool import PodView
from benchmarks.autoscale import promql
from benchmarks.autoscale.service import ColdStart, tokens_of
from benchmarks.fleet.model import Fleet, Request, ServiceModel, TraceRow

TEMPLATE_HASH = "h"  # one template: no rollout in the replay


def _us(t: float) -> float:
    """Times kept on pods are whole microseconds, as the API server writes them, so a
    pod read back from its JSON is the same PodView."""
    return round(t, 6)


@dataclass
class Pod:
    name: str
    created: float
    gated: bool
    gpus: int = 1
    tier: str | None = None  # where its weights come from; None while it waits for a GPU
    scheduled_at: float | None = None
    loaded_at: float | None = None  # when its load finishes (once scheduled)
    loaded: bool = False
    loaded_since: float | None = None
    serving: bool | None = None  # the gpusched.io/serving condition
    serving_since: float | None = None
    ready: bool = False
    ready_at: float | None = None  # a promotion under way
    deleting_since: float | None = None
    in_fleet: bool = False
    promoted_warm: bool = False  # served from the pool (loaded when promoted)

    def view(self) -> PodView:
        return PodView(name=self.name, created=self.created, ready=self.ready, loaded=self.loaded,
                       serving=self.serving, gated=self.gated, deleting=self.deleting_since is not None,
                       loaded_since=self.loaded_since, serving_since=self.serving_since,
                       template_hash=TEMPLATE_HASH)


@dataclass(frozen=True)
class Action:
    promote: tuple[str, ...] = ()
    demote: tuple[str, ...] = ()
    replicas: int | None = None  # the Deployment's spec.replicas; None leaves it
    prewarm: int = 0  # nodes that should hold the model in their cache (ours)


class Controller(Protocol):
    name: str
    interval_s: float
    gated: bool

    def initial(self) -> tuple[int, int]:
        """(serving, warm) pods loaded at t=0."""

    def act(self, now: float, wl: "Workload") -> Action | None: ...


@dataclass(frozen=True)
class SimConfig:
    cold: ColdStart = field(default_factory=ColdStart)
    scrape_s: float = 15.0  # Prometheus scrape interval
    rate_window_s: float = RATE_WINDOW_S  # rate(...[1m]) for the arrival rate
    # the daemon's --recent-window; None: twice the scrape interval (the last two scrapes), as its help says
    recent_window_s: float | None = None
    grace_s: float = 30.0  # terminationGracePeriodSeconds: a deleted pod drains this long at most
    pool_gpus: int | None = None  # the shared pool; None = as many as asked
    drain_after_s: float = 600.0  # simulate this long after the last arrival so queues empty
    step_s: float = 1.0
    # a measured cold-start distribution (s) that replaces the tiers, drawn with this seed
    cold_samples: tuple[float, ...] | None = None
    cold_seed: int = 0
    # a host-memory tier shared by every model: the pool's nodes keep every model's weights
    # in host memory (RAM, not GPUs), so any load with no fresher copy reads them from there
    host_warm: bool = False

    @property
    def recent_s(self) -> float:
        return 2 * self.scrape_s if self.recent_window_s is None else self.recent_window_s


class GpuPool:
    """GPUs shared by every workload, and which free GPUs hold which model's weights.
    Count-based: a GPU freed by a replica of model m keeps m in its node's page cache
    for ``host_cache_s``, on its disk after that; a prefetch puts m on a node's disk
    once it has been read from the remote store. The freshest copy is taken first."""

    def __init__(self, capacity: int | None, cold: ColdStart, samples: Sequence[float] | None = None,
                 seed: int = 0, host_warm: bool = False):
        self.capacity, self.cold, self.host_warm = capacity, cold, host_warm
        self.samples = np.asarray(samples, dtype=float) if samples else None
        # one generator per run: the k-th load of every policy draws the same time
        self.rng = np.random.default_rng(seed)
        self.used = 0
        self.freed: dict[str, list[float]] = {}  # model -> times GPUs holding it were freed
        self.prefetched: dict[str, list[float]] = {}  # model -> times prefetches complete

    def room(self, gpus: int) -> bool:
        return self.capacity is None or self.used + gpus <= self.capacity

    def take(self, model: str, gpus: int, now: float) -> str:
        self.used += gpus
        freed = self.freed.get(model, [])
        if freed:
            t = max(freed)
            freed.remove(t)
            return "host-memory" if self.host_warm or now - t <= self.cold.host_cache_s else "disk"
        if self.host_warm:
            return "host-memory"
        pre = [t for t in self.prefetched.get(model, []) if t <= now]
        if pre:
            self.prefetched[model].remove(min(pre))
            return "disk"
        return "remote"

    def give_back(self, model: str, gpus: int, now: float, cached: bool) -> None:
        self.used -= gpus
        if cached:
            self.freed.setdefault(model, []).append(now)

    def cached(self, model: str) -> int:
        """Free GPUs holding the model or being prefetched to."""
        return len(self.freed.get(model, [])) + len(self.prefetched.get(model, []))

    def prefetch(self, model: str, n: int, now: float) -> None:
        done = now + self.cold.model_bytes / dict(self.cold.bandwidth)["remote"]
        self.prefetched.setdefault(model, []).extend([done] * n)

    def load_s(self, tier: str) -> float:
        """How long a load from ``tier`` takes: the tier's time, or a measured draw."""
        if self.samples is None:
            return self.cold.seconds(tier)
        return float(self.samples[self.rng.integers(len(self.samples))])

    def worst_load_s(self, model: str, now: float) -> float:
        """The longest the next load of ``model`` could take (what a planner must allow)."""
        if self.samples is None:
            return self.cold.seconds(self.next_tier(model, now))
        return float(self.samples.max())

    def next_tier(self, model: str, now: float) -> str:
        freed = self.freed.get(model, [])
        if self.host_warm:
            return "host-memory"
        if freed:
            return "host-memory" if now - max(freed) <= self.cold.host_cache_s else "disk"
        if any(t <= now for t in self.prefetched.get(model, [])):
            return "disk"
        return "remote"


@dataclass
class Scrape:
    t: float
    pods: dict[str, tuple[int, int, float]]  # name -> (waiting, running, GPU util %)
    router: int  # requests waiting for a first Ready replica
    arrived: int  # requests arrived so far (the gateway's counter)
    served: dict[str, int] = field(default_factory=dict)  # name -> vllm:request_success_total


class Workload:
    """One model: its Deployment's pods, its requests, what was scraped of it."""

    def __init__(self, model: str, rows: Sequence[TraceRow], service: ServiceModel, mu: float,
                 controller: Controller, fleet: Fleet, pool: GpuPool, cfg: SimConfig):
        self.model, self.rows, self.service, self.mu = model, rows, service, mu
        self.controller, self.fleet, self.pool, self.cfg = controller, fleet, pool, cfg
        self.pods: dict[str, Pod] = {}
        self.dep_replicas = 0
        self._seq = 0
        self.scrapes: deque[Scrape] = deque()
        self.cold_starts: dict[str, int] = {"host-memory": 0, "disk": 0, "remote": 0}
        self.promotions = 0
        self.scale_events = 0
        self.prefetches = 0
        self.gpu_s = {"serving": 0.0, "warm": 0.0, "loading": 0.0, "draining": 0.0}
        self.timeline: list[tuple[float, int, int, int]] = []  # (t, ready serving, warm, pods holding GPUs)
        self.decisions: list[dict] = []  # ours: what it saw and decided per tick (for the equivalence test)
        self.requests: list[Request] = []
        self.zero_since: float | None = None  # since when no live pod (scale to zero)
        self.arrivals_seen = 0  # requests whose arrival the gateway's fallback has looked at
        self.zero_spans: list[tuple[float, float]] = []  # [no live pod, a pod Ready again)

    # ---- pods

    def _new_pod(self, now: float) -> Pod:
        self._seq += 1
        p = Pod(name=f"{_slug(self.model)}-{self._seq:05d}", created=_us(now), gated=self.controller.gated)
        self.pods[p.name] = p
        return p

    def seed_pods(self, serving: int, warm: int) -> None:
        """Pods already loaded at t=0 (the service was running before the trace starts)."""
        for i in range(serving + warm):
            p = self._new_pod(0.0)
            self.pool.used += p.gpus
            p.tier, p.scheduled_at, p.loaded_at, p.loaded, p.loaded_since = "gpu", 0.0, 0.0, True, 0.0
            if i < serving:
                p.serving = True if p.gated else None
                p.serving_since = 0.0 if p.gated else None
                p.ready = True
        self.dep_replicas = serving + warm

    def views(self) -> list[PodView]:
        return [p.view() for p in self.pods.values()]

    def live(self) -> list[Pod]:
        return [p for p in self.pods.values() if p.deleting_since is None]

    def apply(self, a: Action, now: float) -> None:
        for name in a.promote:
            p = self.pods[name]
            if p.deleting_since is not None or p.serving:
                continue
            p.serving, p.serving_since = True, _us(now)
            if p.loaded:
                p.ready_at = now + self.cfg.cold.promote_s
                p.promoted_warm = True
                self.promotions += 1
        for name in a.demote:
            p = self.pods[name]
            p.serving, p.serving_since, p.ready_at = False, None, None
            self._set_ready(p, False, now)
        if a.replicas is not None and a.replicas != self.dep_replicas:
            self.scale_events += 1
            self.dep_replicas = a.replicas
        live = self.live()
        if len(live) < self.dep_replicas:
            for _ in range(self.dep_replicas - len(live)):
                self._new_pod(now)
        elif len(live) > self.dep_replicas:
            # the ReplicaSet controller's order: not Ready first, not loaded (Pending) first, newest first
            victims = sorted(live, key=lambda p: (p.ready, p.loaded, -p.created, _neg(p.name)))
            for p in victims[:len(live) - self.dep_replicas]:
                p.deleting_since = now
                self._set_ready(p, False, now)
        if a.prewarm > 0:
            missing = a.prewarm - self.pool.cached(self.model)
            if missing > 0:
                self.pool.prefetch(self.model, missing, now)
                self.prefetches += missing

    def _set_ready(self, p: Pod, ready: bool, now: float) -> None:
        if p.ready == ready:
            return
        p.ready = ready
        if ready and not p.in_fleet:
            p.in_fleet = True
        if p.in_fleet:
            self.fleet.set_replica(p.name, self.model, ready, now)

    def life(self, now: float) -> None:
        """Pod transitions due by ``now``."""
        for p in list(self.pods.values()):
            if p.deleting_since is not None:
                drained = not p.in_fleet or self.fleet.load(p.name) == 0
                if drained or now - p.deleting_since >= self.cfg.grace_s:
                    if p.in_fleet:
                        self.fleet.remove_replica(p.name, now)
                    if p.scheduled_at is not None:
                        self.pool.give_back(self.model, p.gpus, now, cached=p.loaded or p.tier != "remote")
                    del self.pods[p.name]
                continue
            if p.scheduled_at is None:
                if not self.pool.room(p.gpus):
                    continue
                p.tier = self.pool.take(self.model, p.gpus, now)
                p.scheduled_at = now
                p.loaded_at = now + self.pool.load_s(p.tier)
                self.cold_starts[p.tier] += 1
            if not p.loaded and p.loaded_at is not None and p.loaded_at <= now:
                p.loaded, p.loaded_since = True, _us(p.loaded_at)
                if not p.gated or p.serving:
                    self._set_ready(p, True, now)
            if p.ready_at is not None and p.ready_at <= now:
                p.ready_at = None
                if p.serving and p.loaded:
                    self._set_ready(p, True, now)

    def track_zero(self, now: float) -> None:
        """Spans from the last pod's going until a pod is Ready again: a request
        arriving in one waits (part of) the cold start that wakes the model."""
        if self.zero_since is None:
            if not any(p.deleting_since is None for p in self.pods.values()):
                self.zero_since = now
        elif any(p.ready for p in self.pods.values()):
            self.zero_spans.append((self.zero_since, now))
            self.zero_since = None

    def from_zero(self, arrivals: np.ndarray) -> np.ndarray:
        """Which arrivals found their model at zero or waking from it."""
        spans = self.zero_spans + ([(self.zero_since, math.inf)] if self.zero_since is not None else [])
        out = np.zeros(len(arrivals), dtype=bool)
        for a, b in spans:
            out |= (arrivals >= a) & (arrivals < b)
        return out

    def fallback_arrival(self, arrived: int) -> float | None:
        """The first request since the last look that found no Ready pod behind the
        model's Service (the gateway sends it to its fallback): its arrival time."""
        new = self.requests[self.arrivals_seen:arrived]
        self.arrivals_seen = max(self.arrivals_seen, arrived)
        if not new or any(p.ready for p in self.pods.values()):
            return None
        return new[0].arrival

    def account(self, dt: float) -> None:
        for p in self.pods.values():
            if p.scheduled_at is None:
                continue
            if p.deleting_since is not None:
                k = "draining"
            elif not p.loaded:
                k = "loading"
            elif p.gated and not p.serving:
                k = "warm"
            else:
                k = "serving"
            self.gpu_s[k] += dt * p.gpus

    # ---- Prometheus

    def scrape(self, now: float) -> None:
        pods = {p.name: self.fleet.sample(p.name) for p in self.pods.values() if p.in_fleet}
        self.scrapes.append(Scrape(now, pods, self.fleet.router_waiting(self.model),
                                   self.fleet.stats(self.model).arrived,
                                   {n: self.fleet.success_total(n) for n in pods}))
        while len(self.scrapes) > 2 and self.scrapes[1].t <= now - self.cfg.rate_window_s:
            self.scrapes.popleft()

    @property
    def last(self) -> Scrape | None:
        return self.scrapes[-1] if self.scrapes else None

    def queue_reading(self, ready_pods: Sequence[str], ready: int) -> Reading:
        """vllm:num_requests_waiting over the ready serving pods, as autoscaler.signals.QueueDepth
        reads it: summed, divided by the ready replicas (or by those that report)."""
        s = self.last
        series = [s.pods[n][0] for n in ready_pods if s is not None and n in s.pods]
        if not series:
            return Reading(None, "query returned no series (target not scraped, wrong labels, or metric not exported)")
        if ready <= 0:
            return Reading(None, "no ready serving replicas to average over")
        total = float(sum(series))
        if len(series) < ready:
            return Reading(total / len(series), f"{total:g} waiting over {len(series)} of {ready} ready replicas "
                                                f"that report = {total / len(series):g}/replica",
                           reporting=len(series))
        return Reading(total / ready, f"{total:g} waiting / {ready} ready = {total / ready:g}/replica")

    def util_reading(self, ready_pods: Sequence[str]) -> Reading:
        s = self.last
        vals = [s.pods[n][2] for n in ready_pods if s is not None and n in s.pods]
        if not vals:
            return Reading(None, "query returned no series (target not scraped, wrong labels, or metric not exported)")
        avg = sum(vals) / len(vals)
        return Reading(avg, f"mean GPU utilisation {avg:g}% over {len(vals)} GPUs",
                       reporting=len(vals) if len(vals) < len(ready_pods) else None)

    def arrival_reading(self, now: float, window_s: float | None = None) -> Reading:
        """Requests/s as the daemon's query reads it at ``now`` over the rate window (or
        ``window_s``, its --recent-window; autoscaler.signals.arrival_rate_query): per pod,
        rate() of the success counter over that pod's scrapes in the range
        (benchmarks.autoscale.promql), summed, plus the growth of waiting + running: each
        pod's last sample within the window, summed, less the same a window earlier,
        over ``w``. The daemon's query names the pods it lists now, not those being
        deleted. A term with no series reads 0 only when none of those pods had a sample a
        window ago; otherwise, and when no pod has a sample within the window now, the
        reading is unknown. Requests waiting for a first Ready replica are in no pod's
        series, as they are in no vLLM's."""
        w = self.cfg.rate_window_s if window_s is None else window_s
        unknown = Reading(None, "query returned no series (target not scraped, wrong labels, or metric not exported)")
        live = {p.name for p in self.pods.values() if p.deleting_since is None}
        in_flight = self._in_flight(now, live, w)
        if in_flight is None:
            return unknown
        # sum(success offset w), a plain lookup: the latest scrape at or before now - w
        then = next((s for s in reversed(self.scrapes) if s.t <= now - w), None)
        existed = then is not None and any(n in then.pods for n in live)
        keep = promql.in_range(np.array([s.t for s in self.scrapes]), now, w)
        kept = [s for s, k in zip(self.scrapes, keep) if k]
        served, rated = 0.0, False
        for name in sorted(live):  # one order of float sums in every process (str hashes are salted)
            mine = [s for s in kept if name in s.served]
            r = promql.rate(np.array([s.t for s in mine]), np.array([s.served[name] for s in mine], dtype=float),
                            now, w)
            served, rated = served + (r or 0.0), rated or r is not None
        before = self._in_flight(now - w, live, w)
        if existed and (not rated or before is None):
            return unknown
        v = max(0.0, served + (in_flight - (before or 0.0)) / w)
        return Reading(v, f"{v:g} req/s")

    def _in_flight(self, at: float, names: set[str], w: float) -> float | None:
        """sum(last_over_time(waiting[w])) + the same of running at ``at``, over ``names``:
        each pod's latest scrape in (at - w, at]; None when none has one."""
        total, found = 0, set()
        for s in reversed(self.scrapes):
            if s.t > at:
                continue
            if s.t <= at - w:
                break
            for n in names - found:
                if n in s.pods:
                    total += s.pods[n][0] + s.pods[n][1]
                    found.add(n)
        return float(total) if found else None

    def gateway_count(self) -> float | None:
        """Requests the gateway counted over the last rate window of scrapes (the
        activation query of autoscaler.signals: the counter's growth, its whole count when
        born within the window). Counted on arrival: a gateway that holds requests for a
        model at zero (Knative's activator, KEDA's HTTP interceptor) counts them then."""
        if not self.scrapes:
            return None
        a, b = self.scrapes[0], self.scrapes[-1]
        return float(b.arrived - a.arrived) if len(self.scrapes) > 1 else float(b.arrived)

    def total_queue(self) -> float | None:
        """sum(vllm:num_requests_waiting{model_name=...}): every pod and the router queue."""
        s = self.last
        if s is None:
            return None
        return float(sum(w for w, _, _ in s.pods.values()) + s.router)


def service_name(model: str) -> str:
    """The model's Service (and pod name prefix) in the simulated cluster."""
    return _slug(model)


def _slug(model: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in model.lower()).strip("-")
    return (out or "model")[:40]


def _neg(name: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in name)


@dataclass
class WorkloadResult:
    model: str
    requests: int
    queue_wait: np.ndarray  # seconds; inf = never admitted
    ttft: np.ndarray  # seconds; inf = no first token
    aborted: int
    gpu_s: dict[str, float]
    cold_starts: dict[str, int]
    promotions: int
    scale_events: int
    prefetches: int
    timeline: list[tuple[float, int, int, int]]
    decisions: list[dict]
    arrivals: np.ndarray  # per request: its arrival (s), as queue_wait is ordered
    from_zero: np.ndarray | None = None  # per request: arrived with its model at zero (a cold start's wait)
    zero_spans: list[tuple[float, float]] = field(default_factory=list)  # [no live pod, a pod Ready again)


@dataclass
class RunResult:
    policy: str
    duration_s: float
    workloads: list[WorkloadResult]
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadInput:
    model: str
    rows: Sequence[TraceRow]
    service: ServiceModel
    mu: float  # calibrated requests/s per replica
    gpus_per_replica: int = 1
    concurrency: int = 1  # concurrencyPerReplica from the same load test (effective_concurrency)


class _RowLoad:
    def __init__(self, rows: Sequence[TraceRow], service: ServiceModel, keep: list[Request]):
        self.rows, self.service, self.keep = rows, service, keep

    def requests(self):
        for r in self.rows:
            p, o = tokens_of(r, self.service)
            req = Request(r.t, p, o)
            self.keep.append(req)
            yield req


def simulate(inputs: Sequence[WorkloadInput], make: Callable[[WorkloadInput], Controller], cfg: SimConfig,
             *, progress: Callable[[float], None] | None = None, record: bool = False,
             policy: str | None = None) -> RunResult:
    """Replay every workload's rows through its controller on one pool; ``progress(s)``
    is told the simulated seconds done."""
    fleet = Fleet(start=0.0, keep_finished=False)
    pool = GpuPool(cfg.pool_gpus, cfg.cold, cfg.cold_samples, cfg.cold_seed, cfg.host_warm)
    wls: list[Workload] = []
    for inp in inputs:
        ctl = make(inp)
        wl = Workload(inp.model, inp.rows, inp.service, inp.mu, ctl, fleet, pool, cfg)
        fleet.add_model(inp.model, _RowLoad(inp.rows, inp.service, wl.requests), inp.service)
        serving, warm = ctl.initial()
        wl.seed_pods(serving, warm)
        for p in wl.pods.values():
            if p.ready:
                p.in_fleet = True
                fleet.set_replica(p.name, inp.model, True, 0.0)
        wls.append(wl)
    end = max(inp.rows[-1].t for inp in inputs)
    stop = end + cfg.drain_after_s
    dt = cfg.step_s
    steps = int(math.ceil(stop / dt))
    next_act = [0.0 for _ in wls]
    next_scrape = 0.0
    reported = 0.0
    for k in range(1, steps + 1):
        now = k * dt
        fleet.advance(now)
        for wl in wls:
            wl.life(now)
            wl.track_zero(now)
        if now >= next_scrape - 1e-9:
            for wl in wls:
                wl.scrape(now)
            next_scrape += cfg.scrape_s
        if now <= end:
            for i, wl in enumerate(wls):
                ctl = wl.controller
                wakes = getattr(ctl, "wake_path", False)
                if wakes:
                    t = wl.fallback_arrival(fleet.stats(wl.model).arrived)
                    if t is not None:
                        ctl.wake(t)
                if now >= next_act[i] - 1e-9:
                    next_act[i] += ctl.interval_s
                    a = ctl.act(now, wl)
                elif wakes:
                    a = ctl.woken_act(now, wl)
                else:
                    a = None
                if a is not None:
                    wl.apply(a, now)
                    wl.life(now)  # a promotion of a loaded pod, a new pod: scheduled at once
            for wl in wls:
                wl.account(dt)
                if k % 15 == 0:
                    ready = sum(1 for p in wl.pods.values() if p.ready)
                    warm = sum(1 for p in wl.pods.values() if p.gated and p.loaded and not p.serving
                               and p.deleting_since is None)
                    held = sum(p.gpus for p in wl.pods.values() if p.scheduled_at is not None)
                    wl.timeline.append((now, ready, warm, held))
        elif all(fleet.stats(wl.model).finished + fleet.stats(wl.model).aborted >= len(wl.rows) for wl in wls):
            break
        if progress is not None and now - reported >= 60.0:
            progress(min(now, end) - min(reported, end))
            reported = now
    if progress is not None and reported < end:
        progress(end - reported)
    out = []
    for wl in wls:
        reqs = wl.requests
        at = np.array([r.arrival for r in reqs], dtype=float)
        qw = np.array([math.inf if r.admitted is None else r.admitted - r.arrival for r in reqs])
        tt = np.array([math.inf if r.first_token is None else r.first_token - r.arrival for r in reqs])
        out.append(WorkloadResult(
            model=wl.model, requests=len(reqs), queue_wait=qw, ttft=tt, aborted=sum(1 for r in reqs if r.aborted),
            gpu_s=dict(wl.gpu_s), cold_starts=dict(wl.cold_starts), promotions=wl.promotions,
            scale_events=wl.scale_events, prefetches=wl.prefetches, timeline=wl.timeline,
            decisions=wl.decisions if record else [],
            from_zero=wl.from_zero(at), arrivals=at,
            zero_spans=wl.zero_spans + ([(wl.zero_since, math.inf)] if wl.zero_since is not None else [])))
    return RunResult(policy=policy or wls[0].controller.name, duration_s=end, workloads=out)


__all__ = ["Pod", "Action", "Controller", "SimConfig", "GpuPool", "Workload", "WorkloadInput", "WorkloadResult",
           "RunResult", "simulate", "TEMPLATE_HASH"]
