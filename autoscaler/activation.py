"""The wake path from zero: which InferenceAutoscaler a wake names, whether it may be
woken, and how often.

A request for a model at zero finds no Ready pod behind its Service. The gateway's
fallback for that case calls the daemon's activation endpoint
(``autoscaler.activation_http``), as Knative's activator and KEDA's HTTP add-on
interceptor do, so the model wakes at the request's arrival instead of at the next
scrape of the gateway's counter (15 s) plus a tick. The wake is an input of the policy
with its time (``policy.Observation.wake``); this module only turns a call into that
time, and stays off the data path: the caller gets 503 with Retry-After and retries.

Two forms of call, each resolved against the daemon's informer cache, never the API
server (a flood of wakes costs memory lookups, no request to anyone):
- ``POST /activate/<namespace>/<name>``: the InferenceAutoscaler by name (Envoy, a
  router, curl);
- ingress-nginx's custom-errors default backend: any path, with its ``X-Namespace`` and
  ``X-Service-Name`` headers naming the model's Service; the InferenceAutoscaler is the
  one of that namespace whose name is the Service's or whose ``spec.activation.labels``
  name it (they pick the model's Service already).

Refused: names that are not DNS-1123 (400), objects that do not exist in a watched
namespace (404) and objects that did not opt in (403: only ``minReplicas: 0`` objects
can be at zero, and only they are woken). A valid wake is rate-limited per object (one
taken per ``per_object_s``; the others are answered alike, the model is waking anyway)
and over all objects (a token bucket), so a flood neither grows memory nor queues
reconciles; a wake never sets a replica count, so it cannot scale past maxReplicas: the
policy decides, and the 0 -> 1 step is all a wake asks for.

Clock-free: every method takes ``now``.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Callable, Final, Mapping

from scheduler import names

PREFIX: Final = "/activate/"
# ingress-nginx's custom-errors headers (its user guide, "Custom errors")
NAMESPACE_HEADER: Final = "X-Namespace"
SERVICE_HEADER: Final = "X-Service-Name"
MAX_PATH: Final = 512
RETRY_AFTER_MIN_S: Final = 1
# OpenAI's and most HTTP clients' retry honours Retry-After up to a minute
RETRY_AFTER_MAX_S: Final = 60
RETRY_AFTER_UNKNOWN_S: Final = 5  # no coldStartSeconds given


@dataclass(frozen=True)
class Answer:
    code: int  # HTTP status
    message: str
    key: str | None = None  # namespace/name of the InferenceAutoscaler named
    woken: bool = False  # the wake was taken (recorded, a reconcile asked for)
    retry_after: int | None = None  # seconds, with 503


def target_of(method: str, path: str, headers: Mapping[str, str]) -> tuple[str, str, bool] | Answer:
    """(namespace, name, by_service) from a call, or the refusal. ``by_service``: the
    name is a Service's (the ingress-nginx form), not the InferenceAutoscaler's."""
    path = path.split("?", 1)[0]
    if len(path) > MAX_PATH:
        return Answer(414, f"path longer than {MAX_PATH} characters")
    if path.startswith(PREFIX):
        if method != "POST":
            return Answer(405, f"{method} {PREFIX}<namespace>/<name>: use POST")
        parts = path[len(PREFIX):].rstrip("/").split("/")
        if len(parts) != 2:
            return Answer(400, f"expected {PREFIX}<namespace>/<name>")
        ns, name = parts
        by_service = False
    else:
        lower = {k.lower(): v for k, v in headers.items()}  # HTTP header names are case-insensitive
        ns, name = lower.get(NAMESPACE_HEADER.lower(), ""), lower.get(SERVICE_HEADER.lower(), "")
        if not ns and not name:
            return Answer(404, f"not found: POST {PREFIX}<namespace>/<name>, or a fallback call with "
                               f"{NAMESPACE_HEADER} and {SERVICE_HEADER}")
        by_service = True
    why = names.label_error(ns)
    if why is not None:
        return Answer(400, f"namespace: {why}")
    why = names.subdomain_error(name)
    if why is not None:
        return Answer(400, f"name: {why}")
    return ns, name, by_service


def names_service(obj: Mapping[str, Any], service: str) -> bool:
    """Whether the InferenceAutoscaler fronts ``service``: by its own name, or its
    activation labels pick that Service."""
    if (obj.get("metadata") or {}).get("name") == service:
        return True
    act = (obj.get("spec") or {}).get("activation")
    labels = act.get("labels") if isinstance(act, Mapping) else None
    return isinstance(labels, Mapping) and service in labels.values()


def opt_in_error(obj: Mapping[str, Any]) -> str | None:
    """Why the object may not be woken; None when it may (minReplicas 0). Read from the
    raw spec, so a spec the daemon refuses is refused here too (its reconcile says why)."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return "no spec"
    m = spec.get("minReplicas", 1)
    if isinstance(m, bool) or not isinstance(m, int) or m != 0:
        return f"minReplicas is {m!r}, not 0: it is never at zero, so it is never woken"
    if not isinstance(spec.get("activation"), Mapping):
        return "no spec.activation (required with minReplicas 0)"
    return None


def retry_after(obj: Mapping[str, Any]) -> int:
    """Seconds a caller should wait: the object's cold start (the time to a Ready pod),
    within [1, 60]."""
    cs = (obj.get("spec") or {}).get("coldStartSeconds")
    if isinstance(cs, bool) or not isinstance(cs, (int, float)) or not math.isfinite(cs) or cs <= 0:
        return RETRY_AFTER_UNKNOWN_S
    return int(min(RETRY_AFTER_MAX_S, max(RETRY_AFTER_MIN_S, math.ceil(cs))))


class Activator:
    """Wakes by object: validation, opt-in, rate limits, and the time of each object's
    last wake for the policy. ``lookup(namespace, name)`` and ``in_namespace(namespace)``
    read the informer cache; ``on_wake(key)`` is told of each wake taken (it must not
    block). ``acting()`` says whether this replica acts (leads): a standby takes no wake
    and asks for a retry in a second, which the Service may send to the leader."""

    def __init__(self, lookup: Callable[[str, str], dict | None], in_namespace: Callable[[str], list[dict]],
                 on_wake: Callable[[str], None] | None = None, *, acting: Callable[[], bool] = lambda: True,
                 per_object_s: float = 1.0, rate_per_s: float = 20.0, burst: int = 40):
        self.lookup, self.in_namespace, self.on_wake, self.acting = lookup, in_namespace, on_wake, acting
        self.per_object_s, self.rate_per_s, self.burst = per_object_s, rate_per_s, burst
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}  # key -> time of its last wake taken
        self._tokens = float(burst)
        self._refilled: float | None = None

    def handle(self, method: str, path: str, headers: Mapping[str, str], now: float) -> Answer:
        got = target_of(method, path, headers)
        if isinstance(got, Answer):
            return got
        ns, name, by_service = got
        if by_service:
            objs = [o for o in self.in_namespace(ns) if names_service(o, name)]
            if len(objs) > 1:
                keys = sorted(f"{ns}/{(o.get('metadata') or {}).get('name')}" for o in objs)
                return Answer(409, f"Service {ns}/{name} is named by several InferenceAutoscalers: "
                                   f"{', '.join(keys)}")
            obj = objs[0] if objs else None
            what = f"no InferenceAutoscaler for Service {ns}/{name} in a watched namespace"
        else:
            obj = self.lookup(ns, name)
            what = f"InferenceAutoscaler {ns}/{name} not found in a watched namespace"
        if obj is None:
            return Answer(404, what)
        key = f"{ns}/{(obj.get('metadata') or {}).get('name', name)}"
        why = opt_in_error(obj)
        if why is not None:
            return Answer(403, f"{key}: {why}", key)
        if not self.acting():
            return Answer(503, f"{key}: this autoscaler replica is on standby; retry (the leader wakes it)", key,
                          False, RETRY_AFTER_MIN_S)
        return self.wake(key, now, retry_after(obj))

    def wake(self, key: str, now: float, retry_s: int = RETRY_AFTER_UNKNOWN_S) -> Answer:
        """Take a wake of a checked, opted-in object, unless a limit says it is too soon."""
        with self._lock:
            last = self._last.get(key)
            if last is not None and 0 <= now - last < self.per_object_s:
                return Answer(503, f"{key}: waking (woken {now - last:.3g}s ago)", key, False, retry_s)
            if self._refilled is not None:
                self._tokens = min(float(self.burst), self._tokens + max(0.0, now - self._refilled) * self.rate_per_s)
            self._refilled = now
            if self._tokens < 1:
                return Answer(503, f"{key}: too many wakes over all objects (over {self.rate_per_s:g}/s); "
                                   "the gateway's counter still wakes it", key, False, retry_s)
            self._tokens -= 1
            self._last[key] = now
        if self.on_wake is not None:
            self.on_wake(key)
        return Answer(503, f"{key}: woken; retry in {retry_s}s", key, True, retry_s)

    def last_wake(self, key: str) -> float | None:
        with self._lock:
            return self._last.get(key)

    def forget(self, keep: set[str]) -> None:
        """Drop the wakes of objects gone (the map stays as large as the objects)."""
        with self._lock:
            for k in [k for k in self._last if k not in keep]:
                del self._last[k]


__all__ = ["Answer", "Activator", "target_of", "names_service", "opt_in_error", "retry_after", "PREFIX"]
