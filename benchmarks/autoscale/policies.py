"""The policies `gpusched bench autoscale` compares, as controllers of benchmarks.autoscale.sim.

- ``Ours``: the live daemon's decision path, byte for byte: warmpool.count ->
  signals.observation -> policy.decide -> warmpool.plan, with ``now`` the simulated
  clock and the daemon's interval (5 s); pre-warming asks for ``Decision.prewarm``
  cached nodes, rate-limited as autoscaler.prewarm does. Its spec is an
  InferenceAutoscaler ``spec`` dict (``ours_spec``); the ablations switch one feature
  off through the spec (or, for pre-warming, the daemon's ``--no-prewarm``).
- ``Hpa``: Kubernetes' HorizontalPodAutoscaler as its controller computes
  (pkg/controller/podautoscaler): sync every 15 s; a Pods metric (GPU utilisation per
  pod, DCGM through Prometheus) with the replica calculator's treatment of missing
  and not-ready pods and tolerance 0.1; scale-down stabilisation 300 s (the highest
  recommendation of the window), scale-up max(4 pods, 100%) per 15 s.
- ``Keda``: KEDA's Prometheus scaler feeding that HPA an External metric of type
  AverageValue: sum(vllm:num_requests_waiting) over the model (router queue too),
  desired = ceil(total / target) unless within tolerance of the pods there are. The
  query runs at every 15 s HPA sync: KEDA's metrics server answers the HPA's read by
  querying the scaler (useCachedMetrics defaults to false; pollingInterval, 30 s, only
  drives activation from and to zero, which keda-queue does not use).
- ``KedaZero`` ("keda-zero"): the same with minReplicaCount 0, activated by the gateway's
  request counter (pollingInterval 30 s, cooldownPeriod 300 s, KEDA's defaults).
- ``Static``: a fixed number of replicas, all loaded from the start: the fewest that
  meet the SLO over the whole trace (chosen with hindsight; reported, not a rival).
- ``StaticSchedule`` ("static-prev-window"): static provisioning without hindsight, as
  an operator sizes a fleet from yesterday's or last hour's peak: in each window the
  count that would have met the SLO over the previous window (the bench searches it on
  that window's requests); the first window, having no previous one, gets its own.
  A larger count is loaded when the window starts, not before: the previous window's
  figures exist only once it has ended.
- ``Oracle``: knows the arrivals. At each 5 s tick it runs
  max over the next (cold start + tick) seconds of ceil(rate / (mu x u)), per 5 s bin
  of arrivals, starting replicas one cold start ahead of need and deleting them as
  soon as they are not needed. The bench searches the highest utilisation u at which
  the oracle still meets the queue-wait SLO: the fewest GPU-hours that meet it.
All the baselines' pods serve as soon as they are loaded (no serving gate, no warm pool).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from autoscaler import signals, warmpool
from autoscaler.policy import (FORECAST as FORECAST_RULE, QUEUEING as QUEUEING_RULE, RECENT as RECENT_RULE, decide,
                               initial_state)
from autoscaler.prewarm import MIN_INTERVAL_S
from autoscaler.spec import AutoscalerSpec, parse_spec
from benchmarks.autoscale.sim import Action, Workload

DAEMON_INTERVAL_S = 5.0  # autoscaler.daemon.Config.interval_s
HPA_SYNC_S = 15.0  # kube-controller-manager --horizontal-pod-autoscaler-sync-period
HPA_TOLERANCE = 0.1
HPA_DOWN_WINDOW_S = 300.0
HPA_UP_PODS, HPA_UP_PERCENT, HPA_PERIOD_S = 4, 100.0, 15.0
KEDA_POLL_S = HPA_SYNC_S  # see Keda: queried at each HPA sync
KEDA_ACTIVATION_POLL_S = 30.0  # ScaledObject pollingInterval's default
KEDA_COOLDOWN_S = 300.0  # ScaledObject cooldownPeriod's default


# ---------------------------------------------------------------- ours

def ours_spec(model: str, *, max_replicas: int, mu: float, cold_start_s: float, queue_wait_s: float,
              queue_target: float, overrides: Mapping[str, Any] | None = None, concurrency: int = 1) -> dict:
    """The InferenceAutoscaler spec the bench gives ours: what a user would write, with
    serviceRatePerReplica and concurrencyPerReplica from a one-replica load test on the
    trace's token mix (its throughput, and that times the seconds a request takes alone:
    autoscaler.queueing.effective_concurrency) and coldStartSeconds the worst
    (remote-store) cold start. ``overrides`` (the bench's --ours-spec, an ablation's
    switch) are merged in, nested objects key by key."""
    spec = {
        "scaleTargetRef": {"name": model},
        "model": model,
        "minReplicas": 1,
        "maxReplicas": max_replicas,
        "warmReplicas": 1,
        "signals": [{"type": "queueDepth", "target": queue_target}],
        # Everything else at the CRD's defaults (targetUtilization 0.8; scale-down HPA's 300 s
        # window, 100% per 15 s): the bench measures what a user gets, never a setting
        # chosen on these traces.
        "slo": {"queueWaitSeconds": queue_wait_s, "percentile": 0.99},
        "coldStartSeconds": round(cold_start_s, 1),
        "serviceRatePerReplica": round(mu, 3),
        "concurrencyPerReplica": int(concurrency),
    }
    return merge_spec(spec, overrides or {})


def merge_spec(base: dict, over: Mapping[str, Any]) -> dict:
    """``base`` with ``over`` merged in: objects key by key, other values replaced, a None
    value removes the key (e.g. ``{"slo": None}`` switches the queueing rule off)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = merge_spec(out[k], v)
        elif v is None:
            out.pop(k, None)
        else:
            out[k] = copy.deepcopy(v)
    return out


SERVER_BATCH = "server batch"  # in ABLATIONS: replaced by the simulated server's batch size
MODEL_SERVICE = "model service"  # in ABLATIONS: replaced by the model's Service name

# Each ablation switches one feature of ours off, through what a user can set.
ABLATIONS: dict[str, tuple[dict, bool, str]] = {
    # name: (spec overrides, prewarm on, what it switches off)
    "ours": ({}, True, "all features"),
    "ours-no-warm": ({"warmReplicas": 0}, True, "warm pool (warmReplicas 0)"),
    "ours-no-forecast": ({"forecast": {"enabled": False}}, True, "Holt forecast (forecast.enabled false; "
                                                                 "it then sizes no cache pre-warming either)"),
    # not ablations: the forecast's own asks, made by default only while no recent rate is read
    # (forecast.scaleUp unset), always (true) or never (false)
    "ours-forecast-up": ({"forecast": {"scaleUp": True}}, True,
                         "(a variant) the forecast also asks for replicas one cold start ahead, beside the recent "
                         "rate too (forecast.scaleUp true)"),
    "ours-forecast-off": ({"forecast": {"scaleUp": False}}, True,
                          "(a variant) the forecast never asks for replicas, even with no recent rate read "
                          "(forecast.scaleUp false); it still sizes pre-warming"),
    "ours-no-queueing": ({"slo": None}, True, "queueing rule (no slo: queue-depth signal only; the forecast "
                                              "needs the queueing rule, so it is off too)"),
    "ours-no-panic": ({"behavior": {"panic": {"threshold": 1e9}}}, True, "panic mode (threshold 1e9)"),
    "ours-no-prewarm": ({}, False, "cache pre-warming (daemon --no-prewarm)"),
    "ours-no-recent": ({}, True, "recent arrival rate (daemon --recent-window 0; the forecast then asks for "
                                 "replicas, forecast.scaleUp being unset)"),
    # not an ablation: minReplicas 0 with the gateway's request counter as activation
    # (the model's service label filled in per model by the bench), idle window at its default
    "ours-zero": ({"minReplicas": 0, "activation": {"labels": {"destination_service_name": MODEL_SERVICE}}}, True,
                  "(a variant) scale to zero: minReplicas 0, woken by the gateway's fallback calling the "
                  "activation endpoint at the request's arrival (and by the gateway's request counter), "
                  "scaleToZeroAfterSeconds default"),
    # the same without the gateway's fallback: woken only by the counter, at the next scrape and tick
    "ours-zero-scrape": ({"minReplicas": 0, "activation": {"labels": {"destination_service_name": MODEL_SERVICE}}},
                         True, "(a variant) ours-zero without the activation endpoint: woken by the gateway's "
                               "request counter only (the next 15 s scrape, then a tick)"),
    # not ablations but the queueing model's two ends: every batch slot a server
    # (concurrencyPerReplica = the simulated server's batch: on bursty traces it gives up the
    # headroom fewer servers keep), and one server per replica (M/M/c, the bench's ours
    # before the load test's concurrency: it over-asks for long requests a replica batches)
    "ours-batch-slots": ({"concurrencyPerReplica": SERVER_BATCH}, True,
                         "(a variant, not an ablation) queueing over batch slots: concurrencyPerReplica = the "
                         "simulated server's batch"),
    "ours-mmc": ({"concurrencyPerReplica": 1}, True,
                 "(a variant, not an ablation) queueing as M/M/c: concurrencyPerReplica 1, one server per "
                 "replica"),
}


@dataclass
class DecideTally:
    """Where ours' replica-seconds come from, tick by tick (each tick counts ``dt``):
    its targets; what the queueing rule alone asked; how much more the forecast (or the
    recent rate) and the signal rules asked; the target held above every current recommendation (by the rule
    that set it: stabilisation, a rate limit, panic, minReplicas) and kept below the top
    one (by the rule: a rate limit, maxReplicas). Read-only: it never changes a decision."""

    target: float = 0.0
    queueing: float = 0.0
    forecast_above: float = 0.0
    signals_above: float = 0.0
    held_above: dict[str, float] = field(default_factory=dict)
    below: dict[str, float] = field(default_factory=dict)
    by_rule: dict[str, float] = field(default_factory=dict)

    def add(self, d: Any, dt: float) -> None:
        recs = {r.rule: r.replicas for r in d.recommendations}
        q = recs.get(QUEUEING_RULE, 0)
        f = max(recs.get(FORECAST_RULE, 0), recs.get(RECENT_RULE, 0))  # both held one cold start
        sig = max([v for k, v in recs.items() if k.startswith("signal:")] or [0])
        top = max(q, f, sig)
        self.target += d.replicas * dt
        self.queueing += q * dt
        self.forecast_above += max(0, f - max(q, sig)) * dt
        self.signals_above += max(0, sig - max(q, f)) * dt
        self.by_rule[d.rule] = self.by_rule.get(d.rule, 0.0) + d.replicas * dt
        if recs and d.replicas > top:
            self.held_above[d.rule] = self.held_above.get(d.rule, 0.0) + (d.replicas - top) * dt
        elif recs and d.replicas < top:
            self.below[d.rule] = self.below.get(d.rule, 0.0) + (top - d.replicas) * dt

    def merged(self, other: DecideTally) -> DecideTally:
        def add(a: dict, b: dict) -> dict:
            return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in {**a, **b}}
        return DecideTally(self.target + other.target, self.queueing + other.queueing,
                           self.forecast_above + other.forecast_above, self.signals_above + other.signals_above,
                           add(self.held_above, other.held_above), add(self.below, other.below),
                           add(self.by_rule, other.by_rule))

    def hours(self) -> dict:
        def h(v: float) -> float:
            return round(v / 3600.0, 3)

        return {"target": h(self.target), "queueing_rule": h(self.queueing),
                # the forecast's or the recent rate's ask, the larger (both are held one cold start)
                "forecast_above_queueing": h(self.forecast_above), "signals_above_rules": h(self.signals_above),
                "held_above_recommendations": {k: h(v) for k, v in sorted(self.held_above.items())},
                "below_top_recommendation": {k: h(v) for k, v in sorted(self.below.items())},
                "target_by_final_rule": {k: h(v) for k, v in sorted(self.by_rule.items())}}


class Ours:
    """The daemon's tick as ``act``; with ``wake_path``, its activation endpoint too:
    the gateway's fallback calls it when a request finds no Ready pod (``wake``), and a
    wake of an object at zero is reconciled at once (``woken_act``), as
    autoscaler.daemon.Autoscaler.wake_pass does."""

    gated = True
    interval_s = DAEMON_INTERVAL_S

    def __init__(self, name: str, spec: Mapping[str, Any], prewarm: bool, initial_serving: int, record: bool = False,
                 wake_path: bool = True, recent: bool = True):
        self.name = name
        self.recent = recent  # the daemon's --recent-window is not 0 (its window: SimConfig.recent_s)
        self.spec: AutoscalerSpec = parse_spec(spec)
        self.prewarm = prewarm
        self.record = record
        self.wake_path = wake_path and self.spec.min_replicas == 0 and self.spec.activation is not None
        self.state = initial_state()
        self.last_target: int | None = None
        self.last_wake: float | None = None
        self.seen_wake: float | None = None  # the wake the last decision read
        self._initial = max(self.spec.min_replicas, min(initial_serving, self.spec.max_replicas))
        self._last_prewarm = -math.inf
        self.tally = DecideTally()

    def initial(self) -> tuple[int, int]:
        warm = min(self.spec.warm_replicas, max(0, self.spec.max_replicas - self._initial))
        return self._initial, warm

    def wake(self, at: float) -> None:
        """A call to the activation endpoint at ``at`` (autoscaler.activation.Activator.wake,
        one a second per object)."""
        if self.last_wake is None or at - self.last_wake >= 1.0:
            self.last_wake = at

    def woken_act(self, now: float, wl: Workload) -> Action | None:
        """The daemon's reconcile of a woken object out of its schedule: only one at zero
        (last decided 0, or nothing decided yet) with a wake its last decision did not read."""
        if self.last_wake is None or self.last_wake == self.seen_wake or (self.last_target or 0) > 0:
            return None
        return self.act(now, wl, woken=True)

    def act(self, now: float, wl: Workload, woken: bool = False) -> Action:
        spec = self.spec
        views = wl.views()
        live = [v for v in views if v.state != warmpool.GONE]
        counts = warmpool.count(views, self.last_target)
        ready_pods = tuple(sorted(v.name for v in live if v.state == warmpool.READY))
        readings = {}
        for s in spec.signals:
            if s.type == "queueDepth":
                readings[s.name] = wl.queue_reading(ready_pods, counts.ready)
            elif s.type == "gpuUtilization":
                readings[s.name] = wl.util_reading(ready_pods)
            else:
                readings[s.name] = signals.Reading(None, f"{s.type} is not simulated")
        arrival = wl.arrival_reading(now) if spec.slo is not None else None
        activation = None
        if spec.activation is not None:
            count = wl.gateway_count()
            activation = signals.Reading(count, "gateway requests in the last minute" if count is not None
                                         else "query returned no series")
        # as the daemon: read only beside a known 1 m rate
        on = self.recent and signals.recent_window_on(wl.cfg.recent_s)
        recent = wl.arrival_reading(now, wl.cfg.recent_s) if on and arrival is not None and arrival.known else None
        obs, _ = signals.observation(counts.ready, counts.pending, counts.warm, readings, arrival, activation,
                                     recent=recent, recent_window_s=wl.cfg.recent_s)
        obs = replace(obs, wake=self.last_wake)
        d = decide(self.state, obs, spec, now)
        self.seen_wake = obs.wake
        self.tally.add(d, self.interval_s)
        pl = warmpool.plan(views, d.replicas, d.warm, None)
        if self.record:
            wl.decisions.append({"now": now, "views": views, "readings": readings, "arrival": arrival,
                                 "recent": recent, "obs": obs,
                                 "activation": activation, "wake": self.last_wake, "woken": woken,
                                 "dep_replicas": wl.dep_replicas, "replicas": d.replicas, "warm": d.warm,
                                 "plan_replicas": pl.replicas, "promote": pl.promote, "demote": pl.demote,
                                 "rule": d.rule})
        self.state, self.last_target = d.state, d.replicas
        prewarm = 0
        # autoscaler.prewarm.Prewarmer: at most once per model per max(30 s, coldStartSeconds)
        if self.prewarm and d.prewarm and now - self._last_prewarm >= max(MIN_INTERVAL_S, spec.cold_start_s):
            self._last_prewarm = now
            prewarm = d.prewarm
        return Action(pl.promote, pl.demote, pl.replicas, prewarm)


SCRAPE_ONLY = frozenset({"ours-zero-scrape"})  # variants of ours whose gateway has no fallback to the endpoint
NO_RECENT = frozenset({"ours-no-recent"})  # variants of ours whose daemon reads no recent arrival rate


# ---------------------------------------------------------------- HPA and KEDA

def plain_metric_replicas(metrics: Mapping[str, float], ready: set[str], unready: set[str], current: int,
                          target: float, tolerance: float = HPA_TOLERANCE) -> int | None:
    """The HPA replica calculator for a per-pod metric (calcPlainMetricReplicas):
    not-ready pods are left out, ready pods without a sample are taken at the target
    on a scale-down and at 0 on a scale-up, not-ready pods at 0 on a scale-up; no
    change within the tolerance or when filling in reverses the direction. None when no
    ready pod has a sample (the HPA then changes nothing)."""
    have = {p: v for p, v in metrics.items() if p in ready}
    if not have:
        return None
    missing = [p for p in ready if p not in metrics]
    ratio = float(np.mean(list(have.values()))) / target
    if not missing and not unready:
        if abs(ratio - 1) <= tolerance:
            return current
        return int(math.ceil(ratio * len(have) - 1e-9))
    filled = dict(have)
    for p in missing:
        filled[p] = target if ratio < 1 else 0.0
    if ratio > 1:
        for p in unready:
            filled[p] = 0.0
    new_ratio = float(np.mean(list(filled.values()))) / target
    if abs(new_ratio - 1) <= tolerance or (ratio > 1 > new_ratio) or (ratio < 1 < new_ratio):
        return current
    new = int(math.ceil(new_ratio * len(filled) - 1e-9))
    if (new_ratio < 1 and new > current) or (new_ratio > 1 and new < current):
        return current
    return new


def external_average_replicas(total: float, status_replicas: int, target: float,
                              tolerance: float = HPA_TOLERANCE) -> int:
    """HPA on an External metric with an AverageValue target (how KEDA's scalers reach
    it): ratio = total / (target x status replicas); ceil(total / target) outside the
    tolerance."""
    if status_replicas > 0 and abs(1 - total / (target * status_replicas)) <= tolerance:
        return status_replicas
    return int(math.ceil(total / target - 1e-9))


@dataclass
class HpaBehavior:
    """HPA's default behavior: stabilisation and rate limits around a proposal."""

    min_replicas: int
    max_replicas: int
    recs: list[tuple[float, int]] = field(default_factory=list)
    ups: list[tuple[float, int]] = field(default_factory=list)

    def normalize(self, proposal: int, current: int, now: float) -> int:
        self.recs = [(t, r) for t, r in self.recs if t > now - HPA_DOWN_WINDOW_S] + [(now, proposal)]
        up = min(r for t, r in self.recs if t >= now)  # scale-up window 0 s: this proposal only
        down = max(r for _, r in self.recs)
        desired = current
        if desired < up:
            desired = up
        if desired > down:
            desired = down
        if desired > current:
            self.ups = [(t, n) for t, n in self.ups if t > now - HPA_PERIOD_S]
            start = current - sum(n for _, n in self.ups)
            limit = max(start + HPA_UP_PODS, int(math.ceil(start * (1 + HPA_UP_PERCENT / 100))))
            desired = min(desired, limit)
        desired = max(self.min_replicas, min(desired, self.max_replicas))
        if desired > current:
            self.ups.append((now, desired - current))
        return desired


class Hpa:
    gated = False
    interval_s = HPA_SYNC_S

    def __init__(self, name: str, target_util: float, min_replicas: int, max_replicas: int, initial_serving: int):
        self.name, self.target = name, target_util
        self.behavior = HpaBehavior(min_replicas, max_replicas)
        self._initial = initial_serving

    def initial(self) -> tuple[int, int]:
        return self._initial, 0

    def act(self, now: float, wl: Workload) -> Action | None:
        s = wl.last
        live = wl.live()
        ready = {p.name for p in live if p.ready}
        unready = {p.name for p in live if not p.ready}
        metrics = {n: v[2] for n, v in (s.pods.items() if s else ()) if n in ready or n in unready}
        proposal = plain_metric_replicas(metrics, ready, unready, wl.dep_replicas, self.target)
        if proposal is None:
            return None
        return Action(replicas=self.behavior.normalize(proposal, wl.dep_replicas, now))


class Keda:
    gated = False
    interval_s = HPA_SYNC_S

    def __init__(self, name: str, queue_target: float, min_replicas: int, max_replicas: int, initial_serving: int):
        self.name, self.target = name, queue_target
        self.behavior = HpaBehavior(min_replicas, max_replicas)
        self._initial = initial_serving
        self._polled: tuple[float, float | None] = (-math.inf, None)

    def initial(self) -> tuple[int, int]:
        return self._initial, 0

    def act(self, now: float, wl: Workload) -> Action | None:
        if now - self._polled[0] >= KEDA_POLL_S:
            self._polled = (now, wl.total_queue())
        total = self._polled[1]
        if total is None:
            return None
        status = len(wl.live())
        proposal = external_average_replicas(total, status, self.target)
        return Action(replicas=self.behavior.normalize(proposal, wl.dep_replicas, now))


class KedaZero(Keda):
    """KEDA with minReplicaCount 0: below one replica KEDA's operator, not the HPA,
    scales. Every pollingInterval (30 s) it asks each trigger whether it is active (value
    > activationThreshold, 0 by default): here the gateway's request counter over the
    last minute (a Prometheus trigger on the same query ours reads) or the queue. Active
    at zero -> 1 replica; not active for cooldownPeriod (300 s) -> 0. From one replica up,
    the HPA on queue depth as keda-queue."""

    def __init__(self, name: str, queue_target: float, max_replicas: int, initial_serving: int):
        super().__init__(name, queue_target, 1, max_replicas, initial_serving)
        self._checked = -math.inf
        self._last_active = 0.0

    def act(self, now: float, wl: Workload) -> Action | None:
        if now - self._checked >= KEDA_ACTIVATION_POLL_S:
            self._checked = now
            if (wl.gateway_count() or 0) > 0 or (wl.total_queue() or 0) > 0:
                self._last_active = now
        if wl.dep_replicas == 0:
            return Action(replicas=1) if self._last_active == self._checked else None
        if now - self._last_active >= KEDA_COOLDOWN_S:
            self.behavior.recs.clear()
            return Action(replicas=0)
        return super().act(now, wl)


# ---------------------------------------------------------------- static and oracle

ORACLE_BIN_S = 5.0


def oracle_need(arrivals: np.ndarray, mu: float, utilization: float, until: float,
                bin_s: float = ORACLE_BIN_S) -> np.ndarray:
    """Replicas needed per bin of ``bin_s`` seconds: ceil(arrivals in the bin / bin_s /
    (mu x utilization)), at least 1."""
    n = int(math.ceil(until / bin_s)) + 1
    counts = np.bincount(np.minimum((arrivals // bin_s).astype(np.int64), n - 1), minlength=n)
    return np.maximum(1, np.ceil(counts / bin_s / (mu * utilization) - 1e-9)).astype(np.int64)


class Oracle:
    gated = False
    interval_s = DAEMON_INTERVAL_S

    def __init__(self, name: str, need: np.ndarray, max_replicas: int, bin_s: float = ORACLE_BIN_S):
        self.name, self.need, self.bin_s, self.max = name, need, bin_s, max_replicas

    def want(self, t0: float, t1: float) -> int:
        a = int(t0 // self.bin_s)
        b = int(t1 // self.bin_s) + 1
        seg = self.need[max(0, a):max(a + 1, min(b, len(self.need)))]
        return int(min(self.max, seg.max())) if len(seg) else 1

    def initial(self) -> tuple[int, int]:
        return self.want(0.0, DAEMON_INTERVAL_S), 0

    def act(self, now: float, wl: Workload) -> Action:
        # it knows where the next replica's weights come from, hence its cold start
        ahead = wl.pool.worst_load_s(wl.model, now) + self.interval_s + wl.cfg.step_s
        return Action(replicas=self.want(now, now + ahead))


class StaticSchedule:
    gated = False

    def __init__(self, name: str, counts: list[int], window_s: float):
        if not counts or window_s <= 0:
            raise ValueError("a schedule needs at least one count and a window > 0")
        self.name, self.counts, self.window_s = name, list(counts), window_s
        self.interval_s = window_s

    def count_at(self, now: float) -> int:
        return self.counts[min(int(now // self.window_s), len(self.counts) - 1)]

    def initial(self) -> tuple[int, int]:
        return self.counts[0], 0

    def act(self, now: float, wl: Workload) -> Action:
        return Action(replicas=self.count_at(now))


class Static:
    gated = False
    interval_s = 3600.0 * 24

    def __init__(self, name: str, replicas: int):
        self.name, self.replicas = name, replicas

    def initial(self) -> tuple[int, int]:
        return self.replicas, 0

    def act(self, now: float, wl: Workload) -> Action | None:
        return None


__all__ = ["ours_spec", "merge_spec", "ABLATIONS", "DecideTally", "Ours", "Hpa", "Keda", "Oracle", "Static", "StaticSchedule",
           "oracle_need", "plain_metric_replicas", "external_average_replicas", "HpaBehavior"]
