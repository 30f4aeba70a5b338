"""Signals from Prometheus: one small adapter per signal kind behind one interface.

The only module that imports prometheus_api_client. Every read answers a ``Reading``:
a value, or None with the reason (for a condition or Event), never 0 for "nothing",
and never an exception. Unknown, not zero: an empty result, NaN or Inf, several series
where one is expected, an HTML page instead of JSON, a timeout, a refused connection
or a PromQL error.

Queries are scoped to the target's serving pods by a ``Scope`` the daemon builds:
namespace, the serving pod names (warm pods excluded: idle warm pods would drag
averages down) or a pod regex, and the model name. Metric names as the servers
export them (DESIGN.md): vLLM labels are only ``model_name`` and ``engine``; pod and
namespace come from the scrape config (``pod``/``namespace`` by default). The DCGM
exporter's pod labels arrive as ``pod``/``namespace`` with honorLabels, as
``exported_pod``/``exported_namespace`` without; its host label is ``Hostname`` in
releases, ``hostname`` on main. Both spellings are accepted. The label names are
``Labels`` (the autoscaler's --pod-label, --namespace-label, --host-label,
--model-label flags), today's names by default.

GPU utilisation: dcgm-exporter names a pod only for containers holding
``nvidia.com/gpu`` devices, so pods sharing a GPU through gpusched have no DCGM
series of their own. For the pods DCGM does not name, the node agent's
``gpusched_pod_gpu_utilization`` (the pod's processes' SM share, from NVML) is read.

Always with a client-side timeout: prometheus-api-client sets none by default.
"""
from __future__ import annotations

import inspect
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final, Mapping, Protocol, Sequence

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from .policy import RATE_WINDOW_S, Observation
from .promql_scope import UnsafeQuery, scope_query
from .spec import ActivationSpec, AutoscalerSpec, SignalSpec

DEFAULT_TIMEOUT_S: Final = 5.0

QUEUE_METRICS: Final = {
    "vllm": "vllm:num_requests_waiting",
    "tgi": "tgi_queue_size",
    "triton": "nv_inference_pending_request_count",
}
GPU_UTIL_METRIC: Final = "DCGM_FI_DEV_GPU_UTIL"
POD_GPU_UTIL_METRIC: Final = "gpusched_pod_gpu_utilization"  # the node agent's (scheduler.agent.metrics)
KV_CACHE_METRICS: Final = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # new name first


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class Labels:
    """The label names the series carry on this cluster's Prometheus. ``pod`` and
    ``namespace`` are the scrape targets' (a PodMonitor's relabelling) and
    dcgm-exporter's; without honorLabels a series' own ``pod`` turns into
    ``exported_pod``, which is read too."""

    pod: str = "pod"
    namespace: str = "namespace"
    hosts: tuple[str, ...] = ("Hostname", "hostname")  # dcgm-exporter: releases, main
    model_name: str = "model_name"

    def __post_init__(self) -> None:
        for name in (self.pod, self.namespace, self.model_name, *self.hosts):
            if not _LABEL_NAME.fullmatch(name or ""):
                raise ValueError(f"{name!r} is not a Prometheus label name")
        if not self.hosts:
            raise ValueError("give at least one host label name")


@dataclass(frozen=True)
class Scope:
    """Which series belong to the target. Give ``pods`` (serving pod names) where known;
    ``pod_regex`` otherwise. Empty fields do not filter."""

    namespace: str | None = None
    pods: tuple[str, ...] = ()
    pod_regex: str | None = None
    model_name: str | None = None
    hosts: tuple[str, ...] = ()  # node names, for DCGM without pod labels
    labels: Labels = Labels()

    @property
    def pod_label(self) -> str:
        return self.labels.pod

    @property
    def namespace_label(self) -> str:
        return self.labels.namespace

    def pod_pattern(self) -> str | None:
        if self.pods:
            return "|".join(re.escape(p) for p in self.pods)
        return self.pod_regex


@dataclass(frozen=True)
class Reading:
    value: float | None
    reason: str  # what was read, or why it is unknown
    query: str = ""
    # how many ready replicas a per-replica average is over when some have no sample yet
    # (Ready since the last scrape); None = all of them, or not known per pod
    reporting: int | None = None

    @property
    def known(self) -> bool:
        return self.value is not None


class Signal(Protocol):
    kind: str

    def query(self, spec: SignalSpec, scope: Scope) -> str: ...

    def read(self, client: PrometheusConnect, spec: SignalSpec, now: float | None, *, scope: Scope,
             ready: int, timeout: float = DEFAULT_TIMEOUT_S) -> Reading: ...


# ---------------------------------------------------------------- client

class TimeoutSession(requests.Session):
    """A Session that never sends a request without a timeout, whatever the caller
    (or an older prometheus-api-client that has no ``timeout`` of its own) passes."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT_S):
        super().__init__()
        self.default_timeout = timeout

    def request(self, method, url, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, **kwargs)


_INIT_PARAMS: Final = frozenset(inspect.signature(PrometheusConnect.__init__).parameters)
_QUERY_TAKES_TIMEOUT: Final = "timeout" in inspect.signature(PrometheusConnect.custom_query).parameters


def connect(url: str, *, timeout: float = DEFAULT_TIMEOUT_S, retries: int = 0,
            headers: Mapping[str, str] | None = None, disable_ssl: bool = False,
            session: requests.Session | None = None) -> PrometheusConnect:
    """A PrometheusConnect that always has a timeout and by default no retries: the
    library's default (3 retries with backoff on 5xx) can hold a decision for many
    seconds, while the control loop asks again next tick anyway. A read then takes at
    most about ``timeout`` x (1 + ``retries``).
    ``session`` replaces the transport (tests); it gets the timeout too when it is a
    TimeoutSession, and the client's own timeout where the library has one."""
    if "session" not in _INIT_PARAMS and "timeout" not in _INIT_PARAMS:
        raise RuntimeError("prometheus-api-client is too old to set a request timeout; need >= 0.5.5")
    retry = Retry(total=retries, backoff_factor=0.2, status_forcelist=[429, 502, 503, 504],
                  allowed_methods=["GET", "POST"], raise_on_status=False)
    kwargs: dict[str, Any] = {"url": url, "headers": dict(headers) if headers else None,
                              "disable_ssl": disable_ssl, "retry": retry}
    if "timeout" in _INIT_PARAMS:
        kwargs["timeout"] = timeout
    if "session" in _INIT_PARAMS:
        if session is None:
            session = TimeoutSession(timeout)
            session.verify = not disable_ssl
        kwargs["session"] = session
    elif session is not None:
        raise RuntimeError("this prometheus-api-client takes no session")
    return PrometheusConnect(**kwargs)


def _label_value(v: str) -> str:
    return json.dumps(v)  # PromQL strings take Go/JSON escapes


def _matchers(pairs: Sequence[tuple[str, str, str]]) -> str:
    parts = [f"{k}{op}{_label_value(v)}" for k, op, v in pairs if v]
    return "{" + ",".join(parts) + "}"


def _scope_matchers(scope: Scope, *, pod_label: str | None = None, ns_label: str | None = None,
                    model: bool = True) -> str:
    pairs: list[tuple[str, str, str]] = []
    if scope.namespace:
        pairs.append((ns_label or scope.namespace_label, "=", scope.namespace))
    pat = scope.pod_pattern()
    if pat:
        pairs.append((pod_label or scope.pod_label, "=~", pat))
    if model and scope.model_name:
        pairs.append((scope.labels.model_name, "=", scope.model_name))
    return _matchers(pairs)


def _describe_http_error(exc: PrometheusApiClientException) -> str:
    msg = str(exc)
    m = re.match(r"HTTP Status Code (\d+) \((.*)\)$", msg, re.S)
    if not m:
        return f"Prometheus error: {msg[:300]}"
    code, body = m.group(1), m.group(2)
    # body is repr(bytes): b'...'
    text = body[2:-1] if body[:2] in ("b'", 'b"') else body
    try:
        payload = json.loads(text.encode().decode("unicode_escape"))
        if isinstance(payload, dict) and payload.get("status") == "error":
            return f"Prometheus HTTP {code} {payload.get('errorType', 'error')}: {payload.get('error', '')}"[:500]
    except (ValueError, UnicodeDecodeError):
        pass
    kind = "HTML page" if "<html" in text.lower() or "<!doctype" in text.lower() else "non-JSON body"
    return f"Prometheus HTTP {code} ({kind}: {text[:120]!s})"


def _sample(v: Any) -> float:
    """Value of an instant sample [ts, "value"]."""
    if not (isinstance(v, (list, tuple)) and len(v) == 2):
        raise ValueError(f"malformed sample {v!r}")
    return float(v[1])


def instant_query(client: PrometheusConnect, promql: str, now: float | None,
                  timeout: float = DEFAULT_TIMEOUT_S) -> tuple[list[tuple[dict, float]] | None, str]:
    """Run an instant query at ``now`` (None: at Prometheus's own time, which the daemon
    uses). Returns ([(labels, value)], "") or (None, why).
    Values are finite (NaN/Inf rejected); a scalar result is one unlabeled series."""
    # Prometheus's own `timeout`: the server stops evaluating when the client gives up, so a
    # tenant's heavy query costs Prometheus at most this long (not its --query.timeout, 2 min)
    params = {"timeout": f"{timeout:g}"}  # in seconds
    if now is not None:
        params["time"] = f"{now:.3f}"
    try:
        if _QUERY_TAKES_TIMEOUT:
            result = client.custom_query(promql, params=params, timeout=timeout)
        else:  # the client's own (connect() sets one) or TimeoutSession's timeout applies
            result = client.custom_query(promql, params=params)
    except (requests.exceptions.JSONDecodeError, json.JSONDecodeError) as e:  # an HTML page with 200
        return None, f"Prometheus answered non-JSON (an HTML page or a proxy?): {_short(e)}"
    except requests.exceptions.Timeout:
        return None, f"Prometheus timed out after {timeout:g}s"
    except requests.exceptions.ConnectionError as e:
        text = str(e)
        if "Read timed out" in text or "ReadTimeoutError" in text:  # a timeout after urllib3's retries
            return None, f"Prometheus timed out after {timeout:g}s"
        for known in ("Connection refused", "Name or service not known", "No route to host",
                      "Temporary failure in name resolution", "Connection reset by peer"):
            if known in text:
                return None, f"Prometheus unreachable: {known.lower()} ({client.url})"
        return None, f"Prometheus unreachable: {_short(e)}"
    except PrometheusApiClientException as e:
        return None, _describe_http_error(e)
    except requests.exceptions.RequestException as e:
        return None, f"Prometheus request failed: {_short(e)}"
    except ValueError as e:
        return None, f"Prometheus answered something unreadable: {_short(e)}"
    except (KeyError, TypeError) as e:
        return None, f"Prometheus answered malformed JSON: missing {_short(e)}"
    except Exception as e:  # never let an adapter take the control loop down
        return None, f"Prometheus query failed: {type(e).__name__}: {_short(e)}"
    try:
        if not isinstance(result, list):
            return None, f"unexpected result type {type(result).__name__}"
        if len(result) == 2 and not isinstance(result[0], dict):
            series: list[tuple[dict, float]] = [({}, float(result[1]))]  # scalar: [ts, "v"]
        else:
            series = []
            for item in result:
                if not isinstance(item, dict) or "value" not in item:
                    if isinstance(item, dict) and "values" in item:
                        return None, "query returned a range vector; an instant vector is expected"
                    return None, f"malformed series {str(item)[:120]}"
                series.append((dict(item.get("metric") or {}), _sample(item["value"])))
    except (ValueError, TypeError) as e:
        return None, f"unparseable sample value: {_short(e)}"
    bad = [(lab, v) for lab, v in series if not math.isfinite(v)]
    if bad:
        return None, f"{len(bad)} of {len(series)} series are NaN/Inf"  # counts only: no label sets
    return series, ""


def _short(e: BaseException) -> str:
    s = str(e)
    return s if len(s) <= 200 else s[:200] + "..."


def _empty(q: str) -> str:
    return "query returned no series (target not scraped, wrong labels, or metric not exported)"


# ---------------------------------------------------------------- adapters

def _some_series(client: PrometheusConnect, q: str, now: float | None,
                 timeout: float) -> tuple[list[tuple[dict, float]], Reading | None]:
    """The series ``q`` answers, or the unknown Reading that says why there are none
    (the query failed, or nothing matched)."""
    series, why = instant_query(client, q, now, timeout)
    if series is None:
        return [], Reading(None, why, q)
    if not series:
        return [], Reading(None, _empty(q), q)
    return series, None


class QueueDepth:
    """Waiting requests per ready serving replica: the per-pod series summed (engines
    too), divided by ``ready``. When fewer pods report than are ready, the average is
    over those that report, and the Reading says how many: the policy then weighs the
    others as HPA weighs pods without a sample (policy._missing_as_hpa), not as empty
    queues nor as copies of the average."""

    kind = "queueDepth"

    def query(self, spec: SignalSpec, scope: Scope) -> str:
        metric = QUEUE_METRICS[spec.server]
        return f"{metric}{_scope_matchers(scope, model=spec.server == 'vllm')}"

    def read(self, client, spec, now, *, scope, ready, timeout=DEFAULT_TIMEOUT_S) -> Reading:
        q = self.query(spec, scope)
        series, unknown = _some_series(client, q, now, timeout)
        if unknown is not None:
            return unknown
        if ready <= 0:
            return Reading(None, "no ready serving replicas to average over", q)
        total = sum(v for _, v in series)
        if total < 0:
            return Reading(None, f"negative queue total {total:g}", q)
        pods = {lab.get(scope.pod_label) for lab, _ in series}
        reporting = len(pods) if None not in pods else len(series)
        if reporting < ready:
            return Reading(total / reporting, f"{total:g} waiting over {reporting} of {ready} ready replicas "
                                              f"that report = {total / reporting:g}/replica", q, reporting)
        return Reading(total / ready, f"{total:g} waiting / {ready} ready = {total / ready:g}/replica", q)


class GpuUtilization:
    """Average GPU utilisation (percent) over the target's GPUs: DCGM_FI_DEV_GPU_UTIL per
    GPU for the pods dcgm-exporter names, the agent's per-pod SM share for the others
    (pods sharing a GPU through gpusched). A pod named by neither is left out of the
    average, as a pod that does not report its queue is, and counted in ``reporting``;
    none at all is unknown."""

    kind = "gpuUtilization"

    def query(self, spec: SignalSpec, scope: Scope) -> str:
        m = GPU_UTIL_METRIC
        if scope.pod_pattern() or scope.namespace:
            return _both_spellings(m, scope)
        if scope.hosts:
            pat = "|".join(re.escape(h) for h in scope.hosts)
            return "(" + " or ".join(f"{m}{_matchers([(h, '=~', pat)])}" for h in scope.labels.hosts) + ")"
        return m

    def agent_query(self, scope: Scope) -> str:
        return _both_spellings(POD_GPU_UTIL_METRIC, scope)

    def read(self, client, spec, now, *, scope, ready, timeout=DEFAULT_TIMEOUT_S) -> Reading:
        q = self.query(spec, scope)
        series, why = instant_query(client, q, now, timeout)
        if series is None:
            return Reading(None, why, q)
        note = ""
        if scope.pod_pattern() or scope.namespace:
            named = {_pod_of(lab, scope) for lab, _ in series}
            if not scope.pods or set(scope.pods) - named:  # some pod may have no DCGM series
                aq = self.agent_query(scope)
                agent, awhy = instant_query(client, aq, now, timeout)
                q = f"{q}; {aq}"
                if agent is None:
                    if not series:
                        return Reading(None, f"no DCGM series; the agent's per-pod series: {awhy}", q)
                    note = f" (the agent's per-pod series unreadable: {awhy})"
                else:
                    extra = [(lab, v) for lab, v in agent if _pod_of(lab, scope) not in named]
                    if extra:
                        note = f" ({len(extra)} of them per-pod SM shares from the node agent)"
                    series = series + extra
        if not series:
            return Reading(None, _empty(q), q)
        vals = [v for _, v in series]
        if any(v < 0 or v > 100 for v in vals):
            return Reading(None, f"GPU utilisation outside 0..100: {vals[:5]}", q)
        avg = sum(vals) / len(vals)
        return Reading(avg, f"mean GPU utilisation {avg:g}% over {len(vals)} GPUs{note}", q,
                       _fewer_than_ready(series, scope, ready))


def _both_spellings(metric: str, scope: Scope) -> str:
    """The series with the pod's labels as they are, or as exported_* (a scrape without
    honorLabels renames a series' own pod/namespace that way)."""
    lab = scope.labels
    a = f"{metric}{_scope_matchers(scope, model=False)}"
    b = f"{metric}{_scope_matchers(scope, pod_label='exported_' + lab.pod, ns_label='exported_' + lab.namespace, model=False)}"
    return f"({a} or {b})"


def _pod_of(labels: Mapping[str, str], scope: Scope) -> str | None:
    return labels.get(scope.labels.pod) or labels.get("exported_" + scope.labels.pod)


def _fewer_than_ready(series: Sequence[tuple[Mapping[str, str], float]], scope: Scope, ready: int) -> int | None:
    """How many ready replicas an average over ``series`` is over, when fewer than
    ``ready`` pods are named (one Ready since the last scrape has no series yet); None when
    all are, or when a series names no pod (a count of pods is then not known). The
    average is per series (a GPU, an engine) and the count per pod: the policy's fill-in
    is exact when the target's pods are alike, as a Deployment's are."""
    if not scope.pods:
        # only a scope of named pods (the daemon's ready ones) says how many of them report: a
        # regex, a namespace or hosts may match pods that are not Ready or not the target's
        return None
    pods = {_pod_of(lab, scope) for lab, _ in series}
    if None in pods or len(pods) >= ready:
        return None
    return len(pods)


class KvCache:
    """Average vLLM KV-cache usage (fraction 0..1) over the target's pods; the old
    metric name where a server only has that one. Like QueueDepth, says how many ready
    replicas it averages over when some have no series yet."""

    kind = "kvCache"

    def query(self, spec: SignalSpec, scope: Scope) -> str:
        sel = _scope_matchers(scope)
        new, old = KV_CACHE_METRICS
        # `or` matches on labels without the name: a pod exporting both counts once.
        return f"({new}{sel} or {old}{sel})"

    def read(self, client, spec, now, *, scope, ready, timeout=DEFAULT_TIMEOUT_S) -> Reading:
        q = self.query(spec, scope)
        series, unknown = _some_series(client, q, now, timeout)
        if unknown is not None:
            return unknown
        vals = [v for _, v in series]
        if any(v < 0 or v > 1 for v in vals):
            return Reading(None, f"KV-cache usage outside 0..1: {vals[:5]}", q)
        avg = sum(vals) / len(vals)
        return Reading(avg, f"mean KV-cache usage {avg:g} over {len(vals)} series", q,
                       _fewer_than_ready(series, scope, ready))


class PromQL:
    """The user's query, which must return exactly one series (or a scalar): the
    per-replica value. Confined to the object's namespace before it is sent: every
    vector selector gets ``namespace="<ns>"`` (autoscaler.promql_scope, as
    prom-label-proxy does); a query that cannot be rewritten safely is not sent. What
    it answers is reported as counts and values, never as label sets (they would carry
    other series' labels into status and Events)."""

    kind = "promql"

    def query(self, spec: SignalSpec, scope: Scope) -> str:
        if not scope.namespace:
            raise UnsafeQuery("a promql signal is read only for an object's namespace")
        return scope_query(spec.query or "", scope.namespace, scope.namespace_label)

    def read(self, client, spec, now, *, scope, ready, timeout=DEFAULT_TIMEOUT_S) -> Reading:
        if not (spec.query or "").strip():
            return Reading(None, "empty query")
        try:
            q = self.query(spec, scope)
        except UnsafeQuery as e:
            return Reading(None, f"query refused: {e}")
        series, unknown = _some_series(client, q, now, timeout)
        if unknown is not None:
            return unknown
        if len(series) > 1:
            return Reading(None, f"query returned {len(series)} series; one is expected: "
                                 f"aggregate it (sum, avg, max)", q)
        return Reading(series[0][1], f"{series[0][1]:g}", q)


ADAPTERS: Final[Mapping[str, Signal]] = {
    a.kind: a for a in (QueueDepth(), GpuUtilization(), KvCache(), PromQL())
}


def recent_window_on(seconds: float) -> bool:
    """Whether a --recent-window reads anything: 0 is off, and a window as long as the
    1 m rate's is not a recent one (the simulator keeps no scrape older than that)."""
    return 0 < seconds < RATE_WINDOW_S


def recent_window_problem(seconds: float) -> str | None:
    """Why ``seconds`` is no --recent-window (the daemon's and the bench's flag), or None."""
    if seconds == 0 or recent_window_on(seconds):
        return None
    return f"must be 0 (off) or seconds below the 1 m rate's window, got {seconds:g}"


def _window_ms(seconds: float) -> int:
    """A window (> 0) to the millisecond, at least 1: what a PromQL range can say."""
    return max(1, round(seconds * 1000))


def promql_duration(seconds: float) -> str:
    """A PromQL range for ``seconds`` (> 0), to the millisecond: 30 -> "30s", 2.5 -> "2500ms"."""
    ms = _window_ms(seconds)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def arrival_rate_query(server: str, scope: Scope, window_s: float = RATE_WINDOW_S) -> str:
    """Requests/s arriving over the last ``window_s``. TGI counts requests on arrival;
    vLLM and Triton count them on completion, so their arrivals are completions plus the
    growth of those in the system (waiting + running).

    The growth is the fleet's total now less its total ``window_s`` ago, not a sum of
    per-pod ``deriv``: a pod scraped once has no slope, so at every scale-up the
    requests a new pod took from the others read as the others' queues falling, and the
    sum under-read the arrivals just when they rose (the trace simulator, reading its
    Prometheus as promql/functions.go does, lost azure-code's SLO to it). The total moves
    with the requests, not with the pods. Each pod's value is its last sample within a
    window (``last_over_time``: a range skips the staleness markers one failed scrape
    writes, which would drop the pod from a plain lookup). Scrapes are periodic, so with
    a window that is a multiple of the scrape interval the two totals' samples are
    exactly the window apart. Only with no sample of these pods a window ago do the
    terms read 0 (everything in the system now arrived within it); otherwise a missing
    term leaves the result empty: unknown, not zero."""
    sel = _scope_matchers(scope, model=server == "vllm")
    w = promql_duration(window_s)
    if server == "tgi":
        return f"sum(rate(tgi_request_count{sel}[{w}]))"
    gauges: tuple[str, ...]
    if server == "vllm":
        done, gauges = "vllm:request_success_total", ("vllm:num_requests_waiting", "vllm:num_requests_running")
    elif server == "triton":
        done, gauges = "nv_inference_request_success", ("nv_inference_pending_request_count",)
    else:
        raise ValueError(f"unknown server {server!r}")
    new = f"(vector(0) unless sum({done}{sel} offset {w}))"  # no pod then: nothing done, nothing in flight
    now = " + ".join(f"sum(last_over_time({g}{sel}[{w}]))" for g in gauges)
    before = " + ".join(f"sum(last_over_time({g}{sel}[{w}] offset {w}))" for g in gauges)
    span = _window_ms(window_s) / 1000  # the range's own length, as promql_duration rounds it
    return f"(sum(rate({done}{sel}[{w}])) or {new}) + ({now} - (({before}) or {new})) / {span:g}"


def read_arrival_rate(client: PrometheusConnect, server: str, scope: Scope, now: float | None, *,
                      timeout: float = DEFAULT_TIMEOUT_S, window_s: float = RATE_WINDOW_S) -> Reading:
    """Arrival rate in requests/s (clamped at 0: a draining queue is not negative demand)."""
    try:
        q = arrival_rate_query(server, scope, window_s)
    except ValueError as e:
        return Reading(None, str(e))
    series, unknown = _some_series(client, q, now, timeout)
    if unknown is not None:
        return unknown
    if len(series) > 1:
        return Reading(None, f"arrival-rate query returned {len(series)} series; one is expected", q)
    v = max(0.0, series[0][1])
    return Reading(v, f"{v:g} req/s", q)


def activation_query(act: ActivationSpec, namespace: str, window: str = "1m") -> str:
    """Requests counted at the gateway for this model in the last ``window``: the
    counter's growth, or, for a counter born within the window (Istio creates the series
    on its first request, and ``increase`` needs two samples), its whole count. The
    selector is built here, never taken from the tenant: the namespace matcher is
    always the object's namespace, the other labels only narrow it."""
    pairs = [(act.namespace_label, "=", namespace)] + [(k, "=", v) for k, v in act.labels]
    sel = _matchers(pairs)
    return (f"clamp_min(sum({act.metric}{sel}) - sum({act.metric}{sel} offset {window}), 0)"
            f" or sum({act.metric}{sel})")


def read_activation(client: PrometheusConnect, act: ActivationSpec, namespace: str, now: float | None, *,
                    timeout: float = DEFAULT_TIMEOUT_S, window: str = "1m") -> Reading:
    """Requests seen at the gateway over ``window`` (> 0: the model is in use). No series
    is unknown, not zero: wrong labels must not read as an idle model."""
    if not namespace:
        return Reading(None, "no namespace to scope the activation query to")
    q = activation_query(act, namespace, window)
    series, unknown = _some_series(client, q, now, timeout)
    if unknown is not None:
        return unknown
    v = max(0.0, series[0][1])
    return Reading(v, f"{v:g} requests at the gateway in the last {window}", q)


def read_signal(client: PrometheusConnect, spec: SignalSpec, now: float | None, *, scope: Scope, ready: int,
                timeout: float = DEFAULT_TIMEOUT_S) -> Reading:
    adapter = ADAPTERS.get(spec.type)
    if adapter is None:
        return Reading(None, f"no adapter for signal type {spec.type!r}")
    try:
        return adapter.read(client, spec, now, scope=scope, ready=ready, timeout=timeout)
    except Exception as e:  # an adapter bug must not escape into the control loop
        return Reading(None, f"{spec.type} adapter failed: {type(e).__name__}: {_short(e)}")


def read_signals(client: PrometheusConnect, spec: AutoscalerSpec, now: float | None, *, scope: Scope, ready: int,
                 timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, Reading]:
    """Every signal of ``spec`` by name; feed ``values(...)`` and ``reasons(...)`` to
    policy.Observation(signals=..., notes=...)."""
    return {s.name: read_signal(client, s, now, scope=scope, ready=ready, timeout=timeout) for s in spec.signals}


def values(readings: Mapping[str, Reading]) -> dict[str, float | None]:
    return {k: r.value for k, r in readings.items()}


def reasons(readings: Mapping[str, Reading]) -> dict[str, str]:
    return {k: r.reason for k, r in readings.items() if r.value is None}


def observation(ready: int, pending: int, warm: int, readings: Mapping[str, Reading],
                arrival: Reading | None, activation: Reading | None = None,
                at_zero: bool = False, recent: Reading | None = None,
                recent_window_s: float | None = None) -> tuple[Observation, dict[str, str]]:
    """The policy's Observation from the pool's counts (autoscaler.warmpool.count) and
    what Prometheus answered; pure, shared by the daemon and the trace simulator so
    both feed ``decide`` the same thing. ``arrival`` is None when the spec has no SLO
    (the arrival rate is not read), ``activation`` when the spec has none. Also returns
    why each unknown input is unknown, by name (arrivalRate and activation included),
    for the SignalsKnown condition. ``at_zero`` (scaled to zero, with an activation):
    the pods' series are gone as expected, so only the activation's absence is reported
    (the policy still sees them unknown). ``recent``: the arrival rate over the last
    scrapes (None: not read), over ``recent_window_s`` (the --recent-window, the count
    whose noise the policy allows for); it only ever adds replicas, so its absence is not
    a note."""
    notes = reasons(readings)
    rate = None
    if arrival is not None:
        rate = arrival.value
        if arrival.value is None:
            notes = {**notes, "arrivalRate": arrival.reason}
    act = None
    if activation is not None:
        act = activation.value
        if act is None:
            notes = {**notes, "activation": activation.reason}
    obs = Observation(ready=ready, pending=pending, warm=warm, signals=values(readings), arrival_rate=rate,
                      activation=act, arrival_rate_recent=None if recent is None else recent.value,
                      arrival_rate_recent_window_s=None if recent is None else recent_window_s,
                      notes={k: v for k, v in notes.items() if k in readings},
                      reporting={k: r.reporting for k, r in readings.items()
                                 if r.value is not None and r.reporting is not None})
    if at_zero and activation is not None:
        notes = {k: v for k, v in notes.items() if k == "activation"}
    return obs, notes
