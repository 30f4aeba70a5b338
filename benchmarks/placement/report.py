"""What `gpusched bench placement` writes: JSON rows, a markdown table, PNG plots."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Iterable, Sequence

from benchmarks.placement.sim import Result

CITATION = ("Alibaba cluster-trace-gpu-v2023 (CC-BY 4.0), the trace of Weng et al., \"Beware of Fragmentation: "
            "Scheduling GPU-Sharing Workloads with Fragmentation Gradient Descent\", USENIX ATC'23")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def table(results: Sequence[Result]) -> str:
    """One markdown table per trace, policies in run order."""
    out: list[str] = []
    for trace in dict.fromkeys(r.trace for r in results):
        rows = [r for r in results if r.trace == trace]
        total = rows[0].total_gpus
        out.append(f"**{trace}** ({rows[0].pods_total:,} pods, {total:,.0f} GPUs)\n")
        out.append("| policy | GPU allocation at first failure | pods placed | demand arrived | stranded GPUs "
                   "| FGD-fragmented GPUs | unallocated GPUs | first pod that fit nowhere | allocation at end of trace |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---|---:|")
        for r in rows:
            failed = r.first_failure["demand"] if r.first_failure else "none"
            end = _pct(r.gpu_allocation_at_end) if r.pods_placed_total != r.pods_placed or not r.first_failure \
                else "(stopped)"
            out.append(f"| {r.policy} | {_pct(r.gpu_allocation_at_first_failure)} | {r.pods_placed:,} | "
                       f"{_pct(r.arrived_demand_at_first_failure)} | {r.stranded_gpus:,.1f} | "
                       f"{r.fgd_fragmented_gpus:,.1f} | {r.unallocated_gpus:,.1f} | {failed} | {end} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def summary(results: Sequence[Result]) -> list[dict]:
    """Per trace and policy, over the seeds: the Monte Carlo figures' mean, min and max."""
    out = []
    for key in dict.fromkeys((r.trace, r.policy) for r in results):
        rows = [r for r in results if (r.trace, r.policy) == key]
        un = [r.unallocated_gpus_at_100pct for r in rows if r.unallocated_gpus_at_100pct is not None]
        fr = [r.fgd_fragmented_gpus_at_100pct for r in rows if r.fgd_fragmented_gpus_at_100pct is not None]
        out.append({
            "trace": key[0], "policy": key[1], "seeds": [r.seed for r in rows],
            "unallocated_gpus_at_100pct": round(statistics.fmean(un), 2) if un else None,
            "unallocated_gpus_at_100pct_min": min(un) if un else None,
            "unallocated_gpus_at_100pct_max": max(un) if un else None,
            "fgd_fragmented_gpus_at_100pct": round(statistics.fmean(fr), 2) if fr else None,
            "gpu_allocation_at_first_failure": round(statistics.fmean(r.gpu_allocation_at_first_failure
                                                                      for r in rows), 5),
            "gpu_allocation_at_end": round(statistics.fmean(r.gpu_allocation_at_end for r in rows), 5),
        })
    return out


def mc_table(results: Sequence[Result]) -> str:
    """The Monte Carlo figures: one markdown table per trace, means over the seeds."""
    out: list[str] = []
    for trace in dict.fromkeys(r.trace for r in results):
        rows = [s for s in summary(results) if s["trace"] == trace]
        first = next(r for r in results if r.trace == trace)
        seeds = rows[0]["seeds"]
        out.append(f"**{trace}** ({first.total_gpus:,.0f} GPUs; {len(seeds)} seed{'s' if len(seeds) > 1 else ''}: "
                   f"{' '.join(map(str, seeds))})\n")
        out.append("| policy | unallocated GPUs at 100% arrived (mean) | min-max over seeds | FGD-fragmented GPUs "
                   "at 100% | GPU allocation at the first failure | GPU allocation at the end |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for s in rows:
            un = s["unallocated_gpus_at_100pct"]
            if un is None:
                out.append(f"| {s['policy']} | (demand never reached 100%) | | | "
                           f"{_pct(s['gpu_allocation_at_first_failure'])} | {_pct(s['gpu_allocation_at_end'])} |")
                continue
            out.append(f"| {s['policy']} | {un:,.1f} | {s['unallocated_gpus_at_100pct_min']:,.1f}-"
                       f"{s['unallocated_gpus_at_100pct_max']:,.1f} | {s['fgd_fragmented_gpus_at_100pct']:,.1f} | "
                       f"{_pct(s['gpu_allocation_at_first_failure'])} | {_pct(s['gpu_allocation_at_end'])} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# Issue 15's placement targets for gpusched, run by run (a trace at one seed): FGD's own
# metric at most FGD's, and the first failure no earlier than best-fit's. Each: the
# figure, the rival, the wording, +1 where more is better (-1 less), how a figure reads.
TARGETS = (("unallocated_gpus_at_100pct", "fgd", "unallocated GPUs at 100% arrived <= FGD's", -1,
            lambda x: f"{x:,.1f}"),
           ("gpu_allocation_at_first_failure", "best-fit", "GPU allocation at the first failure >= best-fit's", 1,
            _pct))


def verdict(results: Sequence[Result]) -> list[str]:
    """One line per target whose rival ran beside gpusched: on how many runs it is met,
    and each miss with both figures; a tie is met ("at most", "at least"). A run is
    counted only where both policies ran and reached the figure (creation order has no
    figure at 100% arrived), so "of N" may be fewer than gpusched's runs; a run given
    twice (the same pod list twice) counts once."""
    by = {(r.trace, r.seed, r.policy): r for r in results}
    runs = list(dict.fromkeys((r.trace, r.seed) for r in results if r.policy == "gpusched"))
    several = len({t for t, _ in runs}) > 1
    out: list[str] = []
    for field, rival, name, sign, show in TARGETS:
        pairs = [(t, seed, getattr(by[t, seed, "gpusched"], field), getattr(by[t, seed, rival], field))
                 for t, seed in runs if (t, seed, rival) in by]
        pairs = [p for p in pairs if p[2] is not None and p[3] is not None]
        if not pairs:
            continue
        misses = [f"{trace + ' ' if several else ''}seed {seed} ({show(ours)} against {show(theirs)})"
                  for trace, seed, ours, theirs in pairs if sign * (ours - theirs) < 0]
        out.append(f"- gpusched's {name}: met on {len(pairs) - len(misses)} of {len(pairs)} run"
                   f"{'s' if len(pairs) > 1 else ''}" + (f"; MISSED on {', '.join(misses)}" if misses else ""))
    return out


def verdict_text(results: Sequence[Result]) -> str:
    """The verdict lines as a paragraph of their own ("" when no rival ran)."""
    lines = verdict(results)
    return "\n".join(lines) + "\n\n" if lines else ""


def write(out: Path, results: Sequence[Result], params: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    if params.get("inflate"):
        return write_mc(out, results, params)
    paths = []
    p = out / "placement.json"
    p.write_text(json.dumps({"params": params, "seed": params["seed"], "source": CITATION,
                             "rows": [r.row() for r in results]}, indent=1) + "\n")
    paths.append(p)
    p = out / "placement_curves.json"
    p.write_text(json.dumps({"seed": params["seed"], "curves": [
        {"trace": r.trace, "policy": r.policy, "arrived_milli": r.arrived_milli, "allocated_milli": r.allocated_milli,
         "samples": r.samples} for r in results]}, separators=(",", ":")) + "\n")
    paths.append(p)
    p = out / "placement.md"
    p.write_text(f"# Placement on the Alibaba GPU trace\n\n{describe_params(params)}\n\n{table(results)}\n"
                 f"{verdict_text(results)}Source: {CITATION}.\n")
    paths.append(p)
    paths += plots(out, results, params)
    return paths


def describe_params(params: dict) -> str:
    traces = "; ".join(f"{t['file']} ({t['pods']:,} pods, replayed in {t['ordered_by']}"
                       + (f", {t['out_of_order']} rows were out of order" if t["out_of_order"] else "") + ")"
                       for t in params["traces"])
    stop = ("stops at the first pod that fits nowhere" if params["stop_at_first_failure"] else
            "figures at the first pod that fits nowhere; the replay then skips such pods to the end of the trace")
    sh = params["gpusched_shapes"]
    return (f"`{params['command']}`\n\n"
            f"Nodes: {params['nodes']['file']} ({params['nodes']['count']:,} nodes, {params['nodes']['gpus']:,} GPUs). "
            f"Pods: {traces}. Seed {params['seed']} (only `random` draws). Replay {stop}. "
            f"GPU memory assumed per model (MiB): {', '.join(f'{k} {v}' for k, v in params['gpu_memory_mib'].items())}. "
            f"gpusched: default Weights; fragmentation weighed against the {sh['max_shapes']} commonest shapes of the "
            f"pods placed so far and the whole-GPU pods that fit nowhere (pending in a cluster), re-learned every "
            f"{sh['every_placements']} placements as the extender re-learns them "
            f"at each snapshot rebuild (its defaults until {sh['min_pods']} GPU pods run). "
            "Stranded GPUs: free capacity no pod class of the trace could use where it lies; FGD-fragmented: "
            "FGD's expected fragmentation F(M) over the trace's pod classes.")


def zoom_window(rows: Sequence[Result]) -> tuple[float, float, float, float]:
    """(x_lo, x_hi, y_lo, y_hi) in % of capacity for the panel zoomed on the curves' ends
    (the first failure, or the end of the trace where no pod failed): from 75, or 3 points
    under the lowest end above 60 (an end far below the others is on the full panel), to
    just past the last demand arrived. When no curve ends that high (nothing failed on a
    cluster the trace never filled), from 3 points under the lowest end instead, so the
    panel is never empty or reversed. Allocation never exceeds demand, so y stops at x_hi."""
    total = rows[0].total_gpus * 1000
    ends = [100 * r.gpu_allocation_at_first_failure for r in rows]
    x_hi = max(100 * r.arrived_milli[-1] / total if r.arrived_milli else 0.0 for r in rows) + 1
    low = min([75.0] + [e - 3 for e in ends if e > 60])
    if max(ends) < low:
        low = max(0.0, min(ends) - 3)
    x_hi = max(x_hi, low + 5)
    return low, x_hi, low, max(min(100.0, x_hi), low + 5)


def plots(out: Path, results: Sequence[Result], params: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    traces = list(dict.fromkeys(r.trace for r in results))
    for trace in traces:
        rows = [r for r in results if r.trace == trace]
        fig, (ax1, az, ax2) = plt.subplots(1, 3, figsize=(19, 5.5))
        total = rows[0].total_gpus * 1000
        for r in rows:
            x = [100 * a / total for a in r.arrived_milli]
            y = [100 * a / total for a in r.allocated_milli]
            color = None  # the zoom panel's line takes the colour the main panel's got
            for ax in (ax1, az):
                (line,) = ax.plot(x, y, label=f"{r.policy} ({_pct(r.gpu_allocation_at_first_failure)})",
                                  linewidth=1.2, color=None if ax is ax1 else color)
                color = line.get_color()
                if r.first_failure:
                    ax.plot([100 * r.arrived_demand_at_first_failure], [100 * r.gpu_allocation_at_first_failure],
                            "o", color=color, markersize=5)
            sx = [100 * s["arrived_milli"] / total for s in r.samples]
            ax2.plot(sx, [s["fgd_fragmented_gpus"] for s in r.samples], color=color, linewidth=1.2, label=r.policy)
            ax2.plot(sx, [s["stranded_gpus"] for s in r.samples], color=color, linewidth=0.8, linestyle=":")
        lim = max(100 * r.arrived_milli[-1] / total for r in rows)
        for ax in (ax1, az):
            ax.plot([0, 100], [0, 100], color="grey", linewidth=0.6, linestyle="--")
            ax.set(xlabel="GPU demand arrived (% of cluster GPU capacity)", ylabel="GPUs allocated (% of capacity)")
            ax.grid(alpha=0.3)
        ax1.set(title=f"{trace}: allocation as pods arrive (dot: first pod that fits nowhere)", xlim=(0, lim + 2),
                ylim=(0, 100))
        ax1.legend(fontsize=8, loc="upper left")
        x_lo, x_hi, y_lo, y_hi = zoom_window(rows)
        az.set(title="the same, zoomed on the end", xlim=(x_lo, x_hi), ylim=(y_lo, y_hi))
        az.legend(fontsize=8, loc="lower right")
        ax2.set(xlabel="GPU demand arrived (% of cluster GPU capacity)", ylabel="GPUs",
                title="fragmented GPUs (solid: FGD's F(M); dotted: stranded)", xlim=(0, lim + 2))
        ax2.legend(fontsize=8, loc="upper right")
        ax2.grid(alpha=0.3)
        fig.text(0.01, 0.01, f"seed {params['seed']}; {CITATION}", fontsize=6, color="grey")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        p = out / f"placement_{trace}.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)
    # summary bars: allocation at first failure per policy and trace
    policies = list(dict.fromkeys(r.policy for r in results))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(policies) * max(1, len(traces))), 4.5))
    width = 0.8 / len(traces)
    by = {(r.trace, r.policy): r for r in results}
    for t, trace in enumerate(traces):
        xs = [i + t * width for i in range(len(policies))]
        ys = [100 * by[(trace, p)].gpu_allocation_at_first_failure if (trace, p) in by else 0 for p in policies]
        bars = ax.bar(xs, ys, width, label=trace)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks([i + width * (len(traces) - 1) / 2 for i in range(len(policies))], policies, rotation=20)
    ax.set(ylabel="GPU allocation at first failure (%)", ylim=(0, 105),
           title=f"GPU allocation when the first pod fits nowhere (seed {params['seed']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out / "placement_summary.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)
    return paths


def read_mc(dirs: Iterable[Path]) -> tuple[list[Result], dict]:
    """The Results and merged params of --inflate runs written to `dirs` (rows in file
    order; a (trace, policy, seed) seen twice is an error, as it would count twice)."""
    from benchmarks.placement.trace import BenchInputError

    results: list[Result] = []
    params: dict = {}
    seen: set[tuple] = set()
    for d in dirs:
        try:
            data = json.loads((d / "placement.json").read_text())
            levels = json.loads((d / "placement_levels.json").read_text())["levels"]
        except (OSError, ValueError, KeyError) as exc:
            raise BenchInputError(f"{d}: not the output of an --inflate run ({exc})") from None
        p = data.get("params", {})
        if not p.get("inflate"):
            raise BenchInputError(f"{d}: not the output of an --inflate run")
        if params and (p["inflate"], p["nodes"]) != (params["inflate"], params["nodes"]):
            raise BenchInputError(f"{d}: another --inflate or node list than the runs before it")
        params = params or {**p, "seeds": [], "commands": [], "traces": []}
        params["commands"].append(p["command"])
        params["traces"] += [t for t in p["traces"] if t not in params["traces"]]
        for row, lv in zip(data["rows"], levels):
            key = (row["trace"], row["policy"], row["seed"])
            if key in seen:
                raise BenchInputError(f"{d}: {key} is already in an earlier directory")
            seen.add(key)
            results.append(Result(**row, levels=lv["levels"]))
            if row["seed"] not in params["seeds"]:
                params["seeds"].append(row["seed"])
    results.sort(key=lambda r: (r.trace, r.seed))  # stable: policies keep their run order
    return results, params


def write_mc(out: Path, results: Sequence[Result], params: dict) -> list[Path]:
    """The Monte Carlo run's files: rows per (trace, policy, seed), their summary, the
    per-percent levels, a table and one plot per trace."""
    paths = []
    p = out / "placement.json"
    p.write_text(json.dumps({"params": params, "seeds": params["seeds"], "source": CITATION,
                             "summary": summary(results), "rows": [r.row() for r in results]}, indent=1) + "\n")
    paths.append(p)
    p = out / "placement_levels.json"
    p.write_text(json.dumps({"levels": [{"trace": r.trace, "policy": r.policy, "seed": r.seed, "levels": r.levels}
                                        for r in results]}, separators=(",", ":")) + "\n")
    paths.append(p)
    p = out / "placement.md"
    commands = "".join(f"`{c}`\n\n" for c in params.get("commands", [params["command"]]))
    p.write_text(f"# Placement on the Alibaba GPU trace: FGD's Monte Carlo evaluation\n\n{commands}"
                 f"Pods drawn with replacement from each pod list until the GPU demand arrived is "
                 f"{params['inflate']:g}x the cluster's {params['nodes']['gpus']:,} GPUs; seeds "
                 f"{' '.join(map(str, params['seeds']))}. CPU-only pods placed by kube-scheduler's defaults "
                 f"(LeastAllocated + BalancedAllocation) for every policy.\n\n{mc_table(results)}\n"
                 f"{verdict_text(results)}Source: {CITATION}.\n")
    paths.append(p)
    paths += mc_plots(out, results, params)
    return paths


def _mean_levels(rows: Sequence[Result], key: str) -> tuple[list[int], list[float]]:
    """Mean of `key` over the seeds at each percent every seed reached."""
    by: dict[int, list[float]] = {}
    for r in rows:
        for lv in r.levels:
            by.setdefault(lv["percent"], []).append(lv[key])
    xs = [x for x in sorted(by) if len(by[x]) == len(rows)]
    return xs, [statistics.fmean(by[x]) for x in xs]


def mc_plots(out: Path, results: Sequence[Result], params: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for trace in dict.fromkeys(r.trace for r in results):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.2))
        top = 0.0  # the left panel shows 60% arrived onwards, where the policies part
        for policy in dict.fromkeys(r.policy for r in results if r.trace == trace):
            rows = [r for r in results if (r.trace, r.policy) == (trace, policy)]
            xs, un = _mean_levels(rows, "unallocated_gpus")
            top = max([top] + [u for x, u in zip(xs, un) if x >= 60])
            at = dict(zip(xs, un)).get(100)
            (line,) = ax1.plot(xs, un, linewidth=1.2, label=f"{policy} ({at:,.0f} at 100%)" if at is not None
                               else policy)
            xs, fr = _mean_levels(rows, "fgd_fragmented_gpus")
            ax2.plot(xs, fr, linewidth=1.2, color=line.get_color(), label=policy)
        for ax in (ax1, ax2):
            ax.axvline(100, color="grey", linewidth=0.6, linestyle="--")
            ax.set(xlabel="GPU demand arrived (% of cluster GPU capacity)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        ax1.set(ylabel="GPUs", title=f"{trace}: unallocated GPUs (mean over seeds)", xlim=(60, None),
                ylim=(0, top * 1.05 or None))
        ax2.set(ylabel="GPUs", title="fragmented GPUs, FGD's F(M) (mean over seeds)")
        fig.text(0.01, 0.01, f"seeds {' '.join(map(str, params['seeds']))}; {CITATION}", fontsize=6, color="grey")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        p = out / f"placement_mc_{trace}.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)
    return paths
