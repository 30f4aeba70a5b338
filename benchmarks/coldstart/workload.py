"""Replica churn: when replicas of which model start, and how long each serves. Seeded.

Popularity is Zipf over the catalogue (weight 1 / rank^zipf; ranks are a seeded
shuffle, so popularity is not tied to size). Replica starts of the whole fleet are a
Poisson process whose rate keeps, on average, `load` of the cluster's GPUs busy
(Little's law: rate = load x GPUs / (mean GPUs per replica x mean lifetime)); each
start picks a model by popularity; a replica serves for an exponential lifetime
(counted from when it is ready), then stops. Every policy replays the same list.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from benchmarks.coldstart.catalogue import Model


@dataclass(frozen=True)
class Arrival:
    t: float  # seconds since the start
    model: int  # index into the catalogue
    lifetime: float  # seconds it serves once ready


def popularity(models: Sequence[Model], zipf: float, rng: np.random.Generator) -> np.ndarray:
    """Probability of each model, Zipf over a seeded shuffle of the catalogue."""
    ranks = rng.permutation(len(models)) + 1
    w = 1.0 / ranks.astype(np.float64) ** zipf
    return w / w.sum()


def arrival_rate(models: Sequence[Model], p: np.ndarray, gpus: int, load: float, lifetime_s: float) -> float:
    """Replica starts per second that keep `load` of `gpus` busy on average."""
    mean_gpus = float(np.dot(p, [m.gpus for m in models]))
    return load * gpus / (mean_gpus * lifetime_s)


def generate(models: Sequence[Model], *, gpus: int, load: float, duration_s: float, lifetime_s: float,
             zipf: float, seed: int) -> tuple[list[Arrival], np.ndarray, float]:
    """(arrivals in time order, popularity, rate per second)."""
    rng = np.random.default_rng(seed)
    p = popularity(models, zipf, rng)
    rate = arrival_rate(models, p, gpus, load, lifetime_s)
    n = int(rng.poisson(rate * duration_s))
    times = np.sort(rng.uniform(0.0, duration_s, n))  # a Poisson process given its count
    which = rng.choice(len(models), size=n, p=p)
    life = rng.exponential(lifetime_s, n)
    return [Arrival(float(t), int(m), float(span)) for t, m, span in zip(times, which, life)], p, rate
