"""`gpusched bench`: benchmarks that print figures, with a baseline measured in the same run."""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path


def positive_int(text: str) -> int:
    """An argparse type: a count of at least 1 (0 nodes or 0 calls would measure nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark and print its table",
                       description="Benchmarks write JSON and a markdown table to --out and print the table.")
    benches = p.add_subparsers(dest="bench", metavar="<bench>", required=True)

    ext = benches.add_parser(
        "extender", help="p50/p99 of filter and prioritize over HTTP at 100, 1,000 and 5,000 nodes",
        description="Calls the extender's HTTP server as kube-scheduler does (Pod + NodeNames, keep-alive) "
                    "against a synthetic cluster; the baseline is a handler that parses the same request and "
                    "answers 'all fit'.",
        epilog="examples:\n  gpusched bench extender --nodes 100 1000 5000 --calls 500 --out results/extender\n"
               "  gpusched bench extender --mode best realistic --nodes 1000 5000 10000\n"
               "  gpusched bench extender --http-layers bounded threading --nodes 100 5000 --rounds 5",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ext.add_argument("--nodes", type=positive_int, nargs="+", default=[100, 1000, 5000])
    ext.add_argument("--calls", type=positive_int, default=300, help="calls per verb and size (default 300)")
    ext.add_argument("--seed", type=int, default=1)
    ext.add_argument("--mode", nargs="+", choices=("best", "realistic"), default=["best"],
                     help="best: one pod shape, a static cluster; realistic: the Alibaba trace's mix of shapes "
                          "while node reports and bound pods change every 50 ms (default: best)")
    ext.add_argument("--out", default="results/extender")
    ext.add_argument("--http-layers", nargs="+", metavar="LAYER",
                     help="instead: the HTTP layer's own cost, the same verbs behind each LAYER at once, called "
                          "in turn: bounded (the daemon's), threading (a thread per connection, as before issue "
                          "#14), file:PATH (BoundedHTTPServer from another copy of http.py); ratios against the "
                          "last")
    ext.add_argument("--rounds", type=int, default=5, help="with --http-layers: rounds, medians shown (default 5)")
    ext.set_defaults(func=run_extender)

    e2e = benches.add_parser(
        "e2e", help="the test bed end to end: pods/s of default-scheduler vs gpusched, then the autoscaler on a trace",
        description="Brings up the local test bed with N kwok GPU nodes and the gpusched extender, creates the "
                    "same P one-GPU pods for each scheduler and times them until all are bound; reports the "
                    "extender's filter/prioritize/bind p50/p99 from its /metrics. Then (phase autoscale) runs "
                    "the autoscaler daemon with a real Prometheus and the fleet simulator on a compressed window "
                    "of the Azure LLM inference trace: an InferenceAutoscaler'd Deployment and a static one "
                    "(the fewest replicas meeting the SLO offline) get the same requests; reports SLO attainment, "
                    "replicas, scale events, warm promotions and GPU-hours.",
        epilog="examples:\n  gpusched bench e2e --nodes 1000 --pods 2000 --out results/e2e\n"
               "  gpusched bench e2e --phase autoscale --nodes 8 --as-window 300 --as-compression 5",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    e2e.add_argument("--nodes", type=int, default=1000)
    e2e.add_argument("--pods", type=int, default=2000)
    e2e.add_argument("--workers", type=int, default=31,
                     help="threads creating pods (default 31: with the watch counting binds, the client's "
                          "pool of 32)")
    e2e.add_argument("--share", metavar="QUANTITY", default=None,
                     help="each pod a GPU memory share of this size (e.g. 10Gi, gpusched's annotation) instead of "
                          "a whole GPU: gpusched's rate for share pods (the default scheduler places them as CPU "
                          "pods, so its row is no GPU baseline)")
    e2e.add_argument("--timeout", type=float, default=600, help="seconds allowed per scheduler run")
    e2e.add_argument("--nodes-to-score", type=int, default=None, metavar="PCT",
                     help="percentageOfNodesToScore for gpusched's kube-scheduler in this run, in place of the "
                          "chart's 100 (0: kube-scheduler's adaptive default, as the default scheduler has it)")
    e2e.add_argument("--no-tls", action="store_true",
                     help="the extender on plain HTTP, to show what TLS costs (the chart serves mutual TLS)")
    e2e.add_argument("--state", default=None, help="test bed state directory (default: a temporary one)")
    e2e.add_argument("--out", default="results/e2e")
    e2e.add_argument("--modes", choices=("create", "backlog", "both"), default="backlog",
                     help="backlog (default): each scheduler stopped while its pods are created, then timed from "
                          "its first bind to its last (the scheduler alone, as kube-scheduler's scheduler_perf "
                          "measures); create: pods created while the schedulers run (the creating client shares "
                          "the cores); both: the two, twice as long")
    e2e.add_argument("--phase", choices=("all", "schedule", "autoscale"), default="all",
                     help="all (default), schedule (pods/s only) or autoscale (the autoscaler phase only)")
    e2e.add_argument("--as-trace", metavar="CSV", default=None,
                     help="request trace (default: the Azure code trace, AzureLLMInferenceTrace_code.csv)")
    e2e.add_argument("--as-window-start", type=float, default=600.0, metavar="S",
                     help="trace second the window starts at (default 600: minutes 10-20 hold two bursts)")
    e2e.add_argument("--as-window", type=float, default=600.0, metavar="S", help="window length, trace seconds "
                     "(default 600)")
    e2e.add_argument("--as-warmup", type=float, default=300.0, metavar="S",
                     help="trace seconds before the window replayed first, not scored: the history a running "
                          "Deployment has (default 300; 0: start cold at the window)")
    e2e.add_argument("--as-compression", type=float, default=10 / 3, metavar="X",
                     help="trace seconds per wall second (default 3.33: 10 minutes in 3)")
    e2e.add_argument("--as-cold-start", type=float, default=None, metavar="S",
                     help="wall seconds for a new pod to load (default: 20 s of trace time compressed with the "
                          "trace, 6 s at x3.33)")
    e2e.add_argument("--as-max-replicas", type=int, default=16, help="maxReplicas, and the static sizing's cap "
                     "(default 16)")
    e2e.add_argument("--as-warm", type=int, default=1, help="warmReplicas (default 1)")
    e2e.add_argument("--as-no-static", action="store_true", help="skip the static baseline")
    e2e.set_defaults(func=run_e2e)

    from benchmarks.placement.cli import add_parser as add_placement
    add_placement(benches)
    __import__("benchmarks.chaos.cli", fromlist=["add_parser"]).add_parser(benches)
    from benchmarks.autoscale.cli import add_parser as add_autoscale; add_autoscale(benches)  # noqa: E702
    from benchmarks.coldstart.cli import add_parser as add_coldstart; add_coldstart(benches)  # noqa: E702


def run_extender(args: argparse.Namespace) -> int:
    if args.http_layers:
        return run_http_layers(args)
    from benchmarks.extender import latency as bench

    results = bench.run(args.nodes, args.calls, args.seed, tuple(args.mode))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "extender.json").write_text(json.dumps(
        {"params": {"nodes": args.nodes, "calls": args.calls, "seed": args.seed, "modes": args.mode},
         "rows": [asdict(r) for r in results]}, indent=1))
    text = bench.table(results)
    (out / "extender.md").write_text(text + "\n")
    print(f"extender latency over HTTP (client side; then time inside the server), {args.calls} calls "
          f"per row, seed {args.seed}\n{text}")
    return 0


def run_http_layers(args: argparse.Namespace) -> int:
    from benchmarks.extender import http_layer

    runs = http_layer.run(args.http_layers, args.nodes, args.calls, args.rounds, args.seed,
                          lambda line: print(line, file=sys.stderr, flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "http_layers.json").write_text(json.dumps(
        {"params": {"layers": args.http_layers, "nodes": args.nodes, "calls": args.calls, "rounds": args.rounds,
                    "seed": args.seed}, "runs": [asdict(r) for r in runs]}, indent=1))
    text = http_layer.table(runs, args.http_layers)
    (out / "http_layers.md").write_text(text + "\n")
    print(f"HTTP layers, the same extender behind each, called in turn; {args.calls} calls per row and round, "
          f"medians of {args.rounds} rounds\n{text}")
    return 0


def run_e2e(args: argparse.Namespace) -> int:
    from benchmarks.e2e import schedule as e2e

    from benchmarks.e2e import autoscale as e2e_autoscale

    settings = e2e_autoscale.Settings(
        **({"trace": args.as_trace} if args.as_trace else {}), window_start_s=args.as_window_start,
        window_s=args.as_window, warmup_s=args.as_warmup, compression=args.as_compression,
        cold_start_s=args.as_cold_start, max_replicas=args.as_max_replicas, warm=args.as_warm, static=not args.as_no_static)
    try:
        settings.check()
        if args.nodes < 1 or args.pods < 1:
            raise ValueError("--nodes and --pods must be >= 1")
        if args.phase != "autoscale" and args.pods > args.nodes * 8:
            raise ValueError(f"--pods {args.pods} one-GPU pods do not fit on --nodes {args.nodes} nodes of 8 GPUs")
        if not Path(settings.trace).is_file():
            raise ValueError(f"--as-trace {settings.trace}: no such file")
    except ValueError as exc:
        msg = str(exc)
        for name, flag in (("window_start_s", "--as-window-start"), ("window_s", "--as-window"),
                           ("warmup_s", "--as-warmup"),
                           ("compression", "--as-compression"), ("cold_start_s", "--as-cold-start"),
                           ("max_replicas", "--as-max-replicas"), ("warm", "--as-warm")):
            msg = msg.replace(name, flag) if msg.startswith(name) or f" {name} " in msg else msg
        print(f"gpusched bench e2e: error: {msg}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    result = e2e.run(args.nodes, args.pods, args.workers, args.timeout, args.state, phase=args.phase, modes=args.modes,
                     autoscale=settings, share=args.share, nodes_to_score=args.nodes_to_score,
                     tls=not args.no_tls)
    result["params"]["wall_s"] = round(time.monotonic() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "e2e.json").write_text(json.dumps(result, indent=1))
    text = e2e.table(result)
    (out / "e2e.md").write_text(e2e.params_line(result) + "\n\n" + text + "\n")
    if "autoscale" in result:
        e2e_autoscale.plot(result["autoscale"], out / "e2e_autoscale.png")
    print(f"{e2e.params_line(result)}\n{text}\n(whole run {result['params']['wall_s']:.0f} s; wrote {out})")
    return 0
