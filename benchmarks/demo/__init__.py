"""`gpusched demo`: bring up the local test bed, place and scale GPU pods, print what happened."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run gpusched on a local simulated cluster and print what happened",
                       description="Starts the test bed (real control plane, kwok GPU nodes), places and "
                                   "scales inference pods, prints each decision and its reason, tears down.")
    p.add_argument("--state", default=".state/demo", help="state directory (default .state/demo)")
    p.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from benchmarks.demo.run import main
    return main(args)
