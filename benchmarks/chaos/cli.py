"""`gpusched bench chaos`: the fault cases at full size on a test bed of their own."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(benches: argparse._SubParsersAction) -> None:
    from benchmarks.chaos.cases import CASES

    p = benches.add_parser(
        "chaos", help="fault cases on a test bed of their own: extender, Prometheus, API server, leaders, stale node",
        description="Brings up a test bed of its own (it restarts the API server) and runs each fault case: the "
                    "extender killed during a burst of --pods GPU pods, a stale node report, Prometheus stopped "
                    "--outage seconds under load, the autoscaler leader killed, kube-apiserver restarted, and the active "
                    "pair of two leader-elected kube-scheduler + extender pairs SIGKILLed during a burst of --pods. Writes "
                    "chaos.json and chaos.md to --out and prints the table: what each case checked, what it "
                    "found, its figures (pods lost and double-booked must be zero).",
        epilog="example: gpusched bench chaos --out results/chaos  (about 15 minutes on 2 cores)")
    p.add_argument("--pods", type=int, default=1000, help="pods in the burst (default 1000)")
    p.add_argument("--outage", type=float, default=120.0, help="seconds Prometheus is stopped (default 120)")
    p.add_argument("--lease", type=float, default=15.0, help="autoscaler Lease duration, seconds (default 15)")
    p.add_argument("--scheduler-lease", type=float, default=6.0,
                   help="kube-scheduler Lease duration of the two scheduler/extender pairs, seconds (default 6; "
                        "the chart's is 15: the takeover waits for it)")
    p.add_argument("--extender-down", type=float, default=5.0, help="seconds the extender stays dead (default 5)")
    p.add_argument("--apiserver-down", type=float, default=5.0, help="seconds kube-apiserver stays down (default 5)")
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=None, help="run only these cases")
    p.add_argument("--state", default=None, help="test bed state directory (default: a temporary one)")
    p.add_argument("--out", default="results/chaos")
    p.set_defaults(func=run_chaos)


def run_chaos(args: argparse.Namespace) -> int:
    from benchmarks.chaos import report

    if args.pods < 1 or args.outage <= 0 or args.lease < 2 or args.extender_down < 0 or args.apiserver_down < 0 \
            or args.scheduler_lease < 3:
        print("gpusched bench chaos: error: --pods >= 1, --outage > 0, --lease >= 2, --scheduler-lease >= 3, "
              "down times >= 0", file=sys.stderr)
        return 2
    params, results = report.run(args.pods, args.outage, args.lease, args.extender_down, args.apiserver_down,
                                 args.cases, args.state, progress=lambda m: print(m, file=sys.stderr, flush=True),
                                 scheduler_lease_s=args.scheduler_lease)
    text = report.write(Path(args.out), params, results)
    print(f"{report.params_line(params)}\n{text}\n(wrote {args.out})")
    return 0 if all(r.passed for r in results) else 1
