"""The extender's HTTP server: /filter, /prioritize, /bind, /healthz, /readyz, /metrics.

Filter and prioritize read the in-memory snapshot only. Bind is the one verb that
talks to the API server, after it has reserved the GPUs in memory, so two pods
bound back to back never get the same GPU memory.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import socket
import ssl
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from scheduler import contract
from scheduler.core import (Allocation, RequestError, Weights, assign_gpus, filter_nodes, parse_pod,
                            score_candidates)
from scheduler.core.feasibility import filter_rows
from scheduler.core.row_memo import RowMemo
from scheduler.extender import protocol
from scheduler.extender.live import LiveState
from scheduler.quantity import format_bytes

log = logging.getLogger(__name__)

# A pod that passed our filter is normally bound within milliseconds. Until its bind has
# reserved its GPUs, the next memory-share pod's filter waits (on this process, never
# the network) so that it sees the reservation; a pod that never comes to bind stops
# blocking after this long.
INFLIGHT_WAIT_S = 1.0
TLS_HANDSHAKE_S = 10.0
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
        self.inflight_waits = Counter("gpusched_extender_inflight_wait_seconds_total",
                                      "Time filters waited for a previous pod's bind", registry=self.registry)


@dataclass
class _Bind:
    node: str
    done: threading.Event = field(default_factory=threading.Event)
    error: str = ""


@dataclass
class Extender:
    """The verbs, independent of HTTP, so tests and benchmarks call them directly."""
    live: LiveState
    binder: Callable[[str, str, str, str, dict[str, str]], None]  # (namespace, name, uid, node, annotations)
    get_pod: Callable[[str, str], dict[str, Any] | None]  # fallback when bind comes for a pod we never filtered
    weights: Weights = field(default_factory=Weights)
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], float] = time.time
    _recent: "OrderedDict[str, dict[str, Any]]" = field(default_factory=OrderedDict)
    _details: "OrderedDict[str, dict[str, Any]]" = field(default_factory=OrderedDict)
    _inflight: dict[str, float] = field(default_factory=dict)
    _binding: dict[str, "_Bind"] = field(default_factory=dict)  # pod key -> its bind in progress
    _cv: threading.Condition = field(default_factory=threading.Condition)
    # Filter's and prioritize's per-row answers for the last few pod shapes, recomputed only
    # on rows that changed since (a Deployment's replicas share a shape)
    row_memo: RowMemo = field(default_factory=lambda: RowMemo(keys_kept=8))

    # Only pods between filter and bind need remembering (a handful at a time); the bounds
    # keep memory flat: score details hold arrays over every candidate node.
    RECENT_PODS = 2048
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

    def _done(self, key: str) -> None:
        with self._cv:
            self._inflight.pop(key, None)
            self._cv.notify_all()

    # ---------- verbs

    def filter(self, body: bytes) -> bytes:
        read_with = self.live.snapshot()
        args = protocol.parse_extender_args(body, read_with.name_table)
        key = args.pod_key
        try:
            req = parse_pod(args.pod)
        except RequestError as exc:
            self.metrics.decisions.labels("filter", "bad-pod").inc()
            # Unresolvable: preempting other pods cannot fix a bad annotation.
            reason = f"gpusched: {exc}"
            return protocol.filter_result(args, [], {}, {n: reason for n in args.node_names})
        self._remember(self._recent, key, args.pod, self.RECENT_PODS)
        if not req.gpu_pod:
            return protocol.filter_result(args, args.node_names, {})
        if req.shared:
            # kube-scheduler counts nvidia.com/gpu itself, so whole-GPU pods cannot be
            # over-committed by a bind still in flight; memory shares it does not see.
            self._wait_for_inflight(key)
        snap = self.live.snapshot()  # after the wait: it counts the bind waited for
        by_row = args.rows is not None and snap.names is read_with.names  # rows still mean the same nodes
        self.metrics.reads.labels("filter", "rows" if by_row else "decoded").inc()
        if by_row:
            ok, why = filter_rows(snap, req, args.rows, self.row_memo)
            fit = bool(ok.any())
            answer = protocol.filter_result_rows(args, ok, why, snap.name_table, snap.names)
        else:
            feasible, failed = filter_nodes(snap, req, args.node_names, self.row_memo)
            fit = bool(feasible)
            answer = protocol.filter_result(args, feasible, failed)
        self.metrics.decisions.labels("filter", "fit" if fit else "none").inc()
        if fit:
            with self._cv:
                self._inflight[key] = time.monotonic()
        return answer

    def prioritize(self, body: bytes) -> bytes:
        snap = self.live.snapshot()
        args = protocol.parse_extender_args(body, snap.name_table)
        try:
            req = parse_pod(args.pod)
        except RequestError:
            req = None  # filter already refused it everywhere, with the reason
        if req is None or not req.gpu_pod:
            return b"[]"  # every host scores 0, and an absent host scores 0 (prioritize_result)
        self.metrics.reads.labels("prioritize", "decoded" if args.rows is None else "rows").inc()
        if args.rows is not None:
            details = score_candidates(snap, req, None, self.weights, self.live.shapes, self.row_memo, args.rows)
        else:
            details = score_candidates(snap, req, args.node_names, self.weights, self.live.shapes, self.row_memo)
        self._remember(self._details, args.pod_key, details.without_names(), self.RECENT_DETAILS)
        self.metrics.decisions.labels("prioritize", "scored").inc()
        return protocol.prioritize_result(details.names, details.score, details.rows, snap.names)

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
        key = b.pod_key
        if self.live.placed_on(key) is not None:
            # Counted already: most likely kube-scheduler retrying a bind that succeeded.
            # Reserving again would take a second GPU; but a pod recreated under the same
            # name must still be bound, so ask the API server which one this is (rare path).
            now = self.get_pod(b.pod_namespace, b.pod_name)
            meta, spec = (now or {}).get("metadata") or {}, (now or {}).get("spec") or {}
            if now is not None and meta.get("uid") == b.pod_uid and spec.get("nodeName"):
                self.metrics.decisions.labels("bind", "retried").inc()
                if spec["nodeName"] == b.node:
                    return ""
                return f"gpusched: pod {key} is already bound to {spec['nodeName']}"
        pod = self._recent.get(key)
        if pod is None or (pod.get("metadata") or {}).get("uid") != b.pod_uid:
            pod = self.get_pod(b.pod_namespace, b.pod_name)
            if pod is None:
                self.metrics.decisions.labels("bind", "pod-gone").inc()
                return f"pod {key} no longer exists"
        try:
            req = parse_pod(pod)
        except RequestError as exc:
            self.metrics.decisions.labels("bind", "bad-pod").inc()
            return f"gpusched: {exc}"
        annotations: dict[str, str] = {}
        alloc = None
        if req.gpu_pod:
            with self.live.lock:
                assignment = assign_gpus(self.live.snapshot(), b.node, req)
                if assignment.gpu_ids is None or not assignment.gpu_ids:
                    self.metrics.decisions.labels("bind", "conflict").inc()
                    log.warning("bind %s to %s refused: %s", key, b.node, assignment.reason)
                    # kube-scheduler (extender not ignorable) shows this in the pod's
                    # FailedScheduling Event and retries the pod after backoff.
                    return (f"gpusched refused to bind {key} to {b.node}: {assignment.reason} "
                            "(the node changed since the filter); kube-scheduler retries the pod")
                alloc = Allocation(pod_key=key, gpu_ids=tuple(assignment.gpu_ids),
                                   memory_per_gpu=assignment.memory_per_gpu, whole=req.whole_gpus > 0,
                                   count=len(assignment.gpu_ids))
                self.live.assume(b.node, alloc)
            # Counted: the next pod's filter may go on now, while the Binding is in flight.
            self._done(key)
            annotations = {
                contract.GPU_IDS: ",".join(map(str, alloc.gpu_ids)),
                contract.PLACEMENT: self._placement(key, b.node, req, alloc, assignment.reason),
            }
        try:
            self.binder(b.pod_namespace, b.pod_name, b.pod_uid, b.node, annotations)
        except Exception as exc:
            if alloc is not None:
                self.live.forget(b.node, key)
            self.metrics.decisions.labels("bind", "api-error").inc()
            log.warning("bind %s to %s failed: %s", key, b.node, exc)
            return f"binding {key} to {b.node} failed: {exc}"
        self.metrics.decisions.labels("bind", "bound").inc()
        log.info("bound %s to %s gpus=%s", key, b.node, annotations.get(contract.GPU_IDS, "-"))
        return ""

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


MAX_HEADER_LINE = 65536  # as http.client allows
MAX_HEADERS = 100


class _Headers(dict):
    """Request headers by lower-cased name."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


_DATE: tuple[int, str] = (0, "")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: kube-scheduler reuses connections
    server: "ExtenderHTTPServer"

    def log_message(self, fmt: str, *args: Any) -> None:  # access logs at DEBUG only
        log.debug("%s " + fmt, self.address_string(), *args)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if log.isEnabledFor(logging.DEBUG):
            super().log_request(code, size)

    def date_time_string(self, timestamp: float | None = None) -> str:
        global _DATE
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        if _DATE[0] != now:  # formatted once a second, not once a call (email.utils is slow)
            _DATE = (now, formatdate(now, usegmt=True))
        return _DATE[1]

    def parse_request(self) -> bool:
        """The request line and headers, read without the email package, which the standard
        library parses headers with: ~0.3 ms a call, a tenth of a 5,000-node filter. Extender
        calls are small HTTP/1.x requests; anything else is refused as the standard library would."""
        # HTTP/1.0 until the line says otherwise, so that even an error gets a status line
        self.command, self.request_version, self.close_connection = None, "HTTP/1.0", True
        self.requestline = line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = line.split()
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request line {line[:100]!r}")
            return False
        if words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Unsupported HTTP version {words[2][:20]!r}")
            return False
        self.command, self.path, self.request_version = words
        if self.path.startswith("//"):  # as the standard library: never an absolute URL's host
            self.path = "/" + self.path.lstrip("/")
        headers = _Headers()
        for _ in range(MAX_HEADERS + 1):
            raw = self.rfile.readline(MAX_HEADER_LINE + 1)
            if len(raw) > MAX_HEADER_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return False
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = raw.decode("iso-8859-1").partition(":")
            name = name.strip().lower()
            if not sep or not name or (name == "content-length" and name in headers):
                # two Content-Lengths could frame the body two ways: refuse, do not pick one
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad header line {raw[:100]!r}")
                return False
            headers[name] = value.strip()
        else:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (self.request_version == "HTTP/1.0"
                                                          and connection != "keep-alive")
        if headers.get("expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()  # curl asks before sending a body over 1 kB
        return True

    def setup(self) -> None:
        # Answers are small; without this, Nagle holds them for the client's delayed ACK (40 ms).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = self.server.tls
        if tls is not None:
            # The handshake runs on this connection's thread, not in accept(), so one slow
            # or hostile client cannot stall the others; the timeout bounds it.
            self.request.settimeout(TLS_HANDSHAKE_S)
            self.request = tls.wrap_socket(self.request, server_side=True)
            self.request.settimeout(None)
        super().setup()

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(body)  # headers and body in one write
        self.flush_headers()

    def do_GET(self) -> None:
        ext = self.server.extender
        if self.path == "/healthz":
            self._send(200, b"ok", "text/plain")
        elif self.path == "/readyz":
            ok, why = self.server.ready()
            self._send(200 if ok else 503, why.encode(), "text/plain")
        elif self.path == "/debug/shapes":  # the workload fragmentation is weighed against
            self._send(200, json.dumps([dataclasses.asdict(sh) for sh in ext.live.shapes]).encode())
        elif self.path.startswith("/debug/nodes/"):
            info = describe_node(ext.live.snapshot(), self.path[len("/debug/nodes/"):])
            self._send(200 if info else 404, json.dumps(info or {"Error": "node not in the snapshot"}).encode())
        elif self.path == "/metrics":
            ext.metrics.snapshot_age.set(max(0.0, ext.clock() - ext.live.built_at))
            ext.metrics.nodes.set(len(ext.live.snapshot().names))
            self._send(200, generate_latest(ext.metrics.registry), CONTENT_TYPE_LATEST)
        else:
            self._send(404, b'{"Error":"unknown path"}')

    def do_POST(self) -> None:
        verb = self.path.strip("/").split("?")[0]
        if not self.server.synced():
            # Before the first list of nodes and pods, every GPU looks free: answering then
            # would double-book. kube-scheduler treats this like an extender that is down.
            self.close_connection = True
            self._send(503, json.dumps({"Error": f"gpusched extender not ready: {self.server.ready()[1]}"}).encode())
            return
        handler = {"filter": self.server.extender.filter, "prioritize": self.server.extender.prioritize,
                   "bind": self.server.extender.bind}.get(verb)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > protocol.MAX_BODY:
            self.close_connection = True
            self._send(413 if length > 0 else 400,
                       json.dumps({"Error": f"Content-Length must be 0..{protocol.MAX_BODY}"}).encode())
            return
        body = self.rfile.read(length)
        if handler is None:
            self._send(404, json.dumps({"Error": f"unknown verb {verb!r}: use /filter, /prioritize or /bind"}).encode())
            return
        start = time.perf_counter()
        try:
            out = handler(body)
            code = 200
        except protocol.ProtocolError as exc:
            out, code = json.dumps({"Error": str(exc)}).encode(), 400
            self.server.extender.metrics.decisions.labels(verb, "bad-request").inc()
        except Exception as exc:  # a bug must not take the server down; say so and keep serving
            log.exception("%s failed", verb)
            out, code = json.dumps({"Error": f"internal error: {type(exc).__name__}"}).encode(), 500
        self.server.extender.metrics.latency.labels(verb).observe(time.perf_counter() - start)
        self._send(code, out)


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """TLS 1.2+ server context; raises ssl.SSLError / OSError on a bad or mismatched pair."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


class ExtenderHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], extender: Extender, ready: Callable[[], tuple[bool, str]],
                 tls: ssl.SSLContext | None = None):
        super().__init__(address, _Handler)
        self.extender = extender
        self.ready = ready
        self.tls = tls
        self._synced = False

    def synced(self) -> bool:
        """Once ready, always: informers stay synced through relists."""
        if not self._synced:
            self._synced = self.ready()[0]
        return self._synced

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A failed TLS handshake or a client that hangs up is the client's problem: one line, no traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError)):
            log.info("connection from %s dropped: %s", client_address[0], exc)
        else:
            super().handle_error(request, client_address)
