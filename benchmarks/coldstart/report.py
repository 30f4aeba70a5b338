"""What `gpusched bench coldstart` writes: JSON (deterministic for a seed: no wall
times), a markdown table, PNG plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from benchmarks.coldstart.sim import SOURCES, Result


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def table(rows: Sequence[dict]) -> str:
    out = ["| policy | replicas | on a node caching the model | same, when such a node had room (target >= 90%) "
           "| p50 s | p90 s | p99 s | mean s | cold (remote) loads | loads gpu / host / disk / remote "
           "| waited for room |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        src = " / ".join(f"{r['loads_by_source'][s]:,}" for s in SOURCES)
        out.append(f"| {r['policy']} | {r['replicas']:,} | {_pct(r['placed_on_cached'])} | "
                   f"{_pct(r['placed_on_cached_when_room'])} ({r['with_cached_room']:,}) | {r['ttr_p50_s']:.1f} | "
                   f"{r['ttr_p90_s']:.1f} | {r['ttr_p99_s']:.1f} | {r['ttr_mean_s']:.1f} | {r['cold_loads']:,} | "
                   f"{src} | {r['waited_for_room']:,} |")
    return "\n".join(out) + "\n"


def describe(params: dict) -> str:
    bw = ", ".join(f"{k} {v / 1e9:g} GB/s" for k, v in params["bandwidth_bytes_per_s"].items())
    return (f"`{params['command']}`\n\n"
            f"{params['nodes']} nodes x 8 H100 80GB; {params['models']} models ({params['base_models']} base models "
            f"x {params['variants']} variants, {params['catalogue_gib']:,.0f} GiB in all, 1 to 135 GiB each); "
            f"{params['arrivals']:,} replica starts over {params['hours']:g} h "
            f"(Poisson, {params['rate_per_min']:.2f}/min, "
            f"Zipf {params['zipf']:g} popularity, mean lifetime {params['lifetime_min']:g} min, target GPU load "
            f"{params['load']:g}); the first {params['warmup_hours']:g} h warm the caches and are not counted. "
            f"Per node: host-memory cache {params['host_cache_gib']:g} GiB, disk cache {params['disk_cache_gib']:g} "
            f"GiB, LRU. Time to ready = {params['start_s']:g} s start + bytes / bandwidth of the source ({bw}). "
            f"Seed {params['seed']}.")


def write(out: Path, results: Sequence[Result], params: dict, timings: dict[str, float]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.summary() for r in results]
    paths = []
    p = out / "coldstart.json"
    p.write_text(json.dumps({"params": params, "seed": params["seed"], "rows": rows,
                             "ttr_quantiles": {r.policy: r.cdf() for r in results}}, indent=1) + "\n")
    paths.append(p)
    p = out / "coldstart.md"
    took = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    p.write_text(f"# Cold starts: model-cache locality\n\n{describe(params)}\n\n{table(rows)}\n"
                 f"Simulation wall time: {took}.\n")
    paths.append(p)
    paths.append(plot(out, results, rows, params))
    return paths


def plot(out: Path, results: Sequence[Result], rows: Sequence[dict], params: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(18, 5))
    for r in results:
        ttr = np.sort([x.ttr for x in r.counted()])
        if len(ttr):
            ax1.plot(ttr, np.arange(1, len(ttr) + 1) / len(ttr), label=r.policy, linewidth=1.3)
    ax1.set(xscale="log", xlabel="time to ready (s, log)", ylabel="share of replicas",
            title="time to ready (CDF)")
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    ax1.xaxis.set_major_formatter(ScalarFormatter())
    ax1.xaxis.set_minor_formatter(NullFormatter())
    ax1.set_xticks([20, 30, 50, 100, 200, 300])
    ax1.grid(alpha=0.3, which="both")
    ax1.legend(fontsize=8, loc="lower right")
    names = [r["policy"] for r in rows]
    x = np.arange(len(names))
    b1 = ax2.bar(x - 0.2, [100 * (r["placed_on_cached"] or 0) for r in rows], 0.4, label="all replicas")
    b2 = ax2.bar(x + 0.2, [100 * (r["placed_on_cached_when_room"] or 0) for r in rows], 0.4,
                 label="when a caching node had room")
    for b in (b1, b2):
        ax2.bar_label(b, fmt="%.1f", fontsize=7)
    ax2.axhline(90, color="grey", linestyle="--", linewidth=0.8)
    ax2.set_xticks(x, names)
    ax2.set(ylim=(0, 105), ylabel="% placed on a node caching the model", title="locality (dashed: target 90%)")
    ax2.legend(fontsize=8, loc="lower left")
    bottom = np.zeros(len(rows))
    for s in SOURCES:
        v = np.array([r["loads_by_source"][s] for r in rows], float)
        ax3.bar(names, v, bottom=bottom, label=s)
        bottom += v
    ax3.set(ylabel="replicas", title="where the weights came from")
    ax3.legend(fontsize=8)
    fig.text(0.01, 0.01, f"seed {params['seed']}; {params['nodes']} nodes; {params['arrivals']:,} replica starts",
             fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    p = out / "coldstart.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
