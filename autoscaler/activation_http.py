"""The activation endpoint's HTTP server (autoscaler.activation decides; this only
carries bytes).

Its own port, apart from /metrics: the gateway reaches this one and nothing else
(docs/security.md). Bounded like every port a caller can reach: at most
``max_connections`` at once (more are closed at once, unanswered), a request line and
headers within ``http.server``'s limits (64 KiB a line, 100 headers), a body never
read (a wake carries none, and the connection closes after each answer), and a
socket timeout so a caller that stalls holds a thread for ``timeout_s`` at most.
Nothing is logged per request: a flood must not become a flood of log lines.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from .activation import Activator, Answer

READ_TIMEOUT_S = 5.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int):
        super().__init__(addr, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve_activation(activator: Activator, port: int, addr: str = "0.0.0.0", *, clock: Callable[[], float],
                     on_answer: Callable[[Answer], None] | None = None, max_connections: int = 64,
                     timeout_s: float = READ_TIMEOUT_S) -> ThreadingHTTPServer:
    """Serve ``activator`` on ``addr:port`` (0: a free port) from a daemon thread; every
    call is answered with JSON, 503 + Retry-After for a wake. ``on_answer`` sees every
    answer (metrics); it must not block."""

    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_s
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            try:
                headers = {k: v for k, v in self.headers.items()}  # at most 100: http.server's cap
                a = activator.handle(self.command, self.path, headers, clock())
            except Exception as exc:  # noqa: BLE001 - a bug must answer, not kill the thread silently
                a = Answer(500, f"internal error: {type(exc).__name__}")
            if on_answer is not None:
                on_answer(a)
            body = (json.dumps({"code": a.code, "message": a.message, "key": a.key, "woken": a.woken,
                                "retryAfterSeconds": a.retry_after}) + "\n").encode()
            self.send_response(a.code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.send_header("Cache-Control", "no-store")
            if a.retry_after is not None:
                self.send_header("Retry-After", str(a.retry_after))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.close_connection = True

        do_GET = do_POST = do_HEAD = do_PUT = _answer  # noqa: N815 - http.server's names

        def log_message(self, *args: Any) -> None:
            pass

    server = _Server((addr, port), Handler, max_connections)
    threading.Thread(target=server.serve_forever, name="activation", daemon=True).start()
    return server


__all__ = ["serve_activation"]
