"""A readiness-gated TCP proxy: what a Kubernetes Service does for the extender.

In a cluster, kube-scheduler calls the extender through a Service, which routes only to
pods whose readiness probe (/readyz) passes; a restarted extender gets no call before
its informers have listed. On the test bed kube-scheduler would call the process
directly, so the chaos bed puts this in between: while /readyz does not answer 200,
connections are refused (closed at once), as with a Service without endpoints.
"""
from __future__ import annotations

import socket
import threading

import requests


class ReadyProxy:
    def __init__(self, upstream_port: int, ready_url: str, probe_every_s: float = 0.5):
        self.upstream = ("127.0.0.1", upstream_port)
        self.ready_url = ready_url
        self.probe_every_s = probe_every_s
        self.ready = False
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(256)
        self.port = self._sock.getsockname()[1]
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ReadyProxy":
        threading.Thread(target=self._probe, name="proxy-probe", daemon=True).start()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self._sock.close()
        except OSError:
            pass
        self.cut()

    def cut(self) -> None:
        """Close every proxied connection (the endpoint went away)."""
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _probe(self) -> None:
        while not self._stop.is_set():
            try:
                ok = requests.get(self.ready_url, timeout=1).status_code == 200
            except requests.RequestException:
                ok = False
            if self.ready and not ok:
                self.cut()
            self.ready = ok
            self._stop.wait(self.probe_every_s)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            if not self.ready:
                client.close()  # no ready endpoint
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
