"""`gpusched bench autoscale`: argument parsing and the run; imports the simulator lazily."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks.traces import azure_dir

AZURE = ("AzureLLMInferenceTrace_code.csv", "AzureLLMInferenceTrace_conv.csv")
POLICIES = ("ours", "ours-no-warm", "ours-no-forecast", "ours-no-queueing", "ours-no-panic", "ours-no-prewarm",
            "ours-batch-slots", "hpa-util", "keda-queue", "static", "oracle")

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
}


class InputError(Exception):
    """Bad input: printed as one line, exit code 2."""


def add_parser(benches: argparse._SubParsersAction) -> None:
    p = benches.add_parser(
        "autoscale", help="replay LLM request traces through autoscaled replicas: SLO attainment vs GPU-hours",
        description="Replays request traces (default: the two Azure LLM inference traces, 2023) through replicas "
                    "modelled with prefill/decode throughput per GPU type, continuous batching and a KV cache "
                    "(benchmarks.fleet.model), cold starts by where the weights come from (GPU, host memory, "
                    "disk, remote store) and a warm pool, under each policy in one run: ours (the daemon's "
                    "autoscaler.policy.decide and warm-pool planning byte for byte), ours with each feature "
                    "switched off in turn, HPA on GPU utilisation, KEDA on queue depth, static peak provisioning "
                    "and an oracle that knows the arrivals. A trace with a model column becomes one autoscaled "
                    "workload per model on one GPU pool. Writes autoscale.json, autoscale.md and PNG plots to "
                    "--out and prints the table.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  gpusched bench autoscale --out results/autoscale\n"
               "  gpusched bench autoscale --trace my.csv --time-column ts --model-column model "
               "--service-column secs --out /tmp/a\n"
               "  gpusched bench autoscale --ours-spec '{\"slo\": {\"targetUtilization\": 0.9}}' --out /tmp/b")
    p.add_argument("--trace", action="append", metavar="FILE",
                   help="a CSV request trace; repeat for several (default: both Azure LLM traces in "
                        "benchmarks/data/traces/azure-llm-2023, or $GPUSCHED_TRACES/azure-llm-2023)")
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
    p.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES), metavar="NAME",
                   help=f"policies to run (default all: {' '.join(POLICIES)})")
    p.add_argument("--limit", type=int, metavar="N", help="replay only the first N rows of each trace")
    p.add_argument("--seed", type=int, default=1, help="seed of the service-rate load test sample (default 1)")
    p.add_argument("--out", default="results/autoscale", help="results directory (default results/autoscale)")
    p.set_defaults(func=run)


def default_traces() -> list[Path]:
    return [azure_dir() / n for n in AZURE]


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


def run_trace(path: str, args: argparse.Namespace, policies: Sequence[str], overrides: dict,
              progress: Callable[[float], None] | None = None,
              add_total: Callable[[float], None] | None = None) -> TraceRun:
    """Every policy over one trace file."""
    import numpy as np

    from autoscaler.spec import SpecError, parse_spec
    from benchmarks.autoscale import policies as pol
    from benchmarks.autoscale.service import ColdStart, calibrate_service_rate, replicas_needed, service_model
    from benchmarks.autoscale.sim import SimConfig, WorkloadInput, simulate
    from benchmarks.fleet.model import TraceError, read_trace

    try:
        rows = read_trace(path, time_column=args.time_column, prompt_column=args.prompt_column,
                          output_column=args.output_column, model_column=args.model_column,
                          service_column=args.service_column, limit=args.limit)
    except TraceError as exc:
        raise InputError(str(exc)) from None
    name = Path(path).stem.replace("AzureLLMInferenceTrace_", "azure-")
    service = service_model(args.gpu)
    cold = ColdStart()
    cfg = SimConfig(cold=cold, scrape_s=args.scrape, pool_gpus=args.pool_gpus)
    by_model: dict[str, list] = {}
    for r in rows:
        by_model.setdefault(r.model or name, []).append(r)
    inputs = []
    for m, rs in by_model.items():
        inputs.append(WorkloadInput(m, rs, service, calibrate_service_rate(rs, service, seed=args.seed)))
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

    # static: per model, the fewest replicas held all along that meet the SLO
    static: dict[str, int] = {}
    if "static" in policies:
        for i in inputs:
            peak = int(pol.oracle_need(arrivals[i.model], i.mu, oracle_u, end).max())
            lo_n, hi_n = 1, max(1, peak)
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
            static[i.model] = hi_n

    def spec_for(i, extra):
        # the user's overrides first, then the ablation's switch (which may remove a field)
        if extra.get("concurrencyPerReplica") == pol.SERVER_BATCH:
            extra = dict(extra, concurrencyPerReplica=service.max_batch)
        return pol.merge_spec(pol.ours_spec(i.model, max_replicas=args.max_replicas, mu=i.mu,
                                            cold_start_s=cold.seconds("remote"), queue_wait_s=args.queue_wait_slo,
                                            queue_target=args.queue_target, overrides=overrides), extra)

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
            runs.append(sim(lambda i, p=p, prewarm=prewarm: pol.Ours(p, specs[i.model], prewarm, initial[i.model]), p))
        elif p == "hpa-util":
            runs.append(sim(lambda i: pol.Hpa(p, args.hpa_target, 1, args.max_replicas, initial[i.model]), p))
        elif p == "keda-queue":
            runs.append(sim(lambda i: pol.Keda(p, args.queue_target, 1, args.max_replicas, initial[i.model]), p))
        elif p == "static":
            runs.append(sim(lambda i: pol.Static("static", static[i.model]), p))
        elif p == "oracle":
            runs.append(oracle_res)
    return TraceRun(name=name, file=str(path), rows=len(rows), models={i.model: i.mu for i in inputs}, runs=runs,
                    oracle_u=oracle_u, static=static, spec_example=spec_for(inputs[0], {}))


def _run(args: argparse.Namespace) -> int:
    from benchmarks.autoscale import policies as pol
    from benchmarks.autoscale import report
    from benchmarks.autoscale.service import ColdStart, service_model
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
    overrides = _load_overrides(args.ours_spec)
    traces = args.trace or [str(p) for p in default_traces()]
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
                  "static": "static peak provisioning", "oracle": "knows the arrivals ahead"})
    rows = []
    for tr in results:
        rows += report.rows_of(tr.name, tr.runs, whats, args.queue_wait_slo, args.ttft_slo)
    svc = service_model(args.gpu)
    params = {
        "command": "gpusched bench autoscale " + " ".join(shlex.quote(a) for a in _argv_tail()),
        "seed": args.seed,
        "gpu": args.gpu,
        "service_model": (f"prefill {svc.prefill_tps:g} tok/s, decode {svc.decode_tps:g} tok/s at batch 1, "
                          f"slowdown {svc.decode_slowdown:g}/request, batch {svc.max_batch}, KV "
                          f"{svc.kv_capacity_tokens:,} tokens"),
        "cold_start_s": ColdStart().table(),
        "slo": {"queue_wait_s": args.queue_wait_slo, "ttft_s": args.ttft_slo, "percentile": DEFAULTS["percentile"]},
        "scrape_s": args.scrape,
        "pool_gpus": args.pool_gpus,
        "max_replicas": args.max_replicas,
        "hpa_target": args.hpa_target,
        "queue_target": args.queue_target,
        "ours_spec_overrides": overrides,
        "ours_spec_example": results[0].spec_example if results else {},
        "policies": policies,
        "limit": args.limit,
        "traces": [{"file": tr.file, "name": tr.name, "requests": tr.rows, "models": len(tr.models),
                    "service_rate": {m: round(v, 3) for m, v in tr.models.items()}} for tr in results],
        "oracle_utilization": {tr.name: tr.oracle_u for tr in results},
        "static_replicas": {tr.name: ",".join(str(v) for v in tr.static.values()) or "-" for tr in results},
        "runtime_s": runtime,
    }
    paths = report.write(Path(args.out), rows, {tr.name: tr.runs for tr in results}, params)
    print(f"autoscaling on trace replay: {len(results)} trace(s), GPU {args.gpu}, seed {args.seed}, "
          f"queue-wait SLO {args.queue_wait_slo:g} s at {100 * DEFAULTS['percentile']:g}%, TTFT SLO {args.ttft_slo:g} s, "
          f"policies {', '.join(policies)} ({runtime:.0f} s)")
    print(f"  ours' spec: {json.dumps(params['ours_spec_example'])}")
    for tr in results:
        print(f"  {tr.file}: {tr.rows:,} requests, service rate "
              f"{', '.join(f'{v:.3g}' for v in tr.models.values())} req/s per replica; oracle u {tr.oracle_u:g}; "
              f"static {params['static_replicas'][tr.name]} replicas")
    print()
    print(report.table(rows, args.queue_wait_slo, args.ttft_slo))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _argv_tail() -> list[str]:
    argv = sys.argv[1:]
    return argv[argv.index("autoscale") + 1:] if "autoscale" in argv else argv
