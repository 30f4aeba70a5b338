"""``--models K``: one request trace as K models sharing a GPU pool, most of them idle
most of the time, for the scale-to-zero comparison. No trace the project bundles has a
model column, so the split is deterministic and documented rather than observed.

Popularity is Zipf (s = 1, weight 1/(k+1) for model k: the law of model and content
catalogues), and traffic to a model comes in sessions: the trace is cut into blocks of
``block_s`` seconds, model 0 is in use in every block and model k >= 1 in a block with
probability 1/(k+1); each request goes to one of the models in use in its block, drawn
with their weights. At K = 8 model 7 is in use an eighth of the time, model 0 carries
about half the requests. Draws come from numpy's default_rng(seed).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from benchmarks.fleet.model import TraceRow

DEFAULT_BLOCK_S = 120.0


def model_name(k: int) -> str:
    return f"model-{k:02d}"


def split_models(rows: Sequence[TraceRow], k: int, block_s: float = DEFAULT_BLOCK_S,
                 seed: int = 1) -> list[TraceRow]:
    """``rows`` relabelled over ``k`` models (see the module docstring)."""
    if k < 1:
        raise ValueError(f"--models must be at least 1, got {k}")
    if not block_s > 0:
        raise ValueError(f"--model-block must be > 0, got {block_s:g}")
    if any(r.model for r in rows):
        raise ValueError("--models splits a trace without a model column; this one has one (drop --models)")
    if not rows:
        return []
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, k + 1)
    nblocks = int(rows[-1].t // block_s) + 1
    on = rng.random((nblocks, k)) < w[None, :]  # model k in use with probability 1/(k+1); model 0 always
    u = rng.random(len(rows))
    out = []
    for r, x in zip(rows, u):
        p = np.where(on[int(r.t // block_s)], w, 0.0)
        cdf = np.cumsum(p) / p.sum()
        out.append(replace(r, model=model_name(int(np.searchsorted(cdf, x, side="right")))))
    return out


__all__ = ["split_models", "model_name", "DEFAULT_BLOCK_S"]
