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


@pytest.fixture
def server():
    slow = Slow()
    srv = BoundedHTTPServer(("127.0.0.1", 0), slow.handle, quick, limits=LIMITS, name="test")
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv, slow
    slow.release.set()
    srv.shutdown()
    srv.server_close()


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


@pytest.mark.parametrize("what, head, code", [
    ("over max_body", b"POST /x HTTP/1.1\r\nContent-Length: 4097\r\n\r\n", 413),
    ("chunked", b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    ("a head over max_header_bytes", b"GET /x HTTP/1.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n", 431),
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
