"""The DRA driver as the agent runs it on its node: the kubelet plugin's gRPC server, and
the ResourceSlice kept equal to the GPUs each agent tick reads."""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scheduler.agent.dra import cdi
from scheduler.agent.dra.apiserver import ClaimReader, SlicePublisher
from scheduler.agent.dra.devices import GPU
from scheduler.agent.dra.plugin import DEFAULT_CDI_DIR, DEFAULT_PLUGIN_DIR, DEFAULT_REGISTRY_DIR, DraPlugin, serve

log = logging.getLogger(__name__)


class DraNode:
    def __init__(self, api: Any, node: str, *, plugin_dir: str | Path = DEFAULT_PLUGIN_DIR,
                 registry_dir: str | Path = DEFAULT_REGISTRY_DIR, cdi_dir: str | Path = DEFAULT_CDI_DIR,
                 nvidia_cdi: bool = False):
        self.node = node
        self.slices = SlicePublisher(api, node)
        self.plugin = DraPlugin(node, ClaimReader(api), self.gpus, cdi.SpecDir(cdi_dir), nvidia_cdi=nvidia_cdi)
        self.plugin_dir, self.registry_dir = plugin_dir, registry_dir
        self._gpus: tuple[GPU, ...] = ()
        self._lock = threading.Lock()
        self._server: Any = None

    def gpus(self) -> tuple[GPU, ...]:
        """The GPUs of the last tick: what a claim may be prepared on (none before the first)."""
        with self._lock:
            return self._gpus

    def update(self, gpus: Sequence[GPU]) -> bool:
        """One agent tick: remember the GPUs, write the slice if they changed."""
        with self._lock:
            self._gpus = tuple(gpus)
        return self.slices.publish(gpus)

    def start(self) -> None:
        self._server, _ = serve(self.plugin, self.plugin_dir, self.registry_dir)
        log.info("DRA driver serving the kubelet on %s", Path(self.plugin_dir) / "dra.sock")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(5).wait()
            self._server = None
