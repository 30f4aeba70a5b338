"""Pod lists derived from another, as the FGD repository derives its variants: "sampled from
the default one, emphasizing certain types of workloads" (alibaba/clusterdata,
cluster-trace-gpu-v2023/README.md). Only the default, gpuspec33 and multigpu20 lists are
in this repository; the others (cpu050 ... cpu300, gpushare20 ... gpushare100,
multigpu30 ... multigpu50) cannot be fetched from here, so these recipes rebuild lists of
the same kind from the default one, for placement on workloads gpusched was not tuned on.
They are not the published files: same recipe as far as it is known, other draws.

- ``cpuP``: every GPU pod of the base list, in its order, and 7.5 x P CPU-only pods drawn
  from the base's CPU-only pods (the published cpu050 holds 375 of them, then the default
  list's 7,064 GPU pods in creation order; its scale is taken as linear in P). The default
  list's own 1,088 CPU-only pods are about cpu145.
- ``multigpuP``: the base list plus multi-GPU pods drawn from its own, added until
  multi-GPU pods ask P% of the GPU demand (the repository's multigpu20 is the default list
  plus 172 such pods: 20.4%).
- ``gpushareP``: as many GPU pods as the base has, P% of them GPU-sharing pods (num_gpu 1,
  gpu_milli < 1000) drawn from its sharing pods, the rest from its other GPU pods; CPU-only
  pods kept (the default list: 43.6%).

Draws are even: every eligible pod k times, then a sample without replacement for the
rest (shuffled rounds, numpy Generator seeded by ``seed``), so a small P is a subsample
and a large one repeats every pod about equally. The result keeps the base's replay order (copies of one
pod together), so creation-order replays still run in creation order; each copy is
keyed ``name~i``. Pure: pod list in, pod list out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.placement.trace import BenchInputError, Pod, Pods

CPU_PODS_PER_PERCENT = 7.5  # the published cpu050: 375 CPU-only pods
DEFAULT_SEED = 2023
KINDS = ("cpu", "gpushare", "multigpu")
_SPEC = re.compile(r"^(cpu|gpushare|multigpu)(\d{1,3})$")
MAX_PERCENT = {"cpu": 400, "gpushare": 100, "multigpu": 90}


@dataclass(frozen=True)
class Spec:
    kind: str
    percent: int

    @property
    def name(self) -> str:
        return f"{self.kind}{self.percent:03d}"


def parse_spec(text: str) -> Spec:
    """``cpu200``, ``gpushare80``, ``multigpu50`` -> Spec; anything else is a BenchInputError
    that says what is accepted."""
    m = _SPEC.match(text.strip())
    if not m:
        raise BenchInputError(f"derived pod list {text[:40]!r}: expected cpuP, gpushareP or multigpuP with P a "
                              "whole percent, e.g. cpu200 gpushare80 multigpu50")
    kind, percent = m.group(1), int(m.group(2))
    if not 0 < percent <= MAX_PERCENT[kind] and not (kind == "cpu" and percent == 0):
        raise BenchInputError(f"derived pod list {text}: P must be in 1..{MAX_PERCENT[kind]} for {kind}"
                              + (" (or 0: no CPU-only pods)" if kind == "cpu" else ""))
    return Spec(kind, percent)


def even_draw(eligible: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices from ``eligible``, in the order drawn: shuffled copies of it one after
    another, cut at n. So each index is drawn ``n // len`` times, and ``n % len`` of them
    once more, without replacement; any prefix is as even."""
    if n <= 0:
        return np.zeros(0, np.int64)
    if not len(eligible):
        raise ValueError("nothing to draw from")
    rounds = -(-n // len(eligible))
    return np.concatenate([rng.permutation(eligible) for _ in range(rounds)])[:n].astype(np.int64)


def _picks(pods: tuple[Pod, ...], spec: Spec, rng: np.random.Generator, path: str) -> np.ndarray:
    idx = np.arange(len(pods))
    num = np.array([p.num_gpu for p in pods], np.int64)
    demand = np.array([p.demand_milli for p in pods], np.int64)
    share = (num == 1) & (demand < 1000)
    gpu, multi = idx[num > 0], idx[num > 1]

    def need(mask: np.ndarray, what: str) -> np.ndarray:
        if not mask.any():
            raise BenchInputError(f"{path}: no {what} pods to draw {spec.name} from")
        return idx[mask]

    if spec.kind == "cpu":
        cpu = need(num == 0, "CPU-only") if spec.percent else idx[num == 0]
        return np.concatenate([gpu, even_draw(cpu, round(CPU_PODS_PER_PERCENT * spec.percent), rng)])
    if spec.kind == "gpushare":
        n_share = round(spec.percent / 100 * len(gpu))
        shares = even_draw(need(share, "GPU-sharing"), n_share, rng)
        others = even_draw(need((num > 0) & ~share, "whole-GPU"), len(gpu) - n_share, rng) \
            if n_share < len(gpu) else np.zeros(0, np.int64)
        return np.concatenate([idx[num == 0], shares, others])
    # multigpu: add multi-GPU pods until they ask spec.percent of the GPU demand
    pool = need(num > 1, "multi-GPU")
    total, have = int(demand.sum()), int(demand[multi].sum())
    target = spec.percent / 100
    if have >= target * total:
        raise BenchInputError(f"{path}: multi-GPU pods already ask {100 * have / total:.1f}% of the GPU demand; "
                              f"{spec.name} would remove pods, which this recipe does not")
    # adding x of multi-GPU demand moves the share to (have + x) / (total + x), which reaches P at
    # x = (P total - have) / (1 - P); draw enough pods for that in an even order, cut where it is reached
    x = (target * total - have) / (1 - target)
    order = even_draw(pool, int(x // demand[pool].min()) + 1, rng)
    d = demand[order]
    reached = np.flatnonzero((have + np.cumsum(d)) >= target * (total + np.cumsum(d)))
    return np.concatenate([idx, order[:int(reached[0]) + 1]])


def derive(base: Pods, spec: Spec | str, seed: int) -> Pods:
    """The pod list ``spec`` drawn from ``base`` (module docstring)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    rng = np.random.default_rng(seed)
    picks = np.sort(_picks(base.pods, spec, rng, base.path), kind="stable")
    copies: dict[int, int] = {}
    out = []
    for i in picks.tolist():
        k = copies[i] = copies.get(i, -1) + 1
        p = base.pods[i]
        out.append(Pod(f"{p.key}~{k}", p.line, p.cpu_milli, p.memory_mib, p.num_gpu, p.gpu_milli, p.gpu_spec))
    # a name, not a file: nothing is written. Another seed's draws are another list, so
    # --combine keeps them apart
    suffix = "" if seed == DEFAULT_SEED else f"_seed{seed}"
    how = f"{base.ordered_by}; derived ({spec.name}) from {Path(base.path).name}, seed {seed}"
    return Pods(f"openb_pod_list_{spec.name}_derived{suffix}", tuple(out), how, 0)


__all__ = ["CPU_PODS_PER_PERCENT", "DEFAULT_SEED", "KINDS", "Spec", "derive", "even_draw", "parse_spec"]
