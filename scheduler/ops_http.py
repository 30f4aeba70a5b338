"""The operators' HTTP port of a daemon: /metrics for Prometheus and a health path for
kubelet's probes, served on a daemon thread.

The node agent and the autoscaler share it; the extender answers the same paths on its
own connection-capped selector loop (scheduler/extender/http.py), because tenants can
reach it. Only GET is served, and nothing is logged per request: a probe every few
seconds is not news.
"""
from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:  # the CLIs import port_arg before any daemon starts: keep this module light
    from prometheus_client import CollectorRegistry

HealthCheck = Callable[[], tuple[bool, str]]  # (healthy, one line for whoever probes)


def port_arg(text: str) -> int:
    """argparse type of a --metrics-port: a clear usage error, not a bind() traceback."""
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: use a port number, or 0 for no metrics endpoint")
    return v


def serve_ops(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0", *,
              health: HealthCheck | None = None, health_paths: Iterable[str] = ("/healthz",),
              thread_name: str = "ops-http") -> ThreadingHTTPServer:
    """/metrics from ``registry`` (OpenMetrics when the scraper asks for it, as Prometheus
    does) and ``health_paths`` answering 200 or 503 with ``health``'s line (always 200
    without one). Returns the running server; port 0 picks a free port."""
    from prometheus_client.exposition import choose_encoder

    health_paths = frozenset(health_paths)
    hint = ("not found: try /metrics or " + " or ".join(sorted(health_paths)) + "\n").encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?")[0]
            code = 200
            if path == "/metrics":
                encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                body = encoder(registry)
            elif path in health_paths:
                ok, text = health() if health is not None else (True, "ok")
                body, ctype, code = (text + "\n").encode(), "text/plain; charset=utf-8", 200 if ok else 503
            else:
                body, ctype, code = hint, "text/plain; charset=utf-8", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=thread_name, daemon=True).start()
    return server
