"""The extender's configuration file (YAML), with defaults that work without one.

    listen: 0.0.0.0:8888          # where kube-scheduler calls
    staleAfterSeconds: 600        # a node report older than this is not trusted for new GPU pods
    weights: {...}                # scheduler.core.Weights fields; see `gpusched extender --print-config`
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scheduler.core import Weights


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ExtenderConfig:
    listen: tuple[str, int] = ("0.0.0.0", 8888)
    stale_after_s: float = 600.0
    weights: Weights = field(default_factory=Weights)

    def to_dict(self) -> dict[str, Any]:
        return {"listen": f"{self.listen[0]}:{self.listen[1]}", "staleAfterSeconds": self.stale_after_s,
                "weights": dataclasses.asdict(self.weights)}


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"listen address {text!r} must look like HOST:PORT, e.g. 0.0.0.0:8888")
    return host or "0.0.0.0", int(port)


def load(path: str | None, listen: str | None = None) -> ExtenderConfig:
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config {path} must be a mapping")
    unknown = set(raw) - {"listen", "staleAfterSeconds", "weights"}
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
    cfg = ExtenderConfig()
    if listen or raw.get("listen"):
        cfg = dataclasses.replace(cfg, listen=parse_listen(listen or str(raw["listen"])))
    if "staleAfterSeconds" in raw:
        v = raw["staleAfterSeconds"]
        if not isinstance(v, (int, float)) or v <= 0:
            raise ConfigError("staleAfterSeconds must be a positive number")
        cfg = dataclasses.replace(cfg, stale_after_s=float(v))
    if "weights" in raw:
        w = raw["weights"]
        names = {f.name for f in dataclasses.fields(Weights)}
        if not isinstance(w, dict) or set(w) - names:
            raise ConfigError(f"weights accepts only: {', '.join(sorted(names))}")
        try:
            cfg = dataclasses.replace(cfg, weights=dataclasses.replace(cfg.weights, **w))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"weights: {exc}") from None
    return cfg
