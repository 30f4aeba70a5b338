"""What a node agent reports about its node, and how it travels on the Node object.

`gpusched.io/gpus` holds one compact JSON object per GPU, `gpusched.io/model-cache`
the complete cached models, `gpusched.io/reported-at` when the agent last confirmed
both (RFC 3339, UTC). The same code encodes (agent, test bed) and decodes (extender),
so the two sides cannot drift.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, TypeVar

from scheduler import contract

MiB = 2**20
# The most memory one GPU may report. The largest accelerator announced today is one
# package of 1 TB HBM (NVIDIA's Rubin Ultra, 2027; shipping parts top out at 288 GB), so
# 1 TiB leaves room for the next part while a unit slip (KiB read as MiB: 1024x) or a
# lie ("16 TiB per GPU") is an unreadable report, not capacity the extender would fill.
MAX_GPU_MEMORY_MIB = 2**20
# How far ahead of the extender's clock a report may be dated. NTP keeps nodes within
# milliseconds; 30 s covers a node stepping its clock after boot. Beyond it the report
# is refused as clock skew rather than trusted for longer than it is fresh.
MAX_CLOCK_SKEW_S = 30.0

T = TypeVar("T")


class ReportError(ValueError):
    """A node report that cannot be trusted; the message says which field and why."""


@dataclass(frozen=True)
class GPU:
    index: int
    uuid: str
    memory_total: int  # bytes usable by workloads (driver reservation excluded, as nvidia-smi shows)
    memory_used: int  # bytes used by processes, as nvidia-smi shows
    utilization: float = 0.0  # percent, 0..100
    healthy: bool = True
    product: str = ""

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "index": self.index,
            "uuid": self.uuid,
            "memoryTotalMiB": self.memory_total // MiB,
            "memoryUsedMiB": -(-self.memory_used // MiB),
            "util": round(self.utilization, 1),
            "healthy": self.healthy,
        }
        if self.product:
            d["product"] = self.product
        return d


@dataclass(frozen=True)
class CachedModel:
    model: str
    bytes: int
    tier: str  # one of contract.CACHE_TIERS


@dataclass(frozen=True)
class NodeReport:
    gpus: tuple[GPU, ...] = ()
    models: tuple[CachedModel, ...] = ()
    reported_at: datetime | None = None
    errors: tuple[str, ...] = field(default=())  # fields that were present but unreadable


def encode_gpus(gpus: tuple[GPU, ...] | list[GPU]) -> str:
    return json.dumps([g.to_wire() for g in gpus], separators=(",", ":"), sort_keys=True)


def encode_models(models: tuple[CachedModel, ...] | list[CachedModel]) -> str:
    body = {m.model: {"bytes": m.bytes, "tier": m.tier} for m in sorted(models, key=lambda m: m.model)}
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def encode_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def annotations_for(report: NodeReport) -> dict[str, str]:
    out = {contract.GPUS: encode_gpus(report.gpus), contract.MODEL_CACHE: encode_models(report.models)}
    if report.reported_at is not None:
        out[contract.REPORTED_AT] = encode_time(report.reported_at)
    return out


def _int(v: Any, what: str, lo: int = 0, hi: int = 2**62) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ReportError(f"{what}: expected a number, got {v!r:.40}")
    if not lo <= v <= hi:
        raise ReportError(f"{what}: {v} is outside {lo}..{hi}")
    return int(v)


def decode_gpus(text: str) -> tuple[GPU, ...]:
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ReportError(f"{contract.GPUS}: not JSON ({exc})") from None
    if not isinstance(raw, list) or len(raw) > 64:
        raise ReportError(f"{contract.GPUS}: expected a list of at most 64 GPUs")
    gpus = []
    seen = set()
    for pos, g in enumerate(raw):
        if not isinstance(g, dict):
            raise ReportError(f"{contract.GPUS}[{pos}]: expected an object")
        index = _int(g.get("index"), f"{contract.GPUS}[{pos}].index", 0, 63)
        if index in seen:
            raise ReportError(f"{contract.GPUS}[{pos}]: index {index} appears twice")
        seen.add(index)
        total = _int(g.get("memoryTotalMiB"), f"{contract.GPUS}[{pos}].memoryTotalMiB", 1, MAX_GPU_MEMORY_MIB) * MiB
        used = _int(g.get("memoryUsedMiB", 0), f"{contract.GPUS}[{pos}].memoryUsedMiB", 0, MAX_GPU_MEMORY_MIB) * MiB
        util = g.get("util", 0)
        util = float(util) if isinstance(util, (int, float)) and math.isfinite(util) else 0.0
        gpus.append(GPU(
            index=index,
            uuid=str(g.get("uuid", ""))[:96],
            memory_total=total,
            memory_used=min(used, total),
            utilization=min(max(util, 0.0), 100.0),
            healthy=g.get("healthy", True) is True,
            product=str(g.get("product", ""))[:96],
        ))
    return tuple(sorted(gpus, key=lambda g: g.index))


def decode_models(text: str) -> tuple[CachedModel, ...]:
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ReportError(f"{contract.MODEL_CACHE}: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ReportError(f"{contract.MODEL_CACHE}: expected an object of model id -> {{bytes, tier}}")
    out = []
    for model, v in raw.items():
        if not isinstance(v, dict) or not model or len(model) > 256:
            raise ReportError(f"{contract.MODEL_CACHE}[{model[:64]!r}]: expected {{bytes, tier}}")
        tier = v.get("tier")
        if tier not in contract.CACHE_TIERS:
            raise ReportError(f"{contract.MODEL_CACHE}[{model!r}].tier: {tier!r} is not one of {contract.CACHE_TIERS}")
        out.append(CachedModel(model, _int(v.get("bytes"), f"{contract.MODEL_CACHE}[{model!r}].bytes", 1, 2**50), tier))
    return tuple(sorted(out, key=lambda m: m.model))


def decode_time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"{contract.REPORTED_AT}: {text[:40]!r} is not an RFC 3339 time") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def vouched_gpus(gpus: tuple[GPU, ...], capacity: int, allocatable: int) -> tuple[tuple[GPU, ...], str | None]:
    """The reported GPUs the node itself vouches for, and why the rest were not believed.

    The agent may write its own Node, so its report is checked against what the kubelet
    (the device plugin) says of the same node: a GPU index at or past `capacity`
    nvidia.com/gpu is dropped, and at most `allocatable` GPUs stay healthy (the kubelet
    counts only healthy devices as allocatable; the lowest indices are kept, the rest are
    kept unhealthy so pods bound there still count). Any such clamp is an error: the node
    takes no new GPU pods until the report agrees with the kubelet again."""
    capacity, allocatable = max(capacity, 0), max(min(allocatable, capacity), 0)
    kept = [g for g in gpus if g.index < capacity]
    problems = []
    if len(kept) < len(gpus):
        beyond = [g.index for g in gpus if g.index >= capacity]
        problems.append(f"GPU index {beyond[0]}{' and more' if len(beyond) > 1 else ''} reported, but the node's "
                        f"capacity is {capacity} {contract.GPU_RESOURCE}")
    healthy = [g for g in kept if g.healthy]
    if len(healthy) > allocatable:
        trusted = {g.index for g in healthy[:allocatable]}
        kept = [g if not g.healthy or g.index in trusted else replace(g, healthy=False) for g in kept]
        problems.append(f"{len(healthy)} healthy GPUs reported, but the node's allocatable {contract.GPU_RESOURCE} "
                        f"is {allocatable}" + (" (device plugin not running?)" if allocatable == 0 else ""))
    if not problems:
        return gpus, None
    return tuple(kept), f"{contract.GPUS}: " + "; ".join(problems) + " (report clamped to the node)"


def report_from_annotations(annotations: Mapping[str, str] | None) -> NodeReport:
    """Decode what a Node carries. Fields that are present but unreadable are listed in
    `errors` and left empty, so one bad agent never breaks the extender."""
    annotations = annotations or {}
    errors: list[str] = []
    gpus: tuple[GPU, ...] = _decoded(annotations, contract.GPUS, decode_gpus, (), errors)
    models: tuple[CachedModel, ...] = _decoded(annotations, contract.MODEL_CACHE, decode_models, (), errors)
    at: datetime | None = _decoded(annotations, contract.REPORTED_AT, decode_time, None, errors)
    return NodeReport(gpus=gpus, models=models, reported_at=at, errors=tuple(errors))


def _decoded(annotations: Mapping[str, str], key: str, decode: Callable[[str], T], default: T,
             errors: list[str]) -> T:
    """annotations[key] decoded; `default` when absent or unreadable (why goes to `errors`)."""
    if key not in annotations:
        return default
    try:
        return decode(annotations[key])
    except ReportError as exc:
        errors.append(str(exc))
        return default
