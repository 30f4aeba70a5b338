"""`gpusched bench autoscale`: argument parsing and the run; imports the simulator lazily."""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks.traces import REQUEST_TRACES, request_trace_files

POLICIES = ("ours", "ours-no-warm", "ours-no-forecast", "ours-no-queueing", "ours-no-panic", "ours-no-prewarm",
            "ours-no-recent", "ours-forecast-up", "ours-batch-slots", "ours-mmc", "hpa-util", "keda-queue", "static",
            "static-prev-window", "oracle")
# run when named: scale to zero (with --models K, many mostly idle models on one pool)
ZERO_POLICIES = ("ours-zero", "ours-zero-scrape", "keda-zero")
# run when named: ours with the forecast's asks off even without a recent rate (what an
# unset forecast.scaleUp meant before); with 15 s scrapes it is ours to the digit
NAMED_POLICIES = ZERO_POLICIES + ("ours-forecast-off",)

# The bench's defaults, each a documented assumption (see --help and the module docs
# of benchmarks.autoscale.service and .policies).
DEFAULTS: dict[str, Any] = {
    "gpu": "a100",  # Splitwise measured the Azure traces' service on DGX-A100 and DGX-H100
    "queue_wait_slo": 2.0,  # s: spec.slo.queueWaitSeconds of ours, and the SLO every policy is scored on
    "ttft_slo": 5.0,  # s: reported; TTFT includes prefill, which no replica count removes
    "percentile": 0.99,
    "max_replicas": 32,  # maxReplicas of every autoscaler (ours, HPA, KEDA)
    "hpa_target": 70.0,  # % GPU utilisation per pod
    "queue_target": 5.0,  # waiting requests per replica: WVA's saturation point; ours' queueDepth signal too
    "scrape_s": 15.0,
    "max_batch": 32,  # vLLM's max_num_seqs as the GPU models have it; 1 = one request at a time
    "static_window_s": 600.0,  # static-prev-window: re-sized from the previous window's requests
    "service_rate_error": 1.0,  # ours is told the load test's service rate times this
}


class InputError(Exception):
    """Bad input: printed as one line, exit code 2."""


def add_parser(benches: argparse._SubParsersAction) -> None:
    p = benches.add_parser(
        "autoscale", help="replay LLM request traces through autoscaled replicas: SLO attainment vs GPU-hours",
        description="Replays request traces (default: the two Azure LLM inference traces, 2023, and Mooncake's "
                    "conversation trace, 2025) through replicas "
                    "modelled with prefill/decode throughput per GPU type, continuous batching and a KV cache "
                    "(benchmarks.fleet.model), cold starts by where the weights come from (GPU, host memory, "
                    "disk, remote store) and a warm pool, under each policy in one run: ours (the daemon's "
                    "autoscaler.policy.decide and warm-pool planning byte for byte), ours with each feature "
                    "switched off in turn, HPA on GPU utilisation, KEDA on queue depth (queried at every HPA "
                    "sync), static provisioning with hindsight and from the previous window's needs, and an "
                    "oracle that knows the arrivals; beside them lower_bound, the fewest GPU-hours any policy "
                    "with these cold starts could spend within the SLO (benchmarks.autoscale.bound). "
                    "--max-batch 1 models servers that run one request at a time. A trace with a model column "
                    "becomes one autoscaled "
                    "workload per model on one GPU pool. Writes autoscale.json, autoscale.md and PNG plots to "
                    "--out and prints the table; each JSON row lists the minutes where its SLO misses fell "
                    "(worst_minutes: the arrivals then and before, the replicas serving and warm).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  gpusched bench autoscale --out results/autoscale\n"
               "  gpusched bench autoscale --trace my.csv --time-column ts --model-column model "
               "--service-column secs --out /tmp/a\n"
               "  gpusched bench autoscale --ours-spec '{\"slo\": {\"targetUtilization\": 0.8}}' --out /tmp/b")
    p.add_argument("--trace", action="append", metavar="FILE",
                   help="a CSV request trace; repeat for several (default: both Azure LLM traces in "
                        "benchmarks/data/traces/azure-llm-2023 and Mooncake's conversation trace in "
                        "benchmarks/data/traces/mooncake-2025, or the same under $GPUSCHED_TRACES)")
    p.add_argument("--time-column", help="arrival time column (default: found by name, e.g. TIMESTAMP)")
    p.add_argument("--prompt-column", help="prompt-token column (default: found by name, e.g. ContextTokens)")
    p.add_argument("--output-column", help="output-token column (default: found by name, e.g. GeneratedTokens)")
    p.add_argument("--service-column", help="a service-time column (seconds) instead of token counts")
    p.add_argument("--model-column", help="model column (default: 'model' if present); one workload per model")
    p.add_argument("--gpu", default=DEFAULTS["gpu"], choices=("h100", "a100", "l40s"),
                   help=f"GPU type of every replica (default {DEFAULTS['gpu']})")
    p.add_argument("--queue-wait-slo", type=float, default=DEFAULTS["queue_wait_slo"], metavar="S",
                   help=f"queue-wait SLO in seconds (default {DEFAULTS['queue_wait_slo']:g})")
    p.add_argument("--ttft-slo", type=float, default=DEFAULTS["ttft_slo"], metavar="S",
                   help=f"TTFT SLO in seconds, reported (default {DEFAULTS['ttft_slo']:g})")
    p.add_argument("--max-replicas", type=int, default=DEFAULTS["max_replicas"])
    p.add_argument("--hpa-target", type=float, default=DEFAULTS["hpa_target"], help="HPA's GPU utilisation target, %%")
    p.add_argument("--queue-target", type=float, default=DEFAULTS["queue_target"],
                   help="waiting requests per replica for KEDA and ours' queueDepth signal")
    p.add_argument("--ours-spec", metavar="JSON|FILE",
                   help="InferenceAutoscaler spec fields merged over ours' defaults (JSON or a YAML/JSON file)")
    p.add_argument("--pool-gpus", type=int, help="GPUs in the shared pool (default: as many as asked)")
    p.add_argument("--scrape", type=float, default=DEFAULTS["scrape_s"], help="Prometheus scrape interval, s")
    p.add_argument("--recent-window", type=float, metavar="S",
                   help="the daemon's --recent-window for every ours: the window of the arrival rate read for "
                        "scale-ups beside the 1 m rate (default: twice --scrape, the last two scrapes; 0: off, "
                        "as ours-no-recent)")
    p.add_argument("--max-batch", type=int, default=DEFAULTS["max_batch"], metavar="N",
                   help="requests one replica runs at once: N > 1 continuous batching (LLM servers), 1 one "
                        f"request at a time (diffusion, some embedding servers) (default {DEFAULTS['max_batch']})")
    p.add_argument("--cold-start-csv", metavar="FILE",
                   help="measured load times in seconds (first column, one a row, optional header): every cold "
                        "start draws one (seeded by --seed) instead of the tier model")
    p.add_argument("--service-rate-error", type=float, default=DEFAULTS["service_rate_error"], metavar="F",
                   help="tell every ours a serviceRatePerReplica F times the load test's (concurrencyPerReplica "
                        "unchanged): F > 1 a load test that over-measured throughput (a mix lighter than "
                        "production's), F < 1 one that under-measured it. A check of how the defaults bear a "
                        "mis-measured rate, not a setting; the baselines and the oracle keep the true rate "
                        "(default 1)")
    p.add_argument("--static-window", type=float, default=DEFAULTS["static_window_s"], metavar="S",
                   help="static-prev-window re-sizes every S seconds to what met the SLO over the previous S "
                        f"seconds (default {DEFAULTS['static_window_s']:g})")
    p.add_argument("--policies", nargs="+", choices=POLICIES + NAMED_POLICIES, default=list(POLICIES), metavar="NAME",
                   help=f"policies to run (default: {' '.join(POLICIES)}; also {' '.join(ZERO_POLICIES)}: "
                        "scale to zero, ours with minReplicas 0 (woken at the activation endpoint; -scrape: by the "
                        "gateway's counter only) and KEDA with minReplicaCount 0; and ours-forecast-off: "
                        "forecast.scaleUp false, the forecast never asks (ours asks only while no recent "
                        "rate is read))")
    p.add_argument("--models", type=int, metavar="K",
                   help="split a trace without a model column into K models on one GPU pool: blocks of "
                        "--model-block seconds each go to one model drawn Zipf(1) with --seed "
                        "(benchmarks.autoscale.split); most models idle most of the time")
    p.add_argument("--host-warm", action="store_true",
                   help="warm capacity shared by every model: the pool's nodes keep every model's weights in host "
                        "memory, so any cold start reads them from there (host-memory tier) instead of disk or the "
                        "remote store; costs RAM, not GPU-hours")
    p.add_argument("--model-block", type=float, default=120.0, metavar="S",
                   help="block length of the --models split, seconds (default 120)")
    p.add_argument("--limit", type=int, metavar="N", help="replay only the first N rows of each trace")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the service-rate load test sample and the cold-start draws (default 1)")
    p.add_argument("--out", default="results/autoscale", help="results directory (default results/autoscale)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except InputError as exc:
        print(f"gpusched bench autoscale: error: {exc}", file=sys.stderr)
        return 2


def _load_overrides(text: str | None) -> dict:
    if not text:
        return {}
    src = text
    path = Path(text)
    if not text.lstrip().startswith("{") and path.is_file():
        src = path.read_text()
    try:
        import yaml

        v = yaml.safe_load(src)
    except Exception as exc:  # noqa: BLE001 - YAML or JSON syntax: one line
        raise InputError(f"--ours-spec: not JSON/YAML ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
    if not isinstance(v, dict):
        raise InputError(f"--ours-spec: must be an object of spec fields, got {type(v).__name__}")
    return v


@dataclass
class TraceRun:
    name: str
    file: str
    rows: int
    models: dict[str, float]  # model -> calibrated req/s per replica
    runs: list
    oracle_u: float
    static: dict[str, int]
    spec_example: dict
    bound: Any = None  # benchmarks.autoscale.bound.Bound
    static_prev: dict[str, list[int]] | None = None
    concurrency: dict[str, int] | None = None  # model -> concurrencyPerReplica from the load test


def run_trace(path: str, args: argparse.Namespace, policies: Sequence[str], overrides: dict,
              progress: Callable[[float], None] | None = None,
              add_total: Callable[[float], None] | None = None) -> TraceRun:
    """Every policy over one trace file."""
    import numpy as np

    from autoscaler.spec import SpecError, parse_spec
    from benchmarks.autoscale import policies as pol
    from benchmarks.autoscale import report
    from benchmarks.autoscale.bound import Load, lower_bound
    from autoscaler.queueing import effective_concurrency
    from benchmarks.autoscale.service import (TIERS, ColdStart, calibrate_service_rate, replicas_needed,
                                              seconds_alone, service_model, tokens_of)
    from benchmarks.autoscale.sim import SimConfig, WorkloadInput, simulate
    from benchmarks.fleet.model import TraceError, read_trace

    try:
        rows = read_trace(path, time_column=args.time_column, prompt_column=args.prompt_column,
                          output_column=args.output_column, model_column=args.model_column,
                          service_column=args.service_column, limit=args.limit)
    except TraceError as exc:
        raise InputError(str(exc)) from None
    name = report.trace_name(path)
    if getattr(args, "models", None):
        from benchmarks.autoscale.split import split_models
        try:
            rows = split_models(rows, args.models, args.model_block, args.seed)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        name += f"-x{args.models}"
    service = service_model(args.gpu, args.max_batch)
    cold = ColdStart()
    samples = getattr(args, "cold_samples", None)
    cfg = SimConfig(cold=cold, scrape_s=args.scrape, pool_gpus=args.pool_gpus, cold_samples=samples,
                    recent_window_s=getattr(args, "recent_window", None),
                    host_warm=bool(getattr(args, "host_warm", False)),
                    cold_seed=args.seed)
    # with the shared host-memory tier every load reads from host memory: what ours is told
    worst_cold = max(samples) if samples else cold.seconds("host-memory" if cfg.host_warm else "remote")
    least_cold = min(samples) if samples else min(cold.seconds(t) for t in TIERS)
    by_model: dict[str, list] = {}
    for r in rows:
        by_model.setdefault(r.model or name, []).append(r)
    inputs = []
    for m, rs in by_model.items():
        mu = calibrate_service_rate(rs, service, seed=args.seed)
        s1 = seconds_alone(rs, service, seed=args.seed)
        if not s1 > 0:
            raise InputError(f"{path}: model {m}: the load test's requests take no time (every sampled request "
                             "has 0 tokens to prefill or decode): no service rate to size replicas by")
        k = effective_concurrency(mu, s1, service.max_batch)
        inputs.append(WorkloadInput(m, rs, service, mu, concurrency=k))
    end = max(rs[-1].t for rs in by_model.values())
    arrivals = {i.model: np.array([r.t for r in i.rows]) for i in inputs}
    initial = {i.model: replicas_needed(float(np.sum(arrivals[i.model] < 60.0)) / 60.0, i.mu, 0.8) for i in inputs}
    pct = DEFAULTS["percentile"]

    def sim(make, policy, only=None):
        if add_total:
            add_total(end)
        return simulate(only or inputs, make, cfg, progress=progress, policy=policy)

    def attained(res) -> float:
        import numpy as np
        qw = np.concatenate([w.queue_wait for w in res.workloads])
        return float(np.mean(qw <= args.queue_wait_slo))

    # oracle: the highest utilisation u (fewest replicas) that still meets the SLO, by bisection
    def oracle_make(u):
        needs = {i.model: pol.oracle_need(arrivals[i.model], i.mu, u, end) for i in inputs}
        return lambda i: pol.Oracle("oracle", needs[i.model], args.max_replicas)

    lo, hi = 0.2, 2.0
    best = None
    res_hi = sim(oracle_make(hi), "oracle")
    if attained(res_hi) >= pct:
        best = (hi, res_hi)
    else:
        res_lo = sim(oracle_make(lo), "oracle")
        best = (lo, res_lo)
        for _ in range(6):
            mid = round((lo + hi) / 2, 4)
            r = sim(oracle_make(mid), "oracle")
            if attained(r) >= pct:
                lo, best = mid, (mid, r)
            else:
                hi = mid
    oracle_u, oracle_res = best

    def fewest_static(i, guess: int) -> int:
        """The fewest replicas held all along that meet the SLO on ``i``'s rows."""
        lo_n, hi_n = 1, max(1, guess)
        while True:
            r = sim(lambda _i, n=hi_n: pol.Static("static", n), "static", [i])
            if attained(r) >= pct or hi_n >= 4 * args.max_replicas:
                break
            lo_n, hi_n = hi_n, hi_n * 2
        while lo_n < hi_n:
            mid = (lo_n + hi_n) // 2
            r = sim(lambda _i, n=mid: pol.Static("static", n), "static", [i])
            if attained(r) >= pct:
                hi_n = mid
            else:
                lo_n = mid + 1
        return hi_n

    # static: per model, the fewest replicas held all along that meet the SLO (hindsight)
    static: dict[str, int] = {}
    if "static" in policies:
        for i in inputs:
            static[i.model] = fewest_static(i, int(pol.oracle_need(arrivals[i.model], i.mu, oracle_u, end).max()))

    # static-prev-window: per model and window, what met the SLO over that window alone;
    # window k is then served with window k-1's count (window 0 with its own)
    static_prev: dict[str, list[int]] = {}
    if "static-prev-window" in policies:
        w = args.static_window
        nwin = int(end // w) + 1
        for i in inputs:
            fits = []
            for k in range(nwin):
                rs = [replace(r, t=r.t - k * w) for r in i.rows if k * w <= r.t < (k + 1) * w]
                if not rs:
                    fits.append(1)
                    continue
                a = np.array([r.t for r in rs])
                guess = int(pol.oracle_need(a, i.mu, oracle_u, float(a[-1])).max())
                fits.append(fewest_static(replace(i, rows=rs), guess))
            static_prev[i.model] = [fits[0]] + fits[:-1]

    loads = []
    for i in inputs:
        toks = np.array([tokens_of(r, service) for r in i.rows], dtype=float).reshape(-1, 2)
        loads.append(Load(arrivals[i.model], toks[:, 0], toks[:, 1]))
    bound = lower_bound(loads, service, args.queue_wait_slo, least_cold, end, pct)

    def spec_for(i, extra):
        # the user's overrides first, then the ablation's switch (which may remove a field)
        if extra.get("concurrencyPerReplica") == pol.SERVER_BATCH:
            extra = dict(extra, concurrencyPerReplica=service.max_batch)
        if "activation" in extra:
            from benchmarks.autoscale.sim import service_name
            extra = pol.merge_spec(extra, {"activation": {"labels": {"destination_service_name": service_name(i.model)}}})
        told = i.mu * args.service_rate_error  # the load test's rate unless --service-rate-error
        return pol.merge_spec(pol.ours_spec(i.model, max_replicas=args.max_replicas, mu=told,
                                            cold_start_s=worst_cold, queue_wait_s=args.queue_wait_slo,
                                            queue_target=args.queue_target, overrides=overrides,
                                            concurrency=i.concurrency), extra)

    try:
        for i in inputs:
            parse_spec(spec_for(i, {}))
    except SpecError as exc:
        raise InputError(f"--ours-spec: {exc}") from None
    runs = []
    for p in policies:
        if p.startswith("ours"):
            extra, prewarm, _ = pol.ABLATIONS[p]
            specs = {i.model: spec_for(i, extra) for i in inputs}
            made: list = []

            def make_ours(i, p=p, prewarm=prewarm, made=made, specs=specs):
                made.append(pol.Ours(p, specs[i.model], prewarm, initial[i.model], wake_path=p not in pol.SCRAPE_ONLY,
                                     recent=p not in pol.NO_RECENT))
                return made[-1]

            res = sim(make_ours, p)
            tally = pol.DecideTally()
            for o in made:
                tally = tally.merged(o.tally)
            res.extra["decide"] = tally.hours()
            runs.append(res)
        elif p == "hpa-util":
            runs.append(sim(lambda i, p=p: pol.Hpa(p, args.hpa_target, 1, args.max_replicas, initial[i.model]), p))
        elif p == "keda-zero":
            runs.append(sim(lambda i, p=p: pol.KedaZero(p, args.queue_target, args.max_replicas, initial[i.model]), p))
        elif p == "keda-queue":
            runs.append(sim(lambda i, p=p: pol.Keda(p, args.queue_target, 1, args.max_replicas, initial[i.model]), p))
        elif p == "static":
            runs.append(sim(lambda i: pol.Static("static", static[i.model]), p))
        elif p == "static-prev-window":
            runs.append(sim(lambda i: pol.StaticSchedule("static-prev-window", static_prev[i.model], args.static_window),
                            p))
        elif p == "oracle":
            runs.append(oracle_res)
    return TraceRun(name=name, file=str(path), rows=len(rows), models={i.model: i.mu for i in inputs}, runs=runs,
                    oracle_u=oracle_u, static=static, spec_example=spec_for(inputs[0], {}), bound=bound,
                    static_prev=static_prev, concurrency={i.model: i.concurrency for i in inputs})


def _run(args: argparse.Namespace) -> int:
    from autoscaler.signals import recent_window_problem
    from benchmarks.autoscale import policies as pol
    from benchmarks.autoscale import report
    from benchmarks.autoscale.service import ColdStart, ColdStartError, read_cold_starts, service_model
    from benchmarks.autoscale.sim import SimConfig
    from benchmarks.progress import progress_bar

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}")
    for flag, v in (("--queue-wait-slo", args.queue_wait_slo), ("--ttft-slo", args.ttft_slo),
                    ("--scrape", args.scrape), ("--hpa-target", args.hpa_target),
                    ("--queue-target", args.queue_target)):
        if not v > 0:
            raise InputError(f"{flag} must be > 0, got {v:g}")
    if args.max_replicas < 1:
        raise InputError(f"--max-replicas must be at least 1, got {args.max_replicas}")
    if args.max_batch < 1:
        raise InputError(f"--max-batch must be at least 1 (1 = one request at a time), got {args.max_batch}")
    if not args.static_window > 0:
        raise InputError(f"--static-window must be > 0, got {args.static_window:g}")
    if not (math.isfinite(args.service_rate_error) and args.service_rate_error > 0):
        raise InputError(f"--service-rate-error must be a finite number > 0 (1 = the load test's rate), "
                         f"got {args.service_rate_error:g}")
    problem = None if args.recent_window is None else recent_window_problem(args.recent_window)
    if problem is not None:
        raise InputError(f"--recent-window {problem}")
    args.cold_samples = None
    if args.cold_start_csv:
        try:
            args.cold_samples = read_cold_starts(args.cold_start_csv)
        except ColdStartError as exc:
            raise InputError(f"--cold-start-csv: {exc}") from None
    overrides = _load_overrides(args.ours_spec)
    traces = args.trace or [str(p) for p in request_trace_files()]
    # before any simulation: a default set half present (an old $GPUSCHED_TRACES) would
    # otherwise fail only after the traces before the missing one had run
    missing = next((t for t in traces if not Path(t).exists()), None)
    if missing is not None:
        dirs = " and ".join(f"{t.directory}/" for t in REQUEST_TRACES)
        hint = "" if args.trace else (f" (the default set: $GPUSCHED_TRACES must hold {dirs} as "
                                      "benchmarks/data/traces does; or name files with --trace)")
        raise InputError(f"{missing}: cannot read (No such file or directory){hint}")
    policies = list(dict.fromkeys(args.policies))
    t0 = time.perf_counter()
    results = []
    with progress_bar(total=0, unit="sim-s", unit_scale=True, desc="autoscale", mininterval=1.0) as bar:
        def add_total(s: float) -> None:
            bar.total += s
            bar.refresh()

        for path in traces:
            bar.set_postfix_str(Path(path).name, refresh=False)
            results.append(run_trace(path, args, policies, overrides, progress=bar.update, add_total=add_total))
    runtime = round(time.perf_counter() - t0, 1)
    whats = {k: v[2] for k, v in pol.ABLATIONS.items()}
    whats.update({"hpa-util": f"HPA on GPU utilisation, target {args.hpa_target:g}%",
                  "keda-queue": f"KEDA on queue depth, {args.queue_target:g} waiting per replica",
                  "keda-zero": "KEDA with minReplicaCount 0: activation on the gateway's request counter every "
                               "30 s, cooldownPeriod 300 s; from one replica up as keda-queue",
                  "static": "static with hindsight: the fewest replicas held all along that meet the SLO",
                  "static-prev-window": f"static re-sized every {args.static_window:g} s to what met the SLO over "
                                        f"the previous {args.static_window:g} s (no hindsight)",
                  "oracle": "knows the arrivals ahead (a heuristic, not a bound)",
                  "lower_bound": "no policy with these cold starts spends fewer GPU-hours and meets the SLO "
                                 "(computed, not simulated)"})
    rows = []
    for tr in results:
        rows += report.rows_of(tr.name, tr.runs, whats, args.queue_wait_slo, args.ttft_slo,
                               lower_bound_h=tr.bound.gpu_hours if tr.bound else None,
                               percentile=DEFAULTS["percentile"])
    svc = service_model(args.gpu, args.max_batch)
    samples = args.cold_samples
    params = {
        "command": "gpusched bench autoscale " + " ".join(shlex.quote(a) for a in _argv_tail()),
        "seed": args.seed,
        "gpu": args.gpu,
        "service_model": (f"prefill {svc.prefill_tps:g} tok/s, decode {svc.decode_tps:g} tok/s at batch 1, "
                          f"slowdown {svc.decode_slowdown:g}/request, batch {svc.max_batch}, KV "
                          f"{svc.kv_capacity_tokens:,} tokens"),
        "cold_start_s": ColdStart().table() if not samples else {
            "measured": args.cold_start_csv, "n": len(samples), "min": round(min(samples), 2),
            "median": round(float(sorted(samples)[len(samples) // 2]), 2), "max": round(max(samples), 2)},
        "max_batch": args.max_batch,
        "static_window_s": args.static_window,
        "service_rate_error": args.service_rate_error,
        "slo": {"queue_wait_s": args.queue_wait_slo, "ttft_s": args.ttft_slo, "percentile": DEFAULTS["percentile"]},
        "scrape_s": args.scrape,
        "recent_window_s": SimConfig(scrape_s=args.scrape, recent_window_s=args.recent_window).recent_s,
        "pool_gpus": args.pool_gpus,
        "max_replicas": args.max_replicas,
        "hpa_target": args.hpa_target,
        "queue_target": args.queue_target,
        "ours_spec_overrides": overrides,
        "ours_spec_example": results[0].spec_example if results else {},
        "policies": policies,
        "limit": args.limit,
        "host_warm": bool(args.host_warm),
        "models_split": ({"models": args.models, "block_s": args.model_block, "seed": args.seed,
                          "how": "benchmarks.autoscale.split: blocks to models, Zipf(1)"} if args.models else None),
        "traces": [{"file": tr.file, "name": tr.name, "requests": tr.rows, "models": len(tr.models),
                    "service_rate": {m: round(v, 3) for m, v in tr.models.items()},
                    "concurrency": tr.concurrency} for tr in results],
        "oracle_utilization": {tr.name: tr.oracle_u for tr in results},
        "static_replicas": {tr.name: ",".join(str(v) for v in tr.static.values()) or "-" for tr in results},
        "ours_decide_replica_hours": {tr.name: next((r.extra.get("decide") for r in tr.runs if r.policy == "ours"),
                                                    None) for tr in results},
        "static_prev_window_replicas": {tr.name: tr.static_prev for tr in results if tr.static_prev},
        "lower_bound": {tr.name: {"gpu_hours": round(tr.bound.gpu_hours, 3),
                                  "concurrency_gpu_hours": round(tr.bound.concurrency_h, 3),
                                  "work_gpu_hours": round(tr.bound.work_h, 3),
                                  "burst_gpu_hours": round(tr.bound.burst_h, 3),
                                  "allowance_gpu_hours": round(tr.bound.allowance_h, 3),
                                  "misses_allowed": tr.bound.misses_allowed,
                                  "peak_required_replicas": tr.bound.peak_required,
                                  "binding": tr.bound.binding} for tr in results if tr.bound},
        "runtime_s": runtime,
    }
    paths = report.write(Path(args.out), rows, {tr.name: tr.runs for tr in results}, params)
    print(f"autoscaling on trace replay: {len(results)} trace(s), GPU {args.gpu}, seed {args.seed}, "
          f"queue-wait SLO {args.queue_wait_slo:g} s at {100 * DEFAULTS['percentile']:g}%, TTFT SLO {args.ttft_slo:g} s, "
          f"policies {', '.join(policies)} ({runtime:.0f} s)")
    print(f"  ours' spec: {json.dumps(params['ours_spec_example'])}")
    if args.service_rate_error != 1:
        print(f"  ours is told {args.service_rate_error:g}x each trace's service rate (--service-rate-error); "
              "the rates below are the load test's")
    for tr in results:
        print(f"  {tr.file}: {tr.rows:,} requests, service rate "
              f"{', '.join(f'{v:.3g}' for v in tr.models.values())} req/s per replica, concurrency "
              f"{', '.join(str(v) for v in (tr.concurrency or {}).values())}; oracle u {tr.oracle_u:g}; "
              f"static {params['static_replicas'][tr.name]} replicas; lower bound {tr.bound.gpu_hours:.2f} GPU-h "
              f"({tr.bound.binding} term)")
    print()
    print(report.table(rows, args.queue_wait_slo, args.ttft_slo))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _argv_tail() -> list[str]:
    argv = sys.argv[1:]
    return argv[argv.index("autoscale") + 1:] if "autoscale" in argv else argv
