"""`gpusched bench placement`: argument parsing and the run; imports the simulator lazily."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

POLICY_ORDER = ("gpusched", "gpusched-exact", "fgd", "best-fit", "gpu-packing", "dot-product", "most-allocated",
                "spread", "random")
DEFAULT_POLICIES = tuple(p for p in POLICY_ORDER if p != "gpusched-exact")


def add_parser(benches: argparse._SubParsersAction) -> None:
    p = benches.add_parser(
        "placement", help="replay the Alibaba GPU trace (FGD, ATC'23): GPU allocation at the first unschedulable pod",
        description="Replays pods in creation order on the trace's 1,213 GPU nodes, the FGD paper's method: each "
                    "policy places each pod until the first one that fits nowhere. gpusched's policy is "
                    "scheduler.core (filter_rows, score_rows, assign_gpus) byte for byte; the baselines "
                    "(kube-scheduler's spread, MostAllocated, best-fit, random, dot-product, GPU packing, FGD) run "
                    "in the same process on the same trace. CPU-only pods are placed by kube-scheduler's default "
                    "scoring for every policy, ties drawn at random (seeded) as it draws them. With --inflate, "
                    "FGD's Monte Carlo evaluation instead: pods drawn "
                    "with replacement to F x capacity, unallocated and fragmented GPUs at each percent arrived. "
                    "Writes placement.json, placement.md, curves and PNG plots to --out and prints the table, "
                    "then on how many runs gpusched's unallocated GPUs at 100% arrived are at most FGD's and its "
                    "first failure at least best-fit's (when those ran), each miss with both figures.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  gpusched bench placement --out results/placement\n"
               "  gpusched bench placement --inflate 1.3 --seed 1 2 3 --variants --policies gpusched fgd best-fit "
               "gpu-packing spread --out results/placement-mc\n"
               "  gpusched bench placement --pods benchmarks/data/traces/alibaba-gpu-2023/openb_pod_list_gpuspec33.csv"
               " --out results/placement-gpuspec33\n"
               "  gpusched bench placement --inflate 1.3 --seed 1 --derive cpu050 cpu250 multigpu50 gpushare80 "
               "--policies gpusched fgd best-fit --out results/placement-derived\n"
               "  gpusched bench placement --policies gpusched fgd best-fit --limit 2000 --out /tmp/p")
    p.add_argument("--pods", action="append", metavar="PATH",
                   help="an openb_pod_list_*.csv; repeat for several (default: openb_pod_list_default.csv "
                        "beside the node list)")
    p.add_argument("--nodes", metavar="PATH", help="the node list (default: openb_node_list_gpu_node.csv in "
                   "benchmarks/data/traces/alibaba-gpu-2023/, or $GPUSCHED_TRACES/alibaba-gpu-2023/)")
    p.add_argument("--variants", action="store_true",
                   help="every openb_pod_list_*.csv beside the node list (instead of --pods)")
    p.add_argument("--derive", nargs="+", metavar="SPEC", default=[],
                   help="replay pod lists drawn from the default one (besides --pods or --variants when given; "
                        "alone, only these), as the FGD repository draws its "
                        "variants: cpuP (the GPU pods and 7.5 x P CPU-only pods; the default list is about "
                        "cpu145), multigpuP (multi-GPU pods added until they ask P%% of the GPU demand), "
                        "gpushareP (P%% of the GPU pods share a GPU); e.g. cpu050 cpu250 multigpu50 gpushare80. "
                        "Not the published files (they cannot be fetched from here): the same recipe, other "
                        "draws (benchmarks/placement/derive.py)")
    p.add_argument("--derive-seed", type=int, default=2023, metavar="N",
                   help="seed of the --derive draws (default 2023), apart from --seed; another seed's lists are "
                        "named with it (..._derived_seedN)")
    p.add_argument("--seed", type=int, nargs="+", default=[1], metavar="N",
                   help="seeds (>= 0): of the random policy, of the ties drawn among top scores (gpusched's "
                        "and the default scheduler's for CPU-only pods, as selectHost draws) and, with --inflate, "
                        "of the pods drawn; several are run and averaged (default 1)")
    p.add_argument("--inflate", type=float, metavar="F",
                   help="FGD's Monte Carlo evaluation (ATC'23, section 6.1): draw pods from the pod list with "
                        "replacement until the GPU demand arrived reaches F x the cluster's GPU capacity (the "
                        "paper: 1.3), placing what fits; record unallocated and fragmented GPUs at each percent "
                        "of capacity arrived (headline: unallocated GPUs at 100%%, mean over the seeds)")
    p.add_argument("--out", default="results/placement", help="results directory (default results/placement)")
    p.add_argument("--policies", nargs="+", choices=POLICY_ORDER, default=list(DEFAULT_POLICIES), metavar="NAME",
                   help=f"policies to run, in this order (default: {' '.join(DEFAULT_POLICIES)}; also: "
                        "gpusched-exact, the highest unrounded gpusched score)")
    p.add_argument("--combine", nargs="+", metavar="DIR",
                   help="run nothing: merge the --inflate results already written to these directories (e.g. "
                        "one per seed or per pod list) into --out, averaging over the seeds")
    p.add_argument("--limit", type=int, metavar="N", help="replay only the first N pods of each trace")
    p.add_argument("--stop-at-first-failure", action="store_true",
                   help="stop each replay at the first pod that fits nowhere (default: record the figures there, "
                        "then skip such pods to the end of the trace for the curves)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from benchmarks.placement import derive, report, sim, trace
    from benchmarks.placement.ours import RELEARN_EVERY
    from scheduler.core.scoring import LEARN_MIN_PODS, MAX_LEARNED_SHAPES
    from benchmarks.testbed.profiles import ALIBABA_GPU_MIB

    if args.combine:
        return combine(args)
    if args.limit is not None and args.limit < 1:
        raise trace.BenchInputError(f"--limit must be at least 1, got {args.limit}")
    if args.inflate is not None and not 0 < args.inflate <= 10:
        raise trace.BenchInputError(f"--inflate must be above 0 and at most 10, got {args.inflate}")
    if args.inflate is not None and args.stop_at_first_failure:
        raise trace.BenchInputError("--inflate keeps placing past pods that fit nowhere; drop --stop-at-first-failure")
    if args.variants and args.pods:
        raise trace.BenchInputError("give either --variants or --pods")
    if any(seed < 0 for seed in args.seed):
        raise trace.BenchInputError(f"--seed must be 0 or more, got {min(args.seed)}")
    seeds = list(dict.fromkeys(args.seed))
    nodes = trace.read_nodes(args.nodes)
    if args.variants:
        found = trace.pod_list_variants()
        if not found:
            raise trace.BenchInputError(f"no openb_pod_list_*.csv in {trace.traces_dir()}")
        args.pods = [str(p) for p in found]
    specs = list(dict.fromkeys(derive.parse_spec(s) for s in args.derive))  # cpu50 and cpu050 are one list
    traces = [trace.read_pods(p) for p in (args.pods or ([] if specs else [trace.default_pods_csv()]))]
    if specs:
        base = trace.read_pods(trace.default_pods_csv())
        traces += [derive.derive(base, s, args.derive_seed) for s in specs]
    if args.limit:
        traces = [t.head(args.limit) for t in traces]
    names = list(dict.fromkeys(args.policies))
    params = {
        "command": "gpusched bench placement " + " ".join(shlex.quote(a) for a in _argv_tail()),
        "seed": seeds[0],
        "derive_seed": args.derive_seed if specs else None,
        "seeds": seeds,
        "inflate": args.inflate,
        "nodes": {"file": nodes.path, "count": len(nodes), "gpus": int(nodes.gpus.sum())},
        "traces": [{"file": t.path, "name": t.name, "pods": len(t), "ordered_by": t.ordered_by,
                    "out_of_order": t.out_of_order} for t in traces],
        "policies": names,
        "limit": args.limit,
        "stop_at_first_failure": args.stop_at_first_failure,
        "gpu_memory_mib": {k: v[1] for k, v in ALIBABA_GPU_MIB.items() if k in set(nodes.model)},
        "gpusched_shapes": {"learned_from": "pods placed so far and whole-GPU pods that fit nowhere (pending)",
                            "every_placements": RELEARN_EVERY, "min_pods": LEARN_MIN_PODS,
                            "max_shapes": MAX_LEARNED_SHAPES},
    }
    from benchmarks.progress import progress_bar

    t0 = time.perf_counter()
    capacity = int(nodes.gpus.sum()) * trace.MILLI
    # (trace, the pods replayed, seed): drawn per seed with --inflate, else the trace itself
    runs = [(t, sim.inflate(t, capacity, args.inflate, seed) if args.inflate else t, seed)
            for t in traces for seed in seeds]
    total = sum(len(r) for _, r, _ in runs) * len(names)
    with progress_bar(total=total, unit="pod", desc="placement", mininterval=1.0) as bar:
        def progress(n: int) -> None:
            bar.update(n)

        results = []
        for t, pods, seed in runs:
            for name in names:
                bar.set_postfix_str(f"{t.name} seed {seed} {name}", refresh=False)
                results.append(sim.replay(nodes, pods, sim.make_policy(name), seed, workload=t,
                                          keep_going=not args.stop_at_first_failure, progress=progress,
                                          levels=bool(args.inflate), sample_every=0 if args.inflate else 50))
    params["runtime_s"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    paths = report.write(out, results, params)
    how = (f"pods drawn with replacement until the GPU demand arrived is {args.inflate:g}x capacity (FGD's Monte "
           "Carlo evaluation)" if args.inflate else "pods replayed in creation order until the first that fits nowhere")
    print(f"placement on the Alibaba GPU trace: {len(nodes):,} nodes ({int(nodes.gpus.sum()):,} GPUs), seed"
          f"{'s' if len(seeds) > 1 else ''} {' '.join(map(str, seeds))}, policies {', '.join(names)}; {how} "
          f"({params['runtime_s']:.0f} s)")
    for t in params["traces"]:
        note = f", {t['out_of_order']} rows out of order were sorted" if t["out_of_order"] else ""
        print(f"  {t['file']}: {t['pods']:,} pods" + ("" if args.inflate else f", replayed in {t['ordered_by']}{note}"))
    print()
    print(report.mc_table(results) if args.inflate else report.table(results))
    print(report.verdict_text(results), end="")
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def combine(args: argparse.Namespace) -> int:
    from benchmarks.placement import report

    results, params = report.read_mc(Path(d) for d in args.combine)
    runs = list(params["commands"])
    params["command"] = "gpusched bench placement " + " ".join(shlex.quote(a) for a in _argv_tail())
    params["commands"].append(params["command"])
    paths = report.write(Path(args.out), results, params)
    print(f"merged {len(runs)} Monte Carlo runs: {'; '.join(runs)}\n")
    print(report.mc_table(results))
    print(report.verdict_text(results), end="")
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _argv_tail() -> list[str]:
    argv = sys.argv[1:]
    return argv[argv.index("placement") + 1:] if "placement" in argv else argv
