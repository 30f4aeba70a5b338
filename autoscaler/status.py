"""The InferenceAutoscaler's status and conditions, built from a tick's outcome. Pure.

Conditions (HPA's names where HPA has one):
- ``Ready``: the autoscaler can act on this object (spec valid, target found, last
  actuation applied). Reasons: Reconciled, DryRun, InvalidSpec, UnsupportedTarget,
  TargetNotFound, FailedGetTarget, FailedRescale, ...
- ``AbleToScale``: the target can be read and scaled. Reasons: SucceededRescale,
  ReadyForNewScale, DryRun, TargetNotFound, FailedRescale, Conflict, FailedPromote ...
- ``ScalingActive``: a decision was computed. Reasons: ValidMetricFound,
  InvalidSpec, TargetNotFound, ...
- ``SignalsKnown``: every configured input was read. Reasons (from the signal
  adapters' texts): AllSignalsKnown, PrometheusUnreachable, PrometheusTimeout,
  PrometheusBadResponse (HTML or other non-JSON), InvalidQuery (PromQL error),
  PrometheusError, NoData, AmbiguousQuery, InvalidValue, QueryRefused (a promql
  signal that cannot be confined to its namespace), SignalUnknown.
- ``ScalingLimited``: the decision was capped (maxReplicas, minReplicas, rate limit).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

READY = "Ready"
ABLE_TO_SCALE = "AbleToScale"
SCALING_ACTIVE = "ScalingActive"
SIGNALS_KNOWN = "SignalsKnown"
SCALING_LIMITED = "ScalingLimited"
ORDER = (READY, ABLE_TO_SCALE, SCALING_ACTIVE, SIGNALS_KNOWN, SCALING_LIMITED)


def classify_unknown(reason: str) -> str:
    """A CamelCase reason for why a signal is unknown, from the adapter's text."""
    r = reason or ""
    low = r.lower()
    if low.startswith("query refused"):
        return "QueryRefused"
    if "timed out" in low:
        return "PrometheusTimeout"
    if "unreachable" in low:
        return "PrometheusUnreachable"
    if "non-json" in low or "html page" in low or "unreadable" in low or "malformed json" in low:
        return "PrometheusBadResponse"
    if "bad_data" in low or "parse error" in low:
        return "InvalidQuery"
    if "prometheus http" in low or "prometheus error" in low or "request failed" in low:
        return "PrometheusError"
    if "no series" in low:
        return "NoData"
    if "one is expected" in low:
        return "AmbiguousQuery"
    if "nan" in low or "outside" in low or "negative" in low or "invalid value" in low:
        return "InvalidValue"
    return "SignalUnknown"


def signals_condition(notes: Mapping[str, str], known: Iterable[str]) -> tuple[str, str, str]:
    """(status, reason, message) of SignalsKnown from the unknown inputs' notes."""
    if not notes:
        names = ", ".join(known) or "none configured"
        return "True", "AllSignalsKnown", f"read {names}"
    classes = [classify_unknown(t) for t in notes.values()]
    reason = classes[0] if len(set(classes)) == 1 else "SignalsUnknown"
    msg = "; ".join(f"{k}: {v}" for k, v in notes.items())
    return "False", reason, (f"{msg}: holding replicas (no scale-down on missing data)")[:4000]


def cond(type_: str, status: str, reason: str, message: str, generation: int | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"type": type_, "status": status, "reason": reason, "message": message[:4000]}
    if generation is not None:
        c["observedGeneration"] = generation
    return c


def merge_conditions(old: Sequence[Mapping[str, Any]] | None, new: Sequence[Mapping[str, Any]],
                     now: str) -> list[dict[str, Any]]:
    """New conditions replacing old ones of the same type; lastTransitionTime moves only
    when the status changes. Old conditions of other types are kept."""
    before = {c.get("type"): c for c in (old or []) if isinstance(c, Mapping)}
    out: dict[str, dict[str, Any]] = {}
    for c in new:
        prev = before.get(c["type"])
        t = prev.get("lastTransitionTime") if prev and prev.get("status") == c["status"] else None
        out[c["type"]] = dict(c, lastTransitionTime=t or now)
    for k, c in before.items():
        if k not in out and isinstance(k, str):
            out[k] = dict(c)
    return sorted(out.values(), key=lambda c: (ORDER.index(c["type"]) if c["type"] in ORDER else len(ORDER),
                                               c["type"]))
