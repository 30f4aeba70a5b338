"""`gpusched bench`: benchmarks that print figures, with a baseline measured in the same run."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark and print its table",
                       description="Benchmarks write JSON and a markdown table to --out and print the table.")
    benches = p.add_subparsers(dest="bench", metavar="<bench>", required=True)

    ext = benches.add_parser(
        "extender", help="p50/p99 of filter and prioritize over HTTP at 100, 1,000 and 5,000 nodes",
        description="Calls the extender's HTTP server as kube-scheduler does (Pod + NodeNames, keep-alive) "
                    "against a synthetic cluster; the baseline is a handler that parses the same request and "
                    "answers 'all fit'.",
        epilog="example: gpusched bench extender --nodes 100 1000 5000 --calls 500 --out results/extender")
    ext.add_argument("--nodes", type=int, nargs="+", default=[100, 1000, 5000])
    ext.add_argument("--calls", type=int, default=300, help="calls per verb and size (default 300)")
    ext.add_argument("--seed", type=int, default=1)
    ext.add_argument("--out", default="results/extender")
    ext.set_defaults(func=run_extender)

    from benchmarks.placement.cli import add_parser as add_placement
    add_placement(benches)


def run_extender(args: argparse.Namespace) -> int:
    from benchmarks import extender_latency as bench

    results = bench.run(args.nodes, args.calls, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "extender.json").write_text(json.dumps(
        {"params": {"nodes": args.nodes, "calls": args.calls, "seed": args.seed},
         "rows": [asdict(r) for r in results]}, indent=1))
    text = bench.table(results)
    (out / "extender.md").write_text(text + "\n")
    print(f"extender latency over HTTP, {args.calls} calls per row, seed {args.seed}\n{text}")
    return 0
