"""The replica policy: ``decide(state, observation, spec, now) -> Decision``.

Pure: plain data in, a decision with its reason and the next state out. No I/O, no
clock (``now`` is seconds on any monotonic-enough scale the caller picks, e.g. Unix
time), no randomness. The live daemon, the trace simulator and the tests drive the
same function.

Replica counts. ``current = ready + pending``: the serving replicas already asked for.
Pending replicas (scheduled or loading, or warm ones being promoted) count as asked
for, so a slow start does not trigger a second scale-up: per-replica signals are
measured on ready replicas only and, like HPA, pending replicas are taken to carry no
load (desired = ceil(ready * value / target)), which is then compared with
``current``, not with ``ready``. Warm replicas are extra pods held out of traffic;
``maxReplicas`` bounds serving replicas only.

Rules, each giving a recommendation with its arithmetic:
1. one HPA-style ratio per signal, with tolerance (hold when |ratio - 1| <= tolerance);
   a ready replica with no sample yet (Ready since the last scrape) counts as HPA counts
   it: 0 on a scale-up, the target on a scale-down, and a hold when that turns the
   direction (_missing_as_hpa);
   with an SLO, a queueDepth target is at most queueWaitSeconds x mu, the queue a
   replica empties within the wait bound (queue_target; a larger one lets a burst
   wait past the SLO before the signal asks for a replica);
2. queueing (when ``spec.slo`` is set): the fewest replicas c such that utilisation
   lambda/(c mu) <= slo.targetUtilization and P(wait > bound) <= 1 - slo.percentile,
   with arrival rate lambda and service rate mu per replica. A replica runs up to
   B = ``concurrencyPerReplica`` requests at once without slowing each other (mu times
   one request's time alone, at most vLLM's --max-num-seqs) and a request
   waits only when every slot of every replica is busy, so the fleet is M/M/(cB) with
   rate mu/B per slot: P(wait > t) = C(cB, B lambda/mu) * exp(-(c mu - lambda) t)
   (Erlang C; B = 1 is M/M/c, one server per replica; autoscaler.queueing, bounded
   cost for any input). Scales down only past the tolerance;
3. forecast (with queueing, ``forecast.enabled`` and coldStartSeconds > 0, when it asks:
   forecast_asks): Holt's linear trend over the recent arrival rates, extrapolated over
   the cold-start horizon, fed to the queueing rule; it only ever asks for more. With
   ``forecast.scaleUp`` unset it asks only while no recent rate is read: read through
   Prometheus as the daemon reads the rate, its asks beside the recent rate cost
   GPU-hours on every trace of the bench, while with no recent rate (30 s scrapes) they
   are the only lead a burst has. The forecast always sizes cache pre-warming two cold
   starts ahead.
4. recent rate (with queueing, when ``Observation.arrival_rate_recent`` is known): the
   queueing rule on the arrival rate over the last scrapes, only when it is above the
   1-minute rate by more than their difference's Poisson noise at the SLO's percentile;
   a burst after a quiet minute shows there one scrape after it starts. It only ever
   asks for more, and needs coldStartSeconds > 0 (recent_rule).
The recommendation is the largest. Then, in order:
- unknown data: any configured input that is unknown (a signal that is None, or the
  arrival/service rate when the queueing rule is on) forbids a scale-down; a scale-up
  that the known inputs ask for still happens (missing data is not zero, and holding
  a burst back because another metric is missing would cost the SLO);
- stabilisation (HPA): the result lies between the lowest recommendation in the
  scale-up window and the highest in the scale-down window. A state with less history
  than the scale-down window (a fresh daemon, a new leader) does not scale down. The
  window remembers the recommendation for the load measured at each decision; a
  forecast's (or the recent rate's) is remembered only for coldStartSeconds, the
  horizon it looks across: a rise it foresaw has either arrived by then (and the
  measured load holds the fleet) or did not come. (Holding forecasts for the full
  300 s held every overshoot of the trend on bursty traffic: on azure-code 2.3 of
  ours' 10.6 GPU-hours.)
- queued hold: when a cold start is longer than the wait bound, a decision made while a
  queueDepth signal reads requests waiting, and has at every decision since one more than
  the wait bound earlier (a missed scrape does not break the run), keeps its largest
  recommendation (the forecast's and the recent rate's included) as a floor for
  scale-downs for max(600 s, 8 cold starts), the span of rates the policy keeps
  (queued_hold_s). A queue means every slot of every ready replica was busy,
  whatever the server's batch; a replica given back cannot return within the wait
  bound, so a fleet that queued keeps that size for as long as the policy remembers
  rates, not only the scale-down window (measured in docs/benchmarks.md);
- panic (Knative KPA): when the demand averaged over the panic window reaches
  ``threshold`` x ready replicas, panic until ``stableWindow`` after the last trigger:
  no scale-down at all, and scale-ups skip the rate limit;
- rate limits (HPA): at most max(periodStart + pods, ceil(periodStart * (1 + pct)))
  up, and down to no less than min(periodStart - pods, floor(periodStart * (1 - pct))),
  where periodStart is ``current`` less the changes decided within the period;
- clamp to [minReplicas, maxReplicas].

Warm pool: at most min(warmReplicas, maxReplicas - desired serving) (a warm pod that
can never be promoted is wasted GPU time). A warm pod holds a GPU as a serving one
does and only pays when load rises faster than a cold start can follow, so with the
queueing rule's inputs known (and a history as long as the span it reads) the pool
is sized by the largest rise of the arrival rate within one cold start over the kept
history: the replicas that rate plus that rise needs, less the serving replicas
decided; a pod already loaded is kept while it exceeds the measured load's need
(warm_size). Otherwise the pool is warmReplicas, as configured. A scale-up is served first by
promoting warm pods (``promote``), the rest start cold (``cold_start``); a scale-down
first demotes serving pods into the pool while it is below its size (``demote``) and
deletes the rest; the actuator refills the pool to ``warm``.

``decide`` runs all this as named phases, each a pure function with its own tests:
queue_target, signal_ratios, queueing_and_forecast, pick_largest (with the unknown-data hold),
split_recommendations, held_recommendations, stabilise, queued_kept, queued_floor, panic_mode, rate_limit,
panic_floor, clamp, scale_to_zero, warm_size, warm_pool, next_state.

Scale to zero (minReplicas 0, which needs ``spec.activation``): at zero the pods'
metrics are gone, so the rules hold 0 on unknown data; the gateway's request counter
(``Observation.activation``) or a wake at the daemon's activation endpoint within the
last minute (``Observation.wake``, a time: no scrape to wait for) brings it to 1. Serving, it goes to zero only after
``scaleToZeroAfterSeconds`` (default max(300 s, 5 cold starts)) with no request counted,
arriving or queued, and no unknown input; a model at zero holds no warm pod.

State the caller keeps: the ``state`` of the returned decision, passed to the next
call. If the actuator could not apply a decision, passing the old state back keeps
the rate-limit history honest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Final, Mapping, TypeGuard

import numpy as np

from .queueing import erlang_c, replicas_for_slo
from .spec import AutoscalerSpec, Behavior, PanicSpec, SignalSpec

# Rule names reported in Decision.rule (signal rules are "signal:<name>").
QUEUEING: Final = "queueing"
FORECAST: Final = "forecast"
RECENT: Final = "recentRate"
HOLD: Final = "hold"
UNKNOWN_HOLD: Final = "unknownHold"
STABILIZATION: Final = "stabilization"
RATE_LIMIT: Final = "rateLimit"
PANIC: Final = "panic"
MIN_REPLICAS: Final = "minReplicas"
MAX_REPLICAS: Final = "maxReplicas"
ACTIVATION: Final = "activation"
IDLE_HOLD: Final = "idleHold"
SCALE_TO_ZERO: Final = "scaleToZero"
QUEUED_HOLD: Final = "queuedHold"

_ANTICIPATED: Final = (FORECAST, RECENT)  # held one cold start
_EPS: Final = 1e-9
_HOLT_SAMPLES: Final = 32  # the latest samples Holt's forecast reads
_MAX_ARRIVALS: Final = 256  # samples kept (the warm pool reads the rises of the last 8 cold starts, >= 600 s)
_MIN_ARRIVALS: Final = 3  # samples needed before the trend is trusted

# A wake counts as a request for as long as the gateway's counter would count one (its 1 m window).
WAKE_WINDOW_S: Final = 60.0
# the arrival rate's window (the daemon reads a 1 m rate): the count whose Poisson noise warm_size allows for
RATE_WINDOW_S: Final = 60.0

_UNITS: Final = {"queueDepth": "/replica", "gpuUtilization": "%", "kvCache": "", "promql": ""}


def _ceil(x: float) -> int:
    """ceil that forgives float noise: 8/0.8 may be 10.000000000000002."""
    return int(math.ceil(x - _EPS))


# ---------------------------------------------------------------- data types

@dataclass(frozen=True)
class Observation:
    """What the daemon (or simulator) saw at ``now``. Values per signal name: the
    per-ready-replica value in the signal's units, or None when unknown; a spec
    signal absent from ``signals`` is unknown too."""

    ready: int  # serving replicas that are Ready (in traffic)
    pending: int = 0  # serving replicas asked for, not Ready yet
    warm: int = 0  # warm-pool pods (held out of traffic by the serving gate)
    signals: Mapping[str, float | None] = field(default_factory=dict)
    arrival_rate: float | None = None  # requests/s arriving at the model, None = unknown
    service_rate: float | None = None  # requests/s one replica sustains, None = not measured
    notes: Mapping[str, str] = field(default_factory=dict)  # why a signal is unknown, by name
    # requests the gateway counted for the model over the last minute (spec.activation), None = unknown
    activation: float | None = None
    # when the activation endpoint last took a wake for the model (a request found it without a
    # Ready pod), on the caller's clock as ``now``; None = no wake
    wake: float | None = None
    # requests/s over the last two scrapes (the daemon's --recent-window), None = unknown; scale-up only
    arrival_rate_recent: float | None = None
    # the seconds that rate counts arrivals over (the --recent-window), for its Poisson noise;
    # None = unknown: its rises count with no margin
    arrival_rate_recent_window_s: float | None = None
    # by signal name: how many ready replicas a per-replica value averages over, when fewer than
    # ``ready`` reported (a pod Ready since the last scrape); absent = all of them
    reporting: Mapping[str, int] = field(default_factory=dict)

    @property
    def current(self) -> int:
        return self.ready + self.pending


@dataclass(frozen=True)
class ScaleState:
    """History the policy needs; immutable, replaced by each decision."""

    started_at: float | None = None  # first decision of this state's lineage
    recommendations: tuple[tuple[float, int], ...] = ()  # (t, measured-load recommendation before stabilisation)
    anticipated: tuple[tuple[float, int], ...] = ()  # (t, forecast or recent-rate recommendation), held one cold start
    demand: tuple[tuple[float, int], ...] = ()  # (t, largest rule recommendation), for panic
    events: tuple[tuple[float, int], ...] = ()  # (t, replicas added (+) or removed (-))
    arrivals: tuple[tuple[float, float], ...] = ()  # (t, arrival rate), for the forecast
    panic_until: float | None = None  # panicking while now < panic_until
    panic_peak: int = 0  # highest replicas decided during this panic
    last_active: float | None = None  # last decision that saw a request or a queue (scale to zero)
    queued: tuple[tuple[float, int], ...] = ()  # (t, largest recommendation while requests queued), queued_hold_s
    queue_since: float | None = None  # first of the decisions in a row that saw requests waiting
    # the largest (t, recommendation) of that run not recorded yet: its decisions within the wait bound
    queue_first: tuple[float, int] | None = None


@dataclass(frozen=True)
class Recommendation:
    rule: str
    replicas: int  # what the rule asks for (current, when it holds)
    reason: str
    demand: int | None = None  # the computed need before holds, for panic; None = replicas

    @property
    def need(self) -> int:
        return self.replicas if self.demand is None else self.demand


@dataclass(frozen=True)
class Decision:
    replicas: int  # desired serving replicas
    warm: int  # desired warm-pool size
    promote: int  # warm pods to promote now (scale-up served from the pool first)
    cold_start: int  # serving pods to create cold
    demote: int  # serving pods to park in the pool instead of deleting
    prewarm: int  # replicas the forecast expects beyond `replicas` within 2x cold start (cache pre-warming)
    rule: str  # the rule that set `replicas`
    reason: str  # human readable, with the arithmetic
    state: ScaleState
    current: int = 0  # ready + pending when decided
    panic: bool = False
    unknown: tuple[str, ...] = ()  # inputs that were unknown
    recommendations: tuple[Recommendation, ...] = ()
    forecast_arrival_rate: float | None = None  # lambda at now + coldStartSeconds

    @property
    def scale(self) -> int:
        """Change in serving replicas: > 0 up, < 0 down."""
        return self.replicas - self.current


# ---------------------------------------------------------------- forecast

def holt_forecast(times: np.ndarray, values: np.ndarray, alpha: float, beta: float,
                  at: float) -> tuple[float, float, float]:
    """Holt's linear trend on irregularly spaced samples: level and trend (per second)
    after the last sample, and the extrapolation to time ``at``."""
    level = float(values[0])
    trend = 0.0
    if len(values) >= 2 and times[1] > times[0]:
        trend = float((values[1] - values[0]) / (times[1] - times[0]))
    dts = np.diff(times)
    for x, dt in zip(values[1:], dts):
        if dt <= 0:
            continue
        prev = level
        level = alpha * float(x) + (1 - alpha) * (level + trend * float(dt))
        trend = beta * (level - prev) / float(dt) + (1 - beta) * trend
    return level, trend, level + trend * (at - float(times[-1]))


# ---------------------------------------------------------------- phase results

@dataclass(frozen=True)
class Rules:
    """What the rules recommend, and the inputs they could not use, in the order the
    reason lists them (signals first, then queueing, forecast and the recent rate)."""

    recs: tuple[Recommendation, ...] = ()
    unknown: tuple[str, ...] = ()  # names of the configured inputs that are unknown
    notes: tuple[str, ...] = ()  # why each of them is unknown
    skipped: tuple[str, ...] = ()  # known inputs that gave no recommendation

    def __add__(self, other: Rules) -> Rules:
        return Rules(self.recs + other.recs, self.unknown + other.unknown, self.notes + other.notes,
                     self.skipped + other.skipped)


@dataclass(frozen=True)
class Forecast:
    """Holt's forecast of the arrival rate; all None when it does not run."""

    rate: float | None = None  # lambda at now + coldStartSeconds
    prewarm_target: int | None = None  # replicas the rate at now + 2 x coldStartSeconds needs
    rec: Recommendation | None = None  # only when the forecast asks for more than now


@dataclass(frozen=True)
class Verdict:
    """The replicas decided so far, the rule that set them, and the reason so far. Each
    phase after the rules takes one and returns one, adding to the reason."""

    replicas: int
    rule: str
    reason: str


@dataclass(frozen=True)
class Panic:
    active: bool
    until: float | None  # set while active
    peak: int  # highest replicas decided earlier in this panic (0 when it starts now)


@dataclass(frozen=True)
class WarmPool:
    warm: int
    promote: int
    cold_start: int
    demote: int
    prewarm: int
    note: str  # appended to the reason


# ---------------------------------------------------------------- phase 1: one ratio per signal

def _valid(v: float | None) -> TypeGuard[float]:
    return v is not None and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _missing_as_hpa(value: float, target: float, ready: int, reporting: int | None) -> tuple[float, bool, str]:
    """The per-ready-replica value when only ``reporting`` of ``ready`` replicas have a
    sample (``value`` is their average), as HPA's calcPlainMetricReplicas weighs pods
    without one: as 0 on a scale-up (a pod Ready since the last scrape has taken no load
    the sample saw), at the target on a scale-down (its load is unknown, so it keeps its
    replica). Returns the value, whether HPA holds (the filled-in average crosses the
    target: the direction the samples gave is not trusted), and the arithmetic. Scaling
    the average by every ready replica instead counts the samples' load again for each
    new replica: ready 3 -> 5 -> 7 with one scrape's 16 waiting asked for 12, 20, 28."""
    if reporting is None or not 0 < reporting < ready:
        return value, False, ""
    missing = ready - reporting
    fill = 0.0 if value > target else target if value < target else value
    filled = (value * reporting + fill * missing) / ready
    flips = (value - target) * (filled - target) < 0
    text = (f" (the {reporting} of {ready} ready that report: {value:g}; the other {missing} at {fill:g}, "
            f"as HPA counts pods without a sample)")
    return filled, flips, text


def _ratio_rule(sig: SignalSpec, value: float, obs: Observation, tol: float) -> Recommendation | None:
    ready, cur = obs.ready, obs.current
    unit = _UNITS.get(sig.type, "")
    if ready <= 0:
        return None
    value, flips, filled = _missing_as_hpa(value, sig.target, ready, obs.reporting.get(sig.name))
    head = f"{sig.name} {value:g}{unit}{filled} vs target {sig.target:g}"
    if flips:
        return Recommendation(f"signal:{sig.name}", cur, f"{head}: the direction turns -> hold {cur}",
                              _ceil(ready * value / sig.target))
    usage = value / sig.target  # on ready replicas
    raw = _ceil(ready * value / sig.target)
    arith = f"ceil({ready}*{value:g}/{sig.target:g})={raw}"
    within = abs(usage - 1) <= tol
    # one test for both branches: at usage 1.1 in floats, `usage > 1 + tol` and the tolerance
    # test were both false, and a scale-up past pending replicas fell through to a scale-down
    if not within and usage > 1 and obs.pending > 0:
        # HPA: pending replicas carry no load yet; recompute the ratio over all asked for.
        usage_all = ready * value / (cur * sig.target)
        if usage_all <= 1 + tol:
            return Recommendation(f"signal:{sig.name}", cur,
                                  f"{head} over {ready} ready -> {arith}, covered by {cur} requested "
                                  f"({ready} ready + {obs.pending} pending)", raw)
    elif within:
        return Recommendation(f"signal:{sig.name}", cur,
                              f"{head}: ratio {usage:.2f} within tolerance {tol:g} -> hold {cur}", raw)
    return Recommendation(f"signal:{sig.name}", raw, f"{head} over {ready} ready -> {arith}")


def queue_target(sig: SignalSpec, spec: AutoscalerSpec, obs: Observation) -> tuple[SignalSpec, str]:
    """A queueDepth target no larger than the queue the SLO allows: a replica completes
    mu requests/s, so the q-th request waiting at it starts about q/mu seconds later,
    and more than queueWaitSeconds x mu waiting per replica already means waits past the
    bound, whatever the workload. Without an SLO or a service rate the target stands."""
    slo = spec.slo
    mu = _rate(obs.service_rate, spec.service_rate_per_replica)
    if sig.type != "queueDepth" or slo is None or slo.wait_bound_s is None or mu is None:
        return sig, ""
    cap = slo.wait_bound_s * mu
    if cap >= sig.target:
        return sig, ""
    return replace(sig, target=cap), f" (target {sig.target:g} capped at {slo.wait_bound_s:g}s x mu {mu:g})"


def signal_ratios(spec: AutoscalerSpec, obs: Observation) -> Rules:
    """One HPA ratio per signal; an invalid or missing value is unknown, with why."""
    recs: list[Recommendation] = []
    unknown: list[str] = []
    notes: list[str] = []
    skipped: list[str] = []
    for sig in spec.signals:
        v = obs.signals.get(sig.name)
        if not _valid(v):
            why = obs.notes.get(sig.name) or ("no value" if v is None else f"invalid value {v!r}")
            unknown.append(sig.name)
            notes.append(f"{sig.name} unknown ({why})")
            continue
        sig, capped = queue_target(sig, spec, obs)
        rec = _ratio_rule(sig, float(v), obs, spec.behavior.tolerance)
        if rec is not None and capped:
            rec = replace(rec, reason=rec.reason + capped)
        if rec is None:
            skipped.append(f"{sig.name} {v:g}: no ready replicas to scale from")
        else:
            recs.append(rec)
    return Rules(tuple(recs), tuple(unknown), tuple(notes), tuple(skipped))


# ---------------------------------------------------------------- phase 2: queueing and forecast

def _rate(obs_value: float | None, fallback: float | None) -> float | None:
    if _valid(obs_value) and obs_value > 0:
        return obs_value
    return fallback


def queue_inputs(obs: Observation, spec: AutoscalerSpec) -> tuple[float | None, float | None, Rules]:
    """The arrival rate lambda and the per-replica service rate mu (measured, else the
    spec's), each None when unknown, with the unknowns named."""
    lam = obs.arrival_rate if _valid(obs.arrival_rate) else None
    mu = _rate(obs.service_rate, spec.service_rate_per_replica)
    missing = Rules()
    if lam is None:
        missing += Rules(unknown=("arrivalRate",), notes=("arrivalRate unknown",))
    if mu is None:
        missing += Rules(unknown=("serviceRate",),
                         notes=("serviceRate unknown (not measured, no spec.serviceRatePerReplica)",))
    return lam, mu, missing


def _slo_replicas(lam: float, mu: float, spec: AutoscalerSpec) -> tuple[int, str]:
    slo = spec.slo
    assert slo is not None  # the queueing phases run only with an slo
    return replicas_for_slo(lam, mu, slo.target_utilization, slo.wait_bound_s, slo.percentile, spec.max_replicas,
                            spec.concurrency_per_replica)


def queueing_rule(lam: float, mu: float, spec: AutoscalerSpec, cur: int) -> Recommendation:
    """The fewest replicas meeting the SLO at the 1-minute rate lambda. It scales up only
    when lambda less its counting noise, z sqrt(lambda / W) (noise_z, W = RATE_WINDOW_S),
    still needs more than the ``cur`` replicas, and then asks for lambda's whole need, as
    recent_rule's gate does: a steady rate near a replica's edge crossed it on its upper
    tail, and the scale-down window held the replica 300 s each time (docs/benchmarks.md,
    "Shapes it never saw, and the 1-minute rate's noise"). Prometheus counts about 45 s of
    a 1 m window at 15 s scrapes and extrapolates, a little noisier than W assumes: the
    gate errs toward scaling up. It guards the headroom only: at a rate the ``cur``
    replicas cannot serve even saturated (lambda >= cur mu), and from 0 replicas, there is
    no gate (with a small fleet the noise can exceed the headroom). It scales down only
    past the tolerance."""
    tol = spec.behavior.tolerance
    c, text = _slo_replicas(lam, mu, spec)
    if 0 < cur < c and lam < cur * mu:
        low = rate_less_noise(lam, spec)
        if _slo_replicas(low, mu, spec)[0] <= cur:
            return Recommendation(QUEUEING, cur, f"queueing: {lam:g} req/s, mu {mu:g}: {text}; {lam:g} less its "
                                  f"noise is {low:.3g} req/s, which {cur} carry -> hold {cur}", c)
    if cur > 0 and c < cur and (cur - c) / cur <= tol:
        return Recommendation(QUEUEING, cur, f"queueing: {lam:g} req/s, mu {mu:g}: {text}; "
                              f"{c} within tolerance {tol:g} of {cur} -> hold {cur}", c)
    return Recommendation(QUEUEING, c, f"queueing: {lam:g} req/s, mu {mu:g}: {text}")


def forecast_asks(spec: AutoscalerSpec, obs: Observation) -> tuple[bool, str]:
    """Whether the forecast recommends replicas, and why: ``forecast.scaleUp`` when set;
    unset, only while no recent arrival rate is read (the daemon's --recent-window 0, a
    window too short for the scrapes, a failed query), since nothing else then sees a
    burst before the 1-minute rate does. On the bench its asks beside the recent rate cost
    GPU-hours everywhere and met more requests in one run only (batch 1, 32 replicas: +0.4
    points); without one they met 2 points more of azure-code (docs/benchmarks.md, "The
    forecast asks when no recent rate is read")."""
    if spec.forecast.scale_up is not None:
        return spec.forecast.scale_up, ""
    if _valid(obs.arrival_rate_recent):
        return False, ""
    return True, " (forecast.scaleUp unset: no recent rate read)"


def forecast(arrivals: tuple[tuple[float, float], ...], lam: float, mu: float, spec: AutoscalerSpec,
             now: float, asks: tuple[bool, str]) -> Forecast:
    """Holt over the recent arrival rates (``arrivals`` ends with lambda at ``now``),
    extrapolated one cold start ahead (when it ``asks``, forecast_asks: a recommendation,
    only when above lambda) and two (the replicas worth pre-warming caches for)."""
    fc = spec.forecast
    if not (fc.enabled and spec.cold_start_s > 0 and len(arrivals) >= _MIN_ARRIVALS):
        return Forecast()
    t = np.array([a[0] for a in arrivals], dtype=float)
    x = np.array([a[1] for a in arrivals], dtype=float)
    h = spec.cold_start_s
    level, trend, f1 = holt_forecast(t, x, fc.alpha, fc.beta, now + h)
    rate = max(0.0, f1)
    f2 = max(0.0, level + trend * (now + 2 * h - float(t[-1])))
    prewarm_target = _slo_replicas(f2, mu, spec)[0]
    rec = None
    if asks[0] and rate > lam + _EPS:
        cf, ftext = _slo_replicas(rate, mu, spec)
        rec = Recommendation(FORECAST, cf, f"forecast{asks[1]}: Holt level {level:.3g} req/s, trend {trend:+.3g}/s "
                             f"-> {rate:.3g} req/s in {h:g}s: {ftext}")
    return Forecast(rate, prewarm_target, rec)


def noise_z(spec: AutoscalerSpec) -> float:
    """The normal quantile of the SLO's percentile (2.33 at 0.99): how many standard
    deviations of counting noise a rise must clear before it counts. 0 at or below a
    median (a negative margin would invent rises) and without an slo."""
    return 0.0 if spec.slo is None else max(0.0, NormalDist().inv_cdf(spec.slo.percentile))


def rate_less_noise(lam: float, spec: AutoscalerSpec) -> float:
    """The 1-minute rate lambda less its counting noise, z sqrt(lambda / W) (noise_z,
    W = RATE_WINDOW_S), at least 0: the rate at which a replica or a warm pod must still be
    needed before one is started."""
    return max(0.0, lam - noise_z(spec) * math.sqrt(max(lam, 0.0) / RATE_WINDOW_S))


def recent_rule(recent: float | None, lam: float, mu: float, spec: AutoscalerSpec,
                window_s: float | None = None) -> Recommendation | None:
    """The queueing rule on the arrival rate over the last scrapes (``window_s``
    seconds), only when it is above the 1-minute rate lambda by more than its counting
    noise; None otherwise. A burst after a quiet minute shows in the recent rate one
    scrape after it starts, where the 1-minute rate rises only as the burst fills its
    window. But a short window's count is noisy, and on a steady load its upper tail
    asked for a replica that one cold start later was given back (26 cold starts in 2
    hours of 3 req/s; docs/benchmarks.md, "The recent rate's noise").

    The margin is z sqrt(lambda (2 / w - 1 / W)), z the SLO percentile's quantile
    (noise_z): the Poisson spread of the difference between the two rates were the rate
    still lambda. Prometheus' rate() over a window of two scrapes (the daemon's default
    and advice) counts the arrivals between them, w / 2 seconds, and extrapolates to w;
    the 1-minute rate's W = 60 s contains them. A window of more scrapes counts more of
    itself, so its margin is wider than its noise: slower to react, never quicker. The
    reading also adds the growth of the requests in flight (autoscaler.signals), which
    Poisson does not model. A window of W or more gets no margin (the daemon reads none
    that long), nor does an unknown window.

    A rise past the margin asks for the whole recent rate: from an idle minute (lambda
    near 0) the margin is near 0 and the rule reacts as soon as it did without one. It
    asks for more only, and stabilisation holds it one cold start, as a forecast: by
    then the burst is in the 1-minute rate, or it was noise. Like the forecast, it needs
    coldStartSeconds > 0: with no cold start to look across, an ask held for 0 s would
    start and stop pods on every blip. A queue seen for longer than the wait bound keeps
    it as the queued hold keeps a forecast (queued_peak)."""
    if not _valid(recent) or spec.cold_start_s <= 0:
        return None
    margin = 0.0
    if window_s is not None and 0 < window_s < RATE_WINDOW_S:
        margin = noise_z(spec) * math.sqrt(max(lam, 0.0) * (2.0 / window_s - 1.0 / RATE_WINDOW_S))
    if recent <= lam + margin + _EPS:
        return None
    c, text = _slo_replicas(recent, mu, spec)
    noise = f" (+{margin:.3g} noise)" if margin > 0 else ""
    return Recommendation(RECENT, c, f"recent arrivals {recent:.3g} req/s, above the 1 m rate {lam:.3g}{noise}: {text}")


def queueing_and_forecast(arrivals: tuple[tuple[float, float], ...], obs: Observation, spec: AutoscalerSpec,
                          now: float) -> tuple[Rules, tuple[tuple[float, float], ...], Forecast]:
    """The queueing, forecast and recent-rate recommendations (none without
    ``spec.slo``), and the arrival history with lambda at ``now`` added when known."""
    if spec.slo is None:
        return Rules(), arrivals, Forecast()
    lam, mu, missing = queue_inputs(obs, spec)
    if lam is not None:
        arrivals = (arrivals + ((now, float(lam)),))[-_MAX_ARRIVALS:]
    if lam is None or mu is None:
        return missing, arrivals, Forecast()
    fc = forecast(arrivals[-_HOLT_SAMPLES:], lam, mu, spec, now, forecast_asks(spec, obs))
    recent = recent_rule(obs.arrival_rate_recent, lam, mu, spec, obs.arrival_rate_recent_window_s)
    recs = ((queueing_rule(lam, mu, spec, obs.current),) + ((fc.rec,) if fc.rec is not None else ())
            + ((recent,) if recent is not None else ()))
    return Rules(recs=recs), arrivals, fc


# ---------------------------------------------------------------- phase 3: the largest, or hold

def pick_largest(rules: Rules, cur: int) -> tuple[Verdict, int | None]:
    """The largest recommendation (first listed on ties), held at ``cur`` when unknown
    inputs forbid a scale-down; and the demand panic looks at (None: no rule saw load)."""
    notes, recs = list(rules.notes), rules.recs
    demand: int | None = None
    if recs:
        best = max(recs, key=lambda r: r.replicas)
        # panic is for sudden load measured now; the forecast is anticipated load, and the recent
        # rate is held as one (counting it toward panic also skipped rate limits on noise: more
        # GPU-hours on azure-code for the same misses, docs/benchmarks.md)
        now_recs = [r.need for r in recs if r.rule not in _ANTICIPATED]
        demand = max(now_recs) if now_recs else None
        raw, rule, reason = best.replicas, best.rule, best.reason
    else:
        raw, rule = cur, HOLD
        reason = f"no recommendation ({'; '.join(notes + list(rules.skipped)) or 'no inputs'}); hold {cur}"
    if rules.unknown and not recs:
        rule = UNKNOWN_HOLD
        reason = f"{'; '.join(notes + list(rules.skipped))}: hold {cur}, no scale-down on missing data"
    elif rules.unknown and raw < cur:
        raw, rule = cur, UNKNOWN_HOLD
        reason = (f"{'; '.join(notes)}: hold {cur}, no scale-down on missing data"
                  + (f" (known inputs said {best.replicas}: {best.reason})" if recs else ""))
    elif rules.unknown and recs:
        reason += f"; {'; '.join(notes)} (scale-down blocked, scale-up allowed)"
    return Verdict(raw, rule, reason), demand


# ---------------------------------------------------------------- phase 4: stabilisation

def split_recommendations(rules: Rules, picked: Verdict, cur: int) -> tuple[int, int | None]:
    """What stabilisation remembers of this decision: the recommendation for the load
    measured now (held the scale-down window) and the larger of the forecast's and the
    recent rate's (held one cold start, the horizon it forecasts; holding a forecast
    longer holds a rise that never came)."""
    measured = [r.replicas for r in rules.recs if r.rule not in _ANTICIPATED]
    fc = max((r.replicas for r in rules.recs if r.rule in _ANTICIPATED), default=None)
    if picked.rule in (HOLD, UNKNOWN_HOLD) or not measured:
        return picked.replicas if picked.rule not in _ANTICIPATED else cur, fc
    return max(measured), fc


def held_recommendations(state: ScaleState, now: float, forecast_hold_s: float) -> tuple[tuple[float, int], ...]:
    """The history stabilisation reads: every measured-load recommendation kept, and the
    forecasts and recent-rate asks made within the last ``forecast_hold_s`` (the cold
    start they look across)."""
    return state.recommendations + tuple(a for a in state.anticipated if a[0] > now - forecast_hold_s)


def _queue_readings(obs: Observation, spec: AutoscalerSpec) -> list[float | None]:
    """What each queueDepth signal reads now (None where not read)."""
    return [obs.signals.get(s.name) for s in spec.signals if s.type == "queueDepth"]


def queued_hold_s(spec: AutoscalerSpec) -> float:
    """How long a decision made while requests queue keeps its replicas: 0 unless a cold
    start is longer than the SLO's wait bound, else the span of rates the policy keeps
    (history_span: max(600 s, 8 cold starts)). A replica given back cannot return within
    the wait bound, and a queue is the server's own evidence that the fleet was short
    (every slot of every ready replica busy), however the server batches; so a fleet
    that has queued keeps that size for as long as the policy remembers rates, not just
    the scale-down window."""
    slo = spec.slo
    if slo is None or slo.wait_bound_s is None or spec.cold_start_s <= slo.wait_bound_s:
        return 0.0
    return history_span(spec)


def queued_peak(rules: Rules, obs: Observation, spec: AutoscalerSpec) -> int | None:
    """When a queueDepth signal reads requests waiting: the largest recommendation
    (the forecast's and the recent rate's included: with a queue, the rise they saw
    has already outrun the fleet), at most maxReplicas. None when nothing waits."""
    queues = _queue_readings(obs, spec)
    if not rules.recs or not any(_valid(q) and q > 0 for q in queues):
        return None
    return min(max(r.replicas for r in rules.recs), spec.max_replicas)


def queued_kept(state: ScaleState, rules: Rules, obs: Observation, spec: AutoscalerSpec,
                now: float) -> tuple[tuple[tuple[float, int], ...], float | None, tuple[float, int] | None]:
    """The queued peaks kept after this decision, since when requests have waited, and the
    run's largest peak not recorded yet. A peak is recorded only when a queue was read at
    two decisions more than the wait bound apart with none read empty between (no request's
    age is measured): one request waiting for a moment (uneven routing, a prefill spike) is
    not a fleet that was short. The decisions of the run within the bound are not lost:
    their largest peak waits (``queue_first``) and is recorded, at its own time, with the
    first decision past the bound; it can be the run's largest, the first scrape that
    sees a burst's backlog asking for its replicas at once. A peak that a later, at least
    as large one outlives can never be the floor, so it is dropped: the kept peaks fall
    with time and stay few however long requests queue."""
    hold = queued_hold_s(spec)
    peak = queued_peak(rules, obs, spec) if hold > 0 else None
    queues = _queue_readings(obs, spec)
    since: float | None
    first = state.queue_first
    if peak is not None:
        since = state.queue_since if state.queue_since is not None else now
        first = first if state.queue_since is not None else None
    else:  # a missed scrape (every queue unknown) neither starts nor ends a run
        since = state.queue_since if queues and not any(_valid(q) for q in queues) else None
        first = first if since is not None else None
    bound = spec.slo.wait_bound_s if spec.slo is not None else None
    kept = [q for q in state.queued if q[0] > now - hold]
    if peak is not None and since is not None and bound is not None:
        if now - since > bound:
            kept += ([first] if first is not None and first[0] > now - hold else []) + [(now, peak)]
            first = None
        elif first is None or peak >= first[1]:
            first = (now, peak)
    out: list[tuple[float, int]] = []
    for t, n in reversed(kept):
        if not out or n > out[-1][1]:
            out.append((t, n))
    return tuple(reversed(out)), since, first


def queued_floor(v: Verdict, kept: tuple[tuple[float, int], ...], cur: int, now: float) -> Verdict:
    """No scale-down below the largest queued peak kept (nor below ``cur`` when it is
    higher than that: the floor never scales up)."""
    if not kept or v.replicas >= cur:
        return v
    t, n = max(kept, key=lambda k: (k[1], k[0]))
    floor = min(cur, n)
    if v.replicas >= floor:
        return v
    return Verdict(floor, QUEUED_HOLD, v.reason + f"; held at {floor}: requests queued {now - t:g}s ago with "
                   f"{n} recommended")


def stabilise(v: Verdict, history: tuple[tuple[float, int], ...], behavior: Behavior, cur: int, now: float,
              started: float) -> Verdict:
    """HPA: between the lowest recommendation in the scale-up window and the highest in
    the scale-down window; with less history than the latter, no scale-down."""
    up_s = behavior.scale_up.stabilization_window_s
    down_s = behavior.scale_down.stabilization_window_s
    raw = v.replicas
    up_rec = min([raw] + [r for t, r in history if t > now - up_s])
    hist_down = max([raw] + [r for t, r in history if t > now - down_s])
    young = now - started < down_s
    down_rec = max(hist_down, cur) if young else hist_down
    desired = min(max(cur, up_rec), down_rec)
    if desired == raw:
        return v
    if desired < raw:
        why = f"lowest recommendation in the last {up_s:g}s"
    elif desired <= hist_down:
        why = f"highest recommendation in the last {down_s:g}s"
    else:
        why = f"less than {down_s:g}s of history (new daemon or leader): no scale-down yet"
    return Verdict(desired, STABILIZATION, v.reason + f"; stabilised at {desired} ({why})")


# ---------------------------------------------------------------- phase 5: panic

def panic_mode(v: Verdict, state: ScaleState, demand: int | None, ready: int, spec: PanicSpec,
               now: float) -> tuple[Verdict, Panic]:
    """Knative KPA: demand averaged over the window at ``threshold`` x ready or more
    starts (or extends) a panic lasting ``stable_window_s`` past the last trigger."""
    until = state.panic_until
    window = [d for t, d in state.demand if t > now - spec.window_s]
    if demand is not None:
        window.append(demand)
    active = until is not None and now < until
    peak = state.panic_peak if active else 0
    reason = v.reason
    if window and ready > 0:
        avg = float(np.mean(window))
        if avg >= spec.threshold * ready - _EPS:
            if not active:
                reason += f"; panic: demand {avg:g} >= {spec.threshold:g} x {ready} ready (over {spec.window_s:g}s)"
            active = True
            until = now + spec.stable_window_s
    return Verdict(v.replicas, v.rule, reason), Panic(active, until if active else None, peak)


# ---------------------------------------------------------------- phase 6: rate limits

def _policies(fn: str, proposals: list[tuple[int, str]]) -> str:
    texts = [t for _, t in proposals]
    return texts[0] if len(texts) == 1 else f"{fn}({', '.join(texts)})"


def _period_start(events: tuple[tuple[float, int], ...], cur: int, now: float, period: float) -> int:
    # max(0, ...): a change decided but not applied yet must not block the next one forever
    return max(0, cur - sum(d for t, d in events if t > now - period))


def rate_limit(v: Verdict, events: tuple[tuple[float, int], ...], behavior: Behavior, cur: int, now: float,
               panicking: bool) -> Verdict:
    """HPA: the change per period from ``periodStart`` (``cur`` less the changes decided
    within it) is bounded by the larger pod or percent policy; a panic lifts the upward
    bound."""
    desired = v.replicas
    if desired > cur and not panicking:
        up = behavior.scale_up
        start = _period_start(events, cur, now, up.period_s)
        proposals = []
        if up.max_pods is not None:
            proposals.append((start + up.max_pods, f"{start}+{up.max_pods}"))
        if up.max_percent is not None:
            proposals.append((_ceil(start * (1 + up.max_percent / 100)), f"ceil({start}*{1 + up.max_percent / 100:g})"))
        if proposals:
            limit = max(cur, max(p for p, _ in proposals))
            if desired > limit:
                return Verdict(limit, RATE_LIMIT, v.reason + f"; scale-up limited to {limit} "
                               f"({_policies('max', proposals)} per {up.period_s:g}s)")
    elif desired < cur:
        down = behavior.scale_down
        start = _period_start(events, cur, now, down.period_s)
        proposals = []
        if down.max_pods is not None:
            proposals.append((start - down.max_pods, f"{start}-{down.max_pods}"))
        if down.max_percent is not None:
            proposals.append((int(start * (1 - down.max_percent / 100)),
                              f"floor({start}*{1 - down.max_percent / 100:g})"))
        if proposals:
            limit = min(cur, min(p for p, _ in proposals))
            if desired < limit:
                return Verdict(limit, RATE_LIMIT, v.reason + f"; scale-down limited to {limit} "
                               f"({_policies('min', proposals)} per {down.period_s:g}s)")
    return v


# ---------------------------------------------------------------- phase 7: panic floor, phase 8: clamp

def panic_floor(v: Verdict, panic: Panic, cur: int) -> Verdict:
    """While panicking, no scale-down below the current count or the panic's peak."""
    if not panic.active:
        return v
    floor = max(cur, panic.peak)
    if v.replicas >= floor:
        return v
    return Verdict(floor, PANIC, v.reason + f"; panicking until t={panic.until:g}: no scale-down below {floor}")


def clamp(v: Verdict, min_replicas: int, max_replicas: int) -> Verdict:
    if v.replicas > max_replicas:
        return Verdict(max_replicas, MAX_REPLICAS, v.reason + f" (capped by maxReplicas {max_replicas})")
    if v.replicas < min_replicas:
        return Verdict(min_replicas, MIN_REPLICAS, v.reason + f" (raised to minReplicas {min_replicas})")
    return v


# ---------------------------------------------------------------- phase 8b: scale to zero

def woken(obs: Observation, now: float | None) -> bool:
    """A wake within the last ``WAKE_WINDOW_S`` (one taken after ``now``, by a clock that
    stepped back, counts too)."""
    return now is not None and _valid(obs.wake) and now - obs.wake <= WAKE_WINDOW_S


def in_use(obs: Observation, spec: AutoscalerSpec, now: float | None = None) -> bool | None:
    """Whether the model saw a request: a wake at the activation endpoint (at zero), the gateway's
    counter moved, requests arrive at the pods, or a queue waits. None when nothing says
    so and the gateway's count is unknown (missing data is not an idle model)."""
    queues = _queue_readings(obs, spec)
    # A wake counts only at zero: whoever can reach the endpoint (a client forging the
    # gateway's headers) must not keep a serving model from its idle window.
    if (woken(obs, now) and obs.current == 0) or any(_valid(x) and x > 0 for x in [obs.activation, obs.arrival_rate, *queues]):
        return True
    return False if _valid(obs.activation) else None


def scale_to_zero(v: Verdict, obs: Observation, spec: AutoscalerSpec, last_active: float | None, now: float,
                  started: float, blocked: bool) -> tuple[Verdict, float | None]:
    """With minReplicas 0 (and so an activation): from zero, one replica on the first
    request the gateway counts (Knative's activator does the same; the rules take over
    once it serves); down to zero only after ``scale_to_zero_window_s`` with no request
    and no queue, whatever the rules say, and never while an input is unknown
    (``blocked``). Below that, one replica stays. Returns the time of the last use."""
    if spec.min_replicas > 0 or spec.activation is None:
        return v, last_active
    use = in_use(obs, spec, now)
    last = now if use else last_active
    cur, window = obs.current, spec.scale_to_zero_window_s
    if cur == 0:
        if use and v.replicas == 0:
            what = (f"a wake at the activation endpoint {now - (obs.wake or now):.3g}s ago" if woken(obs, now)
                    else f"{obs.activation or 0:g} requests at the gateway")
            return Verdict(1, ACTIVATION, v.reason + f"; activation: {what} -> 1 from zero"), last
        return v, last
    idle = now - (last if last is not None else started)
    if use is None or blocked:
        if v.replicas == 0:
            return Verdict(1, IDLE_HOLD, v.reason + "; activation or a signal unknown: keep 1, no scale to "
                           "zero on missing data"), last
        return v, last
    if not use and idle >= window:
        return Verdict(0, SCALE_TO_ZERO, v.reason + f"; no request or queue for {idle:g}s >= {window:g}s: "
                       "scale to zero"), last
    if v.replicas == 0:
        return Verdict(1, IDLE_HOLD, v.reason + f"; idle {idle:g}s < {window:g}s: keep 1"), last
    return v, last


# ---------------------------------------------------------------- phase 9: warm pool

def history_span(spec: AutoscalerSpec) -> float:
    """Seconds of arrival rates kept: what the forecast and the warm pool's rises read."""
    return max(600.0, 8 * spec.cold_start_s)


def warm_size(arrivals: tuple[tuple[float, float], ...], obs: Observation, spec: AutoscalerSpec, desired: int,
              now: float, started: float) -> tuple[int, str]:
    """The warm pods worth their GPU, at most ``warmReplicas`` and the room under
    maxReplicas. A warm pod costs a GPU like a serving one and only wins when load rises
    faster than a cold start can follow, so with the queueing rule on it is sized by
    how fast the rate has risen: the largest rise of the arrival rate within one cold
    start over the kept history (the last max(600 s, 8 cold starts)) added to the rate
    now, less the serving replicas decided; a new pod counts from the rate less its own
    noise (rate_less_noise), a loaded one is kept from the rate itself. Each pair's rise
    counts only beyond z sqrt((a + b) / W): the Poisson spread of the difference of two
    independent counts over the rate's window W (RATE_WINDOW_S), z the normal quantile of the SLO's
    percentile (2.33 at 0.99; 0 at or below a median). A per-pair threshold and an
    approximation: two 1 m rates taken seconds apart share most of their window and differ
    by less, while Prometheus' rate() extrapolates a 45 s count and differs by more.
    Without the rule's inputs (no slo, unknown rate or service rate, no cold start) or
    with less history than that (a new daemon or leader) the pool is ``warmReplicas``,
    as configured."""
    cap = min(spec.warm_replicas, max(0, spec.max_replicas - desired))
    mu = _rate(obs.service_rate, spec.service_rate_per_replica)
    known = _valid(obs.arrival_rate) and bool(arrivals) and arrivals[-1][0] == now
    if cap == 0 or spec.slo is None or mu is None or spec.cold_start_s <= 0 or not known:
        return cap, ""
    if now - started < history_span(spec):
        return cap, ""  # as stabilisation: too little history to say the rises are small
    t = np.array([a[0] for a in arrivals], dtype=float)
    x = np.array([a[1] for a in arrivals], dtype=float)
    h = spec.cold_start_s
    # each sample's rise over each sample of the cold start before it, less what Poisson noise
    # explains at the SLO's percentile: the largest of many noisy differences is a rise on a
    # steady rate too (a warm pod half the time on a steady 3 req/s)
    within = (t[None, :] <= t[:, None]) & (t[None, :] >= t[:, None] - h)
    noise = noise_z(spec) * np.sqrt((x[:, None] + x[None, :]) / RATE_WINDOW_S)
    beyond = x[:, None] - x[None, :] - noise
    rise = max(0.0, float(np.max(np.where(within, beyond, -np.inf))))
    need = _slo_replicas(x[-1] + rise, mu, spec)[0]
    # a new warm pod is loaded when the rise could outgrow the serving replicas decided, from
    # the rate less its own noise (as the queueing rule scales up: near a replica's edge the
    # rate's upper tail loaded a pod that the next reading gave back); one already loaded is
    # kept, from the rate itself, while the rise could outgrow the serving replicas or what
    # the load measured now needs (a stabilised fleet's surplus is given back later):
    # loading it again would cost a cold start
    low = rate_less_noise(float(x[-1]), spec)
    grow = _slo_replicas(low + rise, mu, spec)[0]
    keep = min(max(0, obs.warm), max(need - desired, need - _slo_replicas(x[-1], mu, spec)[0]))
    warm = min(cap, max(0, grow - desired, keep))
    if warm == cap:
        return warm, ""
    kept = f", {keep} loaded kept ({x[-1]:.3g}+{rise:.3g} req/s needs {need})" if keep > max(0, grow - desired) else ""
    return warm, (f"; warm pool {warm}: rate rose up to {rise:.3g} req/s within {h:g}s over the last "
                  f"{t[-1] - t[0]:g}s, {x[-1]:.3g} ({low:.3g} less its noise) +{rise:.3g} req/s needs {grow} "
                  f"vs {desired} serving{kept}")


def warm_pool(desired: int, cur: int, warm_now: int, spec: AutoscalerSpec, prewarm_target: int | None,
              warm_target: int | None = None) -> WarmPool:
    """The pool's size (``warm_target``, else warmReplicas, no larger than the room under
    maxReplicas), a scale-up served by promotion first, a scale-down parked in the pool
    while it is short; and the replicas beyond ``desired`` the forecast wants caches
    pre-warmed for."""
    warm = min(spec.warm_replicas if warm_target is None else warm_target, max(0, spec.max_replicas - desired))
    up = max(0, desired - cur)
    promote = min(up, max(0, warm_now))
    cold = up - promote
    demote = min(max(0, cur - desired), max(0, warm - warm_now))
    note = ""
    if promote:
        note += f"; promote {promote} warm" + (f", start {cold} cold" if cold else "")
    elif cold:
        note += f"; start {cold} cold"
    if demote:
        note += f"; demote {demote} to the warm pool"
    prewarm = 0
    if prewarm_target is not None:
        prewarm = max(0, min(prewarm_target, spec.max_replicas) - desired)
    return WarmPool(warm, promote, cold, demote, prewarm, note)


# ---------------------------------------------------------------- phase 10: the next state

def next_state(state: ScaleState, spec: AutoscalerSpec, now: float, started: float, cur: int, raw: int,
               desired: int, demand: int | None, arrivals: tuple[tuple[float, float], ...],
               panic: Panic, anticipated: int | None = None) -> ScaleState:
    """The history the next call needs, each part trimmed to the longest window that reads it."""
    beh = spec.behavior
    keep_rec = max(beh.scale_up.stabilization_window_s, beh.scale_down.stabilization_window_s)
    keep_events = max(beh.scale_up.period_s, beh.scale_down.period_s)
    events = tuple(e for e in state.events if e[0] > now - keep_events)
    if desired != cur:
        events += ((now, desired - cur),)
    demand_hist = tuple(d for d in state.demand if d[0] > now - beh.panic.window_s)
    if demand is not None:
        demand_hist += ((now, demand),)
    horizon_keep = history_span(spec)
    return ScaleState(
        started_at=started,
        recommendations=tuple(r for r in state.recommendations if r[0] > now - keep_rec) + ((now, raw),),
        anticipated=tuple(a for a in state.anticipated if a[0] > now - spec.cold_start_s)
        + (((now, anticipated),) if anticipated is not None else ()),
        demand=demand_hist,
        events=events,
        arrivals=tuple(a for a in arrivals if a[0] > now - horizon_keep),
        panic_until=panic.until,
        panic_peak=max(panic.peak, desired) if panic.active else 0,
    )


# ---------------------------------------------------------------- decide

def decide(state: ScaleState, obs: Observation, spec: AutoscalerSpec, now: float) -> Decision:
    """The phases in order; each adds its part to the reason (module docstring)."""
    cur = obs.current
    started = state.started_at if state.started_at is not None else now
    queued, arrivals, fc = queueing_and_forecast(state.arrivals, obs, spec, now)
    rules = signal_ratios(spec, obs) + queued
    picked, demand = pick_largest(rules, cur)
    measured, anticipated = split_recommendations(rules, picked, cur)
    held_queued, queue_since, queue_first = queued_kept(state, rules, obs, spec, now)
    v = stabilise(picked, held_recommendations(state, now, spec.cold_start_s), spec.behavior, cur, now, started)
    v = queued_floor(v, held_queued, cur, now)
    v, panic = panic_mode(v, state, demand, obs.ready, spec.behavior.panic, now)
    v = rate_limit(v, state.events, spec.behavior, cur, now, panic.active)
    v = panic_floor(v, panic, cur)
    v = clamp(v, spec.min_replicas, spec.max_replicas)
    v, last_active = scale_to_zero(v, obs, spec, state.last_active, now, started, bool(rules.unknown))
    warm, warm_note = warm_size(arrivals, obs, spec, v.replicas, now, started)
    warm = warm if v.replicas > 0 else 0  # a model at zero keeps no GPU: host-memory caches are its warm tier
    pool = warm_pool(v.replicas, cur, obs.warm, spec, fc.prewarm_target, warm)
    new_state = replace(next_state(state, spec, now, started, cur, measured, v.replicas, demand, arrivals,
                                   panic, anticipated), last_active=last_active, queued=held_queued,
                      queue_since=queue_since, queue_first=queue_first)
    return Decision(
        replicas=v.replicas, warm=pool.warm, promote=pool.promote, cold_start=pool.cold_start, demote=pool.demote,
        prewarm=pool.prewarm, rule=v.rule, reason=v.reason + pool.note + warm_note, state=new_state, current=cur,
        panic=panic.active, unknown=rules.unknown, recommendations=rules.recs, forecast_arrival_rate=fc.rate,
    )


def initial_state() -> ScaleState:
    return ScaleState()


__all__ = [
    "Observation", "ScaleState", "Recommendation", "Decision", "decide", "initial_state",
    "erlang_c", "replicas_for_slo", "holt_forecast",
    "QUEUEING", "FORECAST", "RECENT", "HOLD", "UNKNOWN_HOLD", "STABILIZATION", "RATE_LIMIT", "PANIC",
    "MIN_REPLICAS", "MAX_REPLICAS", "ACTIVATION", "IDLE_HOLD", "SCALE_TO_ZERO", "QUEUED_HOLD",
]
