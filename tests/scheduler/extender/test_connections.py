"""The bounded HTTP server's limits, over real sockets, with limits small enough to watch:
idle, head and body timeouts, the connection cap, the body budget, and health answered
while every worker is busy."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from scheduler.extender.http import BoundedHTTPServer, Limits, Request, Response

LIMITS = Limits(max_connections=8, workers=2, idle_s=0.6, header_s=0.6, body_s=0.6, write_s=1.0,
                max_body=4096, buffered_bytes=6000)


class Slow:
    """POST /slow waits until released: a bind stuck on the API server."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def handle(self, req: Request) -> Response:
        if req.path == "/slow":
            self.release.wait(5)
        return Response(200, b"done:" + req.body)


def quick(req: Request) -> Response | None:
    return Response(200, b"ok", "text/plain") if req.path == "/healthz" else None


def serving(limits: Limits, name: str):
    """A server with `limits` on a thread of its own, for a fixture to yield (server, Slow)."""
    slow = Slow()
    srv = BoundedHTTPServer(("127.0.0.1", 0), slow.handle, quick, limits=limits, name=name)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv, slow
    slow.release.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def server():
    yield from serving(LIMITS, "test")


def connect(srv) -> socket.socket:
    return socket.create_connection(srv.server_address, timeout=3)


def status(s: socket.socket) -> int | None:
    """The first status code on s, or None if the server closed it first."""
    data = b""
    while b"\r\n" not in data:
        try:
            chunk = s.recv(4096)
        except (ConnectionResetError, TimeoutError):
            return None
        if not chunk:
            return None
        data += chunk
    return int(data.split()[1])


def closed_within(s: socket.socket, seconds: float) -> bool:
    s.settimeout(seconds)
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def post(path: str, body: bytes) -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)


def healthz(srv) -> int | None:
    with connect(srv) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        return status(s)


@pytest.mark.parametrize("what, send", [
    ("idle: connected, nothing sent", b""),
    ("a head that never ends", b"POST /x HTTP/1.1\r\nHost: x\r\n"),
])
def test_a_silent_or_slow_client_is_closed_after_its_timeout(server, what, send):
    srv, _ = server
    with connect(srv) as s:
        s.sendall(send)
        t = time.monotonic()
        assert closed_within(s, 3), what
        assert 0.5 <= time.monotonic() - t < 2.0, what  # 0.6 s, to the 0.05 s sweep


def test_a_body_that_stops_coming_gets_408(server):
    srv, _ = server
    with connect(srv) as s:
        s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        assert status(s) == 408


def test_past_the_cap_the_longest_idle_connection_goes_and_health_still_answers(server):
    srv, _ = server
    held = [connect(srv) for _ in range(3 * LIMITS.max_connections)]
    try:
        time.sleep(0.2)
        assert srv.connections() <= LIMITS.max_connections
        assert healthz(srv) == 200
        assert closed_within(held[0], 1)  # the oldest went first
    finally:
        for s in held:
            s.close()


def test_health_answers_while_every_worker_is_busy(server):
    srv, slow = server
    busy = [connect(srv) for _ in range(LIMITS.workers + 1)]  # one more than there are workers: it queues
    for s in busy:
        s.sendall(post("/slow", b"x"))
    time.sleep(0.2)
    t = time.monotonic()
    assert healthz(srv) == 200 and time.monotonic() - t < 0.5
    slow.release.set()
    assert [status(s) for s in busy] == [200] * len(busy)
    for s in busy:
        s.close()


# (what, bytes sent, answer) refused before they are read, on a new or a kept connection alike
TOO_LARGE = [
    ("over max_body", b"POST /x HTTP/1.1\r\nContent-Length: 4097\r\n\r\n", 413),
    ("a head over max_header_bytes", b"GET /x HTTP/1.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n", 431),
]


@pytest.mark.parametrize("what, head, code", TOO_LARGE + [
    ("chunked", b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
])
def test_what_is_too_large_is_refused_before_it_is_read(server, what, head, code):
    srv, _ = server
    with connect(srv) as s:
        s.sendall(head)
        assert status(s) == code, what


def test_bodies_past_the_budget_get_503_and_the_budget_comes_back(server):
    srv, slow = server
    first = connect(srv)
    first.sendall(b"POST /slow HTTP/1.1\r\nContent-Length: 4000\r\n\r\n")  # reserves 4,000 of 6,000
    time.sleep(0.1)
    with connect(srv) as s:
        s.sendall(b"POST /x HTTP/1.1\r\nContent-Length: 4000\r\n\r\n")
        assert status(s) == 503
    first.sendall(b"y" * 4000)
    slow.release.set()
    assert status(first) == 200
    first.close()
    with connect(srv) as s:
        s.sendall(post("/x", b"z" * 4000))
        assert status(s) == 200


def test_keep_alive_and_pipelined_requests_each_get_their_answer(server):
    srv, _ = server
    with connect(srv) as s:
        s.sendall(post("/a", b"1") + post("/b", b"2") + b"GET /healthz HTTP/1.1\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200") < 3:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        assert data.index(b"done:1") < data.index(b"done:2") < data.index(b"\r\n\r\nok")


# ---------- a worker keeping its connection for the next request (sticky)

STICKY = Limits(max_connections=8, workers=2, idle_s=0.6, header_s=0.6, body_s=0.6, write_s=1.0,
                max_body=4096, buffered_bytes=6000, sticky_s=5.0)  # sticky_s past idle_s: idle_s wins


@pytest.fixture
def sticky():
    yield from serving(STICKY, "sticky")


def answer(s: socket.socket) -> bytes:
    """One whole answer's body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += s.recv(65536)
    return body


def test_the_worker_answers_the_connections_next_requests_itself(sticky):
    srv, _ = sticky
    with connect(srv) as s:
        for i in range(5):
            s.sendall(post("/x", b"%d" % i))
            assert answer(s) == b"done:%d" % i
            time.sleep(0.05)  # 25 times the old 2 ms window: kube-scheduler's next pod
        assert srv.handed_back == 0  # never went back to the watching thread between requests


def test_a_kept_connection_still_closes_at_its_idle_timeout(sticky):
    srv, _ = sticky
    with connect(srv) as s:
        s.sendall(post("/x", b"1"))
        assert answer(s) == b"done:1"
        t = time.monotonic()
        assert closed_within(s, 3)
        assert 0.5 <= time.monotonic() - t < 2.0  # idle_s 0.6 counted from the answer, not sticky_s 5


def test_a_pool_running_short_takes_its_workers_back_from_kept_connections(sticky):
    srv, slow = sticky
    kept = connect(srv)
    kept.sendall(post("/x", b"1"))
    assert answer(kept) == b"done:1"  # a worker now waits on `kept`, for up to 5 s
    stuck = connect(srv)
    stuck.sendall(post("/slow", b"2"))  # the other worker: a bind waiting on the API server
    time.sleep(0.2)
    with connect(srv) as third:
        t = time.monotonic()
        third.sendall(post("/x", b"3"))
        assert answer(third) == b"done:3"
        assert time.monotonic() - t < 1.0  # not after kept's 5 s
    slow.release.set()
    assert answer(stuck) == b"done:2"
    kept.sendall(post("/x", b"4"))  # handed back, the connection still serves
    assert answer(kept) == b"done:4"
    kept.close()
    stuck.close()


@pytest.mark.parametrize("what, then, code", TOO_LARGE + [
    ("a body that stops coming", b"POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\n{", 408),
    ("a head that is not HTTP", b"GARBAGE\r\n\r\n", 400),
])
def test_on_a_kept_connection_every_limit_still_holds(sticky, what, then, code):
    srv, _ = sticky
    with connect(srv) as s:
        s.sendall(post("/x", b"1"))
        assert answer(s) == b"done:1"
        s.sendall(then)
        assert status(s) == code, what


def test_on_a_kept_connection_the_body_budget_holds(sticky):
    srv, slow = sticky
    with connect(srv) as kept, connect(srv) as holder:
        kept.sendall(post("/x", b"1"))
        assert answer(kept) == b"done:1"
        holder.sendall(b"POST /slow HTTP/1.1\r\nContent-Length: 4000\r\n\r\n")  # reserves 4,000 of 6,000
        time.sleep(0.1)
        kept.sendall(post("/x", b"z" * 4000))
        assert status(kept) == 503
        holder.sendall(b"y" * 4000)
        slow.release.set()
        assert status(holder) == 200


def test_a_connection_past_descriptor_1023_is_kept_too(sticky):
    srv, _ = sticky
    filler = [socket.socket() for _ in range(1100)]  # the server's next descriptors are past 1,023
    try:
        with connect(srv) as s:
            for i in range(3):
                s.sendall(post("/x", b"%d" % i))
                assert answer(s) == b"done:%d" % i
            assert srv.handed_back == 0  # select() failed on it: the connection was closed
    finally:
        for f in filler:
            f.close()


# ---------- connections kept and reused (kube-scheduler's Go client keeps idle ones 90 s)

GO_IDLE_CONN_TIMEOUT_S = 90.0  # net/http DefaultTransport.IdleConnTimeout, which kube-scheduler's extender client keeps


def test_the_idle_timeout_outlasts_gos_so_the_client_hangs_up_first():
    # Closed under Go's client, a POST it had started writing fails the extender call: Go retries
    # only a request it never wrote (persistConn.shouldRetryRequest)
    assert Limits().idle_s > GO_IDLE_CONN_TIMEOUT_S


def test_the_ops_port_keeps_idle_connections_60s_and_the_verbs_port_120s():
    # The ops port is plain HTTP with no client certificate: kube-scheduler's 120 s there would
    # double how long any caller holds one of its 256 slots. Read off the servers as started.
    from scheduler.extender.live import LiveState
    from scheduler.extender.server import Extender, ExtenderHTTPServer, OpsHTTPServer
    ext = Extender(live=LiveState(), binder=lambda *a: None, get_pod=lambda *a: None)
    verbs = ExtenderHTTPServer(("127.0.0.1", 0), ext, lambda: (True, "ok"))
    ops = OpsHTTPServer(("127.0.0.1", 0), ext, lambda: (True, "ok"), verbs=verbs)
    try:
        assert (verbs.limits.idle_s, ops.limits.idle_s) == (120.0, 60.0)
        assert ops.limits.max_connections == 256
    finally:
        ops.server_close()
        verbs.server_close()


@pytest.mark.parametrize("fixture, paths, pause_s", [
    ("server", ["/x"] * 20, 0.0),                     # each answered by a worker via the watching thread
    ("server", ["/x", "/healthz"] * 5, 0.3),          # half the 0.6 s idle_s between requests: still kept
    ("sticky", ["/x"] * 20, 0.0),                     # the answering worker reads the next request itself
    ("sticky", ["/x", "/healthz", "/x"], 0.3),
])
def test_sequential_requests_over_one_client_connection_need_no_reconnect(request, fixture, paths, pause_s):
    import http.client
    srv, _ = request.getfixturevalue(fixture)
    client = http.client.HTTPConnection(*srv.server_address, timeout=3)  # reopens only when the server closes
    try:
        for i, path in enumerate(paths):
            time.sleep(pause_s)
            client.request("POST" if path == "/x" else "GET", path, body=b"%d" % i if path == "/x" else None)
            resp = client.getresponse()
            assert (resp.status, resp.read()) == (200, b"done:%d" % i if path == "/x" else b"ok")
            assert resp.getheader("Connection") is None  # never "close" after a normal answer
        assert srv.accepted == 1, srv.closed
        assert not any(srv.closed.values()), srv.closed  # nothing hung up meanwhile
    finally:
        client.close()


def test_a_kept_connection_closes_once_idle_past_the_timeout_and_the_reason_is_counted(server):
    srv, _ = server
    with connect(srv) as s:
        s.sendall(post("/x", b"1"))
        assert answer(s) == b"done:1"
        time.sleep(0.3)  # under idle_s 0.6
        s.sendall(post("/x", b"2"))
        assert answer(s) == b"done:2"
        assert closed_within(s, 3)
    assert srv.accepted == 1 and srv.closed["idle"] == 1, srv.closed


@pytest.mark.parametrize("send, reason", [
    (b"", "peer"),                                                        # the client hangs up
    (b"POST /x HTTP/1.1\r\nConnection: close\r\nContent-Length: 1\r\n\r\n1", "asked"),
    (b"POST /x HTTP/1.0\r\nContent-Length: 1\r\n\r\n1", "asked"),         # 1.0 without keep-alive
    (b"BAD\r\n\r\n", "refused"),                                          # 400 and closed
])
def test_each_close_is_counted_by_who_or_what_ended_it(server, send, reason):
    srv, _ = server
    with connect(srv) as s:
        s.sendall(send)
        if send:
            assert status(s) in (200, 400)
            assert closed_within(s, 3)
    deadline = time.monotonic() + 3
    while sum(srv.closed.values()) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)  # the client's close reaches the watching thread after ours returns
    assert {k: v for k, v in srv.closed.items() if v} == {reason: 1}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from benchmarks.testbed import pki as pkimod
    return pkimod.create_extender_tls(tmp_path_factory.mktemp("pki"), "reuse")


def test_over_mutual_tls_one_handshake_serves_every_request_and_no_ticket_is_issued(pki):
    import http.client
    import ssl

    from scheduler.extender.server import server_tls_context
    slow = Slow()
    srv = BoundedHTTPServer(("127.0.0.1", 0), slow.handle, quick,
                            tls=server_tls_context(str(pki.cert), str(pki.key), str(pki.ca_cert)),
                            limits=LIMITS, name="tls")
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    client = http.client.HTTPSConnection(*srv.server_address, context=ctx, timeout=3)
    try:
        for i in range(10):
            time.sleep(0.03 * (i % 3))
            client.request("POST", "/x", body=b"%d" % i)
            resp = client.getresponse()
            assert (resp.status, resp.read()) == (200, b"done:%d" % i)
        assert srv.accepted == 1 and not any(srv.closed.values()), srv.closed
        # kube-scheduler's Go client keeps no session cache: tickets would be work for nothing
        session = client.sock.session
        assert session is None or not session.has_ticket
    finally:
        client.close()
        srv.shutdown()
        srv.server_close()


def test_debug_shapes_lists_pinned_shapes_with_their_products():
    """/debug/shapes answers JSON for every learned shape, a pinned one's products as a list,
    with the CPU and memory its pods ask."""
    import orjson
    from scheduler.core.scoring import Shape
    from scheduler.extender.http import Request
    from scheduler.extender.live import LiveState
    from scheduler.extender.server import Extender, OpsHTTPServer
    live = LiveState()
    live.shapes = (Shape(whole=1, weight=0.75, cpu_milli=8000, ram=64 * 2**30),
                   Shape(whole=1, weight=0.25, products=frozenset({"b-*", "a"})))
    ext = Extender(live=live, binder=lambda *a: None, get_pod=lambda *a: None)
    ops = OpsHTTPServer(("127.0.0.1", 0), ext, lambda: (True, "ok"))
    try:
        resp = ops._get(Request("GET", "/debug/shapes", {}, b""))
    finally:
        ops.server_close()
    assert resp.status == 200
    assert [s["products"] for s in orjson.loads(resp.body)] == [[], ["a", "b-*"]]
    assert [(s["cpu_milli"], s["ram"]) for s in orjson.loads(resp.body)] == [(8000, 64 * 2**30), (0, 0)]


def test_a_connection_whose_turn_raises_is_closed_and_the_server_serves_on(server, monkeypatch, caplog):
    """Whatever one connection's turn raises (the chaos test met ValueError from a TLS socket
    whose client was killed mid-request) closes that connection, not the server: every other
    caller's extender lives on."""
    srv, _ = server
    real, calls = srv._readable, [0]

    def boom(c):
        calls[0] += 1
        if calls[0] == 1:
            raise ValueError("handshake not done yet")
        return real(c)

    monkeypatch.setattr(srv, "_readable", boom)
    with caplog.at_level("ERROR"):
        first = connect(srv)
        first.sendall(post("/x", b"1"))
        assert closed_within(first, 2)
    second = connect(srv)
    second.sendall(post("/x", b"2"))
    assert status(second) == 200
    assert srv.closed["error"] == 1 and "failed; closed" in caplog.text
