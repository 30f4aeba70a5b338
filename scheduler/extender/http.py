"""The extender's connection handling: a bounded HTTP/1.1 server.

One thread watches every connection with a selector: it accepts, runs TLS handshakes
without blocking, and reads each request whole (head and body) into memory before any
worker sees it. A fixed pool of workers answers complete requests. So an idle, slow or
hostile client costs a socket and a small buffer, never a thread, and it is cut off when
a limit runs out:

- at most `max_connections` open; past it the longest-idle one is closed for the new one,
  so a flood of idle connections cannot lock out kube-scheduler or a health probe;
- `idle_s` between requests, `header_s` from the first byte (or accept, for TLS) to the
  end of the head, `body_s` to read the body, `write_s` to write an answer;
- a head of at most `max_header_bytes`, a body of at most `max_body`, and at most
  `buffered_bytes` of bodies held at once over all connections (past it: 503, retry).

`quick` routes (health and readiness) are answered on the watching thread itself, so they
answer even while every worker is busy with binds waiting on the API server.

A worker that has answered keeps its connection a while (`sticky_s`) and answers the next
request itself, as a thread per connection would: one thread wake-up per call instead of
two (watching thread, then worker). It lends itself so only while a quarter of the pool is
free, and only for a request that comes whole, plain and within the limits; all else goes
back to the watching thread, and a job queued with fewer workers free ends every such wait.
"""
from __future__ import annotations

import logging
import queue
import select
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Callable

log = logging.getLogger(__name__)

# A worker that has answered keeps its connection for the next request (see _next_here):
# while a quarter of the pool is free, up to Limits.sticky_s for its first bytes and REST_S
# for the rest; with fewer free, STICKY_S and WHOLE_S; a pool running short (a job queued
# with fewer free) ends every such wait at once.
STICKY_S = 0.002
WHOLE_S = 0.005
REST_S = 0.1
# Why connections are closed, as the metrics count them: "peer" the client closed it (or reset
# it); "asked" the request said Connection: close (or was HTTP/1.0); "answer" the answer did
# (not ready, an error); "idle" no request within idle_s; "timeout" a handshake or head not in
# time; "evicted" at the connection cap; "refused" a request refused (too large, malformed);
# "handshake" a failed TLS handshake; "write" an answer that could not be written; "error" a
# socket error while waiting; "shutdown" the server stopping.
CLOSE_REASONS = ("peer", "asked", "answer", "idle", "timeout", "evicted", "refused", "handshake", "write",
                 "error", "shutdown")
SCRATCH = 262144  # each thread's receive buffer: a recv() of this size would mmap it afresh each call


@dataclass(frozen=True)
class Limits:
    max_connections: int = 1024
    # kube-scheduler binds up to its parallelism at once, each waiting on the API server;
    # filter and prioritize must never queue behind them (daemon.BIND_CONCURRENCY is 24)
    workers: int = 40
    # Longer than Go's IdleConnTimeout (90 s; kube-scheduler's extender client keeps Go's
    # default): the client drops an idle connection before we do. Closed under it, a POST the
    # client had started writing fails the call, as Go retries only requests it never wrote.
    idle_s: float = 120.0
    header_s: float = 10.0
    body_s: float = 10.0
    write_s: float = 10.0
    max_header_bytes: int = 16384  # kube-scheduler's heads are ~200 bytes
    max_headers: int = 100
    max_body: int = 2 * 2**20
    buffered_bytes: int = 64 * 2**20
    # kube-scheduler sends the next pod's filter a few ms after the last bind: a worker waiting
    # on the connection answers it with one thread wake-up, where the watching thread and a
    # worker take two. Idle workers cost nothing, and a pool running short calls them back.
    sticky_s: float = 0.5


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    peer_cert: dict | None = None  # the verified client certificate, with mutual TLS


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    close: bool = False


Handler = Callable[[Request], Response]
Quick = Callable[[Request], "Response | None"]


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


_HANDSHAKE, _IDLE, _HEAD, _BODY, _BUSY, _DRAIN = range(6)
# After refusing a body, read and drop this much of it for up to DRAIN_S before closing:
# closing on unread bytes sends a reset, and the client would never see the 413.
DRAIN_BYTES = 16 * 2**20
DRAIN_S = 1.0


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    peer: str
    state: int
    deadline: float
    buf: bytearray = field(default_factory=bytearray)
    head: tuple[str, str, dict[str, str], bool] | None = None  # method, path, headers, keep-alive
    head_len: int = 0
    need: int = 0  # bytes of buf that make the request whole
    reserved: int = 0  # bytes of the buffer budget this request's body holds
    close: bool = False
    closed: bool = False
    why: str = ""  # why a worker set close: the reason _close counts when the connection comes back
    # The client's certificate, read once its TLS handshake is done: later the connection can
    # have failed (a client killed mid-request), and getpeercert then raises ValueError.
    cert: dict | None = None

    @property
    def fd(self) -> int:
        return self._fd

    def __post_init__(self) -> None:
        self._fd = self.sock.fileno()


def parse_head(data: bytes, max_headers: int) -> tuple[str, str, dict[str, str], bool]:
    """Request line and headers -> (method, path, headers, keep_alive); _BadRequest otherwise.
    Written out rather than via the email package the standard library uses: ~0.3 ms a call."""
    lines = data.decode("iso-8859-1").split("\n")
    words = lines[0].rstrip("\r").split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        raise _BadRequest(400, f"Bad request line {lines[0][:100]!r}")
    method, path, version = words
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _BadRequest(505, f"Unsupported HTTP version {version[:20]!r}")
    if path.startswith("//"):  # as the standard library: never an absolute URL's host
        path = "/" + path.lstrip("/")
    headers: dict[str, str] = {}
    fields = [ln.rstrip("\r") for ln in lines[1:]]
    fields = [ln for ln in fields if ln]
    if len(fields) > max_headers:
        raise _BadRequest(431, "Too many headers")
    for ln in fields:
        name, sep, value = ln.partition(":")
        name = name.strip().lower()
        if not sep or not name or (name == "content-length" and name in headers):
            # two Content-Lengths could frame the body two ways: refuse, do not pick one
            raise _BadRequest(400, f"Bad header line {ln[:100]!r}")
        headers[name] = value.strip()
    connection = headers.get("connection", "").lower()
    keep = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    return method, path, headers, keep


def _content_length(headers: dict[str, str], max_body: int) -> int:
    if "transfer-encoding" in headers:
        # kube-scheduler sends a Content-Length; a chunked body would have no bound up front
        raise _BadRequest(411, "Transfer-Encoding is not accepted: send Content-Length")
    text = headers.get("content-length", "0")
    if not text.isascii() or not text.isdigit():
        raise _BadRequest(400, f"Content-Length must be 0..{max_body}")
    if len(text) > 12 or int(text) > max_body:
        raise _BadRequest(413, f"Content-Length must be 0..{max_body}")
    return int(text)


class Dates:
    """The Date header, formatted once a second rather than once a call (email.utils is slow)."""

    def __init__(self) -> None:
        self._now: tuple[int, str] = (0, "")

    def __call__(self) -> str:
        now = int(time.time())
        cached = self._now
        if cached[0] != now:
            cached = self._now = (now, formatdate(now, usegmt=True))  # one tuple swapped at once
        return cached[1]


def encode(resp: Response, keep_alive: bool, date: str) -> bytes:
    try:
        phrase = HTTPStatus(resp.status).phrase
    except ValueError:
        phrase = ""
    close = b"" if keep_alive else b"Connection: close\r\n"
    return b"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s" % (
        resp.status, phrase.encode(), date.encode(), resp.content_type.encode(), len(resp.body), close, resp.body)


def _error(status: int, message: str) -> Response:
    return Response(status, b'{"Error":"%s"}' % message.replace("\\", "\\\\").replace('"', "'").encode(
        "ascii", "replace"), close=True)


class BoundedHTTPServer:
    """serve_forever() on one thread; shutdown() from another; server_address once bound."""

    def __init__(self, address: tuple[str, int], handle: Handler, quick: Quick | None = None,
                 tls: ssl.SSLContext | None = None, limits: Limits = Limits(), name: str = "http"):
        self.handle, self.quick, self.tls, self.limits, self.name = handle, quick, tls, limits, name
        self._sock = socket.create_server(address, backlog=1024)
        self._sock.setblocking(False)
        self.server_address: tuple[str, int] = self._sock.getsockname()[:2]
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        # Readable while the pool runs short: workers waiting on their connections let go.
        self._short_r, self._short_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w, self._short_r, self._short_w):
            s.setblocking(False)
        self._short = False  # a byte is in _short_r (only the watching thread writes and drains it)
        self._pool = threading.Lock()
        self._free = 0  # workers waiting for a job, less the jobs queued for them
        self._reserve = max(1, limits.workers // 4)  # fewer free than this: the pool is short
        self._scratch = memoryview(bytearray(SCRATCH))  # the watching thread's
        self._returned: deque[_Conn] = deque()  # workers hand connections back through this
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._conns: dict[int, _Conn] = {}
        # Connections with no request under way (a TLS handshake, idle, a head still coming),
        # least recently active first: at the cap the first of them is closed for the new one.
        self._evictable: OrderedDict[_Conn, None] = OrderedDict()
        self._buffered = 0
        self._budget = threading.Lock()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._workers: list[threading.Thread] = []
        self.dates = Dates()
        self.evicted = 0  # connections closed at the cap, for tests and logs
        # Connections accepted, and closed by reason (CLOSE_REASONS), for the metrics and tests:
        # a client that reuses its connections shows few accepts per request. Written by the
        # watching thread alone.
        self.accepted = 0
        self.closed: dict[str, int] = dict.fromkeys(CLOSE_REASONS, 0)
        self.handed_back = 0  # connections a worker gave back to the watching thread, for tests

    # ---------- lifecycle

    def serve_forever(self, poll_interval: float = 0.25) -> None:
        for i in range(self.limits.workers):
            t = threading.Thread(target=self._work, name=f"{self.name}-worker-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        self._sel.register(self._sock, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        next_sweep = time.monotonic() + poll_interval
        try:
            while not self._stop.is_set():
                for key, _ in self._sel.select(poll_interval):
                    if key.fileobj is self._sock:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._take_back()
                    else:
                        self._serve(key.data)
                if self._short and self._free >= self._reserve:
                    self._shortage(False)
                now = time.monotonic()
                if now >= next_sweep:  # deadlines to the poll interval, not a heap per event
                    self._sweep(now)
                    next_sweep = now + poll_interval
        finally:
            for c in list(self._conns.values()):
                self._close(c, "shutdown")
            for _ in self._workers:
                self._jobs.put(None)
            self._shortage(True)  # workers waiting on their connections: stop
            self._stopped.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake()
        self._stopped.wait(10)

    def server_close(self) -> None:
        for s in (self._sock, self._wake_r, self._wake_w, self._short_r, self._short_w):
            s.close()
        self._sel.close()

    def connections(self) -> int:
        return len(self._conns)

    # ---------- the watching thread

    def _accept(self) -> None:
        for _ in range(256):  # then let the open connections have a turn
            try:
                sock, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: the backlog waits; the sweep frees some
                log.warning("%s: accept failed: %s", self.name, exc)
                return
            if len(self._conns) >= self.limits.max_connections:
                if not self._evictable:
                    sock.close()  # every connection is mid-request: refuse the new one
                    continue
                oldest = next(iter(self._evictable))
                self.evicted += 1
                self._close(oldest, "evicted")
            self.accepted += 1
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else Nagle waits 40 ms on answers
            now = time.monotonic()
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except (OSError, ValueError):
                    sock.close()
                    continue
                c = _Conn(sock, str(addr[0]), _HANDSHAKE, now + self.limits.header_s)
            else:
                c = _Conn(sock, str(addr[0]), _IDLE, now + self.limits.idle_s)
            self._evictable[c] = None
            self._conns[sock.fileno()] = c
            self._sel.register(sock, selectors.EVENT_READ, c)

    def _serve(self, c: _Conn) -> None:
        """One connection's turn: whatever it raises closes it, and never the server (a
        client killed mid-request must not take every other caller's extender with it)."""
        try:
            self._readable(c)
        except Exception:  # noqa: BLE001 - logged with its traceback, the connection dropped
            log.exception("%s: connection from %s failed; closed", self.name, c.peer)
            if not c.closed:
                self._close(c, "error")

    def _readable(self, c: _Conn) -> None:
        if c.closed:  # closed earlier in this round of events (at the cap); its fd may be another's now
            return
        if c.state == _DRAIN:
            self._drain(c)
            return
        if c.state == _HANDSHAKE:
            try:
                c.sock.do_handshake()  # type: ignore[attr-defined]
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except (OSError, ValueError) as exc:
                log.info("%s: TLS handshake from %s failed: %s", self.name, c.peer, exc)
                self._close(c, "handshake")
                return
            try:
                c.cert = c.sock.getpeercert() or None  # type: ignore[attr-defined]
            except (OSError, ValueError) as exc:  # failed between the handshake and this line
                log.info("%s: TLS connection from %s failed after its handshake: %s", self.name, c.peer, exc)
                self._close(c, "handshake")
                return
            c.state, c.deadline = _IDLE, time.monotonic() + self.limits.idle_s
            self._evictable.move_to_end(c)
        eof = False
        while True:
            got = _recv(c, self._scratch, SCRATCH)
            if got <= 0:
                eof = got < 0
                break
            if len(c.buf) > c.need + self.limits.max_header_bytes:
                break  # the request and the head of the next: read no further until they are answered
        if c.buf:
            self._advance(c)
        if eof and c.state == _BODY and not c.closed:
            self._refuse(c, 400, "the body ended before Content-Length bytes")  # the client may still read
        elif eof and c.state != _BUSY and not c.closed:
            self._close(c, "peer")

    def _advance(self, c: _Conn) -> None:
        """Move the requests in c.buf as far as the bytes allow: each whole one is answered
        here (quick) or handed to a worker, and a pipelined next one follows in this loop."""
        lim = self.limits
        while c.buf and not c.closed and c.state != _BUSY:
            if c.state == _IDLE:
                c.state, c.deadline = _HEAD, time.monotonic() + lim.header_s
            if c.state == _HEAD and not self._read_head(c):
                return
            if len(c.buf) < c.need:
                return
            assert c.head is not None  # _read_head parsed it before `need` was set
            method, path, headers, keep = c.head
            body = _take(c.buf, c.head_len, c.need)
            c.need = 0
            req = Request(method, path, headers, body, c.cert)
            c.close, c.why = not keep, "asked"
            resp = self.quick(req) if self.quick is not None else None
            if resp is None:
                c.state = _BUSY
                self._sel.unregister(c.sock)
                self._dispatch(c, req)
                return
            self._release(c)
            ok = self._send_now(c, encode(resp, keep and not resp.close, self.dates()))
            if not ok or c.close or resp.close:
                self._close(c, "write" if not ok else "asked" if c.close else "answer")
                return
            c.state, c.deadline, c.head = _IDLE, time.monotonic() + lim.idle_s, None
            self._evictable[c] = None

    def _read_head(self, c: _Conn) -> bool:
        """The head, once whole: parsed, its body length checked and reserved. False while
        it is not whole yet, or when the request was refused."""
        lim = self.limits
        end, sep = c.buf.find(b"\r\n\r\n"), 4
        if end < 0:
            end, sep = c.buf.find(b"\n\n"), 2
        if end < 0 or end > lim.max_header_bytes:
            if len(c.buf) > lim.max_header_bytes:
                self._refuse(c, 431, "Request head too large")
            return False
        try:
            c.head = parse_head(bytes(c.buf[:end]), lim.max_headers)
            length = _content_length(c.head[2], lim.max_body)
        except _BadRequest as exc:
            self._refuse(c, exc.status, str(exc))
            return False
        with self._budget:
            fits = self._buffered + length <= lim.buffered_bytes
            if fits:
                self._buffered += length
                c.reserved = length
        if not fits:
            self._refuse(c, 503, "too many request bodies in flight; retry")
            return False
        c.head_len, c.need = end + sep, end + sep + length
        c.state, c.deadline = _BODY, time.monotonic() + lim.body_s
        self._evictable.pop(c, None)  # a request under way is not cut off for a newcomer
        if c.head[2].get("expect", "").lower() == "100-continue" and len(c.buf) < c.need:
            self._send_now(c, b"HTTP/1.1 100 Continue\r\n\r\n")  # curl asks before a body over 1 kB
        return True

    def _dispatch(self, c: _Conn, req: Request) -> None:
        with self._pool:
            self._free -= 1
            short = self._free < self._reserve
        self._jobs.put((c, req))
        if short and not self._short:
            self._shortage(True)

    def _shortage(self, on: bool) -> None:
        self._short = on
        try:
            if on:
                self._short_w.send(b"x")
            else:
                while self._short_r.recv(4096):
                    pass
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            pass  # closed: shutting down

    def _rest(self, c: _Conn, idle_until: float | None = None) -> None:
        """Between requests: idle, or straight on with the next one if it came along."""
        c.state, c.head = _IDLE, None
        c.deadline = idle_until if idle_until is not None else time.monotonic() + self.limits.idle_s
        self._evictable[c] = None
        if c.buf:
            self._advance(c)

    def _refuse(self, c: _Conn, status: int, message: str) -> None:
        self._send_now(c, encode(_error(status, message), False, self.dates()))
        if status not in (411, 413, 503) or c.closed:
            self._close(c, "refused")
            return
        # a body is on its way: drop it (never buffered) so that the answer is read, not reset
        self._release(c)
        c.buf.clear()
        c.state, c.deadline, c.need = _DRAIN, time.monotonic() + DRAIN_S, DRAIN_BYTES
        try:
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _drain(self, c: _Conn) -> None:
        while True:
            try:
                chunk = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except (OSError, ValueError):
                chunk = b""
            c.need -= len(chunk)
            if not chunk or c.need <= 0:
                self._close(c, "refused")
                return

    def _send_now(self, c: _Conn, data: bytes) -> bool:
        """A small answer from the watching thread; a client whose socket will not take it
        whole at once is not waited for."""
        try:
            return c.sock.send(data) == len(data)
        except (OSError, ValueError, ssl.SSLError):
            return False

    def _take_back(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._returned:
            c = self._returned.popleft()
            self.handed_back += 1
            self._release(c)
            if c.close or self._stop.is_set():
                self._close(c, c.why or "shutdown", registered=False)
                continue
            self._sel.register(c.sock, selectors.EVENT_READ, c)
            self._rest(c, c.deadline)  # the worker set it when it answered: waiting there was idle time

    def _sweep(self, now: float) -> None:
        late = [c for c in self._conns.values() if c.state != _BUSY and now >= c.deadline]
        for c in late:
            if c.state == _BODY:
                self._refuse(c, 408, "request body not received in time")
            elif c.state == _DRAIN:
                self._close(c, "refused")
            else:  # idle, or a head or handshake that never came: nothing to say
                self._close(c, "idle" if c.state == _IDLE else "timeout")

    def _release(self, c: _Conn) -> None:
        with self._budget:  # workers release too, as soon as their request is answered
            self._buffered -= c.reserved
            c.reserved = 0

    def _close(self, c: _Conn, why: str, registered: bool = True) -> None:
        if c.closed:
            return
        c.closed = True
        self.closed[why] = self.closed.get(why, 0) + 1
        self._release(c)
        self._evictable.pop(c, None)
        if self._conns.get(c.fd) is c:
            del self._conns[c.fd]
        if registered and c.state != _BUSY:
            try:
                self._sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        try:
            c.sock.close()
        except OSError:
            pass

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # already a wake-up pending, or shutting down

    # ---------- workers

    def _work(self) -> None:
        scratch = memoryview(bytearray(SCRATCH))
        waiter = select.poll()  # not select(): a descriptor past 1,023 is normal here
        waiter.register(self._short_r, select.POLLIN)  # a pool running short ends every wait
        while True:
            with self._pool:
                self._free += 1
            job = self._jobs.get()
            if job is None:
                return
            c, req = job
            while req is not None:
                self._answer(c, req)
                req = None if c.close else self._next_here(c, scratch, waiter)
            self._returned.append(c)
            self._wake()

    def _answer(self, c: _Conn, req: Request) -> None:
        resp = self.quick(req) if self.quick is not None else None
        if resp is None:
            try:
                resp = self.handle(req)
            except Exception:  # a bug must not take a worker down; say so and keep serving
                log.exception("%s: %s %s failed", self.name, req.method, req.path)
                resp = Response(500, b'{"Error":"internal error"}')
        self._release(c)
        data = encode(resp, not (c.close or resp.close), self.dates())
        if not c.close and resp.close:
            c.why = "answer"
        c.close = c.close or resp.close
        try:
            sent = 0
            if self.tls is None:  # TLS must retry a write with the same bytes: sendall below
                try:
                    sent = c.sock.send(data)  # the socket buffer takes a whole answer: no timeout, no poll
                except (BlockingIOError, InterruptedError):
                    pass
            if sent < len(data):
                c.sock.settimeout(self.limits.write_s)
                c.sock.sendall(memoryview(data)[sent:])
                c.sock.setblocking(False)
        except (OSError, ValueError):
            c.close, c.why = True, "write"
        c.deadline = time.monotonic() + self.limits.idle_s

    def _next_here(self, c: _Conn, scratch: memoryview, waiter: select.poll) -> Request | None:
        """The connection's next request, read by this worker when it comes within the
        sticky waits: one thread wake-up per call, where the watching thread and a worker
        take two. Anything else (nothing yet, part of a request, a request to refuse, a
        pipelined one) is left in c.buf, with no body budget held, for the watching thread,
        which applies every limit. Under load a body may come in pieces milliseconds apart:
        handing it back mid-way would cost more wake-ups than waiting for it here."""
        if c.buf:
            return None  # pipelined: the watching thread parses it, with the body budget
        lim = self.limits
        spare = self._free >= self._reserve
        if not _wait(c, waiter, min(lim.sticky_s if spare else STICKY_S, c.deadline - time.monotonic())):
            return None
        give_up = time.monotonic() + (REST_S if spare else WHOLE_S)
        head: tuple[str, str, dict[str, str], bool] | None = None
        start = need = 0
        try:
            while True:
                # before the head is whole, read what there is (at most SCRATCH): bytes past
                # this request stay in c.buf for the watching thread, as pipelined ones do
                got = _recv(c, scratch, need - len(c.buf) if head is not None else SCRATCH)
                if got < 0:
                    c.close = not c.buf  # EOF: the watching thread answers what came before it
                    c.why = "peer"
                    return None
                if head is None:
                    end = c.buf.find(b"\r\n\r\n", 0, lim.max_header_bytes + 4)
                    if end < 0:
                        if len(c.buf) >= lim.max_header_bytes + 4:
                            return None  # too large a head: the watching thread says so
                    else:
                        head, length = _plain_head(c.buf, end, lim)
                        if head is None or not self._reserve_body(c, length):
                            return None
                        start, need = end + 4, end + 4 + length
                if head is not None and len(c.buf) >= need:
                    break
                if got == 0 and not _wait(c, waiter, give_up - time.monotonic()):
                    return None
        finally:
            if head is None or len(c.buf) < need:
                self._release(c)  # handed back: the watching thread reserves it anew
        assert head is not None  # the loop leaves with the head parsed and the body whole
        method, path, headers, keep = head
        c.close, c.why = not keep, "asked"
        return Request(method, path, headers, _take(c.buf, start, need), c.cert)

    def _reserve_body(self, c: _Conn, length: int) -> bool:
        with self._budget:
            if self._buffered + length > self.limits.buffered_bytes:
                return False
            self._buffered += length
            c.reserved = length
        return True


def _wait(c: _Conn, waiter: select.poll, timeout: float) -> bool:
    """Whether c has bytes to read within timeout, or before anything else registered with
    waiter does; c's descriptor is registered for this wait only."""
    pending = getattr(c.sock, "pending", None)
    if pending is not None and pending():  # TLS: decrypted already, the socket itself may be quiet
        return True
    if timeout <= 0:
        return False
    fd = c.fd
    try:
        waiter.register(fd, select.POLLIN)
        try:
            events = waiter.poll(timeout * 1000)
        finally:
            waiter.unregister(fd)
    except (OSError, ValueError, KeyError):
        c.close, c.why = True, "error"
        return False
    return any(f == fd for f, _ in events)


def _recv(c: _Conn, scratch: memoryview, limit: int) -> int:
    """Append what c has now, at most limit bytes, to c.buf: bytes read, 0 for none now,
    -1 for end of stream or an error."""
    try:
        n = c.sock.recv_into(scratch, max(1, min(limit, len(scratch))))
    except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return 0
    except (OSError, ValueError):
        return -1
    if not n:
        return -1
    c.buf += scratch[:n]
    return n


def _take(buf: bytearray, start: int, end: int) -> bytes:
    """buf[start:end] as bytes, with buf[:end] removed: one copy, where bytes(buf[a:b]) makes two."""
    with memoryview(buf) as view:
        body = bytes(view[start:end])
    del buf[:end]
    return body


def _plain_head(buf: bytearray, end: int, lim: Limits) -> tuple[tuple[str, str, dict[str, str], bool] | None, int]:
    """The head ending at end and its body's length, when the request is one a worker may
    read on its own: well formed, within the limits, no 100-continue (None otherwise)."""
    try:
        head = parse_head(bytes(buf[:end]), lim.max_headers)
        length = _content_length(head[2], lim.max_body)
    except _BadRequest:
        return None, 0
    if "expect" in head[2]:
        return None, 0
    return head, length
