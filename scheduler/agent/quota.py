"""The model cache's quota: which cached models to evict, least recently used first,
so that what is cached plus what is coming fits. Pure: data in, decision and reason
out; the agent's daemon gathers the inputs and deletes what this names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence


@dataclass(frozen=True)
class CachedUse:
    model: str
    bytes: int
    last_used: float  # epoch seconds: the later of file access times and the agent's own sightings


@dataclass(frozen=True)
class EvictionPlan:
    evict: tuple[str, ...]  # least recently used first
    fits: bool  # whether the cache plus incoming_bytes is within the quota after evicting
    reason: str


def plan_eviction(cached: Sequence[CachedUse], *, quota_bytes: int, incoming_bytes: int = 0,
                  protected: Collection[str] = ()) -> EvictionPlan:
    """The fewest least-recently-used models whose removal brings the cache plus
    `incoming_bytes` within `quota_bytes`. A protected model (a running pod uses it, a
    server has it loaded, a Node asks for it) is never named. When even evicting every
    unprotected model would not make room, nothing is evicted: deleting weights that
    cannot make the difference only costs the next pod a download."""
    if quota_bytes < 0 or incoming_bytes < 0:
        raise ValueError("quota_bytes and incoming_bytes must not be negative")
    used = sum(c.bytes for c in cached)
    need = used + incoming_bytes - quota_bytes
    if need <= 0:
        return EvictionPlan((), True, f"{used} cached + {incoming_bytes} incoming <= quota {quota_bytes}")
    candidates = sorted((c for c in cached if c.model not in protected), key=lambda c: (c.last_used, c.model))
    evict: list[str] = []
    freed = 0
    for c in candidates:
        if freed >= need:
            break
        evict.append(c.model)
        freed += c.bytes
    if freed < need:
        held = used - sum(c.bytes for c in candidates)
        return EvictionPlan((), False, f"{used} cached + {incoming_bytes} incoming > quota {quota_bytes}, and "
                                       f"models in use hold {held}: evicting all {len(candidates)} others frees "
                                       f"only {freed} of the {need} needed")
    return EvictionPlan(tuple(evict), True, f"{used} cached + {incoming_bytes} incoming > quota {quota_bytes}: "
                                            f"evict {len(evict)} least recently used, freeing {freed} >= {need}")
