"""A day of long, sparse requests in the shape issue 15 described its unseen production
trace by (one day, ~2,500 requests of ~40 s, many models merged into one workload), for
`gpusched bench autoscale --trace FILE --time-column ts --service-column secs`.

Not that trace: a stand-in written from its description, so that the autoscaler's
defaults are checked on a kind of workload the bundled Azure traces (seconds-long
requests, one hour) do not have. The recipe, fixed for every seed:

- arrivals per minute: Poisson of 70% of the requests spread by a diurnal rate
  1 + 0.7 sin(2 pi (t - 8 h) / 24 h), plus bursts: each minute with probability 2%
  gets a Poisson share of the other 30%; uniform within the minute;
- service time alone: lognormal with the given mean and sigma 0.6 (median 0.84 x mean).

    python -m benchmarks.autoscale.synthetic --seed 1 --requests 2475 --mean-service 40 --out day.csv

``--rates`` writes the other kind of check instead: Poisson arrivals at each rate in turn
for ``--phase-hours`` each (one rate: steady; 1,6: a step up that stays), every request
taking the prompt and output tokens of a row drawn from ``--tokens-from`` (a trace the
bench reads, e.g. azure-conv), so the mix is a real one and only the arrivals are made:

    python -m benchmarks.autoscale.synthetic --rates 1,6 --tokens-from conv.csv --out step.csv
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

DAY_S = 86_400.0
BURST_MINUTES = 0.02  # share of minutes that get a burst
BURST_SHARE = 0.3  # share of the requests that come in bursts
SIGMA = 0.6


def day_of_requests(seed: int, requests: int, mean_service_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(arrival seconds, sorted; service seconds alone), about ``requests`` of them."""
    if requests < 1:
        raise ValueError(f"requests must be at least 1, got {requests}")
    if not (math.isfinite(mean_service_s) and mean_service_s > 0):
        raise ValueError(f"mean service must be a finite number of seconds > 0, got {mean_service_s}")
    rng = np.random.default_rng(seed)
    minute = np.arange(0.0, DAY_S, 60.0)
    rate = 1 + 0.7 * np.sin(2 * np.pi * (minute - 8 * 3600) / DAY_S)
    counts = rng.poisson(rate / rate.sum() * requests * (1 - BURST_SHARE))
    burst = rng.random(len(minute)) < BURST_MINUTES
    counts = counts + burst * rng.poisson(requests * BURST_SHARE / max(1, int(burst.sum())), len(minute))
    arrivals = np.sort(np.concatenate([m + rng.random(c) * 60.0 for m, c in zip(minute, counts)]))
    service = rng.lognormal(math.log(mean_service_s) - SIGMA ** 2 / 2, SIGMA, len(arrivals))
    return arrivals, service


def poisson_phases(seed: int, rates: list[float], phase_s: float) -> np.ndarray:
    """Arrival seconds: a Poisson process at rates[i] req/s over [i phase_s, (i+1) phase_s)."""
    if not rates or any(not (math.isfinite(r) and r > 0) for r in rates):
        raise ValueError(f"rates must be finite numbers > 0 req/s, got {rates}")
    if not (math.isfinite(phase_s) and phase_s > 0):
        raise ValueError(f"phase length must be > 0 s, got {phase_s}")
    rng = np.random.default_rng(seed)
    out = []
    for i, r in enumerate(rates):
        n = rng.poisson(r * phase_s)
        out.append(i * phase_s + np.sort(rng.random(n)) * phase_s)
    return np.concatenate(out)


def write_tokens_csv(path: Path, arrivals: np.ndarray, tokens_from: str, seed: int) -> None:
    """One row per arrival with the tokens of a row drawn (seeded) from ``tokens_from``."""
    from benchmarks.fleet.model import read_trace

    rows = read_trace(tokens_from)  # token columns, found by name: a service-time trace is refused there
    pick = np.random.default_rng([seed, 1]).integers(len(rows), size=len(arrivals))
    with open(path, "w") as f:
        f.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for a, i in zip(arrivals, pick):
            f.write(f"{a:.3f},{rows[i].prompt_tokens},{rows[i].output_tokens}\n")


def write_csv(path: Path, arrivals: np.ndarray, service: np.ndarray) -> None:
    with open(path, "w") as f:
        f.write("ts,secs\n")
        for a, s in zip(arrivals, service):
            f.write(f"{a:.3f},{s:.2f}\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.autoscale.synthetic",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--requests", type=int, default=2475, help="about this many requests in the day (default 2475)")
    p.add_argument("--mean-service", type=float, default=40.0, metavar="S",
                   help="mean seconds one request takes alone (default 40)")
    p.add_argument("--rates", metavar="R[,R...]",
                   help="Poisson phases instead of the day: req/s of each phase, in order (needs --tokens-from)")
    p.add_argument("--phase-hours", type=float, default=1.0, help="length of each --rates phase (default 1)")
    p.add_argument("--tokens-from", metavar="CSV", help="a token-count trace whose rows the --rates requests copy")
    p.add_argument("--out", required=True, help="CSV to write (ts, secs; with --rates TIMESTAMP, ContextTokens, "
                                                "GeneratedTokens)")
    args = p.parse_args(argv)
    try:
        if args.rates is not None:
            if not args.tokens_from:
                raise ValueError("--rates needs --tokens-from: the trace whose token mix the requests take")
            try:
                rates = [float(x) for x in args.rates.split(",")]
            except ValueError:
                raise ValueError(f"--rates: {args.rates[:40]!r} is not a comma-separated list of req/s") from None
            arrivals = poisson_phases(args.seed, rates, args.phase_hours * 3600.0)
            write_tokens_csv(Path(args.out), arrivals, args.tokens_from, args.seed)
            print(f"wrote {args.out}: {len(arrivals):,} requests at {args.rates} req/s, tokens from {args.tokens_from}")
            return 0
        arrivals, service = day_of_requests(args.seed, args.requests, args.mean_service)
    except (ValueError, OSError) as exc:
        print(f"synthetic: error: {exc}", file=sys.stderr)
        return 2
    write_csv(Path(args.out), arrivals, service)
    print(f"wrote {args.out}: {len(arrivals):,} requests, mean service {service.mean():.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
