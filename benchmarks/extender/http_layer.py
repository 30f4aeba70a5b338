"""The HTTP layer's own cost: one extender served by different connection handlers, in turn.

Each layer serves its own copy of the same synthetic cluster and Extender (latency.py) from a
process of its own, all at once; one client process (as latency.py's: a keep-alive connection
per layer, filter then prioritize then bind per pod) sends each pod to every layer in turn,
the order rotated every pod, so that a noisy shared machine weighs on all of them alike. The
table shows medians over rounds (each round fresh servers and client). Beside latency, each
layer's process CPU time and context switches per pod: figures the machine's load moves far
less than milliseconds of wall time.

- `bounded`: the daemon's server (scheduler/extender/http.py: a selector thread, a worker
  pool, every limit of issue #14).
- `threading`: a thread per connection, the standard library's ThreadingHTTPServer with the
  hand-written head parser the extender had before issue #14 (bb3fd4b), calling the same verbs.
- `file:PATH`: a BoundedHTTPServer from another copy of http.py (e.g. `git show
  a0c1a5b:scheduler/extender/http.py > /tmp/old_http.py`), to compare two versions at once.

"overhead" is the client's p50 less the p50 inside the verbs: what the layer adds.
"""
from __future__ import annotations

import importlib.util
import multiprocessing
import resource
import socket
import statistics
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import numpy as np

from benchmarks.extender import latency
from benchmarks.testbed.nodes import node_body
from scheduler.extender.daemon import freeze_long_lived
from scheduler.extender.http import Request, Response
from scheduler.extender.live import LiveState
from scheduler.extender.server import VERBS_LIMITS, Extender, ExtenderHTTPServer


class _Threaded(BaseHTTPRequestHandler):
    """bb3fd4b's handler, reduced to what the verbs use: its own head parser (the email
    package's costs ~0.3 ms), the body read whole by Content-Length, one write per answer."""
    protocol_version = "HTTP/1.1"
    server: "_ThreadingServer"

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass

    def parse_request(self) -> bool:
        self.command, self.request_version, self.close_connection = None, "HTTP/1.0", True
        self.requestline = line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = line.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(HTTPStatus.BAD_REQUEST)
            return False
        self.command, self.path, self.request_version = words
        headers: dict[str, str] = {}
        for _ in range(101):
            raw = self.rfile.readline(65537)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("iso-8859-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = headers  # type: ignore[assignment]
        self.close_connection = headers.get("connection", "").lower() == "close"
        return True

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)  # type: ignore[union-attr]
        req = Request(method, self.path, self.headers, self.rfile.read(length))  # type: ignore[arg-type]
        resp = self.server.quick(req) or self.server.handle(req)
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(resp.body)  # headers and body in one write
        self.flush_headers()

    def do_POST(self) -> None:
        self._answer("POST")

    def do_GET(self) -> None:
        self._answer("GET")


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handle: Callable[[Request], Response],
                 quick: Callable[[Request], Response | None]):
        self.handle, self.quick = handle, quick
        super().__init__(address, _Threaded)


def _load(path: str) -> Any:
    key = f"_http_layer_{abs(hash(path))}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, path)
        assert spec is not None and spec.loader is not None
        sys.modules[key] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
        spec.loader.exec_module(sys.modules[key])
    return sys.modules[key]


def _layer(name: str, ext: Extender) -> tuple[Any, Callable[[], None]]:
    """(a server with server_address, running; its stop)."""
    verbs = ExtenderHTTPServer(("127.0.0.1", 0), ext, lambda: (True, "ok"))
    if name == "bounded":
        srv: Any = verbs
    else:
        verbs.server_close()  # only its verbs serve, behind another layer
        if name == "threading":
            srv = _ThreadingServer(("127.0.0.1", 0), verbs._verb, verbs.quick)  # type: ignore[arg-type]
        elif name.startswith("file:"):
            mod = _load(name[len("file:"):])
            limits = mod.Limits(max_body=VERBS_LIMITS.max_body)
            srv = mod.BoundedHTTPServer(("127.0.0.1", 0), verbs._verb, verbs.quick, None, limits, name="file")
        else:
            raise ValueError(f"unknown HTTP layer {name!r}: bounded, threading or file:PATH")
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    def stop() -> None:
        srv.shutdown()
        srv.server_close()
    return srv, stop


@dataclass
class Run:
    layer: str
    nodes: int
    verb: str
    p50_ms: float
    p99_ms: float
    handler_p50_ms: float
    cpu_us_per_pod: float = 0.0  # the layer's process, user + system, per pod (filter, prioritize, bind)
    switches_per_pod: float = 0.0  # its threads' context switches per pod


def _client(ports: list[int], n: int, calls: int, shapes: list[tuple[int, str]], conn_out: Any,
            servers: list[Any]) -> None:
    """latency._client's rounds (filter, prioritize, bind: one pod), each pod sent to every
    layer in turn, the order rotated each pod: the machine's noise falls on all alike."""
    conns = [latency._Conn(p) for p in ports]
    lat: list[dict[str, list[float]]] = [{"filter": [], "prioritize": []} for _ in ports]
    for i in range(calls + 20):
        shape = shapes[i % len(shapes)]
        for k in range(len(ports)):
            j = (i + k) % len(ports)
            t_f, data = latency._call(conns[j], "/filter", latency.request_body(n, i, shape=shape))
            feasible = latency.json.loads(data).get("NodeNames") or []
            t_p, _ = latency._call(conns[j], "/prioritize", latency.request_body(n, i, feasible, shape=shape))
            if feasible:
                latency._call(conns[j], "/bind", latency.json.dumps(
                    {"PodName": f"bench-{i}", "PodNamespace": "bench", "PodUID": f"uid-{i}",
                     "Node": feasible[0]}).encode())
            if i >= 20:  # warm-up rounds are not counted
                lat[j]["filter"].append(t_f)
                lat[j]["prioritize"].append(t_p)
        if i == 19:
            for srv in servers:
                srv.send(calls)
    for c in conns:
        c.sock.close()
    conn_out.send(lat)


def _serve_layer(layer: str, n: int, seed: int, conn: Any) -> None:
    """One layer in a process of its own: its CPU time and context switches are its own."""
    shapes = [latency.BEST_SHAPE]
    specs, pods = latency._cluster(n, seed)
    live = LiveState(stale_after_s=86400)
    live.set_nodes([node_body(s) for s in specs])
    live.set_pods(pods)
    ext = Extender(live=live, binder=lambda *a: None, get_pod=latency._pending_pods(shapes))
    spent = latency._time_verbs(ext)
    srv, stop = _layer(layer, ext)
    freeze_long_lived()
    conn.send(srv.server_address[1])
    calls = conn.recv()  # the client's warm-up is done: count from here
    before = resource.getrusage(resource.RUSAGE_SELF)
    conn.recv()
    after = resource.getrusage(resource.RUSAGE_SELF)
    stop()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    conn.send({"spent": {v: t[-calls:] for v, t in spent.items()}, "cpu_s": cpu,
               "switches": (after.ru_nvcsw - before.ru_nvcsw) + (after.ru_nivcsw - before.ru_nivcsw)})


def measure_once(layers: list[str], n: int, calls: int, seed: int) -> list[Run]:
    """Every layer serving its own copy of the cluster from a process of its own, all at
    once, called in turn by one client."""
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for layer in layers:
        mine, theirs = ctx.Pipe()
        procs.append(ctx.Process(target=_serve_layer, args=(layer, n, seed, theirs), daemon=True))
        procs[-1].start()
        pipes.append(mine)
    ports = [p.recv() for p in pipes]
    recv, send = ctx.Pipe(duplex=False)
    client = ctx.Process(target=_client, args=(ports, n, calls, [latency.BEST_SHAPE], send, pipes))
    client.start()
    lat = recv.recv()
    client.join(30)
    out = []
    for layer, pipe, proc, mine in zip(layers, pipes, procs, lat):
        pipe.send("done")
        got = pipe.recv()
        proc.join(30)
        rounds = len(mine["filter"])
        for verb in ("filter", "prioritize"):
            a = np.array(mine[verb]) * 1000
            h = np.array(got["spent"][verb]) * 1000
            out.append(Run(layer, n, verb, float(np.percentile(a, 50)), float(np.percentile(a, 99)),
                           float(np.percentile(h, 50)), got["cpu_s"] / rounds * 1e6, got["switches"] / rounds))
    return out


def run(layers: list[str], sizes: list[int], calls: int, rounds: int, seed: int,
        progress: Callable[[str], None] = lambda s: None) -> list[Run]:
    runs: list[Run] = []
    for r in range(rounds):
        for n in sizes:
            got = measure_once(layers, n, calls, seed + r)
            runs += got
            for g in got:
                progress(f"round {r + 1} {n} {g.layer} {g.verb}: p50 {g.p50_ms:.3f} (in verbs "
                         f"{g.handler_p50_ms:.3f}) p99 {g.p99_ms:.2f}")
    return runs


def table(runs: list[Run], layers: list[str]) -> str:
    """Medians over rounds; the ratio is against layers[-1], round by round. CPU and context
    switches are the layer's whole process per pod (filter, prioritize and bind), so they
    stand on both of a pod's rows."""
    ref = layers[-1]
    rows = [f"| nodes | verb | layer | p50 ms | p99 ms | in verbs p50 | overhead p50 | p50 / {ref}'s "
            "| CPU us per pod | context switches per pod |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    med = statistics.median
    for n, verb in sorted({(r.nodes, r.verb) for r in runs}):
        mine = {lay: [r for r in runs if r.nodes == n and r.verb == verb and r.layer == lay] for lay in layers}
        for lay in layers:
            rs = mine[lay]
            ratio = med(a.p50_ms / b.p50_ms for a, b in zip(rs, mine[ref]))
            rows.append(f"| {n:,} | {verb} | {lay} | {med(a.p50_ms for a in rs):.3f} | "
                        f"{med(a.p99_ms for a in rs):.2f} | {med(a.handler_p50_ms for a in rs):.3f} | "
                        f"{med(a.p50_ms - a.handler_p50_ms for a in rs):.3f} | {ratio:.3f} | "
                        f"{med(a.cpu_us_per_pod for a in rs):.0f} | {med(a.switches_per_pod for a in rs):.1f} |")
    return "\n".join(rows)
