"""A minimal stand-in for benchmarks/fleet (the fleet simulator), used only while that
module is not in the tree: vLLM-named metrics per pod, for the test bed's Prometheus.

The load is a backlog the test sets (``fleet.set_queue(ns, 18)``): requests waiting
for the model's Deployment, shared evenly by its Ready pods (the ones a Service would
send traffic to). Pods that are not Ready (warm, loading, demoted) export an empty
queue, as an idle vLLM server does. One exposition holds every pod's series with
``pod`` and ``namespace`` labels; the test bed's Prometheus honours them.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from scheduler.kube.watch import Informer

MODEL = "org/model"


class FleetStub:
    def __init__(self, api):
        self.api = api
        self._lock = threading.Lock()
        self._pods: dict[str, dict] = {}
        self._queue: dict[str, float] = {}
        self._served: dict[str, float] = {}
        self._informer = Informer(api, "/api/v1/pods", self._on_pod, on_relist=self._relist, name="fleet pods")
        self._server: ThreadingHTTPServer | None = None

    # ---- pods

    @staticmethod
    def _key(p):
        m = p.get("metadata") or {}
        return f"{m.get('namespace')}/{m.get('name')}"

    def _on_pod(self, typ, pod):
        with self._lock:
            if typ == "DELETED":
                self._pods.pop(self._key(pod), None)
            else:
                self._pods[self._key(pod)] = pod

    def _relist(self, items):
        with self._lock:
            self._pods = {self._key(p): p for p in items}

    # ---- load

    def set_queue(self, namespace: str, waiting: float) -> None:
        with self._lock:
            self._queue[namespace] = float(waiting)

    def exposition(self) -> str:
        with self._lock:
            pods = list(self._pods.values())
            queues = dict(self._queue)
        lines = ["# TYPE vllm:num_requests_waiting gauge", "# TYPE vllm:num_requests_running gauge"]
        by_ns: dict[str, list[tuple[str, bool]]] = {}
        for p in pods:
            m, st = p.get("metadata") or {}, p.get("status") or {}
            if m.get("deletionTimestamp") or st.get("phase") != "Running":
                continue
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
            by_ns.setdefault(m.get("namespace", ""), []).append((m.get("name", ""), ready))
        for ns, members in sorted(by_ns.items()):
            ready_n = sum(1 for _, r in members if r)
            q = queues.get(ns, 0.0)
            for name, ready in sorted(members):
                w = q / ready_n if ready and ready_n else 0.0
                lab = f'model_name="{MODEL}",engine="0",pod="{name}",namespace="{ns}"'
                lines.append(f"vllm:num_requests_waiting{{{lab}}} {w:g}")
                lines.append(f"vllm:num_requests_running{{{lab}}} {min(w, 8.0) if ready else 0:g}")
        return "\n".join(lines) + "\n"

    # ---- lifecycle

    def start(self) -> str:
        self._informer.start()
        self._informer.synced.wait(30)
        fleet = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = fleet.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._informer.stop()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
