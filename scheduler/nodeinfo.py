"""What a node agent reports about its node, and how it travels on the Node object.

`gpusched.io/gpus` holds one compact JSON object per GPU, `gpusched.io/model-cache`
the complete cached models, `gpusched.io/reported-at` when the agent last confirmed
both (RFC 3339, UTC). The same code encodes (agent, test bed) and decodes (extender),
so the two sides cannot drift.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from scheduler import contract

MiB = 2**20


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
        total = _int(g.get("memoryTotalMiB"), f"{contract.GPUS}[{pos}].memoryTotalMiB", 1, 2**24) * MiB
        used = _int(g.get("memoryUsedMiB", 0), f"{contract.GPUS}[{pos}].memoryUsedMiB", 0, 2**24) * MiB
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


def report_from_annotations(annotations: Mapping[str, str] | None) -> NodeReport:
    """Decode what a Node carries. Fields that are present but unreadable are listed in
    `errors` and left empty, so one bad agent never breaks the extender."""
    annotations = annotations or {}
    errors: list[str] = []
    gpus: tuple[GPU, ...] = ()
    models: tuple[CachedModel, ...] = ()
    at = None
    for key, decode in ((contract.GPUS, decode_gpus), (contract.MODEL_CACHE, decode_models), (contract.REPORTED_AT, decode_time)):
        if key not in annotations:
            continue
        try:
            value = decode(annotations[key])
        except ReportError as exc:
            errors.append(str(exc))
            continue
        if key == contract.GPUS:
            gpus = value
        elif key == contract.MODEL_CACHE:
            models = value
        else:
            at = value
    return NodeReport(gpus=gpus, models=models, reported_at=at, errors=tuple(errors))
