"""The extender's verbs (/filter, /prioritize, /bind) and the routes that serve them:
kube-scheduler's port (the verbs, /healthz, /readyz) and the operators' port (/metrics,
/debug/..., /healthz, /readyz). Connection handling is scheduler/extender/http.py.

Filter and prioritize read the in-memory snapshot only. Bind is the one verb that
talks to the API server, after it has reserved the GPUs in memory, so two pods
bound back to back never get the same GPU memory. It checks the pod against the pending
pods' informer copy (scheduler/extender/pending.py) when it has one, so the reservation
comes before any network call, and the Binding carries that copy's UID and resourceVersion
as preconditions; it reads the pod with a GET only when the informer lacks it.
"""
from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

from scheduler import contract
from scheduler.core import Allocation, RequestError, Weights, assign_gpus, filter_rows, parse_pod, score_rows
from scheduler.core.beside_claims import WHOLE_BESIDE_CLAIMS, claimed_rows, refuse_claimed
from scheduler.core.row_memo import RowMemo
from scheduler.extender import protocol
from scheduler.extender.claim_pods import ClaimPods
from scheduler.extender.http import BoundedHTTPServer, Limits, Request, Response
from scheduler.extender.live import LiveState
from scheduler.quantity import format_bytes

log = logging.getLogger(__name__)

# A pod that passed our filter is normally bound within milliseconds. Until its bind has
# reserved its GPUs, the next memory-share pod's filter waits (on this process, never
# the network) so that it sees the reservation; a pod that never comes to bind stops
# blocking after this long.
INFLIGHT_WAIT_S = 1.0
RETRIED_BIND_WAIT_S = 30.0  # a retried bind waits this long for the first one's outcome


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "gpusched_extender_request_seconds", "Time to answer an extender call", ["verb"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5), registry=self.registry)
        self.decisions = Counter("gpusched_extender_decisions_total", "Extender answers by verb and result",
                                 ["verb", "result"], registry=self.registry)
        self.snapshot_age = Gauge("gpusched_extender_snapshot_age_seconds",
                                  "Seconds since the snapshot was last rebuilt", registry=self.registry)
        self.nodes = Gauge("gpusched_extender_nodes", "Nodes in the snapshot", registry=self.registry)
        self.reads = Counter("gpusched_extender_requests_read_total",
                             "filter and prioritize calls for GPU pods by how their node names were read: "
                             "'rows' straight from kube-scheduler's bytes, 'decoded' in full (another shape, "
                             "or a node the snapshot lacks)", ["verb", "how"], registry=self.registry)
        self.connections = Gauge("gpusched_extender_connections",
                                 "Connections open, by port (capped; past the cap the least recently active idle "
                                 "one is closed)", ["port"], registry=self.registry)
        self.acting = Gauge("gpusched_extender_acting",
                            "1 while this extender answers verbs: no leader election, or its kube-scheduler "
                            "holds the Lease and the bound pods were listed since", registry=self.registry)
        self.claims_not_counted = Gauge("gpusched_extender_claims_not_counted",
                                        "ResourceClaims of gpu.gpusched.io the extender leaves (partly) "
                                        "uncounted: an unknown device, another node's pool, an absurd "
                                        "quantity, an allocation naming no node (nvidia.com/gpu pods are "
                                        "then not kept off it; the log says which and why)", registry=self.registry)
        self.inflight_waits = Counter("gpusched_extender_inflight_wait_seconds_total",
                                      "Time filters waited for a previous pod's bind", registry=self.registry)
        self.response_bytes = Counter("gpusched_extender_response_bytes_total",
                                      "Bytes of the verbs' answers (bodies): what kube-scheduler decodes",
                                      ["verb"], registry=self.registry)
        # port -> its server, set by the servers; their counts read at each scrape
        self.servers: dict[str, BoundedHTTPServer] = {}
        self.registry.register(_ConnectionCounts(self.servers))
        self.bind_reads = Counter("gpusched_extender_bind_pod_reads_total",
                                  "Where binds read the pod they check: 'informer' (the pending pods' "
                                  "watch, no API call), 'api' (a GET: the informer lacked the pod, or its "
                                  "copy was stale and the Binding's precondition failed)", ["source"],
                                  registry=self.registry)


class _ConnectionCounts:
    """Connections accepted and closed (by reason, http.CLOSE_REASONS) on each port: a
    client that reuses its connections shows few accepts per call."""

    def __init__(self, servers: dict[str, BoundedHTTPServer]):
        self.servers = servers

    def collect(self):
        accepted = CounterMetricFamily("gpusched_extender_connections_accepted",
                                       "Connections accepted (TLS handshakes started, with TLS), by port",
                                       labels=["port"])
        closed = CounterMetricFamily("gpusched_extender_connections_closed",
                                     "Connections closed by the extender or its clients, by port and reason: "
                                     "peer (the client closed it), idle, asked (Connection: close), answer, "
                                     "evicted (at the cap), timeout, refused, handshake, write, error, shutdown",
                                     labels=["port", "reason"])
        for port, srv in list(self.servers.items()):
            accepted.add_metric([port], srv.accepted)
            for why, n in list(srv.closed.items()):
                closed.add_metric([port, why], n)
        yield accepted
        yield closed


@dataclass
class _Bind:
    node: str
    done: threading.Event = field(default_factory=threading.Event)
    error: str = ""


@dataclass
class Extender:
    """The verbs, independent of HTTP, so tests and benchmarks call them directly."""
    live: LiveState
    # (namespace, name, uid, node, annotations, resourceVersion): the API server refuses the
    # Binding unless the pod still has that UID and, when given, that resourceVersion
    binder: Callable[[str, str, str, str, dict[str, str], str], None]
    get_pod: Callable[[str, str], dict[str, Any] | None]  # the API server's copy: what bind checks against
    weights: Weights = field(default_factory=Weights)
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], float] = time.time
    scheduler_name: str = contract.SCHEDULER_NAME  # bind refuses pods meant for any other scheduler
    # (may this extender answer now, why not): with leader election, only the leader's sidecar
    # once caught up, and a bind only while the Lease is fresh (scheduler/extender/leadership.py)
    may_act: Callable[[], tuple[bool, str]] = lambda: (True, "")
    claim_pods: ClaimPods | None = None  # pods asking gpu.gpusched.io by ResourceClaim (claim_pods.py)
    # namespace/name -> the pending pod as the API server's watch last sent it (PendingPods.get),
    # or None: then bind reads it with get_pod
    pending: Callable[[str], dict[str, Any] | None] = lambda key: None
    _details: "OrderedDict[str, dict[str, Any]]" = field(default_factory=OrderedDict)
    _inflight: dict[str, float] = field(default_factory=dict)
    _binding: dict[str, "_Bind"] = field(default_factory=dict)  # pod key -> its bind in progress
    _cv: threading.Condition = field(default_factory=threading.Condition)
    # Filter's and prioritize's per-row answers for recent pod shapes, recomputed only on rows
    # that changed since (a Deployment's replicas share a shape). A shape takes two keys (filter's
    # and prioritize's): 32 hold 16 shapes. With 8 (4 shapes), the Alibaba trace's mix (19
    # shapes in 320 pods, the commonest 8 asking for 94%) recomputed every row on most calls.
    # Each key holds a few [N] arrays and its own version of the snapshot arrays it read:
    # ~0.5 MB at 5,000 nodes for prioritize's, ~0.2 MB for filter's.
    row_memo: RowMemo = field(default_factory=lambda: RowMemo(keys_kept=32))
    # (snapshot index, claim nodes, their rows as a mask): both are replaced, never changed in
    # place, so the mask is rebuilt only when either is; a tuple, so one reference swaps it
    _claimed: tuple[Any, Any, np.ndarray] = (None, None, np.zeros(0, bool))

    # Only pods between prioritize and bind need their scores remembered (a handful at a time);
    # the bound keeps memory flat: score details hold arrays over every candidate node.
    RECENT_DETAILS = 128  # binds follow prioritize within a second; past this a placement lacks scores

    def _remember(self, store: "OrderedDict[str, Any]", key: str, value: Any, limit: int) -> None:
        with self._cv:
            store[key] = value
            store.move_to_end(key)
            while len(store) > limit:
                store.popitem(last=False)

    def _wait_for_inflight(self, key: str) -> None:
        start = time.monotonic()
        with self._cv:
            while True:
                now = time.monotonic()
                others = [t for k, t in self._inflight.items() if k != key and now - t < INFLIGHT_WAIT_S]
                if not others:
                    break
                self._cv.wait(INFLIGHT_WAIT_S - (now - min(others)))
            for k in [k for k, t in self._inflight.items() if time.monotonic() - t >= INFLIGHT_WAIT_S]:
                del self._inflight[k]
        waited = time.monotonic() - start
        if waited > 0.0005:
            self.metrics.inflight_waits.inc(waited)

    def _claimed_rows(self, snap: Any, claim_nodes: frozenset[str]) -> np.ndarray:
        index, nodes, mask = self._claimed
        if index is not snap.index or nodes is not claim_nodes:
            mask = claimed_rows(snap.index, len(snap.names), claim_nodes)
            self._claimed = (snap.index, claim_nodes, mask)
        return mask

    def _done(self, key: str) -> None:
        with self._cv:
            self._inflight.pop(key, None)
            self._cv.notify_all()

    # ---------- verbs

    def filter(self, body: bytes) -> bytes:
        view = self.live.view()
        limit = protocol.max_names(len(view.rows))
        args = protocol.parse_extender_args(body, view.rows, limit)
        key = args.pod_key
        cp = self.claim_pods.pod(args.pod) if self.claim_pods else None
        try:
            req = parse_pod(args.pod)
        except RequestError as exc:
            self.metrics.decisions.labels("filter", "bad-pod").inc()
            # Unresolvable: preempting other pods cannot fix a bad annotation.
            return protocol.filter_result(args, view.rows, np.zeros(len(args.rows), bool), [],
                                          unresolvable=f"gpusched: {exc}")
        if req.shared or cp:
            # kube-scheduler counts nvidia.com/gpu itself, so whole-GPU pods cannot be
            # over-committed by a bind still in flight; memory shares it does not see.
            self._wait_for_inflight(key)
        now = self.live.view()  # after the wait: it counts the bind waited for
        if now.rows is not view.rows:  # the node list changed meanwhile: rows mean other nodes
            args = protocol.parse_extender_args(body, now.rows, limit)
        view = now
        if req.gpu_pod:
            self.metrics.reads.labels("filter", "rows" if args.items else "decoded").inc()
        ok, why = (self.claim_pods.filter(view.snapshot, cp, args.rows) if self.claim_pods and cp
                   else filter_rows(view.snapshot, req, args.rows, self.row_memo))
        claim_nodes = self.live.claim_nodes
        hard = None
        if req.whole_gpus and not cp and claim_nodes:
            ok, why, hard = refuse_claimed(ok, why, args.rows, self._claimed_rows(view.snapshot, claim_nodes))
        answer = protocol.filter_result(args, view.rows, ok, why, hard=hard)
        if req.gpu_pod or cp:
            fit = bool(ok.any())
            self.metrics.decisions.labels("filter", "fit" if fit else "none").inc()
            if fit:
                with self._cv:
                    self._inflight[key] = time.monotonic()
        return answer

    def prioritize(self, body: bytes) -> bytes:
        view = self.live.view()
        args = protocol.parse_extender_args(body, view.rows, protocol.max_names(len(view.rows)))
        try:
            req = parse_pod(args.pod)
        except RequestError:
            return b"[]"  # filter already refused it everywhere, with the reason
        cp = self.claim_pods.pod(args.pod) if self.claim_pods else None
        req = cp.request if cp and not cp.error else req  # scored like the share it asks
        if not req.gpu_pod:
            return b"[]"  # every host scores 0, and an absent host scores 0 (prioritize_result)
        self.metrics.reads.labels("prioritize", "rows" if args.items else "decoded").inc()
        details = score_rows(view.snapshot, req, args.rows, self.weights, self.live.shapes, self.row_memo)
        self._remember(self._details, args.pod_key, details, self.RECENT_DETAILS)
        self.metrics.decisions.labels("prioritize", "scored").inc()
        return protocol.prioritize_result(view.rows, args.rows, details.score)

    def bind(self, body: bytes) -> bytes:
        b = protocol.parse_binding_args(body)
        key = b.pod_key
        with self._cv:
            first = self._binding.get(key)
            if first is None:
                self._binding[key] = mine = _Bind(b.node)
        if first is not None:
            # kube-scheduler retries a bind that outlived its httpTimeout while ours still
            # runs: answer with the first one's outcome rather than reserve a second GPU.
            return protocol.binding_result(self._retried(b, first))
        try:
            mine.error = self._bind(b)
            return protocol.binding_result(mine.error)
        finally:
            mine.done.set()
            with self._cv:
                self._binding.pop(key, None)
            self._done(key)

    def _retried(self, b: protocol.BindingArgs, first: "_Bind") -> str:
        self.metrics.decisions.labels("bind", "retried").inc()
        if first.node != b.node:
            return f"gpusched: pod {b.pod_key} is being bound to {first.node}, not {b.node}"
        if not first.done.wait(RETRIED_BIND_WAIT_S):
            return f"gpusched: the first bind of {b.pod_key} to {b.node} has not finished"
        return first.error

    def _bind(self, b: protocol.BindingArgs) -> str:
        error, stale = self._bind_once(b, cached=True)
        if stale:
            # the informer's copy was older than the API server's pod: check the pod afresh
            self.metrics.decisions.labels("bind", "stale-copy").inc()
            error, _ = self._bind_once(b, cached=False)
        return error

    def _bind_once(self, b: protocol.BindingArgs, cached: bool) -> tuple[str, bool]:
        """(error, stale): stale when the pod came from the informer and the API server
        refused the Binding with a 409 (the pod changed, or was bound, since that copy), or
        its claims did not check out (the copy may lack the claims' names);
        nothing stays reserved then, and the caller checks again with a GET."""
        key = b.pod_key
        pod, refusal, from_informer = self._bindable(b, cached)
        if refusal:
            self.metrics.decisions.labels("bind", refusal[0]).inc()
            log.warning("bind %s to %s refused: %s", key, b.node, refusal[1])
            return f"gpusched: {refusal[1]}", False
        if pod is None:  # bound already, by this extender, to this very node: a retry
            self.metrics.decisions.labels("bind", "retried").inc()
            return "", False
        try:
            req = parse_pod(pod)
        except RequestError as exc:
            self.metrics.decisions.labels("bind", "bad-pod").inc()
            return f"gpusched: {exc}", False
        refused = self.claim_pods.bind(pod, b.node) if self.claim_pods else None  # counts its claims
        if refused and from_informer:
            return "", True  # the copy may predate the claim controller's resourceClaimStatuses: read the pod
        if refused:
            self.metrics.decisions.labels("bind", "claim").inc()
            log.warning("bind %s to %s refused: %s", key, b.node, refused)
            return f"gpusched: {refused}", False
        annotations: dict[str, str] = {}
        alloc = None
        if req.gpu_pod:
            with self.live.lock:
                if req.whole_gpus and b.node in self.live.claim_nodes:
                    self.metrics.decisions.labels("bind", "conflict").inc()
                    log.warning("bind %s to %s refused: claims hold GPUs there since the filter", key, b.node)
                    return f"{WHOLE_BESIDE_CLAIMS} (claimed since the filter); kube-scheduler retries the pod", False
                assignment = assign_gpus(self.live.snapshot(), b.node, req)
                if assignment.gpu_ids is None or not assignment.gpu_ids:
                    self.metrics.decisions.labels("bind", "conflict").inc()
                    log.warning("bind %s to %s refused: %s", key, b.node, assignment.reason)
                    # kube-scheduler (extender not ignorable) shows this in the pod's
                    # FailedScheduling Event and retries the pod after backoff.
                    return (f"gpusched refused to bind {key} to {b.node}: {assignment.reason} "
                            "(the node changed since the filter); kube-scheduler retries the pod"), False
                alloc = Allocation(pod_key=key, gpu_ids=tuple(assignment.gpu_ids),
                                   memory_per_gpu=assignment.memory_per_gpu, whole=req.whole_gpus > 0,
                                   count=len(assignment.gpu_ids), cpu_milli=req.cpu_milli, ram=req.ram,
                                   products=req.products)
                self.live.assume(b.node, alloc)
            # Counted: the next pod's filter may go on now, while the Binding is in flight.
            self._done(key)
            annotations = {
                contract.GPU_IDS: ",".join(map(str, alloc.gpu_ids)),
                contract.PLACEMENT: self._placement(key, b.node, req, alloc, assignment.reason),
            }
        acting, why = self.may_act()
        if not acting:
            # The fence: a deposed leader's bind goes no further than here once its Lease
            # is past renewDeadline; the next leader has not listed yet, or sees this pod Pending.
            if alloc is not None:
                self.live.forget(b.node, key)
            self.metrics.decisions.labels("bind", "not-leader").inc()
            log.warning("bind %s to %s refused: %s", key, b.node, why)
            return f"gpusched: not binding {key}: {why}", False
        meta = pod.get("metadata") or {}
        try:
            # Preconditions: the checks above read this very version of the pod.
            self.binder(b.pod_namespace, b.pod_name, b.pod_uid, b.node, annotations,
                        str(meta.get("resourceVersion") or ""))
        except Exception as exc:
            if alloc is not None:
                self.live.forget(b.node, key)
            if from_informer and getattr(exc, "status", None) == 409:
                log.info("bind %s to %s: the informer's copy is stale (%s); reading the pod", key, b.node,
                         _status_of(exc))
                return "", True
            self.metrics.decisions.labels("bind", "api-error").inc()
            log.warning("bind %s to %s failed: %s", key, b.node, exc)
            # The API server's text stays in our log: a 409 names the pod's real UID.
            return f"binding {key} to {b.node} failed: {_status_of(exc)}", False
        self.metrics.decisions.labels("bind", "bound").inc()
        log.info("bound %s to %s gpus=%s", key, b.node, annotations.get(contract.GPU_IDS, "-"))
        return "", False

    def _bindable(self, b: protocol.BindingArgs, cached: bool = True
                  ) -> tuple[dict[str, Any] | None, tuple[str, str] | None, bool]:
        """The pod as the API server has it, when it may be bound to b.node: (pod, None, from
        the informer); (None, None, _) for a retry of a bind this extender made; else (None,
        (metric, reason), _). Checked against the API server's copy (the pending pods'
        informer's, or a GET's), never against what a caller sent to /filter."""
        key = b.pod_key
        if b.node not in self.live.snapshot().index:
            return None, ("unknown-node", f"node {b.node} is not in gpusched's view of the cluster"), False
        pod = None
        # A pod this extender already counts somewhere is a retry or a recreated pod: only the
        # API server can say which; a copy from the informer could be older than our bind.
        if cached and self.live.placed_on(key) is None:
            pod = self.pending(key)
            if pod is not None and (pod.get("metadata") or {}).get("uid") != b.pod_uid:
                pod = None  # a wrong UID, or the informer still has an older pod of that name
        from_informer = pod is not None
        if from_informer:
            self.metrics.bind_reads.labels("informer").inc()
        else:
            self.metrics.bind_reads.labels("api").inc()
            try:
                pod = self.get_pod(b.pod_namespace, b.pod_name)
            except Exception as exc:
                log.warning("bind %s: reading the pod failed: %s", key, exc)
                return None, ("api-error", f"cannot read pod {key}: {_status_of(exc)}"), False
        meta, spec = (pod or {}).get("metadata") or {}, (pod or {}).get("spec") or {}
        if pod is None:
            return None, ("pod-gone", f"pod {key} does not exist"), False
        if meta.get("uid") != b.pod_uid:
            # never the real UID: a caller that knew it could try again with it
            return None, ("wrong-uid", f"PodUID does not match pod {key}"), False
        if spec.get("schedulerName") != self.scheduler_name:
            return None, ("not-ours", f"pod {key} is not for scheduler {self.scheduler_name}"), False
        if spec.get("nodeName"):
            if spec["nodeName"] == b.node and self.live.placed_on(key) == b.node:
                return None, None, False  # kube-scheduler retrying a bind that succeeded
            return None, ("already-bound", f"pod {key} is already bound to {spec['nodeName']}"), False
        if meta.get("deletionTimestamp"):
            return None, ("pod-gone", f"pod {key} is being deleted"), False
        return pod, None, from_informer

    def _placement(self, key: str, node: str, req, alloc: Allocation, reason: str) -> str:
        details = (self._details.get(key) or {}).get(node, {})
        body = {
            "node": node,
            "gpus": list(alloc.gpu_ids),
            "memoryPerGPU": format_bytes(alloc.memory_per_gpu) if alloc.memory_per_gpu else "whole",
            "score": details,
            "reason": reason,
        }
        return json.dumps(body, separators=(",", ":"), default=str)[:4096]


def _status_of(exc: Exception) -> str:
    """What may be told to a caller about an API error: its HTTP status, never its text."""
    status = getattr(exc, "status", None)
    return f"API server answered {status}" if status else type(exc).__name__


def describe_node(snap, name: str) -> dict[str, Any] | None:
    """What the extender believes about one node: for operators (`curl .../debug/nodes/NAME`) and tests."""
    row = snap.index.get(name)
    if row is None:
        return None
    gpus = [
        {"index": g, "totalMiB": int(snap.gpu_mem_total[row, g]) >> 20, "committedMiB": int(snap.committed[row, g]) >> 20,
         "freeMiB": int(snap.free[row, g]) >> 20, "usable": bool(snap.usable[row, g]),
         "exclusive": bool(snap.exclusive[row, g])}
        for g in range(snap.gpus) if snap.present[row, g]
    ]
    return {
        "node": name,
        "stale": bool(snap.stale[row]),
        "reportError": snap.report_error.get(row),
        "gpus": gpus,
        "models": {m.model: {"bytes": m.bytes, "tier": m.tier} for m in snap.node_models[row]},
        "pods": {a.pod_key: {"gpus": list(a.gpu_ids), "memoryPerGPU": a.memory_per_gpu, "inferred": a.inferred}
                 for a in snap.allocations[row]},
    }


def _json_error(status: int, message: str, close: bool = False) -> Response:
    return Response(status, orjson.dumps({"Error": message}), close=close)


def _health(req: Request, ready: Callable[[], tuple[bool, str]]) -> Response | None:
    """/healthz and /readyz, answered on the connection thread itself (never queued behind
    busy workers): a probe that waits is a probe that fails."""
    if req.method != "GET":
        return None
    if req.path == "/healthz":
        return Response(200, b"ok", "text/plain")
    if req.path == "/readyz":
        ok, why = ready()
        return Response(200 if ok else 503, why.encode(), "text/plain")
    return None


class ExtenderHTTPServer(BoundedHTTPServer):
    """kube-scheduler's port: /filter, /prioritize and /bind, and /healthz and /readyz.
    With mutual TLS only a caller holding a certificate from the client CA gets a request in."""

    def __init__(self, address: tuple[str, int], extender: Extender, ready: Callable[[], tuple[bool, str]],
                 tls: ssl.SSLContext | None = None, limits: Limits | None = None):
        super().__init__(address, self._verb, lambda req: _health(req, ready), tls, limits or VERBS_LIMITS,
                         name="extender")
        self.extender = extender
        self.ready = ready
        self._synced = False
        extender.metrics.servers["verbs"] = self

    def synced(self) -> bool:
        """Once ready, always: informers stay synced through relists."""
        if not self._synced:
            self._synced = self.ready()[0]
        return self._synced

    def _verb(self, req: Request) -> Response:
        verb = req.path.strip("/").split("?")[0]
        if req.method != "POST":
            return _json_error(404, "unknown path: /metrics and /debug are on the metrics port")
        if not self.synced():
            # Before the first list of nodes and pods, every GPU looks free: answering then
            # would double-book. kube-scheduler treats this like an extender that is down.
            return _json_error(503, f"gpusched extender not ready: {self.ready()[1]}", close=True)
        ext = self.extender
        acting, why = ext.may_act()
        if not acting:
            # kube-scheduler (extender not ignorable) records this in FailedScheduling and retries
            if verb in ("filter", "prioritize", "bind"):
                ext.metrics.decisions.labels(verb, "not-leader").inc()
            return _json_error(503, f"gpusched extender not acting: {why}")
        handler = {"filter": ext.filter, "prioritize": ext.prioritize, "bind": ext.bind}.get(verb)
        if handler is None:
            return _json_error(404, f"unknown verb {verb[:40]!r}: use /filter, /prioritize or /bind")
        start = time.perf_counter()
        try:
            out, code = handler(req.body), 200
        except protocol.TooLarge as exc:
            out, code = orjson.dumps({"Error": str(exc)}), 413
            ext.metrics.decisions.labels(verb, "too-large").inc()
        except protocol.ProtocolError as exc:
            out, code = orjson.dumps({"Error": str(exc)}), 400
            ext.metrics.decisions.labels(verb, "bad-request").inc()
        except Exception as exc:  # a bug must not take the server down; say so and keep serving
            log.exception("%s failed", verb)
            out, code = orjson.dumps({"Error": f"internal error: {type(exc).__name__}"}), 500
        ext.metrics.latency.labels(verb).observe(time.perf_counter() - start)
        ext.metrics.response_bytes.labels(verb).inc(len(out))
        return Response(code, out)


# Scrapes and probes: a few at a time, no bodies. Prometheus scrapes every 15-60 s and
# probes come every few seconds, so 60 s idle keeps their connections; the verbs' 120 s is
# for Go's 90 s client and would double how long an unauthenticated caller holds a slot here.
OPS_LIMITS = Limits(workers=2, max_connections=256, max_body=0, idle_s=60.0)
VERBS_LIMITS = Limits(max_body=protocol.MAX_BODY)


class OpsHTTPServer(BoundedHTTPServer):
    """The operators' port: /metrics, /debug/shapes, /debug/nodes/NAME, /healthz, /readyz.
    Plain HTTP on a port of its own, so that Prometheus and probes need no client
    certificate and the verbs' port admits kube-scheduler alone."""

    def __init__(self, address: tuple[str, int], extender: Extender, ready: Callable[[], tuple[bool, str]],
                 verbs: BoundedHTTPServer | None = None,
                 limits: Limits = OPS_LIMITS):
        super().__init__(address, self._get, lambda req: _health(req, ready), None, limits, name="extender-ops")
        self.extender = extender
        self.verbs = verbs
        extender.metrics.servers["metrics"] = self

    def _get(self, req: Request) -> Response:
        ext = self.extender
        if req.method != "GET":
            return _json_error(405, "only GET here")
        if req.path == "/metrics":
            ext.metrics.snapshot_age.set(max(0.0, ext.clock() - ext.live.built_at))
            ext.metrics.nodes.set(len(ext.live.snapshot().names))
            ext.metrics.acting.set(1 if ext.may_act()[0] else 0)
            ext.metrics.claims_not_counted.set(len(ext.live.claim_problems))
            ext.metrics.connections.labels("metrics").set(self.connections())
            if self.verbs is not None:
                ext.metrics.connections.labels("verbs").set(self.verbs.connections())
            return Response(200, generate_latest(ext.metrics.registry), CONTENT_TYPE_LATEST)
        if req.path == "/debug/shapes":  # the workload fragmentation is weighed against
            return Response(200, orjson.dumps([sh.as_dict() for sh in ext.live.shapes]))
        if req.path.startswith("/debug/nodes/"):
            name = req.path[len("/debug/nodes/"):]
            info = describe_node(ext.live.snapshot(), name)
            if info is not None and ext.claim_pods is not None:
                info["draDevices"] = ext.claim_pods.device_count(name)
            return Response(200 if info else 404, orjson.dumps(info or {"Error": "node not in the snapshot"}))
        return _json_error(404, "unknown path")


def server_tls_context(cert_file: str, key_file: str, client_ca_file: str | None = None) -> ssl.SSLContext:
    """TLS 1.2+ server context; with `client_ca_file`, a client certificate signed by that CA
    is required (kube-scheduler's extender tlsConfig certFile/keyFile). Raises ssl.SSLError
    / OSError on a bad or mismatched pair or CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.3 session tickets: kube-scheduler's Go client keeps no session cache, so it
    # never resumes with them, and OpenSSL's default two per connection cost the extender
    # ~0.3 ms of its ~1.4 ms CPU per accepted connection (kube-scheduler opens ~0.6 per pod).
    ctx.num_tickets = 0
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        ctx.load_verify_locations(cafile=client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
