"""Service-time and cold-start models of `gpusched bench autoscale`: documented
parameters, pure functions.

Service time (per GPU type, one replica = one GPU serving an 8B model in bf16 on
vLLM; benchmarks.fleet.model.ServiceModel does the queueing, batching and KV-cache
arithmetic). The H100 figures are the fleet model's conservative defaults; the others
are scaled from them by the ratio of dense bf16 tensor FLOPS (prefill is compute-bound)
and of memory bandwidth (decode is memory-bound), and their KV cache is what is left
of 90% of GPU memory after 16 GB of weights and ~3 GB of activations, at 128 KiB per
token (Llama-3.1-8B: 2 x 32 layers x 8 KV heads x 128 dims x 2 bytes):

| GPU | prefill tok/s | decode tok/s (batch 1) | KV tokens | why |
|---|---:|---:|---:|---|
| h100 | 10,000 | 60 | 400,000 | fleet defaults (989 TFLOPS, 3.35 TB/s) |
| a100 | 3,150 | 36 | 400,000 | 312 TFLOPS, 2.0 TB/s, 80 GB |
| l40s | 3,650 | 15.5 | 170,000 | 362 TFLOPS, 0.86 TB/s, 48 GB |

Cold start (time to Ready) = container start + model bytes / bandwidth of the tier the
weights come from, bandwidths scheduler.core.scoring.DEFAULT_BANDWIDTH (host memory
20 GB/s, local disk 2 GB/s, remote store 0.5 GB/s). Where the weights come from: a
replica that starts on a GPU whose node served the model within ``host_cache_s``
reads them from host memory (page cache), later from the node's disk; a replica on a
node that never had the model reads them from the remote store; a prefetched node
(cache pre-warming) has them on disk. A warm replica (loaded, held out of traffic)
is promoted in ``promote_s``.

A measured cold-start distribution (``--cold-start-csv``: load times in seconds, one a
row) replaces the tiers: every load draws one of the measured times (seeded, the same
sequence for every policy of a run), since a measurement already includes wherever the
weights came from; a warm promotion still takes ``promote_s``.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from typing import Final, Sequence

import numpy as np

from benchmarks.fleet.model import Fleet, Request, ServiceModel, TraceRow
from scheduler.core.scoring import DEFAULT_BANDWIDTH, GB

GPU_TYPES: Final[dict[str, ServiceModel]] = {
    "h100": ServiceModel(prefill_tps=10_000.0, decode_tps=60.0, decode_slowdown=0.02, max_batch=32,
                         kv_capacity_tokens=400_000),
    "a100": ServiceModel(prefill_tps=3_150.0, decode_tps=36.0, decode_slowdown=0.02, max_batch=32,
                         kv_capacity_tokens=400_000),
    "l40s": ServiceModel(prefill_tps=3_650.0, decode_tps=15.5, decode_slowdown=0.02, max_batch=32,
                         kv_capacity_tokens=170_000),
}

TIERS: Final = ("host-memory", "disk", "remote")


@dataclass(frozen=True)
class ColdStart:
    """Time to Ready of a new replica, by where its weights come from."""

    model_bytes: float = 16 * GB  # Llama-3.1-8B in bf16
    container_start_s: float = 15.0  # pod start, vLLM init, CUDA graphs; image already on the node
    bandwidth: tuple[tuple[str, float], ...] = tuple(DEFAULT_BANDWIDTH.items())
    host_cache_s: float = 600.0  # a freed node keeps the weights in page cache this long, then on disk
    promote_s: float = 1.0  # a warm replica's serving gate flips, the kubelet marks it Ready

    def seconds(self, tier: str) -> float:
        """container start + bytes / bandwidth(tier); 'gpu' (already loaded) is the promotion."""
        if tier == "gpu":
            return self.promote_s
        bw = dict(self.bandwidth)[tier]
        return self.container_start_s + self.model_bytes / bw

    def table(self) -> dict[str, float]:
        return {t: round(self.seconds(t), 2) for t in ("gpu",) + TIERS}


def service_model(gpu: str, max_batch: int | None = None) -> ServiceModel:
    """The GPU's service model; ``max_batch`` 1 is a server that runs one request at a
    time (diffusion, some embedding servers), larger values continuous batching."""
    try:
        svc = GPU_TYPES[gpu]
    except KeyError:
        raise ValueError(f"unknown GPU type {gpu!r}; one of {', '.join(GPU_TYPES)}") from None
    if max_batch is None:
        return svc
    if max_batch < 1:
        raise ValueError(f"max batch must be at least 1, got {max_batch}")
    return replace(svc, max_batch=max_batch)


class ColdStartError(ValueError):
    """A cold-start CSV that cannot be used; the message names the file and row."""


def read_cold_starts(path: str) -> tuple[float, ...]:
    """Load times (s) from a CSV: the first column, one a row, an optional header row;
    every value finite and > 0."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise ColdStartError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ColdStartError(f"{path}: not a text CSV") from None
    out: list[float] = []
    for i, row in enumerate(rows, start=1):
        if not row or not row[0].strip():
            continue
        try:
            v = float(row[0])
        except ValueError:
            if i == 1 and not out:
                continue  # a header
            raise ColdStartError(f"{path} row {i}: {row[0].strip()[:40]!r} is not a number of seconds") from None
        if not (math.isfinite(v) and v > 0):
            raise ColdStartError(f"{path} row {i}: load time {row[0].strip()[:40]} must be a finite number > 0")
        out.append(v)
    if not out:
        raise ColdStartError(f"{path}: no load times; expected one number of seconds a row in the first column")
    return tuple(out)


def tokens_of(row: TraceRow, service: ServiceModel) -> tuple[int, int]:
    """(prompt, output) tokens of a row; a service-time row becomes the output tokens one
    replica decodes alone in that time (at batch 1), no prompt."""
    if row.service_s is None:
        return row.prompt_tokens, row.output_tokens
    return 0, max(0, int(round(row.service_s * service.decode_rate(1))))


def _load_test_rows(rows: Sequence[TraceRow], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(len(rows), size=min(n, len(rows)), replace=False)


def seconds_alone(rows: Sequence[TraceRow], service: ServiceModel, n: int = 1500, seed: int = 0) -> float:
    """Mean seconds one request takes alone on a replica, over the load test's rows (those
    of ``calibrate_service_rate`` for the same ``n`` and ``seed``): the other end of the
    same test, for ``spec.concurrencyPerReplica`` (autoscaler.queueing.effective_concurrency)."""
    idx = _load_test_rows(rows, n, seed)
    return float(np.mean([service.service_time(*tokens_of(rows[i], service)) for i in idx]))


def calibrate_service_rate(rows: Sequence[TraceRow], service: ServiceModel, n: int = 1500,
                           seed: int = 0) -> float:
    """Requests/s one replica sustains on this trace's token mix: what a user's load test
    would measure for ``spec.serviceRatePerReplica``. ``n`` rows drawn (seeded) from the
    trace all arrive at once at one replica; completions / time to finish them all."""
    idx = _load_test_rows(rows, n, seed)
    f = Fleet(keep_finished=False)

    class _Load:
        def requests(self):
            for i in sorted(idx):
                p, o = tokens_of(rows[i], service)
                yield Request(0.0, p, o)

    f.add_model("m", _Load(), service)
    f.set_replica("r", "m", True, 0.0)
    t, step = 0.0, 10.0
    while True:
        t += step
        f.advance(t)
        s = f.stats("m")
        if s.arrived == len(idx) and s.finished == len(idx):
            break
    # busy time = the makespan: the replica always had work until the last completion
    busy = f._replicas["r"].busy  # noqa: SLF001 - the replica's own clock, not the step's
    return len(idx) / max(busy, 1e-9)

def replicas_needed(rate: float, mu: float, utilization: float) -> int:
    """ceil(rate / (mu * utilization)), at least 1."""
    return max(1, int(math.ceil(rate / (mu * utilization) - 1e-9)))


__all__ = ["GPU_TYPES", "TIERS", "ColdStart", "ColdStartError", "read_cold_starts", "service_model", "tokens_of",
           "calibrate_service_rate", "seconds_alone", "replicas_needed"]
