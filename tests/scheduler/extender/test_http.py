"""The extender's own request-line and header parsing, byte for byte over a socket."""
from __future__ import annotations

import json
import re
import socket
import threading

import pytest

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import H100_MIB, NodeSpec
from scheduler.extender.live import LiveState
from scheduler.extender.server import Extender, ExtenderHTTPServer

BODY = json.dumps({"Pod": {"metadata": {"name": "p", "namespace": "ns"}, "spec": {}},
                   "NodeNames": ["n1"]}).encode()


@pytest.fixture(scope="module")
def port():
    live = LiveState(stale_after_s=86400)
    live.set_nodes([node_body(NodeSpec("n1", 8, "NVIDIA-H100-80GB-HBM3", H100_MIB))])
    srv = ExtenderHTTPServer(("127.0.0.1", 0), Extender(live=live, binder=lambda *a: None,
                                                         get_pod=lambda *a: None), lambda: (True, "ok"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def exchange(port: int, data: bytes, then: bytes = b"") -> tuple[list[int], bool]:
    """Send `data` (and `then` after the first answer); return every status line's code
    and whether the server closed the connection afterwards."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        got, closed = b"", False
        s.settimeout(0.5)
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                if then:
                    s.sendall(then)
                    then = b""
                    continue
                break
            if not chunk:
                closed = True
                break
            got += chunk
    return [int(c) for c in re.findall(rb"HTTP/1\.[01] (\d{3}) ", got)], closed


def post(headers: str = "", body: bytes = BODY, version: str = "HTTP/1.1", length: bool = True) -> bytes:
    cl = f"Content-Length: {len(body)}\r\n" if length else ""
    return f"POST /filter {version}\r\nHost: x\r\n{cl}{headers}\r\n".encode() + body


@pytest.mark.parametrize("what, data, then, codes, closed", [
    ("a call, kept alive for the next", post(), post(), [200, 200], False),
    ("header names in any case", post(length=False, headers=f"content-LENGTH: {len(BODY)}\r\n"), b"", [200], False),
    ("Connection: close", post("Connection: close\r\n"), b"", [200], True),
    ("HTTP/1.0 closes unless asked", post(version="HTTP/1.0"), b"", [200], True),
    ("HTTP/1.0 with keep-alive", post("Connection: keep-alive\r\n", version="HTTP/1.0"), post(), [200, 200], False),
    ("Expect: 100-continue, as curl sends", post("Expect: 100-continue\r\n")[:-len(BODY)], BODY, [100, 200], False),
    ("a path with a leading //", b"GET //healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"", [200], False),
    ("not a request line", b"GARBAGE\r\n\r\n", b"", [400], True),
    ("four words", b"POST /filter HTTP/1.1 extra\r\n\r\n", b"", [400], True),
    ("HTTP/2.0", b"POST /filter HTTP/2.0\r\n\r\n", b"", [505], True),
    ("a header line without a colon", post("no colon here\r\n"), b"", [400], True),
    ("two Content-Lengths", post("Content-Length: 3\r\n"), b"", [400], True),
    ("101 headers", post("".join(f"X-{i}: y\r\n" for i in range(101))), b"", [431], True),
    ("a 70 kB header line", post("X-Big: " + "y" * 70_000 + "\r\n"), b"", [431], True),
])
def test_request_parsing(port, what, data, then, codes, closed):
    assert exchange(port, data, then) == (codes, closed), what
