"""The DRA driver's Kubernetes adapter: read a ResourceClaim, write this node's ResourceSlice
(resource.k8s.io/v1). Takes a kubernetes ApiClient; plain JSON through scheduler.kube.client."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from scheduler import names
from scheduler.agent.dra import devices
from scheduler.kube.client import raw

log = logging.getLogger(__name__)

GROUP = "/apis/resource.k8s.io/v1"


class ClaimReader:
    """`(namespace, name) -> claim JSON or None`, for DraPlugin. Read from the API server itself,
    not a cache: the kubelet asks right after kube-scheduler wrote the allocation."""

    def __init__(self, api: Any, timeout: float = 10.0):
        self.api = api
        self.timeout = timeout

    def __call__(self, namespace: str, name: str) -> Any:
        path = names.namespaced_path(GROUP, namespace, "resourceclaims", name)
        status, body = raw(self.api, "GET", path, timeout=self.timeout)
        return None if status == 404 else body


class SlicePublisher:
    """Keeps this node's ResourceSlice equal to its publishable GPUs. Writes only on change
    (bumping the pool's generation, so kube-scheduler drops the old devices at once), and
    reads it back every `resync_s` (someone may have deleted or edited it); errors are
    logged and retried on the next call."""

    def __init__(self, api: Any, node: str, timeout: float = 10.0, resync_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic):
        if names.subdomain_error(node) is not None:
            raise ValueError(f"node name {node!r}: {names.subdomain_error(node)}")
        self.api = api
        self.node = node
        self.timeout = timeout
        self.resync_s = resync_s
        self.clock = clock
        self._last: list[dict[str, Any]] | None = None  # devices last written
        self._checked_at = float("-inf")
        self.last_error: str | None = None

    @property
    def path(self) -> str:
        return f"{GROUP}/resourceslices/{names.segment(devices.slice_name(self.node))}"

    def publish(self, gpus: Sequence[devices.GPU]) -> bool:
        """Write the slice if its devices changed; True when the API server has the current ones."""
        want = devices.resource_slice(self.node, gpus, 0)["spec"]["devices"]
        if want == self._last and self.clock() - self._checked_at < self.resync_s:
            return True
        try:
            self._write(gpus, want)
        except Exception as exc:  # noqa: BLE001 - ApiException, connection errors: retried next tick
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("writing ResourceSlice %s failed (will retry): %s", devices.slice_name(self.node),
                        self.last_error)
            return False
        self._last, self.last_error, self._checked_at = want, None, self.clock()
        return True

    def _write(self, gpus: Sequence[devices.GPU], want: list[dict[str, Any]]) -> None:
        status, node = raw(self.api, "GET", f"/api/v1/nodes/{names.segment(self.node)}", timeout=self.timeout)
        node_uid = (node or {}).get("metadata", {}).get("uid") if status != 404 else None
        status, old = raw(self.api, "GET", self.path, timeout=self.timeout)
        if status == 404 or old is None:
            body = devices.resource_slice(self.node, gpus, 1, node_uid)
            raw(self.api, "POST", f"{GROUP}/resourceslices", body, timeout=self.timeout)
            log.info("created ResourceSlice %s with %d GPUs", devices.slice_name(self.node), len(want))
            return
        if old.get("spec", {}).get("devices") == want:
            return  # an earlier agent wrote these already
        generation = int(old.get("spec", {}).get("pool", {}).get("generation") or 0) + 1
        body = devices.resource_slice(self.node, gpus, generation, node_uid)
        body["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        raw(self.api, "PUT", self.path, body, timeout=self.timeout)
        log.info("updated ResourceSlice %s: %d GPUs, generation %d", devices.slice_name(self.node), len(want),
                 generation)

    def delete(self) -> None:
        raw(self.api, "DELETE", self.path, timeout=self.timeout)
        self._last = None
