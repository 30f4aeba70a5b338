"""A readiness-gated TCP proxy: what a Kubernetes Service does for the extender.

Where the extender runs as a Deployment of its own, kube-scheduler calls it through a
Service, which routes only to pods whose readiness probe (/readyz) passes; a restarted
extender gets no call before its informers have listed. On the test bed kube-scheduler would call the process
directly, so the chaos bed puts this in between: while the endpoint is not ready,
connections are refused (closed at once), as with a Service without endpoints.

Readiness follows kubelet's rules with the extender's probe in deploy/ (periodSeconds 2,
timeoutSeconds 1, failureThreshold 3, successThreshold 1): one answer of 200 makes the
endpoint ready, and only `failure_threshold` failed probes in a row take it out, so a
single slow probe on a loaded node does not empty a Service. A process that exits is not
ready at once (kubelet sees its container stop): here, nothing listening on its port.
kube-proxy does not cut the connections already open when an endpoint leaves, so neither
does this. Only the period is shorter (0.5 s), so that a restarted extender is found
ready within the cases' seconds.

deploy/ itself runs the extender beside kube-scheduler in one pod, called on 127.0.0.1:
there no Service gates the calls, which is the cases' ``direct`` variant; this proxy is
what a Service in front of a separate extender Deployment would do.
"""
from __future__ import annotations

import logging
import socket
import threading
import time

import requests

log = logging.getLogger(__name__)


class ReadyProxy:
    def __init__(self, upstream_port: int, ready_url: str, probe_every_s: float = 0.5,
                 timeout_s: float = 1.0, failure_threshold: int = 3):
        self.upstream = ("127.0.0.1", upstream_port)
        self.ready_url = ready_url
        self.probe_every_s = probe_every_s
        self.timeout_s = timeout_s
        self.failure_threshold = failure_threshold
        self.ready = False
        # (monotonic time, ready, why) at each change, for a case that failed to say when
        self.transitions: list[tuple[float, bool, str]] = []
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
        """Close every proxied connection (the proxy stops)."""
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _listening(self) -> bool:
        """False only when nothing listens on the upstream port: the process is gone."""
        try:
            socket.create_connection(self.upstream, timeout=self.timeout_s).close()
        except ConnectionRefusedError:
            return False
        except OSError:
            pass  # slow or odd, not known dead: the probe judges
        return True

    def _probe(self) -> None:
        failures = 0
        while not self._stop.is_set():
            gone = not self._listening()
            if gone:
                ok, why = False, "nothing listens on its port (the process exited)"
            else:
                try:
                    code = requests.get(self.ready_url, timeout=self.timeout_s).status_code
                    ok, why = code == 200, f"/readyz answered {code}"
                except requests.RequestException as exc:
                    ok, why = False, f"/readyz: {type(exc).__name__}"
            failures = 0 if ok else failures + 1
            # kubelet takes a stopped container out at once, a failing probe after failure_threshold
            ready = ok or (self.ready and not gone and failures < self.failure_threshold)
            if ready != self.ready:
                why = why if ok or gone else f"{why}, {failures} probes in a row"
                self.transitions.append((time.monotonic(), ready, why))
                log.warning("extender endpoint %s: %s", "ready" if ready else "not ready", why)
            elif not ok and ready:
                log.info("extender probe failed (%d of %d): %s", failures, self.failure_threshold, why)
            self.ready = ready
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
