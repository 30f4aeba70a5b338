"""Wiring: informers -> LiveState -> Extender -> HTTP server."""
from __future__ import annotations

import gc
import logging
import signal
import socket
import threading
from typing import Any

from scheduler.extender.claim_pods import ClaimPods
from scheduler.extender.config import ExtenderConfig
from scheduler.extender.leadership import Leadership
from scheduler.extender.live import LiveState
from scheduler.extender.node_events import NodeEvents
from scheduler.extender.pending import PendingPods, pending_selector
from scheduler.extender.server import Extender, ExtenderHTTPServer, OpsHTTPServer, server_tls_context
from scheduler.kube.client import api_client, raw
from scheduler.names import namespaced_path
from scheduler.kube.watch import Informer

log = logging.getLogger(__name__)

CLAIMS_PATH = "/apis/resource.k8s.io/v1/resourceclaims"
SLICES_PATH = "/apis/resource.k8s.io/v1/resourceslices"

# The informers' caches hold a few hundred thousand long-lived objects (pods, nodes). A
# full garbage collection walks all of them: 5-10 ms, charged to whichever filter or
# prioritize call triggered it. Freezing moves what exists into the permanent generation;
# done again now and then, new cache entries follow. Acyclic garbage (all of a watch
# event's JSON) is still freed by reference counting.
GC_FREEZE_EVERY_S = 60.0

# kube-scheduler binds many pods at once. Past the client's pool of keep-alive
# connections, urllib3 opens a new TLS connection per request and throws it away after:
# a handshake's CPU for every bind. Binds past this many wait here for a connection.
API_POOL = 32
BIND_CONCURRENCY = API_POOL - 8  # six watches and the occasional list or get keep theirs


def binding_body(namespace: str, name: str, uid: str, node: str, annotations: dict[str, str],
                 resource_version: str = "") -> dict[str, Any]:
    """The pod's Binding. The API server binds only a pod that still has this UID and, when
    given, this resourceVersion (BindingREST's preconditions), and is not bound or being
    deleted; it copies the annotations onto the pod with the binding."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Binding", "metadata": meta, "target": {"kind": "Node", "name": node}}


def _always() -> tuple[bool, str]:
    return True, "no leader election: this extender answers whenever called"


def freeze_long_lived() -> None:
    gc.collect()
    gc.freeze()


class ExtenderDaemon:
    def __init__(self, cfg: ExtenderConfig, kubeconfig: str | None):
        self.cfg = cfg
        self.api = api_client(kubeconfig, qps_pool=API_POOL)
        self._bind_slots = threading.BoundedSemaphore(BIND_CONCURRENCY)
        self.node_events = NodeEvents(lambda body: raw(self.api, "POST", "/api/v1/namespaces/default/events", body))
        self.live = LiveState(stale_after_s=cfg.stale_after_s, on_report_error=self.node_events.report_error)
        self.stop = threading.Event()
        self.nodes = Informer(self.api, "/api/v1/nodes", self.live.on_node, on_relist=self.live.set_nodes,
                              name="nodes")
        # Only bound pods hold GPUs; the field selector keeps pending pods off the wire.
        self.pods = Informer(self.api, "/api/v1/pods", self.live.on_pod, on_relist=self.live.set_pods,
                             params={"fieldSelector": "spec.nodeName!="}, name="pods")
        # The pods bind may be asked for, as the API server has them: a bind checks this copy
        # instead of a GET (scheduler/extender/pending.py). Not waited for by ready(): a pod
        # it lacks is read with a GET.
        self.pending = PendingPods()
        # and what they ask counts in the learned workload (scoring.workload_shapes)
        self.live.pending_requests = self.pending.requests
        self.pending_pods = Informer(self.api, "/api/v1/pods", self.pending.on_pod, on_relist=self.pending.set_pods,
                                     params={"fieldSelector": pending_selector(cfg.scheduler_name)},
                                     name="pending pods")
        # GPU memory kube-scheduler's DRA allocator gave claims of gpu.gpusched.io (docs/ownership.md)
        # optional: an API server before 1.34 serves no resource.k8s.io/v1, and then no claims exist
        # through claim_pods: it also indexes what unallocated claims ask, for pods asking by claim
        self.claim_pods = ClaimPods(self.live, self._get_claim)
        self.claims = Informer(self.api, CLAIMS_PATH, self.claim_pods.on_claim, on_relist=self.claim_pods.set_claims,
                               name="resourceclaims", optional=True)
        self.slices = Informer(self.api, SLICES_PATH, self.claim_pods.on_slice, on_relist=self.claim_pods.set_slices,
                               params={"fieldSelector": "spec.driver=gpu.gpusched.io"}, name="resourceslices",
                               optional=True)
        self.leadership: Leadership | None = None
        self.lease: Informer | None = None
        le = cfg.leader_election
        if le is not None:
            # a sidecar of a leader-elected kube-scheduler: act only for the leader, after a fresh LIST
            self.leadership = Leadership(le.identity or socket.gethostname(), le.renew_deadline_s,
                                         relist=self._relist_holdings)
            self.lease = Informer(self.api, namespaced_path("/apis/coordination.k8s.io/v1", le.namespace, "leases"),
                                  self.leadership.on_lease, params={"fieldSelector": f"metadata.name={le.name}"},
                                  on_relist=self._leases_listed, name="lease")
        self.extender = Extender(live=self.live, binder=self._bind, get_pod=self._get_pod, weights=cfg.weights,
                                 scheduler_name=cfg.scheduler_name, pending=self.pending.get,
                                 may_act=self.leadership.may_act if self.leadership else _always,
                                 claim_pods=self.claim_pods)
        host, port = cfg.listen
        # config.load sets both files or neither
        tls = (server_tls_context(cfg.tls_cert_file, cfg.tls_key_file, cfg.tls_client_ca_file)
               if cfg.tls_cert_file and cfg.tls_key_file else None)
        self.http = ExtenderHTTPServer((host, port), self.extender, self.ready, tls=tls)
        self.ops = OpsHTTPServer(cfg.metrics_listen, self.extender, self.ready, verbs=self.http)

    def _leases_listed(self, items: list[dict]) -> None:
        assert self.leadership is not None
        if not items:
            self.leadership.on_lease("DELETED", {})
        for item in items:
            self.leadership.on_lease("ADDED", item)

    def _relist_holdings(self) -> bool:
        """A new term's fresh view of who holds GPUs: bound pods, and claims the previous
        leader's kube-scheduler allocated."""
        return self.pods.relist() and self.claims.relist()

    def ready(self) -> tuple[bool, str]:
        # not before the claims are listed: a GPU held through DRA would look free
        missing = [i.name for i in (self.nodes, self.pods, self.claims) if not i.synced.is_set()]
        if missing:
            return False, f"waiting for the first list of {', '.join(missing)}"
        return True, f"ok: {len(self.live.snapshot().names)} nodes"

    def _bind(self, namespace: str, name: str, uid: str, node: str, annotations: dict[str, str],
              resource_version: str = "") -> None:
        body = binding_body(namespace, name, uid, node, annotations, resource_version)
        with self._bind_slots:
            raw(self.api, "POST", namespaced_path("/api/v1", namespace, "pods", name, "binding"), body)

    def _get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return raw(self.api, "GET", namespaced_path("/api/v1", namespace, "pods", name))[1]

    def _get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return raw(self.api, "GET", namespaced_path("/apis/resource.k8s.io/v1", namespace, "resourceclaims", name))[1]

    def run(self) -> None:
        self.nodes.start()
        self.pods.start()
        self.pending_pods.start()
        self.claims.start()
        self.slices.start()
        if self.lease is not None:
            self.lease.start()
        threading.Thread(target=self.live.refresh_forever, args=(self.stop,), name="refresher", daemon=True).start()
        threading.Thread(target=self._freeze_forever, name="gc-freeze", daemon=True).start()
        threading.Thread(target=self.node_events.run, args=(self.stop,), name="node-events", daemon=True).start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: threading.Thread(target=self.shutdown, daemon=True).start())
        threading.Thread(target=self.ops.serve_forever, name="ops-http", daemon=True).start()
        mode = "http" if not self.http.tls else \
            "https, client certificates required" if self.cfg.tls_client_ca_file else "https"
        log.info("gpusched extender listening on %s:%d (%s); metrics on http://%s:%d", *self.http.server_address[:2],
                 mode, *self.ops.server_address[:2])
        self.http.serve_forever(poll_interval=0.2)

    def _freeze_forever(self) -> None:
        while not self.stop.is_set():
            if self.ready()[0]:
                freeze_long_lived()
            self.stop.wait(GC_FREEZE_EVERY_S if self.ready()[0] else 1.0)

    def shutdown(self) -> None:
        self.stop.set()
        self.nodes.stop()
        self.pods.stop()
        self.pending_pods.stop()
        self.claims.stop()
        self.slices.stop()
        if self.lease is not None:
            self.lease.stop()
        self.http.shutdown()
        self.ops.shutdown()
