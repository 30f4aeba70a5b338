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
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import random
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import H100_MIB, NodeSpec
from scheduler import contract
from scheduler.extender.daemon import freeze_long_lived
from scheduler.extender.live import LiveState
from scheduler.extender.server import Extender, ExtenderHTTPServer

MODELS = [f"org/model-{i}" for i in range(20)]


def synthetic_cluster(n: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """n nodes of 8 x H100; a third cache some model; about half the GPUs hold shares."""
    rng = random.Random(seed)
    nodes, pods = [], []
    for i in range(n):
        spec = NodeSpec(f"node-{i:05d}", 8, "NVIDIA-H100-80GB-HBM3", H100_MIB)
        if rng.random() < 0.33:
            spec.cached_models[rng.choice(MODELS)] = (rng.randint(2, 140) * 2**30, rng.choice(["disk", "host-memory"]))
        nodes.append(node_body(spec))
        for g in range(8):
            if rng.random() < 0.5:
                pods.append(bound_pod(f"p-{i}-{g}", spec.name, g, f"{rng.choice([10, 20, 40])}Gi"))
    return nodes, pods


def bound_pod(name: str, node: str, gpu: int, memory: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "bench", "uid": name,
                         "annotations": {contract.GPU_MEMORY: memory, contract.GPU_IDS: str(gpu)}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]}, "status": {"phase": "Running"}}


def request_body(n_nodes: int, i: int, names: list[str] | None = None) -> bytes:
    """Call i's body: its pod, and `names` (default: every node, in an order of its own)."""
    if names is None:
        names = [f"node-{k:05d}" for k in range(n_nodes)]
        random.Random(i).shuffle(names)
    pod = {
        "metadata": {"name": f"bench-{i}", "namespace": "bench", "uid": f"uid-{i}",
                     "annotations": {contract.MODEL: MODELS[i % len(MODELS)], contract.GPU_MEMORY: "20Gi"}},
        "spec": {"schedulerName": "gpusched",
                 "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.9.0",
                                 "resources": {"requests": {"cpu": "4", "memory": "32Gi"}}}]},
    }
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
    p50_ms: float
    p99_ms: float
    calls: int


def _serve(ext: Extender) -> ExtenderHTTPServer:
    srv = ExtenderHTTPServer(("127.0.0.1", 0), ext, lambda: (True, "ok"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _call(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[float, bytes]:
    t = time.perf_counter()
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{path} answered {resp.status}: {data[:200]!r}")
    return time.perf_counter() - t, data


def _client(port: int, n: int, calls: int, bind: bool, conn_out) -> None:
    """kube-scheduler's side, in a process of its own as kube-scheduler is: in the server's
    process the client's encoding and reading would share the server's GIL and be timed as
    the server's. Each round is what kube-scheduler does for one pod: filter, prioritize, bind."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Go's net/http does
    lat: dict[str, list[float]] = {"filter": [], "prioritize": []}
    for i in range(calls + 20):
        t_f, data = _call(conn, "/filter", request_body(n, i))
        feasible = json.loads(data).get("NodeNames") or []
        t_p, _ = _call(conn, "/prioritize", request_body(n, i, feasible))
        if feasible and bind:
            _call(conn, "/bind", json.dumps({"PodName": f"bench-{i}", "PodNamespace": "bench",
                                             "PodUID": f"uid-{i}", "Node": feasible[0]}).encode())
        if i >= 20:  # warm-up rounds are not counted
            lat["filter"].append(t_f)
            lat["prioritize"].append(t_p)
    conn.close()
    conn_out.send(lat)


def measure(n: int, calls: int, seed: int) -> list[Result]:
    nodes, pods = synthetic_cluster(n, seed)
    out = []
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with a server thread
    for label, cls in (("gpusched", Extender), ("baseline", _Baseline)):
        live = LiveState(stale_after_s=86400)
        live.set_nodes(nodes)
        live.set_pods(pods)
        ext = cls(live=live, binder=lambda *a: None, get_pod=lambda *a: None)
        freeze_long_lived()  # as the daemon does once its caches are synced
        srv = _serve(ext)
        recv, send = ctx.Pipe(duplex=False)
        client = ctx.Process(target=_client, args=(srv.server_address[1], n, calls, label == "gpusched", send))
        client.start()
        lat = recv.recv()
        client.join(30)
        for verb, values in lat.items():
            a = np.array(values) * 1000
            out.append(Result(n, verb, label, float(np.percentile(a, 50)), float(np.percentile(a, 99)), calls))
        srv.shutdown()
        srv.server_close()
    return out


def run(sizes: list[int], calls: int, seed: int) -> list[Result]:
    results = []
    for n in sizes:
        results += measure(n, calls, seed)
    return results


def table(results: list[Result]) -> str:
    rows = ["| nodes | verb | gpusched p50 ms | gpusched p99 ms | baseline p99 ms | p99 ratio |",
            "|---:|---|---:|---:|---:|---:|"]
    by = {(r.nodes, r.verb, r.server): r for r in results}
    for n in sorted({r.nodes for r in results}):
        for verb in ("filter", "prioritize"):
            g, b = by[(n, verb, "gpusched")], by[(n, verb, "baseline")]
            rows.append(f"| {n:,} | {verb} | {g.p50_ms:.2f} | {g.p99_ms:.2f} | {b.p99_ms:.2f} | "
                        f"{g.p99_ms / b.p99_ms:.1f}x |")
    return "\n".join(rows)
