"""The extender's HTTP server fuzzed with hypothesis: what any caller can send to
/filter, /prioritize and /bind.

The contract (scheduler/extender/server.py, protocol.py): a request body of at most
protocol.MAX_BODY (2 MiB) that is not a valid extender call is answered 400 with
{"Error": ...}; a Content-Length over the limit is answered 413 and the connection is
closed; a well-formed call about a pod with bad annotations is answered 200 with every
node failed and the reason (kube-scheduler shows it on the pod). Never a 5xx, never a
dead server, and memory stays flat.

The server is the real one (ExtenderHTTPServer + Extender + LiveState) on loopback, in
this process, over 4 simulated 8 x H100 nodes. Examples are derandomised, so CI runs
the same inputs every time; the figures (requests by verb and strategy, statuses, RSS)
are printed at the end.
"""
from __future__ import annotations

import ctypes
import gc
import http.client
import json
import socket
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import small
from scheduler import contract
from scheduler.extender import protocol
from scheduler.extender.live import LiveState
from scheduler.extender.server import Extender, ExtenderHTTPServer

NODES = [s.name for s in small(4)]
ALLOWED = {200, 400, 413}
RSS_BOUND_MIB = 100
MIN_REQUESTS = 10_000


def rss_mib() -> float:
    """Resident memory after a collection and malloc_trim: what is live, not what glibc's
    per-thread arenas keep after a body at the limit was freed (they would hand it out again)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class Client:
    """A keep-alive connection that reconnects when the server closes it (413, errors)."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, data
            except (ConnectionError, http.client.HTTPException, socket.timeout):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> int:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def raw_request(port: int, head: bytes, body: bytes = b"", shut: bool = True) -> int:
    """Send bytes as they are (lying headers, oversized claims); return the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head + body)
        if shut:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    line = data.split(b"\r\n", 1)[0].split()
    assert len(line) >= 2, f"no status line in {data[:200]!r}"
    return int(line[1])


# ---------------------------------------------------------------- the server

class Fuzzed:
    def __init__(self) -> None:
        self.live = LiveState(stale_after_s=86400, rebuild_every_s=3600)
        self.live.set_nodes([node_body(s) for s in small(4)])
        self.live.set_pods([])
        self.binds = 0
        self.ext = Extender(live=self.live, binder=self._bind, get_pod=self._get_pod)
        self.srv = ExtenderHTTPServer(("127.0.0.1", 0), self.ext, lambda: (True, "ok"))
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()
        self.client = Client(self.port)
        self.counts: Counter[tuple[str, str, int]] = Counter()
        self.fallback_pod: dict[str, Any] | None = None

    def _bind(self, *args: Any) -> None:
        self.binds += 1
        # Nothing is written anywhere: forget the reservation so the fuzzed cluster never fills up.
        ns, name, _uid, node, _ann, _rv = args
        self.live.forget(node, f"{ns}/{name}")

    def _get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.fallback_pod

    def call(self, verb: str, strategy: str, body: bytes, headers: dict[str, str] | None = None) -> int:
        status, data = self.client.post(f"/{verb}", body, headers)
        self.counts[(verb, strategy, status)] += 1
        assert status in ALLOWED, f"/{verb} answered {status} to {body[:300]!r}: {data[:300]!r}"
        if status != 200:
            assert b"Error" in data, data[:300]
        return status

    def close(self) -> None:
        self.client.close()
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture(scope="module")
def fz():
    f = Fuzzed()
    yield f
    f.close()


# ---------------------------------------------------------------- strategies

def pod(annotations: dict[str, Any] | None = None, limits: dict[str, Any] | None = None, i: int = 0) -> dict:
    res = {"limits": limits} if limits is not None else {}
    return {"metadata": {"name": f"fuzz-{i}", "namespace": "fuzz", "uid": f"uid-{i}",
                         "annotations": annotations or {}},
            "spec": {"schedulerName": "gpusched",
                     "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.0", "resources": res}]}}


def valid_args(p: dict | None = None, names: list[str] | None = None) -> dict:
    return {"Pod": p or pod({contract.GPU_MEMORY: "20Gi"}), "NodeNames": NODES if names is None else names}


json_leaf = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_any = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=5),
                                                       st.dictionaries(st.text(max_size=10), c, max_size=5)),
                        max_leaves=20)


def dumps(obj: Any, go: bool = False) -> bytes:
    """The stdlib writes NaN, Infinity and integers past 64 bits, which are not JSON that
    Go would send: exactly what a fuzzer wants on the wire. `go`: compact, as Go writes,
    which the extender reads names from without decoding them (protocol._read_as_rows)."""
    return json.dumps(obj, separators=(",", ":") if go else None).encode()


# Every place in a filter/prioritize call a wrong type can go.
ARG_PATHS = [
    (), ("Pod",), ("Pod", "metadata"), ("Pod", "metadata", "name"), ("Pod", "metadata", "namespace"),
    ("Pod", "metadata", "uid"), ("Pod", "metadata", "annotations"),
    ("Pod", "metadata", "annotations", contract.GPU_MEMORY), ("Pod", "metadata", "annotations", contract.MODEL),
    ("Pod", "metadata", "annotations", contract.MODEL_BYTES), ("Pod", "metadata", "annotations", contract.GPU_PRODUCTS),
    ("Pod", "spec"), ("Pod", "spec", "containers"), ("Pod", "spec", "containers", 0),
    ("Pod", "spec", "containers", 0, "resources"), ("Pod", "spec", "containers", 0, "resources", "limits"),
    ("Pod", "spec", "containers", 0, "resources", "limits", contract.GPU_RESOURCE),
    ("Pod", "spec", "containers", 0, "resources", "requests"), ("Pod", "spec", "initContainers"),
    ("Pod", "spec", "nodeSelector"), ("NodeNames",), ("NodeNames", 0), ("Nodes",), ("Nodes", "items"),
]
BIND_FIELDS = ["PodName", "PodNamespace", "PodUID", "Node"]


def replace_at(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        out = dict(obj)
        out[head] = replace_at(obj.get(head, {}), rest, value)
        return out
    if isinstance(obj, list) and isinstance(head, int) and obj:
        out = list(obj)
        out[0] = replace_at(obj[0], rest, value)
        return out
    return value


@st.composite
def wrong_types(draw) -> bytes:
    base = valid_args(pod({contract.GPU_MEMORY: "20Gi", contract.MODEL: "org/m"}, {contract.GPU_RESOURCE: "1"}))
    if draw(st.booleans()):
        base = {"Pod": base["Pod"], "Nodes": {"items": [{"metadata": {"name": n}} for n in NODES]}}
    path = draw(st.sampled_from(ARG_PATHS))
    return dumps(replace_at(base, path, draw(json_any)), draw(st.booleans()))


ABSURD = ["-5Gi", "1e30", "abc", "NaN", "nan", "Infinity", "-Infinity", "inf", "0", "-0", "0.0", "1e-30", "",
          "   ", "1e999999999", "1e-999999999", "9" * 5000, "9" * 64, "9" * 65, str(2**64), str(-(2**63)),
          "1.5.5Gi", "16GiB", "16 Gi", "16gi", "0x10", "1_000", "١٢Gi", "16Gi\x00", "+16Gi", "1e3Ki", ".5Ti",
          "5.", "-", "+", "e5", "Gi", "16Yi", "99999999999999999999999999999999Ei"]


@st.composite
def absurd_quantities(draw) -> bytes:
    q = st.one_of(st.sampled_from(ABSURD),
                  st.from_regex(r"\A[+-]?[0-9]{0,30}(\.[0-9]{0,5})?([eE][+-]?[0-9]{1,12})?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|[a-z]{0,3})?\Z"),
                  st.text(max_size=70))
    ann = {}
    for key in (contract.GPU_MEMORY, contract.MODEL_BYTES):
        if draw(st.booleans()):
            ann[key] = draw(q)
    if draw(st.booleans()):
        ann[contract.MODEL] = draw(st.one_of(st.sampled_from(["org/m", "", "a" * 300, "../../etc", "m\nx"]),
                                             st.text(max_size=300)))
    limits = None
    if draw(st.booleans()):
        limits = {contract.GPU_RESOURCE: draw(st.one_of(
            q, st.integers(min_value=-(2**65), max_value=2**65), st.sampled_from(["1", "8", "65", "-1", " 3 ", "٣"])))}
    return dumps(valid_args(pod(ann, limits)), draw(st.booleans()))


@st.composite
def malformed_json(draw) -> bytes:
    text = dumps(valid_args(pod({contract.GPU_MEMORY: "20Gi"}, {contract.GPU_RESOURCE: "1"})), draw(st.booleans()))
    how = draw(st.sampled_from(["truncate", "insert", "delete", "replace"]))
    i = draw(st.integers(min_value=0, max_value=len(text)))
    junk = draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b"{", b"}", b"[", b"]", b",", b":", b'"',
                                                                      b"\\", b"\xff", b"\x00", b"NaN"]))
    if how == "truncate":
        return text[:i]
    if how == "insert":
        return text[:i] + junk + text[i:]
    if how == "delete":
        return text[:i] + text[i + len(junk):]
    return text[:i] + junk + text[i + len(junk):]


@st.composite
def deep_nesting(draw) -> bytes:
    depth = draw(st.integers(min_value=1, max_value=200_000))
    kind = draw(st.sampled_from(["array", "object", "mixed"]))
    if kind == "array":
        inner = b"[" * depth + b"]" * depth
    elif kind == "object":
        inner = b'{"a":' * depth + b"1" + b"}" * depth
    else:
        inner = b'[{"a":' * (depth // 2) + b"1" + b"}]" * (depth // 2)
    where = draw(st.sampled_from(["body", "Pod", "annotations", "NodeNames", "unclosed"]))
    if where == "body":
        return inner
    if where == "unclosed":
        return inner[: len(inner) // 2]
    if where == "Pod":
        return b'{"Pod": ' + inner + b', "NodeNames": ["gpu-node-0000"]}'
    if where == "annotations":
        return (b'{"Pod": {"metadata": {"name": "p", "namespace": "fuzz", "annotations": ' + inner
                + b'}, "spec": {}}, "NodeNames": ["gpu-node-0000"]}')
    return b'{"Pod": {"metadata": {"name": "p"}}, "NodeNames": ' + inner + b"}"


@st.composite
def big_lists(draw) -> bytes:
    """Large but legal-sized calls: many node names, many containers, long strings."""
    kind = draw(st.sampled_from(["names", "unknown-names", "containers", "annotation", "duplicates"]))
    n = draw(st.integers(min_value=1, max_value=20_000))
    if kind == "names":
        return dumps(valid_args(names=[f"node-{i}" for i in range(n)]), draw(st.booleans()))
    if kind == "unknown-names":
        return dumps(valid_args(names=[("x" * 253)[: 1 + i % 253] for i in range(n)]), draw(st.booleans()))
    if kind == "duplicates":
        return dumps(valid_args(names=NODES * (n // 4 + 1)), draw(st.booleans()))
    if kind == "containers":
        p = pod({})
        p["spec"]["containers"] = [{"name": f"c{i}", "resources": {"limits": {contract.GPU_RESOURCE: "1"}}}
                                   for i in range(min(n, 5000))]
        return dumps(valid_args(p), draw(st.booleans()))
    return dumps(valid_args(pod({contract.GPU_MEMORY: "20Gi", "x": "y" * (n * 100)})), draw(st.booleans()))


@st.composite
def bind_bodies(draw) -> bytes:
    base = {"PodName": "fuzz-0", "PodNamespace": "fuzz", "PodUID": "uid-0", "Node": draw(st.sampled_from(NODES))}
    how = draw(st.sampled_from(["wrong-type", "strings", "unknown-node", "missing", "bytes", "extra"]))
    if how == "wrong-type":
        base[draw(st.sampled_from(BIND_FIELDS))] = draw(json_any)
    elif how == "strings":
        base[draw(st.sampled_from(BIND_FIELDS))] = draw(st.text(max_size=300) | st.sampled_from(["", "x" * 254, "\x00"]))
    elif how == "unknown-node":
        base["Node"] = draw(st.text(min_size=1, max_size=253))
    elif how == "missing":
        base.pop(draw(st.sampled_from(BIND_FIELDS)))
    elif how == "bytes":
        return draw(st.binary(max_size=512))
    else:
        base[draw(st.text(max_size=20))] = draw(json_any)
    return dumps(base)


# ---------------------------------------------------------------- the test

def around_the_limit(fz) -> None:
    """Bodies at the documented limit (parsed: 400 for junk, 200 for a valid call), one byte
    and more over it (413 without reading them), and Content-Length headers that lie."""
    limit = protocol.MAX_BODY
    names_body = dumps(valid_args(names=NODES))
    padded = names_body[:-1] + b" " * (limit - len(names_body)) + b"}"
    assert len(padded) == limit
    for verb in ("filter", "prioritize", "bind"):
        for body in (b" " * limit, b"[" * limit, b'"' + b"a" * (limit - 2) + b'"', padded):
            fz.call(verb, "huge", body)
    for verb in ("filter", "prioritize", "bind"):
        for claimed in (limit + 1, 2 * limit, 2**62, 10**30):
            head = (f"POST /{verb} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {claimed}\r\n\r\n").encode()
            status = raw_request(fz.port, head, b"{" * 1024)
            fz.counts[(verb, "over-limit", status)] += 1
            assert status == 413
        for claimed in ("-1", "abc", "1e3", "", "0x10", " 5 "):
            head = (f"POST /{verb} HTTP/1.1\r\nHost: x\r\nContent-Length: {claimed}\r\n\r\n").encode()
            status = raw_request(fz.port, head, b"{}")
            fz.counts[(verb, "bad-content-length", status)] += 1
            assert status in ALLOWED, (claimed, status)
        # says 1,000 bytes, sends 10 and closes: a short read, not a hang
        head = f"POST /{verb} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
        status = raw_request(fz.port, head, b'{"Pod": {}}')
        fz.counts[(verb, "short-body", status)] += 1
        assert status == 400


def run(examples: int, strategy, action) -> None:
    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def inner(value):
        action(value)
    inner()


def test_fuzz_the_extender_over_http(fz):
    c = fz.client
    assert c.get("/healthz") == 200
    # warm up (imports, first allocations, the largest legal bodies once) before measuring memory
    for _ in range(20):
        fz.call("filter", "valid", dumps(valid_args()))
    around_the_limit(fz)
    rss_before = rss_mib()

    plan = [  # (strategy name, examples per verb, strategy, verbs)
        ("bytes", 500, st.binary(max_size=2048), ("filter", "prioritize", "bind")),
        ("malformed-json", 500, malformed_json(), ("filter", "prioritize", "bind")),
        ("deep-nesting", 150, deep_nesting(), ("filter", "prioritize", "bind")),
        ("wrong-types", 1000, wrong_types(), ("filter", "prioritize")),
        ("absurd-quantities", 1000, absurd_quantities(), ("filter", "prioritize")),
        ("big-lists", 40, big_lists(), ("filter", "prioritize")),
        ("bind-fields", 1500, bind_bodies(), ("bind",)),
    ]
    for name, n, strategy, verbs in plan:
        for verb in verbs:
            run(n, strategy, lambda body, verb=verb, name=name: fz.call(verb, name, body))

    # bind after a fuzzed filter: the pod the extender remembered, with absurd annotations
    def filter_then_bind(body: bytes) -> None:
        fz.call("filter", "filter-then-bind", body)
        try:
            p = json.loads(body)["Pod"]
            meta = p["metadata"]
        except (ValueError, KeyError, TypeError):
            return
        fz.fallback_pod = p  # also what get_pod answers when the remembered pod is not found
        b = {"PodName": meta.get("name"), "PodNamespace": meta.get("namespace"), "PodUID": meta.get("uid"),
             "Node": NODES[0]}
        fz.call("bind", "filter-then-bind", dumps(b))
    run(700, absurd_quantities(), filter_then_bind)
    fz.fallback_pod = None
    around_the_limit(fz)  # again: a second round of bodies at the limit must not add to memory

    # after all of it: still answering, the real verbs still work, memory flat
    assert c.get("/healthz") == 200
    assert fz.call("filter", "valid", dumps(valid_args())) == 200
    out = json.loads(fz.client.post("/filter", dumps(valid_args()))[1])
    assert out["NodeNames"] == NODES and out["Error"] == ""
    assert fz.srv.extender is fz.ext and fz.thread.is_alive()
    rss_after = rss_mib()

    total = sum(fz.counts.values())
    by_verb: Counter[str] = Counter()
    by_strategy: Counter[str] = Counter()
    by_status: Counter[int] = Counter()
    for (verb, strategy, status), n in fz.counts.items():
        by_verb[verb] += n
        by_strategy[strategy] += n
        by_status[status] += n
    print(f"\nfuzz: {total} requests; by verb {dict(by_verb)}; by strategy {dict(by_strategy)}; "
          f"statuses {dict(sorted(by_status.items()))}; binds reaching the binder {fz.binds}; "
          f"RSS {rss_before:.0f} -> {rss_after:.0f} MiB")
    assert total >= MIN_REQUESTS
    assert set(by_status) <= ALLOWED
    assert by_status[200] and by_status[400] and by_status[413]  # every answer of the contract was exercised
    assert rss_after - rss_before < RSS_BOUND_MIB, (rss_before, rss_after)
