"""Finding 5 of issue #14: one 15.6 MB /filter of 3.9 million one-character node names took
the extender from 90 MB to 820 MB; three at once peaked at 2.06 GB. Over a real (mutual TLS)
socket to the real extender: a 16 MB body is answered 413 without being read into memory, a
body just under the 2 MiB cap with more names than twice the cluster's nodes is answered 413
before it is decoded, three of each at once leave the extender's resident memory within a few
MiB, and it goes on answering a real filter."""
from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from benchmarks.testbed.stack import GpuschedScheduler
from scheduler.extender import protocol

pytestmark = pytest.mark.integration

POD = {"metadata": {"name": "big", "namespace": "default", "uid": "u"}, "spec": {"schedulerName": "gpusched-body"}}


@pytest.fixture(scope="module")
def extender(cluster):
    g = GpuschedScheduler(cluster, name="gpusched-body")
    g.start_extender()
    yield g
    g.stop_extender()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class PeakRSS:
    """Samples a process's resident memory every 5 ms while in the with-block."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> "PeakRSS":
        self.before = rss_mib(self.pid)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __exit__(self, *exc) -> None:
        time.sleep(0.2)
        self._stop.set()
        self._t.join()


def post_raw(g: GpuschedScheduler, body: bytes) -> int:
    """POST /filter over mutual TLS, the body sent while the answer is read, from one thread:
    the extender answers an oversized body before reading it. One thread, because an SSL
    object read and written from two threads at once is undefined in OpenSSL (it lost the
    answer about one round in six)."""
    ctx = ssl.create_default_context(cafile=g.verify)
    ctx.load_cert_chain(*g.cert)
    with socket.create_connection(("127.0.0.1", g.port), timeout=30) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        s.setblocking(False)
        view, data, deadline = memoryview(body), b"", time.monotonic() + 30
        while b"\r\n" not in data and time.monotonic() < deadline:
            select.select([s], [s] if view else [], [], 0.05)
            try:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
                continue
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except OSError:
                break
            if view:
                try:
                    view = view[s.send(view[:65536]):]
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except OSError:
                    view = view[:0]  # the extender stopped reading after its answer
        return int(data.split()[1]) if data else 0


def test_huge_filters_are_refused_and_memory_stays_flat(extender, core):
    nodes = len(core.list_node().items)
    huge = json.dumps({"Pod": POD, "NodeNames": ["a"] * 3_900_000}, separators=(",", ":")).encode()  # 15.6 MB
    names = (protocol.MAX_BODY - 200) // 4
    under_cap = json.dumps({"Pod": POD, "NodeNames": ["a"] * names}, separators=(",", ":")).encode()
    assert len(huge) > 15_000_000 and len(under_cap) <= protocol.MAX_BODY and names > 2 * nodes
    statuses: list[int] = []
    with PeakRSS(extender.proc.pid) as mem:
        threads = [threading.Thread(target=lambda b=b: statuses.append(post_raw(extender, b)))
                   for b in (huge, huge, huge, under_cap, under_cap, under_cap)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    print(f"\nabuse: 3 x {len(huge) / 1e6:.1f} MB and 3 x {len(under_cap) / 2**20:.2f} MiB /filter at once: "
          f"RSS {mem.before:.0f} MiB before, peak {mem.peak:.0f} MiB")
    assert statuses == [413] * 6
    assert mem.peak - mem.before < 32, (mem.before, mem.peak)  # 730 MB per huge body before the cap
    ok = extender.post("/filter", json={"Pod": POD, "NodeNames": ["gpu-node-0000"]}).json()
    assert ok["NodeNames"] == ["gpu-node-0000"], ok
