"""One node's model cache: a host-memory tier and a local-disk tier, each LRU.

What a replica loaded stays cached on its node after the replica stops:
- weights fetched from the remote store are written to the disk tier and read through
  host memory, so they land in both;
- weights read from disk are promoted to host memory (the page cache);
- weights read from host memory (or copied from a GPU-resident replica) refresh both
  tiers' recency where present.
Each tier evicts least recently loaded models until the new one fits; a model bigger
than a tier is not cached in it. The GPU tier is not kept here: a model is on a
node's GPUs exactly while a replica of it runs there (the simulator knows that).

Pure bookkeeping: no clock, no I/O; order of calls is the only input.
"""
from __future__ import annotations

from collections import OrderedDict

HOST = "host-memory"
DISK = "disk"


class Tier:
    """An LRU set of models within a byte capacity."""

    def __init__(self, capacity: int):
        if capacity < 0:
            raise ValueError(f"tier capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.used = 0
        self._models: OrderedDict[str, int] = OrderedDict()  # oldest first

    def __contains__(self, model: str) -> bool:
        return model in self._models

    def __len__(self) -> int:
        return len(self._models)

    def models(self) -> list[str]:
        """Least recently loaded first."""
        return list(self._models)

    def put(self, model: str, nbytes: int) -> list[str]:
        """Cache (or refresh) `model`; returns the models evicted to make room."""
        if model in self._models:
            self._models.move_to_end(model)
            return []
        if nbytes > self.capacity:
            return []
        evicted = []
        while self.used + nbytes > self.capacity:
            old, size = self._models.popitem(last=False)
            self.used -= size
            evicted.append(old)
        self._models[model] = nbytes
        self.used += nbytes
        return evicted


class NodeCache:
    def __init__(self, host_bytes: int, disk_bytes: int):
        self.host = Tier(host_bytes)
        self.disk = Tier(disk_bytes)

    def tier(self, model: str) -> str | None:
        """The fastest tier holding `model` (host memory before disk), None if neither."""
        if model in self.host:
            return HOST
        if model in self.disk:
            return DISK
        return None

    def loaded(self, model: str, nbytes: int, source: str) -> list[tuple[str, str]]:
        """Record that a replica loaded `model` from `source` (gpu, host-memory, disk or
        remote); returns (tier, model) evicted."""
        evicted = []
        if source == "remote" or model in self.disk:
            evicted += [(DISK, m) for m in self.disk.put(model, nbytes)]
        evicted += [(HOST, m) for m in self.host.put(model, nbytes)]
        return evicted

    def entries(self) -> dict[str, str]:
        """model -> fastest tier, as the node agent reports them."""
        out = {m: DISK for m in self.disk.models()}
        out.update({m: HOST for m in self.host.models()})
        return out
