"""The InferenceAutoscaler spec: parsed from the CR's ``spec`` dict and validated.

Pure data, no I/O. Keys are the CRD's camelCase names; attributes are snake_case.
The same rules are enforced twice on purpose: by the CRD's OpenAPI schema and CEL
rules at the API server (deploy/chart/gpusched/crds/inferenceautoscalers.gpusched.io.yaml), and
here, so the daemon never acts on an object created before the schema was tightened
and so the simulator and tests, which have no API server, get the same answers.

Units of a signal's ``target``, per replica:
- ``queueDepth``: requests waiting per ready serving replica (WVA calls vLLM saturated at 5)
- ``gpuUtilization``: percent, 0..100 (DCGM's DCGM_FI_DEV_GPU_UTIL scale), average over GPUs
- ``kvCache``: fraction, 0..1 (vLLM's kv_cache_usage_perc is a fraction despite its name)
- ``promql``: the query must return the per-replica average of what it measures
  (e.g. ``sum(x) / count(x)``); the policy treats it like the others:
  desired = ceil(ready * value / target)
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Final, Mapping

from scheduler import names

SIGNAL_TYPES: Final = ("queueDepth", "gpuUtilization", "kvCache", "promql")
SERVERS: Final = ("vllm", "tgi", "triton")

# HPA's defaults (tolerance, stabilisation, rate limits) and Knative KPA's panic mode.
DEFAULT_TOLERANCE: Final = 0.1
DEFAULT_SCALE_UP_WINDOW_S: Final = 0.0
DEFAULT_SCALE_UP_PODS: Final = 4
DEFAULT_SCALE_UP_PERCENT: Final = 100.0
DEFAULT_SCALE_DOWN_WINDOW_S: Final = 300.0
DEFAULT_SCALE_DOWN_PERCENT: Final = 100.0
DEFAULT_PERIOD_S: Final = 15.0
DEFAULT_PANIC_THRESHOLD: Final = 2.0  # 200% of ready capacity
DEFAULT_PANIC_WINDOW_S: Final = 6.0
DEFAULT_PANIC_STABLE_WINDOW_S: Final = 60.0
# Alibaba's GenAI trace: median base-model load ~23 s, p90 ~42 s; plus scheduling.
DEFAULT_COLD_START_S: Final = 45.0
# Headroom against the one input the daemon does not measure, the load test's
# serviceRatePerReplica: with a rate 20% high, 0.8 kept a point more of the SLO on a bursty
# trace than 1 (how much of it is headroom the runs do not separate); with the true rate
# it costs up to 4% of GPU-hours (docs/benchmarks.md, "A mis-measured service rate").
DEFAULT_TARGET_UTILIZATION: Final = 0.8
DEFAULT_SLO_PERCENTILE: Final = 0.99
DEFAULT_FORECAST_ALPHA: Final = 0.5
DEFAULT_FORECAST_BETA: Final = 0.3
# Scale to zero. The idle window before the last replica goes: a replica scaled to zero
# costs the next request one cold start, so the window is a multiple of it, like the
# ski-rental rule: holding a GPU idle for k cold starts before giving it back spends at
# most k+1 times what an oracle would on one gap, and 5 keeps the GPU time lost to a
# wrong guess at ~1/5 of the idle time saved. 300 s is Knative's and KEDA's default
# (scale-to-zero-grace / cooldownPeriod) and HPA's scale-down window: with short cold
# starts the window never falls below what the rest of the policy already waits.
SCALE_TO_ZERO_COLD_STARTS: Final = 5
MIN_SCALE_TO_ZERO_S: Final = 300.0
# Istio's (and Envoy Gateway's Istio-compatible telemetry) request counter, labelled by
# the destination Service: the best-known gateway counter that exists while the model
# has no pod (vLLM's own metrics vanish with its last pod).
DEFAULT_ACTIVATION_METRIC: Final = "istio_requests_total"
DEFAULT_ACTIVATION_NAMESPACE_LABEL: Final = "destination_service_namespace"
ACTIVATION_TYPES: Final = ("requestCount",)
_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_ACTIVATION_LABELS: Final = 8

# Bounds that keep one object's decision cheap and its history small whatever a tenant
# writes (the CRD holds the same ones). 10,000 replicas is well past any one model's
# fleet; 0.001 req/s is one request per ~17 minutes per replica.
MAX_CONCURRENCY: Final = 4096
MAX_REPLICAS: Final = 10_000
MIN_SERVICE_RATE: Final = 0.001
MAX_SERVICE_RATE: Final = 1_000_000.0
MAX_WINDOW_S: Final = 3600.0


class SpecError(ValueError):
    """An InferenceAutoscaler spec that cannot be acted on. The message names the field."""


@dataclass(frozen=True)
class ScaleTargetRef:
    name: str
    api_version: str = "apps/v1"
    kind: str = "Deployment"


@dataclass(frozen=True)
class SignalSpec:
    type: str
    target: float
    name: str = ""  # unique within the spec; defaults to the type (type-N when repeated)
    query: str | None = None  # promql only
    server: str = "vllm"  # queueDepth / kvCache: which server's metric names


@dataclass(frozen=True)
class ScalingRules:
    """One direction of ``behavior``. Rate limit: the change allowed per period is the
    larger of the pod and percent policies (HPA's selectPolicy: Max). A policy left
    out does not apply; with both left out the direction keeps its default policies
    (as HPA does). ``None`` in both (only constructible in code) means no rate limit."""

    stabilization_window_s: float
    period_s: float = DEFAULT_PERIOD_S
    max_pods: int | None = None
    max_percent: float | None = None


@dataclass(frozen=True)
class PanicSpec:
    threshold: float = DEFAULT_PANIC_THRESHOLD  # demand / ready replicas that starts panic
    window_s: float = DEFAULT_PANIC_WINDOW_S  # demand averaged over this window
    stable_window_s: float = DEFAULT_PANIC_STABLE_WINDOW_S  # panic ends this long after the last trigger


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules = field(default_factory=lambda: ScalingRules(
        DEFAULT_SCALE_UP_WINDOW_S, DEFAULT_PERIOD_S, DEFAULT_SCALE_UP_PODS, DEFAULT_SCALE_UP_PERCENT))
    scale_down: ScalingRules = field(default_factory=lambda: ScalingRules(
        DEFAULT_SCALE_DOWN_WINDOW_S, DEFAULT_PERIOD_S, None, DEFAULT_SCALE_DOWN_PERCENT))
    tolerance: float = DEFAULT_TOLERANCE
    panic: PanicSpec = field(default_factory=PanicSpec)


@dataclass(frozen=True)
class Slo:
    """Queue-wait objective for the queueing rule: at least ``percentile`` of requests
    wait at most ``queue_wait_s`` (and at most ``ttft_s``: the wait is part of TTFT;
    prefill time is not modelled), with replicas at most ``target_utilization`` busy."""

    queue_wait_s: float | None = None
    ttft_s: float | None = None
    percentile: float = DEFAULT_SLO_PERCENTILE
    target_utilization: float = DEFAULT_TARGET_UTILIZATION

    @property
    def wait_bound_s(self) -> float | None:
        bounds = [b for b in (self.queue_wait_s, self.ttft_s) if b is not None]
        return min(bounds) if bounds else None


@dataclass(frozen=True)
class ForecastSpec:
    enabled: bool = True
    alpha: float = DEFAULT_FORECAST_ALPHA  # Holt level smoothing, per observation
    beta: float = DEFAULT_FORECAST_BETA  # Holt trend smoothing, per observation
    # whether the forecast also asks for replicas (else it only sizes cache pre-warming);
    # None (unset): only while no recent arrival rate is read (policy.forecast_asks). Beside
    # the recent rate, read through Prometheus as the daemon reads it, its asks cost
    # GPU-hours on every trace and setting of the bench and met more requests in one run
    # only; without it they are the only lead a burst has (docs/benchmarks.md, "The
    # forecast asks when no recent rate is read")
    scale_up: bool | None = None


@dataclass(frozen=True)
class ActivationSpec:
    """Where requests for a model with no replica are counted: a Prometheus counter of
    requests at the gateway or ingress (``requestCount``), summed over the series that
    carry ``labels`` and, always, ``namespace_label`` = the object's namespace (the
    tenant cannot read another namespace's traffic). Examples: Istio / Envoy Gateway
    ``istio_requests_total`` with ``destination_service_name``; ingress-nginx
    ``nginx_ingress_controller_requests`` with ``service`` and namespace label
    ``exported_namespace``."""

    metric: str = DEFAULT_ACTIVATION_METRIC
    labels: tuple[tuple[str, str], ...] = ()
    namespace_label: str = DEFAULT_ACTIVATION_NAMESPACE_LABEL
    type: str = "requestCount"


@dataclass(frozen=True)
class AutoscalerSpec:
    scale_target_ref: ScaleTargetRef
    max_replicas: int
    min_replicas: int = 1
    model: str | None = None
    signals: tuple[SignalSpec, ...] = ()
    warm_replicas: int = 0
    behavior: Behavior = field(default_factory=Behavior)
    slo: Slo | None = None
    cold_start_s: float = DEFAULT_COLD_START_S
    service_rate_per_replica: float | None = None  # req/s one replica sustains; used when not measured
    # requests one replica runs at once without slowing each other (queueing.effective_concurrency:
    # serviceRatePerReplica x the seconds one request takes alone, at most --max-num-seqs): the
    # queueing rule's M/M/(c x concurrency) model; 1 = each replica one M/M/c server
    concurrency_per_replica: int = 1
    forecast: ForecastSpec = field(default_factory=ForecastSpec)
    activation: ActivationSpec | None = None  # required with minReplicas 0: what brings it back from zero
    scale_to_zero_after_s: float | None = None  # idle window; None = the default (scale_to_zero_window)

    @property
    def scale_to_zero_window_s(self) -> float:
        """The idle seconds before the last replica goes: the spec's, else max(300 s, 5 cold
        starts) (see SCALE_TO_ZERO_COLD_STARTS)."""
        if self.scale_to_zero_after_s is not None:
            return self.scale_to_zero_after_s
        return max(MIN_SCALE_TO_ZERO_S, SCALE_TO_ZERO_COLD_STARTS * self.cold_start_s)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> "AutoscalerSpec":
        return parse_spec(spec)

    def signal(self, name: str) -> SignalSpec:
        for s in self.signals:
            if s.name == name:
                return s
        raise KeyError(name)


# ---------------------------------------------------------------- parsing helpers

_MISSING = object()


def _show(v: Any, limit: int = 60) -> str:
    """A user's value in a message, cut short: a 10,000-element list must not become the message."""
    text = repr(v)
    return text if len(text) <= limit else text[:limit] + "..."


def _mapping(d: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise SpecError(f"{path}: must be an object, got {type(d).__name__}")
    return d


def _known_keys(d: Mapping[str, Any], path: str, allowed: set[str]) -> None:
    unknown = sorted(map(str, set(d) - allowed))
    if unknown:
        shown = ", ".join(k[:40] for k in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise SpecError(f"{path}: unknown field(s) {shown}; allowed: {', '.join(sorted(allowed))}")


def _number(d: Mapping[str, Any], key: str, path: str, default: Any = _MISSING, *,
            minimum: float | None = None, exclusive_minimum: float | None = None,
            maximum: float | None = None) -> Any:
    v = d.get(key, _MISSING)
    if v is _MISSING or v is None:
        if default is _MISSING:
            raise SpecError(f"{path}.{key}: required")
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SpecError(f"{path}.{key}: must be a number, got {_show(v)}")
    try:
        finite = math.isfinite(v)
    except OverflowError:  # an integer too large for a float (JSON allows 1e400 written out)
        raise SpecError(f"{path}.{key}: {str(v)[:20]}... is out of range") from None
    if not finite:
        raise SpecError(f"{path}.{key}: must be finite, got {_show(v)}")
    if minimum is not None and v < minimum:
        raise SpecError(f"{path}.{key}: must be >= {minimum:g}, got {v:g}")
    if exclusive_minimum is not None and v <= exclusive_minimum:
        raise SpecError(f"{path}.{key}: must be > {exclusive_minimum:g}, got {v:g}")
    if maximum is not None and v > maximum:
        raise SpecError(f"{path}.{key}: must be <= {maximum:g}, got {v:g}")
    return v


def _int(d: Mapping[str, Any], key: str, path: str, default: Any = _MISSING, *, minimum: int | None = None,
         maximum: int | None = None) -> Any:
    v = _number(d, key, path, default, minimum=minimum, maximum=maximum)
    if v is default:
        return v
    if isinstance(v, float):
        if not v.is_integer():
            raise SpecError(f"{path}.{key}: must be an integer, got {_show(v)}")
        v = int(v)
    return v


def _str(d: Mapping[str, Any], key: str, path: str, default: Any = _MISSING) -> Any:
    v = d.get(key, _MISSING)
    if v is _MISSING or v is None:
        if default is _MISSING:
            raise SpecError(f"{path}.{key}: required")
        return default
    if not isinstance(v, str):
        raise SpecError(f"{path}.{key}: must be a string, got {_show(v)}")
    return v


def _parse_target_ref(d: Any) -> ScaleTargetRef:
    path = "spec.scaleTargetRef"
    d = _mapping(d, path)
    _known_keys(d, path, {"apiVersion", "kind", "name"})
    name = _str(d, "name", path)
    why = names.subdomain_error(name)
    if why is not None:
        # The name becomes a segment of the API path the autoscaler scales through.
        raise SpecError(f"{path}.name: {why}")
    return ScaleTargetRef(name=name, api_version=_str(d, "apiVersion", path, "apps/v1"),
                          kind=_str(d, "kind", path, "Deployment"))


def _parse_signal(d: Any, i: int) -> SignalSpec:
    path = f"spec.signals[{i}]"
    d = _mapping(d, path)
    _known_keys(d, path, {"type", "target", "query", "server", "name"})
    typ = _str(d, "type", path)
    if typ not in SIGNAL_TYPES:
        raise SpecError(f"{path}.type: unknown signal type {_show(typ)}; one of {', '.join(SIGNAL_TYPES)}")
    target = float(_number(d, "target", path, exclusive_minimum=0))
    if typ == "gpuUtilization" and target > 100:
        raise SpecError(f"{path}.target: gpuUtilization is a percent (0..100], got {target:g}")
    if typ == "kvCache" and target > 1:
        raise SpecError(f"{path}.target: kvCache is a fraction (0..1], got {target:g}")
    query = _str(d, "query", path, None)
    if typ == "promql":
        if query is None or not query.strip():
            raise SpecError(f"{path}.query: a promql signal needs a non-empty query")
    elif query is not None:
        raise SpecError(f"{path}.query: only promql signals take a query (type is {typ})")
    server = _str(d, "server", path, "vllm")
    if server not in SERVERS:
        raise SpecError(f"{path}.server: unknown server {_show(server)}; one of {', '.join(SERVERS)}")
    if typ == "kvCache" and server != "vllm":
        raise SpecError(f"{path}.server: kvCache is read from vLLM's metrics only, got {_show(server)}")
    name = _str(d, "name", path, "")
    return SignalSpec(type=typ, target=target, name=name, query=query, server=server)


def _name_signals(signals: list[SignalSpec]) -> tuple[SignalSpec, ...]:
    counts: dict[str, int] = {}
    for s in signals:
        if not s.name:
            counts[s.type] = counts.get(s.type, 0) + 1
    seen: dict[str, int] = {}
    named = []
    for s in signals:
        if not s.name:
            n = seen.get(s.type, 0)
            seen[s.type] = n + 1
            name = s.type if counts[s.type] == 1 else f"{s.type}-{n}"
            s = SignalSpec(s.type, s.target, name, s.query, s.server)
        named.append(s)
    names = [s.name for s in named]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpecError(f"spec.signals: duplicate signal name(s) {', '.join(dup)}")
    return tuple(named)


def _parse_rules(d: Any, path: str, default: ScalingRules) -> ScalingRules:
    if d is None:
        return default
    d = _mapping(d, path)
    _known_keys(d, path, {"stabilizationWindowSeconds", "periodSeconds", "maxPodsPerPeriod", "maxPercentPerPeriod"})
    window = float(_number(d, "stabilizationWindowSeconds", path, default.stabilization_window_s, minimum=0, maximum=3600))
    period = float(_number(d, "periodSeconds", path, default.period_s, exclusive_minimum=0, maximum=1800))
    pods = _int(d, "maxPodsPerPeriod", path, None, minimum=1)
    percent = _number(d, "maxPercentPerPeriod", path, None, exclusive_minimum=0)
    if pods is None and percent is None:
        # Like HPA: leaving the policies out keeps the default policies.
        pods, percent = default.max_pods, default.max_percent
    return ScalingRules(window, period, pods, None if percent is None else float(percent))


def _parse_behavior(d: Any) -> Behavior:
    if d is None:
        return Behavior()
    path = "spec.behavior"
    d = _mapping(d, path)
    _known_keys(d, path, {"scaleUp", "scaleDown", "tolerance", "panic"})
    base = Behavior()
    tol = float(_number(d, "tolerance", path, base.tolerance, minimum=0, maximum=1))
    panic = base.panic
    if d.get("panic") is not None:
        p = _mapping(d["panic"], f"{path}.panic")
        _known_keys(p, f"{path}.panic", {"threshold", "windowSeconds", "stableWindowSeconds"})
        panic = PanicSpec(
            threshold=float(_number(p, "threshold", f"{path}.panic", panic.threshold, exclusive_minimum=1)),
            window_s=float(_number(p, "windowSeconds", f"{path}.panic", panic.window_s, minimum=0,
                                   maximum=MAX_WINDOW_S)),
            stable_window_s=float(_number(p, "stableWindowSeconds", f"{path}.panic", panic.stable_window_s,
                                          minimum=0, maximum=MAX_WINDOW_S)),
        )
    return Behavior(
        scale_up=_parse_rules(d.get("scaleUp"), f"{path}.scaleUp", base.scale_up),
        scale_down=_parse_rules(d.get("scaleDown"), f"{path}.scaleDown", base.scale_down),
        tolerance=tol, panic=panic)


def _parse_slo(d: Any) -> Slo | None:
    if d is None:
        return None
    path = "spec.slo"
    d = _mapping(d, path)
    _known_keys(d, path, {"queueWaitSeconds", "ttftSeconds", "percentile", "targetUtilization"})
    wait = _number(d, "queueWaitSeconds", path, None, exclusive_minimum=0)
    ttft = _number(d, "ttftSeconds", path, None, exclusive_minimum=0)
    pct = float(_number(d, "percentile", path, DEFAULT_SLO_PERCENTILE, exclusive_minimum=0))
    if pct >= 1:
        raise SpecError(f"{path}.percentile: must be < 1 (e.g. 0.99), got {pct:g}")
    util = float(_number(d, "targetUtilization", path, DEFAULT_TARGET_UTILIZATION, exclusive_minimum=0, maximum=1))
    return Slo(None if wait is None else float(wait), None if ttft is None else float(ttft), pct, util)


def _parse_forecast(d: Any) -> ForecastSpec:
    if d is None:
        return ForecastSpec()
    path = "spec.forecast"
    d = _mapping(d, path)
    _known_keys(d, path, {"enabled", "alpha", "beta", "scaleUp"})
    enabled = _flag(d, "enabled", path, True)
    scale_up = _flag(d, "scaleUp", path, False) if d.get("scaleUp") is not None else None  # null: unset
    alpha = float(_number(d, "alpha", path, DEFAULT_FORECAST_ALPHA, exclusive_minimum=0, maximum=1))
    beta = float(_number(d, "beta", path, DEFAULT_FORECAST_BETA, minimum=0, maximum=1))
    return ForecastSpec(enabled, alpha, beta, scale_up)


def _flag(d: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise SpecError(f"{path}.{key}: must be true or false, got {_show(v)}")
    return v


def _parse_activation(d: Any) -> ActivationSpec | None:
    if d is None:
        return None
    path = "spec.activation"
    d = _mapping(d, path)
    _known_keys(d, path, {"type", "metric", "labels", "namespaceLabel"})
    typ = _str(d, "type", path, "requestCount")
    if typ not in ACTIVATION_TYPES:
        raise SpecError(f"{path}.type: unknown activation type {_show(typ)}; one of {', '.join(ACTIVATION_TYPES)}")
    metric = _str(d, "metric", path, DEFAULT_ACTIVATION_METRIC)
    if not _METRIC_NAME.fullmatch(metric) or len(metric) > 200:
        raise SpecError(f"{path}.metric: not a Prometheus metric name: {_show(metric)}")
    ns_label = _str(d, "namespaceLabel", path, DEFAULT_ACTIVATION_NAMESPACE_LABEL)
    if not _LABEL_NAME.fullmatch(ns_label) or len(ns_label) > 100:
        raise SpecError(f"{path}.namespaceLabel: not a Prometheus label name: {_show(ns_label)}")
    raw = d.get("labels") or {}
    labels = _mapping(raw, f"{path}.labels")
    if len(labels) > MAX_ACTIVATION_LABELS:
        raise SpecError(f"{path}.labels: at most {MAX_ACTIVATION_LABELS} labels, got {len(labels)}")
    pairs = []
    for k in sorted(map(str, labels)):
        v = labels[k]
        if not _LABEL_NAME.fullmatch(k) or len(k) > 100:
            raise SpecError(f"{path}.labels: not a Prometheus label name: {_show(k)}")
        if k == ns_label:
            raise SpecError(f"{path}.labels.{k}: the namespace label is always this object's namespace")
        if not isinstance(v, str) or not v or len(v) > 253:
            raise SpecError(f"{path}.labels.{k}: must be a non-empty string of at most 253 characters, got {_show(v)}")
        pairs.append((k, v))
    if not pairs:
        # the namespace alone would count every service's requests in it: a model never idles
        raise SpecError(f"{path}.labels: at least one label that picks this model's service "
                        "(e.g. destination_service_name for istio_requests_total)")
    return ActivationSpec(metric=metric, labels=tuple(pairs), namespace_label=ns_label, type=typ)


_TOP_KEYS = {"scaleTargetRef", "minReplicas", "maxReplicas", "model", "signals", "warmReplicas",
             "behavior", "slo", "coldStartSeconds", "serviceRatePerReplica", "concurrencyPerReplica", "forecast",
             "activation", "scaleToZeroAfterSeconds"}


def parse_spec(spec: Mapping[str, Any]) -> AutoscalerSpec:
    """Parse and validate an InferenceAutoscaler ``spec``; raise SpecError naming the field."""
    d = _mapping(spec, "spec")
    _known_keys(d, "spec", _TOP_KEYS)
    if "scaleTargetRef" not in d:
        raise SpecError("spec.scaleTargetRef: required")
    ref = _parse_target_ref(d["scaleTargetRef"])
    min_r = _int(d, "minReplicas", "spec", 1, minimum=0, maximum=MAX_REPLICAS)
    max_r = _int(d, "maxReplicas", "spec", minimum=1, maximum=MAX_REPLICAS)
    if max_r < min_r:
        raise SpecError(f"spec.maxReplicas ({max_r}) must be >= spec.minReplicas ({min_r})")
    model = _str(d, "model", "spec", None)
    raw_signals = d.get("signals") or []
    if not isinstance(raw_signals, list):
        raise SpecError(f"spec.signals: must be a list, got {type(raw_signals).__name__}")
    signals = _name_signals([_parse_signal(s, i) for i, s in enumerate(raw_signals)])
    slo = _parse_slo(d.get("slo"))
    if not signals and slo is None:
        raise SpecError("spec.signals: at least one signal is needed (or an slo for the queueing rule)")
    if slo is not None and slo.wait_bound_s is None:
        raise SpecError("spec.slo: needs queueWaitSeconds or ttftSeconds")
    if slo is not None and d.get("serviceRatePerReplica") is None:
        # The queueing rule needs it and the daemon does not measure it: without it every
        # scale-down would be held as missing data, for ever.
        raise SpecError("spec.serviceRatePerReplica: required with slo (the requests/s one replica sustains "
                        "at your prompt mix; measure it with a load test)")
    activation = _parse_activation(d.get("activation"))
    if min_r == 0 and activation is None:
        # with no pod the serving pods' metrics are gone: only the gateway sees the next request
        raise SpecError("spec.activation: required with minReplicas 0 (the gateway's request counter that "
                        "brings the model back from zero)")
    idle = _number(d, "scaleToZeroAfterSeconds", "spec", None, minimum=0, maximum=86400)
    return AutoscalerSpec(
        scale_target_ref=ref,
        activation=activation,
        scale_to_zero_after_s=None if idle is None else float(idle),
        min_replicas=min_r,
        max_replicas=max_r,
        model=model,
        signals=signals,
        warm_replicas=_int(d, "warmReplicas", "spec", 0, minimum=0, maximum=MAX_REPLICAS),
        behavior=_parse_behavior(d.get("behavior")),
        slo=slo,
        cold_start_s=float(_number(d, "coldStartSeconds", "spec", DEFAULT_COLD_START_S, minimum=0, maximum=3600)),
        service_rate_per_replica=(None if d.get("serviceRatePerReplica") is None else
                                  float(_number(d, "serviceRatePerReplica", "spec", minimum=MIN_SERVICE_RATE,
                                                       maximum=MAX_SERVICE_RATE))),
        concurrency_per_replica=_int(d, "concurrencyPerReplica", "spec", 1, minimum=1, maximum=MAX_CONCURRENCY),
        forecast=_parse_forecast(d.get("forecast")),
    )
