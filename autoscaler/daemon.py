"""The autoscaler daemon: observe, decide, act, report, every ``interval`` seconds.

For each InferenceAutoscaler (from an informer), one tick:
1. parse the spec (autoscaler.spec); a bad one: condition + Event, nothing else;
2. read the target Deployment (apps/v1 only); a missing one: condition + Event,
   nothing else touched;
3. observe: the target's pods (an informer per namespace and selector) give ready,
   pending and warm replicas (autoscaler.warmpool.count); Prometheus gives the signals
   (autoscaler.signals), scoped to the namespace and the serving pods' names;
4. decide (autoscaler.policy.decide) with the ScaleState kept in memory per object;
5. act, if this process leads (Lease ``--namespace``/gpusched-autoscaler) and is not
   a dry run: promote/demote pods through the serving gate, scale the Deployment
   (autoscaler.warmpool.plan), ask node agents to prefetch (autoscaler.prewarm). If any
   of it fails, the OLD state is kept, so rate limits never count a change that did
   not happen;
6. report: the status subresource (current/desired/warm, last decision, conditions)
   and an Event for every scale decision and every error.

The tick runs on a fixed schedule (not "sleep after work"): Holt's forecast in the
policy assumes evenly spaced samples. Between ticks the loop listens for wakes: with
``activation_port``, the gateway's fallback for a model without a Ready pod calls
``/activate/<namespace>/<name>`` (autoscaler.activation), and an object at zero is
reconciled at once (``wake_pass``), reading the wake as ``Observation.wake``; the other
objects read it at their next tick. A wake pass is the one sample off the schedule: it
comes only at zero, where the model has had no traffic to forecast from, and the rules
take over at the next tick. Every per-object error is caught, reported and
counted; the loop goes on. A follower keeps its informers warm and decides nothing;
a new leader starts a fresh state (no scale-down until it has a stabilisation
window of history). A dry run takes no part in the election (it uses its own Lease,
so it can run next to a live autoscaler), writes no status, and records what it would
do as ``DryRun`` Events and log lines.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from functools import partial
from http.server import ThreadingHTTPServer
from typing import Any, Callable, Final, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from scheduler import names
from scheduler.kube.leader import LeaderElector
from scheduler.kube.watch import Informer
from scheduler.ops_http import serve_ops

from . import kube, signals, status, warmpool
from .activation import Activator, Answer
from .activation_http import serve_activation
from .policy import (MAX_REPLICAS, MIN_REPLICAS, RATE_LIMIT, Decision, Observation, ScaleState, decide,
                     initial_state)
from .lanes import Lanes
from .prewarm import Prewarmer
from .spec import AutoscalerSpec, SpecError, parse_spec

log = logging.getLogger(__name__)

LEASE_NAME = "gpusched-autoscaler"
STATUS_REFRESH_S = 60.0  # rewrite an unchanged status at least this often (lastDecision.time)
STATUS_REASON_EVERY_S = 15.0  # a status that differs only in the reason text: at most this often


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Config:
    prometheus_url: str
    interval_s: float = 5.0
    namespace: str = "gpusched-system"  # where the Lease lives
    identity: str = field(default_factory=default_identity)
    dry_run: bool = False
    metrics_port: int = 9402  # 0: no HTTP server
    metrics_addr: str = "0.0.0.0"
    lease_duration_s: float = 15.0
    lease_name: str = LEASE_NAME
    prometheus_timeout_s: float = 3.0
    # None: InferenceAutoscalers of every namespace; else comma-separated namespaces, the ones
    # the chart grants a RoleBinding in (autoscaler.namespaces); "" watches none
    watch_namespace: str | None = None
    workers: int = 4
    prewarm: bool = True
    demote_wait_s: float = 3.0  # how long a shrink waits for demoted pods to leave Ready
    node_stale_after_s: float = 600.0  # as the extender's staleAfterSeconds
    # how long a tick waits for one object; None: max(2 intervals, Prometheus timeout + 2 s)
    object_budget_s: float | None = None
    labels: signals.Labels = field(default_factory=signals.Labels)  # label names on Prometheus's series
    activation_port: int = 0  # the wake endpoint (autoscaler.activation); 0: off
    activation_addr: str = "0.0.0.0"
    # the scale-up-only arrival rate's window: twice the model servers' scrape interval (0: not read)
    recent_window_s: float = 30.0

    @property
    def budget_s(self) -> float:
        if self.object_budget_s is not None:
            return self.object_budget_s
        return max(2 * self.interval_s, self.prometheus_timeout_s + 2.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "gpusched_autoscaler_"
        self.decisions = Counter(p + "decisions_total", "Decisions made, by InferenceAutoscaler and rule",
                                 ["ias", "rule"], registry=r)
        self.desired = Gauge(p + "desired_replicas", "Serving replicas last decided", ["ias"], registry=r)
        self.current = Gauge(p + "current_replicas", "Serving replicas observed (ready + pending)", ["ias"],
                             registry=r)
        self.warm = Gauge(p + "warm_replicas", "Warm (loaded, gated out of traffic) replicas observed", ["ias"],
                          registry=r)
        self.signal = Gauge(p + "signal_value", "Last value read per signal (absent while unknown)",
                            ["ias", "signal"], registry=r)
        self.leader = Gauge(p + "leader", "1 while this process holds the Lease", registry=r)
        self.errors = Counter(p + "errors_total", "Errors by kind", ["kind"], registry=r)
        self.actions = Counter(p + "actions_total", "Pods promoted/demoted, scales, prefetch requests",
                               ["action"], registry=r)
        self.tick = Histogram(p + "tick_seconds", "Duration of one pass over every InferenceAutoscaler",
                              buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=r)
        self.last_tick = Gauge(p + "last_tick_timestamp_seconds", "When the last tick ended", registry=r)
        self.overrunning = Gauge(p + "reconciles_over_budget", "InferenceAutoscalers whose reconcile is still "
                                 "running past its time budget (skipped until it ends)", registry=r)
        for kind in ("spec", "target", "signals", "actuation", "status", "event", "prewarm", "internal", "slow"):
            self.errors.labels(kind)
        self.wakes = Counter(p + "activation_requests_total", "Calls to the activation endpoint, by HTTP code "
                             "and whether a wake was taken", ["code", "woken"], registry=r)

    def forget(self, ias: str, signal_names: list[str]) -> None:
        for g in (self.desired, self.current, self.warm):
            try:
                g.remove(ias)
            except KeyError:
                pass
        for s in signal_names:
            try:
                self.signal.remove(ias, s)
            except KeyError:
                pass


class Store:
    """Objects of one informer by namespace/name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, dict] = {}

    @staticmethod
    def key(obj: Mapping[str, Any]) -> str:
        m = obj.get("metadata") or {}
        return f"{m.get('namespace', '')}/{m.get('name', '')}"

    def on_event(self, typ: str, obj: dict) -> None:
        with self._lock:
            if typ == "DELETED":
                self._items.pop(self.key(obj), None)
            else:
                self._items[self.key(obj)] = obj

    def relist(self, items: list[dict]) -> None:
        with self._lock:
            self._items = {self.key(o): o for o in items}

    def items(self) -> list[dict]:
        with self._lock:
            return list(self._items.values())

    def get(self, key: str) -> dict | None:
        with self._lock:
            return self._items.get(key)


def watched_namespaces(text: str | None) -> list[str | None]:
    """``--watch-namespace``: None -> [None] (every namespace), "a,b" -> ["a", "b"],
    "" -> [] (none: the chart lists no namespace). Each must be a DNS-1123 label."""
    if text is None:
        return [None]
    out: list[str | None] = []
    for part in text.split(","):
        ns = part.strip()
        if not ns:
            continue
        why = names.label_error(ns)
        if why is not None:
            raise ValueError(f"--watch-namespace: {why}")
        if ns not in out:
            out.append(ns)
    return out


class _AllSynced:
    def __init__(self, informers: list[Informer]):
        self._informers = informers

    def is_set(self) -> bool:
        return all(i.synced.is_set() for i in self._informers)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for i in self._informers:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not i.synced.wait(left):
                return False
        return True


class NamespacedStores:
    """InferenceAutoscalers from one informer per watched namespace, each with its own
    Store (a relist of one namespace must not drop another's objects)."""

    def __init__(self, api, namespaces: list[str | None]):
        self.stores = [Store() for _ in namespaces]
        self.informers = [Informer(api, kube.ias_path(ns), st.on_event, on_relist=st.relist,
                                   name=f"inferenceautoscalers {ns or 'all namespaces'}")
                          for ns, st in zip(namespaces, self.stores)]
        self.synced = _AllSynced(self.informers)

    @property
    def errors(self) -> int:
        return sum(i.errors for i in self.informers)

    def start(self) -> None:
        for i in self.informers:
            i.start()

    def stop(self) -> None:
        for i in self.informers:
            i.stop()

    def items(self) -> list[dict]:
        return [o for st in self.stores for o in st.items()]


class PodWatch:
    """An informer over one target's pods (namespace + label selector)."""

    def __init__(self, api, namespace: str, selector: str):
        self.store = Store()
        self.informer = Informer(api, kube.pods_path(namespace), self.store.on_event,
                                 params={"labelSelector": selector}, on_relist=self.store.relist,
                                 name=f"pods {namespace} {selector}")
        self.used = time.monotonic()
        self.informer.start()


@dataclass
class IasState:
    uid: str
    state: ScaleState = field(default_factory=initial_state)
    last_target: int | None = None  # serving replicas last decided (and applied)
    last_status: dict | None = None
    last_status_at: float = float("-inf")
    signal_names: list[str] = field(default_factory=list)
    last_rule: str | None = None  # of the last decision: a change of rule is logged even without a scale
    last_signals_msg: str | None = None  # what was unknown at the last tick (None: all known)
    seen_wake: float | None = None  # the wake the last decision read (another one is news)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Failure(Exception):
    """A per-object problem reported as conditions and an Event; nothing is acted on."""

    def __init__(self, reason: str, message: str, kind: str, conditions: list[tuple[str, str]]):
        super().__init__(message)
        self.reason, self.message, self.kind = reason, message, kind
        self.conditions = conditions  # (type, status) set with this reason and message


# ---------------------------------------------------------------- the reconcile's pure phases

# Prometheus is asked at its own time: the daemon's clock may be off from Prometheus's,
# and a query past Prometheus's newest sample finds nothing.
PROMETHEUS_NOW: Final[None] = None


@dataclass(frozen=True)
class Target:
    """One InferenceAutoscaler, its valid spec and the Deployment it scales."""

    obj: dict
    key: str  # namespace/name of the InferenceAutoscaler
    namespace: str
    name: str
    generation: int
    spec: AutoscalerSpec
    deployment: dict
    selector: str  # the Deployment's pod selector, as a label selector string

    @property
    def replicas(self) -> int:
        """The Deployment's spec.replicas when read."""
        return int((self.deployment.get("spec") or {}).get("replicas", 1))


@dataclass(frozen=True)
class Seen:
    """What one tick observed of a target."""

    views: list[warmpool.PodView]
    current_hash: str | None  # the newest ReplicaSet's pod-template-hash during a rollout, else None
    counts: warmpool.Counts
    readings: dict[str, signals.Reading]
    obs: Observation
    notes: dict[str, str]  # why each unknown input is unknown, by name


def parse_target(obj: Mapping[str, Any]) -> AutoscalerSpec:
    """The spec, if valid and aimed at an apps/v1 Deployment; else a Failure."""
    try:
        spec = parse_spec(obj.get("spec") or {})
    except SpecError as exc:
        raise Failure("InvalidSpec", f"spec not valid: {exc}", "spec",
                      [(status.READY, "False"), (status.SCALING_ACTIVE, "False")]) from None
    ref = spec.scale_target_ref
    if ref.kind != "Deployment" or ref.api_version != "apps/v1":
        raise Failure("UnsupportedTarget", f"scaleTargetRef {ref.api_version} {ref.kind} {ref.name}: only "
                      f"apps/v1 Deployments can be scaled", "spec",
                      [(status.READY, "False"), (status.ABLE_TO_SCALE, "False"), (status.SCALING_ACTIVE, "False")])
    return spec


def summarise(counts: warmpool.Counts, d: Decision, pl: warmpool.Plan, dep_replicas: int) -> str:
    """One line for the log, the Events and AbleToScale: what the tick changes."""
    summary = (f"serving {counts.current} -> {d.replicas} (ready {counts.ready}), warm pool {counts.warm} "
               f"-> {pl.warm}, Deployment replicas {dep_replicas} -> {pl.replicas}")
    if pl.promote:
        summary += f"; promote {', '.join(pl.promote)}"
    if pl.demote:
        summary += f"; demote {', '.join(pl.demote)}"
    return summary


_LIMITED = {MAX_REPLICAS: "TooManyReplicas", MIN_REPLICAS: "TooFewReplicas", RATE_LIMIT: "ScaleRateLimited"}


def conditions(d: Decision, failure: kube.KubeError | None, scaled: bool, summary: str, holding: bool,
               signals_cond: tuple[str, str, str], gen: int) -> list[dict[str, Any]]:
    """The five conditions of an acted-on tick. ``holding``: some input is unknown;
    ``signals_cond``: SignalsKnown's (status, reason, message)."""
    if failure is None:
        ready = status.cond(status.READY, "True", "Reconciled", "acting on the target", gen)
        able = status.cond(status.ABLE_TO_SCALE, "True", "SucceededRescale" if scaled else "ReadyForNewScale",
                           summary, gen)
    else:
        ready = status.cond(status.READY, "False", failure.reason, str(failure), gen)
        able = status.cond(status.ABLE_TO_SCALE, "False", failure.reason, str(failure), gen)
    limited = d.rule in _LIMITED
    return [
        ready,
        able,
        status.cond(status.SCALING_ACTIVE, "True", "HoldingOnUnknown" if holding else "ValidMetricFound", d.reason,
                    gen),
        status.cond(status.SIGNALS_KNOWN, *signals_cond, gen),
        status.cond(status.SCALING_LIMITED, "True" if limited else "False",
                    _LIMITED.get(d.rule, "DesiredWithinRange"),
                    d.reason if limited else "the desired count is within range", gen),
    ]


def status_body(gen: int, counts: warmpool.Counts, d: Decision, pl: warmpool.Plan, scaled: bool,
                now: float) -> dict[str, Any]:
    """The status subresource, less its conditions."""
    body: dict[str, Any] = {
        "observedGeneration": gen,
        "currentReplicas": counts.current,
        "desiredReplicas": d.replicas,
        "warmReplicas": counts.warm,
        "lastDecision": {"time": kube.now_iso(now), "replicas": d.replicas, "warm": pl.warm, "rule": d.rule,
                         "reason": d.reason[:4000]},
    }
    if scaled:
        body["lastScaleTime"] = kube.now_iso(now)
    return body


class Autoscaler:
    def __init__(self, api, cfg: Config, *, prometheus=None, clock: Callable[[], float] = time.time,
                 on_decision: Callable[[str, float, Observation, Decision], None] | None = None):
        """``on_decision(key, now, observation, decision)`` is called after every decision
        (tests, the simulator, debugging); it must not block."""
        self.api, self.cfg, self.clock = api, cfg, clock
        self.on_decision = on_decision
        self._primed: dict[str, tuple[float, tuple[str, str] | None]] = {}
        self.metrics = Metrics()
        self.prom = prometheus or signals.connect(cfg.prometheus_url, timeout=cfg.prometheus_timeout_s)
        self.events = kube.EventRecorder(api, cfg.identity, on_error=lambda k: self.metrics.errors.labels(k).inc())
        self.prewarmer = Prewarmer(api, stale_after_s=cfg.node_stale_after_s, clock=clock)
        self.namespaces = watched_namespaces(cfg.watch_namespace)
        self.ias_informer = self.ias = NamespacedStores(api, self.namespaces)
        self.states: dict[str, IasState] = {}
        self.pod_watches: dict[tuple[str, str], PodWatch] = {}
        self._lock = threading.Lock()
        lease = cfg.lease_duration_s
        self.elector = LeaderElector(api, cfg.namespace, cfg.lease_name + ("-dry-run" if cfg.dry_run else ""),
                                     cfg.identity, lease_duration_s=lease, renew_deadline_s=lease * 2 / 3,
                                     retry_period_s=lease * 2 / 15, on_change=self._leader_changed)
        self._lanes = Lanes(cfg.workers)
        self._stop = threading.Event()
        self._last_tick_mono: float | None = None
        self._server: ThreadingHTTPServer | None = None
        self._activation_server: ThreadingHTTPServer | None = None
        # a wake taken sets _kick: the loop reconciles the woken objects at once, not at the next tick
        self._kick = threading.Event()
        self._woken: set[str] = set()  # keys woken since the last wake pass (under _lock)
        self.activator = Activator(self._lookup, self._in_namespace, on_wake=self._on_wake,
                                   acting=lambda: self.cfg.dry_run or self.is_leader())
        self._elector_thread: threading.Thread | None = None
        self.ticks = 0

    # ------------------------------------------------------------ lifecycle

    def _leader_changed(self, leader: bool) -> None:
        self.metrics.leader.set(1 if leader else 0)
        with self._lock:
            self.states.clear()  # a new lineage: no stale history, no scale-down until a window has passed
        log.info("%s is %s", self.cfg.identity, "the leader: acting" if leader else "a follower: watching only")

    def is_leader(self) -> bool:
        return self.elector.is_leader()

    def start(self, stop: threading.Event) -> None:
        self._stop = stop
        self.ias_informer.start()
        self._elector_thread = threading.Thread(target=self.elector.run, args=(stop,), name="lease", daemon=True)
        self._elector_thread.start()
        if self.cfg.metrics_port:
            self.serve(self.cfg.metrics_port, self.cfg.metrics_addr)
        if self.cfg.activation_port:
            self.serve_activation(self.cfg.activation_port, self.cfg.activation_addr)
        # the loop sleeps on _kick; a stop must end that sleep too
        threading.Thread(target=self._kick_on_stop, args=(stop,), name="stop-kick", daemon=True).start()

    def run(self, stop: threading.Event) -> None:
        self.start(stop)
        log.info("autoscaler %s: every %gs, Prometheus %s, Lease %s/%s, namespaces %s%s", self.cfg.identity,
                 self.cfg.interval_s, self.cfg.prometheus_url, self.cfg.namespace, self.elector.name,
                 ", ".join(n or "all" for n in self.namespaces) or "NONE",
                 " (dry run: nothing is changed)" if self.cfg.dry_run else "")
        if not self.namespaces:
            log.warning("no namespace to watch (--watch-namespace is empty): list the namespaces to autoscale in "
                        "the chart's autoscaler.namespaces, which grants the autoscaler a RoleBinding in each")
        next_t = time.monotonic()
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # never let the loop die
                log.exception("tick failed")
                self.metrics.errors.labels("internal").inc()
            next_t += self.cfg.interval_s
            delay = next_t - time.monotonic()
            if delay < 0:
                log.warning("tick overran the %gs interval by %.1fs", self.cfg.interval_s, -delay)
                next_t, delay = time.monotonic(), 0.0
            self._sleep_until(next_t, stop)
        self.close()

    def _kick_on_stop(self, stop: threading.Event) -> None:
        stop.wait()
        self._kick.set()

    def _sleep_until(self, deadline: float, stop: threading.Event) -> None:
        """Until the next tick, reconciling woken objects as their wakes come."""
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or not self._kick.wait(left):
                return
            self._kick.clear()
            if stop.is_set():
                return
            try:
                self.wake_pass()
            except Exception:  # never let the loop die
                log.exception("wake pass failed")
                self.metrics.errors.labels("internal").inc()

    def close(self) -> None:
        """After ``stop`` is set: the elector releases the Lease, so a standby takes over at once."""
        if self._elector_thread is not None:
            self._elector_thread.join(timeout=5.0)
        self.ias_informer.stop()
        for w in list(self.pod_watches.values()):
            w.informer.stop()
        # reconciles still running are daemon threads: they do not hold the process up
        for srv in (self._server, self._activation_server):
            if srv is not None:
                srv.shutdown()
                srv.server_close()

    # ------------------------------------------------------------ HTTP

    def healthy(self) -> tuple[bool, str]:
        if self._last_tick_mono is None:
            return False, "no tick yet"
        age = time.monotonic() - self._last_tick_mono
        limit = 3 * self.cfg.interval_s + 2 * self.cfg.prometheus_timeout_s + 10
        if age > limit:
            return False, f"last tick {age:.0f}s ago (limit {limit:.0f}s)"
        if not self.ias_informer.synced.is_set():
            return False, "InferenceAutoscalers not listed yet (is the CRD installed? RBAC?)"
        role = "dry run" if self.cfg.dry_run else ("leader" if self.is_leader() else "follower")
        return True, f"ok ({role}, last tick {age:.1f}s ago)"

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        self._server = serve_ops(self.metrics.registry, port, addr, health=self.healthy,
                                 health_paths=("/healthz", "/readyz"), thread_name="metrics")
        return self._server.server_address[1]

    def serve_activation(self, port: int, addr: str = "0.0.0.0") -> int:
        """The wake endpoint (autoscaler.activation); returns the port."""
        self._activation_server = serve_activation(self.activator, port, addr, clock=self.clock,
                                                   on_answer=self._count_answer)
        return self._activation_server.server_address[1]

    def _count_answer(self, a: Answer) -> None:
        self.metrics.wakes.labels(str(a.code), "true" if a.woken else "false").inc()

    def _lookup(self, namespace: str, name: str) -> dict | None:
        if not self.ias_informer.synced.is_set():
            return None
        for st in self.ias.stores:
            obj = st.get(f"{namespace}/{name}")
            if obj is not None:
                return obj
        return None

    def _in_namespace(self, namespace: str) -> list[dict]:
        if not self.ias_informer.synced.is_set():
            return []
        return [o for o in self.ias.items() if (o.get("metadata") or {}).get("namespace") == namespace]

    def _on_wake(self, key: str) -> None:
        with self._lock:
            self._woken.add(key)
        self._kick.set()

    def wake_pass(self) -> None:
        """Reconcile now the objects at zero (last decided 0, or nothing decided yet) with a
        wake their last decision did not read; the others' wakes are read at their next
        tick. Only while acting; each object within its budget, as a tick does."""
        with self._lock:
            woken, self._woken = self._woken, set()
        if not woken or not (self.cfg.dry_run or self.is_leader()):
            return
        objs = []
        for o in self.ias.items():
            key = Store.key(o)
            if key not in woken:
                continue
            woke = self.activator.last_wake(key)
            with self._lock:
                st = self.states.get(key)
            if woke is None or (st is not None and ((st.last_target or 0) > 0 or st.seen_wake == woke)):
                continue
            objs.append(o)
        if not objs:
            return
        now = self.clock()
        by_key = {Store.key(o): o for o in objs}
        log.info("woken at the activation endpoint: reconciling %s now", ", ".join(sorted(by_key)))
        out = self._lanes.run([(k, partial(self.reconcile_safe, o, now)) for k, o in by_key.items()],
                              self.cfg.budget_s, self._stop)
        for k in out.overran:
            self._report_overrun(by_key[k])

    # ------------------------------------------------------------ the loop

    def tick(self) -> None:
        started = time.monotonic()
        acting = self.cfg.dry_run or self.is_leader()
        objs = self.ias.items() if self.ias_informer.synced.is_set() else []
        keys = {Store.key(o) for o in objs}
        if self.ias_informer.synced.is_set():
            self.activator.forget(keys)
        with self._lock:
            for k in [k for k in self.states if k not in keys]:
                self.metrics.forget(k, self.states.pop(k).signal_names)
            for k in [k for k in self._primed if k not in keys]:
                del self._primed[k]
        if acting and objs:
            now = self.clock()
            by_key = {Store.key(o): o for o in objs}
            out = self._lanes.run([(k, partial(self.reconcile_safe, o, now)) for k, o in by_key.items()],
                                  self.cfg.budget_s, self._stop)
            for k in out.overran:
                self._report_overrun(by_key[k])
            self.metrics.overrunning.set(len(out.overran) + len(out.busy))
        elif objs:
            for o in objs:
                self._prime(o)
        self._gc_pod_watches()
        self.ticks += 1
        self._last_tick_mono = time.monotonic()
        self.metrics.tick.observe(self._last_tick_mono - started)
        self.metrics.last_tick.set(self.clock())

    def _report_overrun(self, obj: dict) -> None:
        key = Store.key(obj)
        n = len((obj.get("spec") or {}).get("signals") or [])
        msg = (f"reconciling took more than {self.cfg.budget_s:g}s and is still running: the other "
               f"InferenceAutoscalers go on without it, and this one is skipped until it ends ({n} signal(s); "
               f"slow or many Prometheus queries? each may take up to {self.cfg.prometheus_timeout_s:g}s)")
        log.warning("%s: %s", key, msg)
        self.metrics.errors.labels("slow").inc()
        self.events.record(obj, "Warning", "ReconcileSlow", msg)

    def reconcile_safe(self, obj: dict, now: float) -> Decision | None:
        key = Store.key(obj)
        try:
            return self.reconcile(obj, now)
        except Exception as exc:  # a bug or an unforeseen answer: report, go on
            log.exception("%s: reconcile failed", key)
            self.metrics.errors.labels("internal").inc()
            self.events.record(obj, "Warning", "InternalError", f"{type(exc).__name__}: {exc}")
            return None

    def _state(self, obj: Mapping[str, Any]) -> IasState:
        meta = obj.get("metadata") or {}
        key, uid = Store.key(obj), meta.get("uid", "")
        with self._lock:
            st = self.states.get(key)
            if st is None or st.uid != uid:
                last = (obj.get("status") or {}).get("desiredReplicas")
                st = self.states[key] = IasState(uid=uid, last_target=last if isinstance(last, int) else None)
            return st

    def _watch(self, namespace: str, selector: str) -> PodWatch:
        k = (namespace, selector)
        with self._lock:
            w = self.pod_watches.get(k)
            if w is None:
                w = self.pod_watches[k] = PodWatch(self.api, namespace, selector)
            w.used = time.monotonic()
        return w

    def _prime(self, obj: dict, every_s: float = 30.0) -> None:
        """A follower keeps the pod informers of every target warm (so a new leader acts
        on its first tick), looking the targets up at most every ``every_s``."""
        key = Store.key(obj)
        now = time.monotonic()
        at, watch_key = self._primed.get(key, (float("-inf"), None))
        if now - at < every_s:
            if watch_key in self.pod_watches:
                self.pod_watches[watch_key].used = now
            return
        watch_key = None
        try:
            ref = parse_spec(obj.get("spec") or {}).scale_target_ref
            ns = (obj.get("metadata") or {}).get("namespace", "")
            dep = kube.get_deployment(self.api, ns, ref.name)
            if dep is not None:
                watch_key = (ns, kube.selector_string((dep.get("spec") or {}).get("selector")))
                self._watch(*watch_key)
        except Exception as exc:  # noqa: BLE001 - the leader reports problems; a follower only warms up
            log.debug("%s: not primed: %s", key, exc)
        self._primed[key] = (now, watch_key)

    def pods_for(self, namespace: str, selector: str) -> list[dict]:
        w = self._watch(namespace, selector)
        if w.informer.synced.wait(2.0):
            return w.store.items()
        return kube.list_pods(self.api, namespace, selector)  # informer still listing (or failing)

    def _gc_pod_watches(self, idle_s: float = 120.0) -> None:
        cutoff = time.monotonic() - idle_s
        with self._lock:
            for k in [k for k, w in self.pod_watches.items() if w.used < cutoff]:
                self.pod_watches.pop(k).informer.stop()

    # ------------------------------------------------------------ one object

    def reconcile(self, obj: dict, now: float) -> Decision | None:
        key = Store.key(obj)
        st = self._state(obj)
        with st.lock:
            try:
                return self._reconcile(obj, st, now)
            except Failure as f:
                self.metrics.errors.labels(f.kind).inc()
                log.warning("%s: %s: %s", key, f.reason, f.message)
                self.events.record(obj, "Warning", f.reason, f.message)
                if not self.cfg.dry_run:
                    conds = [status.cond(t, s, f.reason, f.message, _generation(obj)) for t, s in f.conditions]
                    self._write_status(obj, st, {"observedGeneration": _generation(obj)}, conds, now, force=False)
                return None

    def _reconcile(self, obj: dict, st: IasState, now: float) -> Decision | None:
        """Parse, fetch, observe, decide, log, act, report; a Failure in the first three
        is reported by ``reconcile`` and nothing is acted on."""
        t = self._fetch_target(obj, parse_target(obj))
        seen = self._observe(t, st)
        d = decide(st.state, seen.obs, t.spec, now)
        st.seen_wake = seen.obs.wake
        if self.on_decision is not None:
            self.on_decision(t.key, now, seen.obs, d)
        pl = warmpool.plan(seen.views, d.replicas, d.warm, seen.current_hash)
        summary = summarise(seen.counts, d, pl, t.replicas)
        changes = pl.changes or pl.replicas != t.replicas
        self._log_decision(t, st, seen.counts, d, pl, summary, changes)
        signals_cond = self._report_signals(t, st, seen)
        if self.cfg.dry_run:
            if changes or d.prewarm:
                self.events.record(obj, "Normal", "DryRun", f"would set {summary}"
                                   + (f"; prewarm {d.prewarm}" if d.prewarm else "") + f": {d.reason}")
            st.state, st.last_target = d.state, d.replicas
            return d
        scaled, failure = self._apply(t, st, d, pl, summary, changes, now)
        conds = conditions(d, failure, scaled, summary, bool(seen.notes), signals_cond, t.generation)
        self._write_status(obj, st, status_body(t.generation, seen.counts, d, pl, scaled, now), conds, now,
                           force=scaled or failure is not None)
        return d

    def _fetch_target(self, obj: dict, spec: AutoscalerSpec) -> Target:
        """The Deployment and its pod selector; a Failure when it cannot be read."""
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        ref = spec.scale_target_ref
        try:
            dep = kube.get_deployment(self.api, ns, ref.name)
        except kube.KubeError as exc:
            raise Failure(exc.reason, str(exc), "target",
                          [(status.READY, "False"), (status.ABLE_TO_SCALE, "False")]) from None
        if dep is None:
            raise Failure("TargetNotFound", f"Deployment {ns}/{ref.name} not found: nothing scaled (create it, "
                          f"or fix spec.scaleTargetRef.name)", "target",
                          [(status.READY, "False"), (status.ABLE_TO_SCALE, "False"), (status.SCALING_ACTIVE, "False")])
        try:
            selector = kube.selector_string((dep.get("spec") or {}).get("selector"))
        except ValueError as exc:
            raise Failure("InvalidSelector", f"Deployment {ns}/{ref.name}: {exc}", "target",
                          [(status.READY, "False"), (status.ABLE_TO_SCALE, "False")]) from None
        return Target(obj=obj, key=f"{ns}/{name}", namespace=ns, name=name, generation=_generation(obj), spec=spec,
                      deployment=dep, selector=selector)

    def _observe(self, t: Target, st: IasState) -> Seen:
        """The target's pods and what Prometheus says of them, as the policy's Observation."""
        ns = t.namespace
        try:
            pods = self.pods_for(ns, t.selector)
        except kube.KubeError as exc:
            raise Failure(exc.reason, str(exc), "target",
                          [(status.READY, "False"), (status.ABLE_TO_SCALE, "False")]) from None
        views = [warmpool.pod_view(p) for p in pods]
        live = [v for v in views if v.state != warmpool.GONE]
        current_hash = None
        if len({v.template_hash for v in live if v.template_hash}) > 1:  # a rollout is under way
            try:
                rs = kube.list_replicasets(self.api, ns, t.selector)
                current_hash = warmpool.template_hash_of_newest(rs, meta_uid(t.deployment))
            except kube.KubeError as exc:
                log.warning("%s: %s", t.key, exc)
        counts = warmpool.count(views, st.last_target)
        ready_pods = tuple(sorted(v.name for v in live if v.state == warmpool.READY))
        scope = signals.Scope(namespace=ns, pods=ready_pods, labels=self.cfg.labels)
        readings = signals.read_signals(self.prom, t.spec, PROMETHEUS_NOW, scope=scope,
                                        ready=counts.ready, timeout=self.cfg.prometheus_timeout_s)
        arrival = recent = None
        if t.spec.slo is not None:
            server = t.spec.signals[0].server if t.spec.signals else "vllm"
            every_pod = signals.Scope(namespace=ns, pods=tuple(sorted(v.name for v in live)), labels=self.cfg.labels)
            arrival = signals.read_arrival_rate(self.prom, server, every_pod, PROMETHEUS_NOW,
                                                timeout=self.cfg.prometheus_timeout_s)
            # the recent rule needs the 1 m rate too; a Prometheus that failed it is not asked twice
            if signals.recent_window_on(self.cfg.recent_window_s) and arrival.value is not None:
                recent = signals.read_arrival_rate(self.prom, server, every_pod, PROMETHEUS_NOW,
                                                   timeout=self.cfg.prometheus_timeout_s,
                                                   window_s=self.cfg.recent_window_s)
        activation = None
        if t.spec.activation is not None:
            activation = signals.read_activation(self.prom, t.spec.activation, ns, PROMETHEUS_NOW,
                                                 timeout=self.cfg.prometheus_timeout_s)
        self._export_signals(t.key, readings)
        st.signal_names = list(readings)
        # at zero the pods' series are gone: expected, not a fault worth a Warning every tick
        obs, notes = signals.observation(counts.ready, counts.pending, counts.warm, readings, arrival, activation,
                                         at_zero=counts.current == 0, recent=recent,
                                         recent_window_s=self.cfg.recent_window_s)
        obs = replace(obs, wake=self.activator.last_wake(t.key))
        return Seen(views=views, current_hash=current_hash, counts=counts, readings=readings, obs=obs, notes=notes)

    def _export_signals(self, key: str, readings: Mapping[str, signals.Reading]) -> None:
        for sname, rd in readings.items():
            if rd.value is None:
                try:
                    self.metrics.signal.remove(key, sname)
                except KeyError:
                    pass
            else:
                self.metrics.signal.labels(key, sname).set(rd.value)

    def _log_decision(self, t: Target, st: IasState, counts: warmpool.Counts, d: Decision, pl: warmpool.Plan,
                      summary: str, changes: bool) -> None:
        key = t.key
        self.metrics.decisions.labels(key, d.rule).inc()
        self.metrics.desired.labels(key).set(d.replicas)
        self.metrics.current.labels(key).set(counts.current)
        self.metrics.warm.labels(key).set(counts.warm)
        # A hold is logged when its rule changes, so a log shows why nothing happened.
        log.log(logging.INFO if changes or d.rule != st.last_rule else logging.DEBUG, "%s: %s: %s [%s]", key,
                summary, d.reason, d.rule)
        st.last_rule = d.rule
        for n in pl.notes:
            self.events.record(t.obj, "Warning" if "lack" in n else "Normal", "WarmPool", n)

    def _report_signals(self, t: Target, st: IasState, seen: Seen) -> tuple[str, str, str]:
        """SignalsKnown's (status, reason, message); a Warning Event while any input is
        unknown, a log line when that changes."""
        sig_status, sig_reason, sig_msg = status.signals_condition(seen.notes, list(seen.readings))
        if seen.notes:
            self.metrics.errors.labels("signals").inc()
            self.events.record(t.obj, "Warning", sig_reason, sig_msg)
            if sig_msg != st.last_signals_msg:
                log.warning("%s: %s: %s", t.key, sig_reason, sig_msg)
        elif st.last_signals_msg is not None:
            log.info("%s: every signal known again", t.key)
        st.last_signals_msg = sig_msg if seen.notes else None
        return sig_status, sig_reason, sig_msg

    def _apply(self, t: Target, st: IasState, d: Decision, pl: warmpool.Plan, summary: str, changes: bool,
               now: float) -> tuple[bool, kube.KubeError | None]:
        """Act on the plan; the new state is kept only if every step succeeded (so rate
        limits never count a change that did not happen). Returns (scaled, failure)."""
        scaled, failure = False, None
        try:
            scaled = self._act(t.namespace, t.name, t.spec.scale_target_ref.name, t.deployment, t.replicas, pl, d,
                               pods_key=(t.namespace, t.selector))
        except kube.KubeError as exc:
            failure = exc
        if failure is None:
            st.state, st.last_target = d.state, d.replicas
            if changes:
                self.events.record(t.obj, "Normal", "SuccessfulRescale", f"{summary}: {d.reason}")
        else:
            self.metrics.errors.labels("actuation").inc()
            self.events.record(t.obj, "Warning", failure.reason, str(failure))
        if d.prewarm and self.cfg.prewarm and failure is None:
            self._prewarm(t.obj, t.spec, t.deployment, d, now)
        return scaled, failure

    def _act(self, ns: str, ias_name: str, dep_name: str, dep: dict, dep_replicas: int, pl: warmpool.Plan,
             d: Decision, pods_key: tuple[str, str]) -> bool:
        """Promote, demote, scale; raises KubeError on the first failure. Returns whether
        the Deployment was scaled."""
        why = f"InferenceAutoscaler {ias_name}: {d.rule}"
        for pod in pl.promote:
            kube.set_serving(self.api, ns, pod, True, "Promoted", why)
            self.metrics.actions.labels("promote").inc()
        for pod in pl.demote:
            kube.set_serving(self.api, ns, pod, False, "Demoted", why)
            self.metrics.actions.labels("demote").inc()
        target = pl.replicas
        if target == dep_replicas:
            return False
        if target < dep_replicas and pl.shrink_after and not self._wait_not_ready(pods_key, pl.shrink_after):
            log.info("%s/%s: demoted pods still Ready after %gs; shrinking next tick", ns, dep_name,
                     self.cfg.demote_wait_s)
            return False
        before = kube.scale(self.api, ns, dep_name, target, deployment=dep)
        if before is not None:
            self.metrics.actions.labels("scale").inc()
            return True
        return False

    def _wait_not_ready(self, pods_key: tuple[str, str], names: tuple[str, ...]) -> bool:
        w = self.pod_watches.get(pods_key)
        deadline = time.monotonic() + self.cfg.demote_wait_s
        want = set(names)
        while True:
            if w is not None:
                still = [p for p in w.store.items() if (p.get("metadata") or {}).get("name") in want
                         and warmpool.pod_view(p).ready]
            else:
                still = [p for p in kube.list_pods(self.api, *pods_key)
                         if (p.get("metadata") or {}).get("name") in want and warmpool.pod_view(p).ready]
            if not still:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def _prewarm(self, obj: dict, spec: AutoscalerSpec, dep: dict, d: Decision, now: float) -> None:
        try:
            res = self.prewarmer.prewarm(dep, spec.model, d.prewarm, spec.cold_start_s, now)
        except Exception as exc:  # noqa: BLE001 - KubeError, RequestError, API errors: report
            self.metrics.errors.labels("prewarm").inc()
            self.events.record(obj, "Warning", "FailedPrewarm", f"{type(exc).__name__}: {exc}")
            return
        if res is None:
            return
        self.metrics.actions.labels("prefetch").inc(len(res.asked))
        if res.asked:
            self.events.record(obj, "Normal", "Prewarm", f"asked node agents on {', '.join(res.asked)} to prefetch "
                               f"{res.model}: {res.choice.reason}")
        for e in res.errors:
            self.metrics.errors.labels("prewarm").inc()
            self.events.record(obj, "Warning", "FailedPrewarm", e)

    def _write_status(self, obj: dict, st: IasState, body: dict, conds: list[dict], now: float, *,
                      force: bool) -> None:
        meta = obj.get("metadata") or {}
        old = (obj.get("status") or {}).get("conditions") if st.last_status is None else st.last_status.get(
            "conditions")
        merged = status.merge_conditions(old, conds, kube.now_iso(now))
        new = dict(body, conditions=merged)
        prev = st.last_status
        if prev is not None and not force:
            same_core = _strip(prev) == _strip(new)
            same_but_reason = _strip(prev, reason=False) == _strip(new, reason=False)
            age = now - st.last_status_at
            if same_core and age < STATUS_REFRESH_S:
                return
            if same_but_reason and age < STATUS_REASON_EVERY_S:
                return
        try:
            kube.patch_status(self.api, meta.get("namespace", ""), meta.get("name", ""), new)
        except kube.KubeError as exc:
            self.metrics.errors.labels("status").inc()
            log.warning("%s", exc)
            return
        st.last_status, st.last_status_at = new, now


def _generation(obj: Mapping[str, Any]) -> int:
    g = (obj.get("metadata") or {}).get("generation")
    return g if isinstance(g, int) else 0


def meta_uid(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("uid", "")


def _strip(s: Mapping[str, Any], reason: bool = True) -> Any:
    """A status without its times (and optionally without free text), for comparison."""
    d = {k: v for k, v in s.items() if k not in ("lastDecision", "lastScaleTime", "conditions")}
    ld = dict(s.get("lastDecision") or {})
    ld.pop("time", None)
    if not reason:
        ld.pop("reason", None)
    d["lastDecision"] = ld
    d["conditions"] = sorted((c.get("type"), c.get("status"), c.get("reason")) + ((c.get("message"),) if reason else ())
                             for c in s.get("conditions") or [])
    return d
