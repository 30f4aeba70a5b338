"""The chaos bed's stand-in for a Service: readiness as kubelet judges it with deploy/'s probe.

A real upstream on loopback answers /readyz with whatever `status` holds and echoes
anything else; the proxy in front probes it every 20 ms.
"""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.chaos.proxy import ReadyProxy
from tests.helpers import eventually


class Upstream:
    def __init__(self) -> None:
        self.status = 200
        self.fail_next = 0  # probes to answer 503 before `status` again
        self.failed = 0  # of those, answered
        self.probes = 0
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                status = 200
                if self.path == "/readyz":
                    up.probes += 1
                    status = up.status
                    if up.fail_next:  # written only here and once by the test: no probe in flight undoes it
                        status, up.fail_next, up.failed = 503, up.fail_next - 1, up.failed + 1
                body = b"ok" if self.path == "/readyz" else self.path.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]


@pytest.fixture
def pair():
    up = Upstream()
    # a probe's timeout is never what fails it here (503s and a closed port do): 1 s, as deployed
    proxy = ReadyProxy(up.port, f"http://127.0.0.1:{up.port}/readyz", probe_every_s=0.02, timeout_s=1.0,
                       failure_threshold=3).start()
    yield up, proxy
    proxy.stop()
    up.server.shutdown()


def until(cond) -> None:
    eventually(cond, timeout=3.0, interval=0.01, what="the proxy's state")


def get(port: int, path: str, sock: socket.socket | None = None) -> bytes:
    """One HTTP/1.1 GET; b'' where the proxy closed the connection at once (no endpoint)."""
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=2)
    data = b""
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        while not data.endswith(path.encode()):  # the echoed path ends the answer
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    if sock is None:
        s.close()
    return data


def test_one_answer_of_200_makes_the_endpoint_ready_and_calls_pass(pair):
    up, proxy = pair
    until(lambda: proxy.ready)
    assert get(proxy.port, "/filter").endswith(b"/filter")


def test_failed_probes_below_the_threshold_keep_the_endpoint(pair):
    up, proxy = pair
    until(lambda: proxy.ready)
    up.fail_next = 2  # 2 failed probes, then 200: never out
    seen = up.probes
    until(lambda: up.probes >= seen + 4)
    assert up.failed == 2
    assert proxy.ready and [r for _, r, _ in proxy.transitions] == [True]


def test_three_failures_in_a_row_take_it_out_and_one_success_brings_it_back(pair):
    up, proxy = pair
    until(lambda: proxy.ready)
    up.status = 503
    until(lambda: not proxy.ready)
    assert get(proxy.port, "/filter") == b""  # refused, as a Service with no endpoint
    (_, ready, why), = proxy.transitions[1:]
    assert not ready and why == "/readyz answered 503, 3 probes in a row"
    up.status = 200
    until(lambda: proxy.ready)
    assert get(proxy.port, "/bind").endswith(b"/bind")


def test_a_connection_open_when_the_endpoint_leaves_stays_open(pair):
    up, proxy = pair
    until(lambda: proxy.ready)
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    try:
        assert get(proxy.port, "/a", sock).endswith(b"/a")
        up.status = 503
        until(lambda: not proxy.ready)
        assert get(proxy.port, "/b", sock).endswith(b"/b")  # kube-proxy does not cut it either
    finally:
        sock.close()


def test_a_process_that_exits_is_out_at_the_next_probe(pair):
    up, proxy = pair
    until(lambda: proxy.ready)
    up.server.shutdown()
    up.server.server_close()  # nothing listens on the port: kubelet sees the container stop
    until(lambda: not proxy.ready)
    (_, ready, why), = proxy.transitions[1:]
    assert not ready and why == "nothing listens on its port (the process exited)"
    assert get(proxy.port, "/filter") == b""
