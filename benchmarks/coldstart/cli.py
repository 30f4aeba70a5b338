"""`gpusched bench coldstart`: argument parsing and the run; imports the simulator lazily."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, NoReturn

from scheduler.core.scoring import DEFAULT_BANDWIDTH

POLICIES = ("gpusched", "no-locality", "spread")
GB = 10**9


def _number(kind: type, low: float, inclusive: bool = True) -> Callable[[str], float]:
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if v != v or (v < low if inclusive else v <= low):
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {low:g}, got {text!r}")
        return v
    return parse


def _one_line_error(parser: argparse.ArgumentParser) -> Callable[[str], NoReturn]:
    def error(message: str) -> NoReturn:
        # One line a user can act on, not the whole usage block.
        print(f"{parser.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)
    return error


def add_parser(benches: argparse._SubParsersAction) -> None:
    p = benches.add_parser(
        "coldstart", help="replica churn on a multi-model fleet: model-cache locality and time to ready",
        description="A seeded discrete-event simulation of a multi-model inference fleet (1 to 135 GiB models) "
                    "on 8 x H100 nodes with per-node model caches (host memory, disk; LRU). Replicas start and "
                    "stop; each start is placed by gpusched's placement core (scheduler.core filter_rows, "
                    "prioritize, assign_gpus, byte for byte), by the same with locality weight 0, and by "
                    "kube-scheduler's default spread, all on the same replica starts in one run. Time to ready "
                    "= start + bytes / bandwidth of where the weights come from (a GPU-resident replica on the "
                    "node, host memory, local disk, the remote store). Writes coldstart.json, coldstart.md and "
                    "coldstart.png to --out and prints the table.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  gpusched bench coldstart --out results/coldstart\n"
               "  gpusched bench coldstart --nodes 64 --hours 24 --disk-cache-gib 2048 --out /tmp/cs\n"
               "  gpusched bench coldstart --nodes 4 --hours 2 --warmup-hours 0.5 --policies gpusched spread")
    pos_int, pos = _number(int, 1), _number(float, 0, inclusive=False)
    nonneg = _number(float, 0)
    p.add_argument("--nodes", type=pos_int, default=32, help="GPU nodes, 8 x H100 80GB each (default 32)")
    p.add_argument("--hours", type=pos, default=12.0, help="simulated hours (default 12)")
    p.add_argument("--warmup-hours", type=nonneg, default=1.0,
                   help="replicas starting before this are simulated, not counted (default 1)")
    p.add_argument("--load", type=pos, default=0.8,
                   help="mean share of the cluster's GPUs the churn keeps busy (default 0.8)")
    p.add_argument("--lifetime-min", type=pos, default=30.0, help="mean replica lifetime, minutes (default 30)")
    p.add_argument("--zipf", type=nonneg, default=1.0, help="model popularity exponent (default 1.0)")
    p.add_argument("--variants", type=pos_int, default=4, help="fine-tuned copies of each base model (default 4)")
    p.add_argument("--host-cache-gib", type=nonneg, default=128.0, help="host-memory cache per node (default 128)")
    p.add_argument("--disk-cache-gib", type=nonneg, default=512.0, help="local-disk cache per node (default 512)")
    p.add_argument("--start-s", type=nonneg, default=20.0,
                   help="container start and engine init before weights load, seconds (default 20)")
    for tier, default, what in (("host", DEFAULT_BANDWIDTH["host-memory"], "host memory"),
                                ("disk", DEFAULT_BANDWIDTH["disk"], "local disk"),
                                ("remote", DEFAULT_BANDWIDTH["remote"], "the remote store"),
                                ("gpu", DEFAULT_BANDWIDTH["host-memory"], "a GPU-resident replica on the node")):
        p.add_argument(f"--bw-{tier}", type=pos, default=default / GB, metavar="GB/S",
                       help=f"load bandwidth from {what}, GB/s (default {default / GB:g}"
                            + (", scheduler.core.scoring.DEFAULT_BANDWIDTH)" if tier != "gpu" else
                               ", as host memory: conservative; the scorer counts it free)"))
    p.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES), metavar="NAME",
                   help=f"policies to run, in this order (default: {' '.join(POLICIES)})")
    p.add_argument("--seed", type=int, default=1, help="seed of the replica churn (default 1)")
    p.add_argument("--out", default="results/coldstart", help="results directory (default results/coldstart)")
    p.error = _one_line_error(p)  # type: ignore[method-assign]
    p.set_defaults(func=run)


def params_of(args: argparse.Namespace):
    from benchmarks.coldstart import sim
    GiB = 2**30
    if args.warmup_hours >= args.hours:
        raise ValueError(f"--warmup-hours {args.warmup_hours:g} must be less than --hours {args.hours:g}")
    return sim.Params(
        nodes=args.nodes, duration_s=args.hours * 3600, warmup_s=args.warmup_hours * 3600, load=args.load,
        lifetime_s=args.lifetime_min * 60, zipf=args.zipf, variants=args.variants,
        host_cache_bytes=int(args.host_cache_gib * GiB), disk_cache_bytes=int(args.disk_cache_gib * GiB),
        start_s=args.start_s, seed=args.seed,
        bandwidth={"gpu": args.bw_gpu * GB, "host-memory": args.bw_host * GB, "disk": args.bw_disk * GB,
                   "remote": args.bw_remote * GB})


def run(args: argparse.Namespace) -> int:
    try:
        p = params_of(args)
    except ValueError as exc:
        print(f"gpusched bench coldstart: error: {exc}", file=sys.stderr)
        return 2
    from benchmarks.coldstart import catalogue, report, sim, workload
    from benchmarks.progress import progress_bar

    models = catalogue.catalogue(p.variants)
    arrivals, pop, rate = workload.generate(models, gpus=p.nodes * sim.GPUS_PER_NODE, load=p.load,
                                            duration_s=p.duration_s, lifetime_s=p.lifetime_s, zipf=p.zipf,
                                            seed=p.seed)
    names = list(dict.fromkeys(args.policies))
    params = {
        "command": "gpusched bench coldstart " + " ".join(shlex.quote(a) for a in _argv_tail()),
        "seed": p.seed, "nodes": p.nodes, "gpus_per_node": sim.GPUS_PER_NODE, "hours": args.hours,
        "warmup_hours": args.warmup_hours, "load": p.load, "lifetime_min": args.lifetime_min, "zipf": p.zipf,
        "variants": p.variants, "base_models": len(catalogue.BASE_MODELS), "models": len(models),
        "catalogue_gib": round(sum(m.bytes for m in models) / 2**30, 1),
        "host_cache_gib": args.host_cache_gib, "disk_cache_gib": args.disk_cache_gib, "start_s": p.start_s,
        "bandwidth_bytes_per_s": dict(p.bandwidth), "policies": names, "arrivals": len(arrivals),
        "rate_per_min": round(rate * 60, 3),
        "catalogue": [{"model": m.name, "gib": round(m.bytes / 2**30, 1), "whole_gpus": m.whole_gpus,
                       "gpu_memory_gib": round(m.gpu_memory / 2**30, 1), "popularity": round(float(q), 5)}
                      for m, q in zip(models, pop)],
    }
    print(f"coldstart: {p.nodes} nodes x 8 H100, {len(models)} models, {len(arrivals):,} replica starts over "
          f"{args.hours:g} h (warm-up {args.warmup_hours:g} h not counted), load {p.load:g}, seed {p.seed}; "
          f"policies {', '.join(names)}", file=sys.stderr)
    results, timings = [], {}
    with progress_bar(total=len(arrivals) * len(names), unit="start", desc="coldstart", mininterval=1.0) as bar:
        for name in names:
            bar.set_postfix_str(name, refresh=False)
            t0 = time.perf_counter()
            results.append(sim.run(sim.make_policy(name), p, models, arrivals, progress=bar.update))
            timings[name] = time.perf_counter() - t0
    paths = report.write(Path(args.out), results, params, timings)
    rows = [r.summary() for r in results]
    print(report.describe(params))
    print()
    print(report.table(rows))
    print(f"simulated in {sum(timings.values()):.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())})")
    print(f"wrote {', '.join(str(x) for x in paths)}")
    return 0


def _argv_tail() -> list[str]:
    argv = sys.argv[1:]
    return argv[argv.index("coldstart") + 1:] if "coldstart" in argv else argv
