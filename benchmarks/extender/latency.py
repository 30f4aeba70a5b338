"""Micro-benchmark of the extender's filter and prioritize at 100, 1,000 and 5,000 nodes.

Requests go over real HTTP on loopback with keep-alive, as kube-scheduler sends them
(a whole Pod object and NodeNames, nodeCacheCapable), from a client process of its own
(as kube-scheduler is), to the same server code the daemon runs; the cluster state is a
LiveState fed with synthetic Node and Pod objects instead of informers. The baseline in
the same run is an HTTP handler that parses the same body and answers "all nodes fit":
the cost of the protocol alone.

The node lists are the ones kube-scheduler sends: filter gets every node in a new order
each call (its filter plugins run on 16 goroutines and the feasible list is in the order
they finish, schedule_one.go findNodesThatPassFilters), prioritize the list filter answered.

Two modes. *best*: one pod shape (a 20 GiB share) and a static cluster, the best case for
the per-row memo. *realistic*: each call's pod is drawn from the Alibaba GPU trace's mix
of shapes (whole GPUs 1 to 8, shares of one GPU), and while the client calls, a thread in
the server's process changes the cluster as informers would: every 50 ms one node's
report (its model cache) and one bound pod (one ends, another starts elsewhere); and the
daemon's refresher runs beside it (LiveState.refresh_forever), so what those changes cost
the snapshot is paid here as in the daemon. (5,000 agents re-publishing every 120 s are
~40 node reports a second: the 20 here are fewer.)
"""
from __future__ import annotations

import csv
import json
import multiprocessing
import random
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import H100_MIB, NodeSpec
from benchmarks.traces import alibaba_dir
from scheduler import contract
from scheduler.extender.daemon import freeze_long_lived
from scheduler.extender.live import LiveState
from scheduler.extender.server import Extender, ExtenderHTTPServer

MODELS = [f"org/model-{i}" for i in range(20)]
MODES = ("best", "realistic")
BEST_SHAPE = (0, "20Gi")  # (whole GPUs, memory of a share): the best case's one shape
CHURN_EVERY_S = 0.05


def _spec(i: int, rng: random.Random) -> NodeSpec:
    """Node i of 8 x H100; a third cache some model."""
    spec = NodeSpec(f"node-{i:05d}", 8, "NVIDIA-H100-80GB-HBM3", H100_MIB)
    _recache(spec, rng)
    return spec


def _recache(spec: NodeSpec, rng: random.Random) -> None:
    spec.cached_models.clear()
    if rng.random() < 0.33:
        spec.cached_models[rng.choice(MODELS)] = (rng.randint(2, 140) * 2**30, rng.choice(["disk", "host-memory"]))


def synthetic_cluster(n: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """n nodes of 8 x H100; a third cache some model; about half the GPUs hold shares."""
    specs, pods = _cluster(n, seed)
    return [node_body(s) for s in specs], pods


def _cluster(n: int, seed: int) -> tuple[list[NodeSpec], list[dict[str, Any]]]:
    rng = random.Random(seed)
    specs, pods = [], []
    for i in range(n):
        specs.append(_spec(i, rng))
        for g in range(8):
            if rng.random() < 0.5:
                pods.append(bound_pod(f"p-{i}-{g}", specs[-1].name, g, f"{rng.choice([10, 20, 40])}Gi"))
    return specs, pods


def trace_shapes(path: Any = None) -> list[tuple[int, str]]:
    """Every GPU pod's shape in the Alibaba trace's default pod list, in its order, as
    (whole GPUs, share memory) on an 80 GiB GPU: gpu_milli 800 is a 64Gi share."""
    path = path or alibaba_dir() / "openb_pod_list_default.csv"
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            gpus, milli = int(row["num_gpu"]), int(row["gpu_milli"])
            if gpus == 0:
                continue
            out.append((gpus, "") if milli >= 1000 else (0, f"{max(1, milli * 80 // 1000)}Gi"))
    return out


def _churn(live: LiveState, specs: list[NodeSpec], pods: list[dict[str, Any]], stop: threading.Event,
           seed: int) -> None:
    """What informers deliver on a busy cluster: a node's report changes, a pod ends and another starts."""
    rng = random.Random(seed)
    k = 0
    while not stop.wait(CHURN_EVERY_S):
        spec = specs[rng.randrange(len(specs))]
        _recache(spec, rng)
        live.on_node("MODIFIED", node_body(spec))
        if pods:
            live.on_pod("DELETED", pods.pop(rng.randrange(len(pods))))
        k += 1
        node = specs[rng.randrange(len(specs))].name
        pods.append(bound_pod(f"churn-{k}", node, rng.randrange(8), f"{rng.choice([10, 20, 40])}Gi"))
        live.on_pod("ADDED", pods[-1])


def bound_pod(name: str, node: str, gpu: int, memory: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "bench", "uid": name,
                         "annotations": {contract.GPU_MEMORY: memory, contract.GPU_IDS: str(gpu)}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]}, "status": {"phase": "Running"}}


def pending_pod(i: int, shape: tuple[int, str] = BEST_SHAPE) -> dict[str, Any]:
    """Call i's pod of `shape` (whole GPUs, share memory), as kube-scheduler sends it and as
    the API server answers bind's check."""
    gpus, share = shape
    annotations = {contract.MODEL: MODELS[i % len(MODELS)]}
    resources: dict[str, Any] = {"requests": {"cpu": "4", "memory": "32Gi"}}
    if gpus:
        resources["limits"] = {contract.GPU_RESOURCE: str(gpus)}
    else:
        annotations[contract.GPU_MEMORY] = share
    return {
        "metadata": {"name": f"bench-{i}", "namespace": "bench", "uid": f"uid-{i}", "annotations": annotations},
        "spec": {"schedulerName": "gpusched",
                 "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.9.0", "resources": resources}]},
    }


def request_body(n_nodes: int, i: int, names: list[str] | None = None,
                 shape: tuple[int, str] = BEST_SHAPE) -> bytes:
    """Call i's body: its pod of `shape`, and `names` (default: every node, in an order of its own)."""
    if names is None:
        names = [f"node-{k:05d}" for k in range(n_nodes)]
        random.Random(i).shuffle(names)
    pod = pending_pod(i, shape)
    return json.dumps({"Pod": pod, "NodeNames": names}, separators=(",", ":")).encode()  # compact, as Go writes


class _Baseline(Extender):
    """Parses the request like the real one and answers that every node fits."""

    def filter(self, body: bytes) -> bytes:
        args = json.loads(body)
        return json.dumps({"NodeNames": args["NodeNames"], "FailedNodes": {}, "Error": ""}).encode()

    prioritize = filter


@dataclass
class Result:
    nodes: int
    verb: str
    server: str
    p50_ms: float  # as the client saw it: request sent to answer read
    p99_ms: float
    calls: int
    handler_p50_ms: float = 0.0  # inside the server: body parsed to answer encoded
    handler_p99_ms: float = 0.0
    mode: str = "best"
    # CPU time of the handler's thread over the same span: what the verbs' own code costs,
    # without the time the thread waited for a core or the GIL (a loaded machine's noise)
    handler_cpu_p50_ms: float = 0.0
    handler_cpu_p99_ms: float = 0.0


def _timed(inner: Any, out: list[tuple[float, float]]) -> Any:
    def timed(body: bytes) -> bytes:
        t, cpu = time.perf_counter(), time.thread_time()
        answer = inner(body)
        out.append((time.perf_counter() - t, time.thread_time() - cpu))
        return answer
    return timed


def _time_verbs(ext: Extender) -> dict[str, list[tuple[float, float]]]:
    """Record how long each filter and prioritize call spends in the extender's own code
    (wall, and the thread's CPU)."""
    spent: dict[str, list[tuple[float, float]]] = {"filter": [], "prioritize": []}
    for verb, out in spent.items():
        setattr(ext, verb, _timed(getattr(ext, verb), out))  # the server looks the verb up on the instance
    return spent


def _serve(ext: Extender) -> ExtenderHTTPServer:
    srv = ExtenderHTTPServer(("127.0.0.1", 0), ext, lambda: (True, "ok"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class _Conn:
    """HTTP/1.1 POSTs on one keep-alive socket, parsed no further than the status and
    Content-Length: what Go's client spends on a call (microseconds), where http.client's
    header parsing (the email package's) would add a fraction of a millisecond to both rows."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Go's net/http does
        self.pending = b""

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.sock.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
        while b"\r\n\r\n" not in self.pending:
            self.pending += self._recv(65536)
        head, _, rest = self.pending.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
        chunks, have = [rest], len(rest)
        while have < length:
            chunks.append(self._recv(max(65536, length - have)))
            have += len(chunks[-1])
        data = b"".join(chunks)
        self.pending = data[length:]
        return int(head[9:12]), data[:length]

    def _recv(self, n: int) -> bytes:
        got = self.sock.recv(n)
        if not got:
            raise RuntimeError("the extender closed the connection")
        return got


def _call(conn: _Conn, path: str, body: bytes) -> tuple[float, bytes]:
    t = time.perf_counter()
    status, data = conn.post(path, body)
    elapsed = time.perf_counter() - t
    if status != 200:
        raise RuntimeError(f"{path} answered {status}: {data[:200]!r}")
    return elapsed, data


def _client(port: int, n: int, calls: int, bind: bool, shapes: list[tuple[int, str]], conn_out) -> None:
    """kube-scheduler's side, in a process of its own as kube-scheduler is: in the server's
    process the client's encoding and reading would share the server's GIL and be timed as
    the server's. Each round is what kube-scheduler does for one pod: filter, prioritize, bind."""
    conn = _Conn(port)
    lat: dict[str, list[float]] = {"filter": [], "prioritize": []}
    for i in range(calls + 20):
        shape = shapes[i % len(shapes)]
        t_f, data = _call(conn, "/filter", request_body(n, i, shape=shape))
        feasible = json.loads(data).get("NodeNames") or []
        t_p, _ = _call(conn, "/prioritize", request_body(n, i, feasible, shape=shape))
        if feasible and bind:
            _call(conn, "/bind", json.dumps({"PodName": f"bench-{i}", "PodNamespace": "bench",
                                             "PodUID": f"uid-{i}", "Node": feasible[0]}).encode())
        if i >= 20:  # warm-up rounds are not counted
            lat["filter"].append(t_f)
            lat["prioritize"].append(t_p)
    conn.sock.close()
    conn_out.send(lat)


def _pending_pods(shapes: list[tuple[int, str]]) -> Any:
    """bind's check of the API server's copy of the pod, answered as the API server would."""
    def get_pod(namespace: str, name: str) -> dict[str, Any]:
        i = int(name.split("-")[1])
        return pending_pod(i, shapes[i % len(shapes)])
    return get_pod


def measure(n: int, calls: int, seed: int, mode: str = "best") -> list[Result]:
    realistic = mode == "realistic"
    shapes = random.Random(seed).sample(trace_shapes(), k=calls + 20) if realistic else [BEST_SHAPE]
    out = []
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with a server thread
    for label, cls in (("gpusched", Extender), ("baseline", _Baseline)):
        specs, pods = _cluster(n, seed)  # afresh for each server: the churn changes them
        live = LiveState(stale_after_s=86400)
        live.set_nodes([node_body(s) for s in specs])
        live.set_pods(pods)
        ext = cls(live=live, binder=lambda *a: None, get_pod=_pending_pods(shapes))
        spent = _time_verbs(ext)
        freeze_long_lived()  # as the daemon does once its caches are synced
        srv = _serve(ext)
        stop = threading.Event()
        if realistic:
            threading.Thread(target=_churn, args=(live, specs, pods, stop, seed), daemon=True).start()
            threading.Thread(target=live.refresh_forever, args=(stop,), daemon=True).start()
        recv, send = ctx.Pipe(duplex=False)
        client = ctx.Process(target=_client,
                             args=(srv.server_address[1], n, calls, label == "gpusched", shapes, send))
        client.start()
        lat = recv.recv()
        client.join(30)
        stop.set()
        for verb, values in lat.items():
            a = np.array(values) * 1000
            h, cpu = (np.array(spent[verb][-len(values):]) * 1000).T  # the warm-up rounds' calls came first
            out.append(Result(n, verb, label, float(np.percentile(a, 50)), float(np.percentile(a, 99)), calls,
                              float(np.percentile(h, 50)), float(np.percentile(h, 99)), mode,
                              float(np.percentile(cpu, 50)), float(np.percentile(cpu, 99))))
        srv.shutdown()
        srv.server_close()
    return out


def run(sizes: list[int], calls: int, seed: int, modes: tuple[str, ...] = ("best",)) -> list[Result]:
    results = []
    for mode in modes:
        for n in sizes:
            results += measure(n, calls, seed, mode)
    return results


def table(results: list[Result]) -> str:
    """Client-side figures (what kube-scheduler waits), then the extender's own time."""
    rows = ["| mode | nodes | verb | gpusched p50 ms | gpusched p99 ms | baseline p99 ms | p99 ratio "
            "| in extender p50 / p99 ms | its CPU p50 / p99 ms | baseline in server p99 ms |",
            "|---|---:|---|---:|---:|---:|---:|---|---|---:|"]
    by = {(r.mode, r.nodes, r.verb, r.server): r for r in results}
    for mode, n in sorted({(r.mode, r.nodes) for r in results}):
        for verb in ("filter", "prioritize"):
            g, b = by[(mode, n, verb, "gpusched")], by[(mode, n, verb, "baseline")]
            rows.append(f"| {mode} | {n:,} | {verb} | {g.p50_ms:.2f} | {g.p99_ms:.2f} | {b.p99_ms:.2f} | "
                        f"{g.p99_ms / b.p99_ms:.1f}x | {g.handler_p50_ms:.2f} / {g.handler_p99_ms:.2f} | "
                        f"{g.handler_cpu_p50_ms:.2f} / {g.handler_cpu_p99_ms:.2f} | {b.handler_p99_ms:.2f} |")
    return "\n".join(rows)
