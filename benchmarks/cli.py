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

    e2e = benches.add_parser(
        "e2e", help="pods/s scheduled end to end on the test bed: default-scheduler vs gpusched",
        description="Brings up the local test bed with N kwok GPU nodes and the gpusched extender, creates the "
                    "same P one-GPU pods for each scheduler and times them until all are bound; reports the "
                    "extender's filter/prioritize/bind p50/p99 from its /metrics.",
        epilog="example: gpusched bench e2e --nodes 1000 --pods 2000 --out results/e2e")
    e2e.add_argument("--nodes", type=int, default=1000)
    e2e.add_argument("--pods", type=int, default=2000)
    e2e.add_argument("--workers", type=int, default=31,
                     help="threads creating pods (default 31: with the poller, the client's pool of 32)")
    e2e.add_argument("--timeout", type=float, default=600, help="seconds allowed per scheduler run")
    e2e.add_argument("--state", default=None, help="test bed state directory (default: a temporary one)")
    e2e.add_argument("--out", default="results/e2e")
    e2e.set_defaults(func=run_e2e)

    from benchmarks.placement.cli import add_parser as add_placement
    add_placement(benches)
    from benchmarks.autoscale.cli import add_parser as add_autoscale; add_autoscale(benches)  # noqa: E702
    from benchmarks.coldstart.cli import add_parser as add_coldstart; add_coldstart(benches)  # noqa: E702


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


def run_e2e(args: argparse.Namespace) -> int:
    from benchmarks import e2e

    result = e2e.run(args.nodes, args.pods, args.workers, args.timeout, args.state)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "e2e.json").write_text(json.dumps(result, indent=1))
    text = e2e.table(result)
    (out / "e2e.md").write_text(e2e.params_line(result) + "\n\n" + text + "\n")
    print(f"{e2e.params_line(result)}\n{text}")
    return 0
