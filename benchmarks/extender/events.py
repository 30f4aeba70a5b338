"""What applying the cluster's changes to the extender's snapshot costs, in process.

The realistic latency bench (latency.py) churns one node report and one bound pod every
50 ms; while a watch thread applies one, it holds the GIL and a filter that arrives waits.
Here the same events are applied one after another on the same synthetic cluster and each
is timed by its thread's CPU (a loaded machine's waiting for a core is left out): node
report, pod deleted, pod added, then what the refresher has left to do after them (a full
rebuild where the events left the snapshot dirty).

    python -m benchmarks.extender.events --nodes 5000 --events 300
"""
from __future__ import annotations

import argparse
import gc
import random
import time

import numpy as np

from benchmarks.extender import latency as bench
from scheduler.extender.live import LiveState


def measure(n: int, events: int, seed: int = 1) -> dict[str, list[float]]:
    """CPU seconds of each event by kind, and of the refresher's catch-up after them."""
    specs, pods = bench._cluster(n, seed)
    live = LiveState(stale_after_s=86400)
    live.set_nodes([bench.node_body(s) for s in specs])
    live.set_pods(pods)
    gc.collect()
    gc.freeze()  # as the daemon does once synced
    rng = random.Random(seed)
    spent: dict[str, list[float]] = {"node report": [], "pod deleted": [], "pod added": [], "refresher": []}

    def timed(kind: str, apply, *args) -> None:  # noqa: ANN001 - a bound method
        t = time.thread_time()
        apply(*args)
        spent[kind].append(time.thread_time() - t)

    for k in range(events):
        spec = specs[rng.randrange(len(specs))]
        bench._recache(spec, rng)
        timed("node report", live.on_node, "MODIFIED", bench.node_body(spec))
        timed("pod deleted", live.on_pod, "DELETED", pods.pop(rng.randrange(len(pods))))
        pods.append(bench.bound_pod(f"churn-{k}", specs[rng.randrange(len(specs))].name, rng.randrange(8), "20Gi"))
        timed("pod added", live.on_pod, "ADDED", pods[-1])
        if k % 4 == 3:  # the refresher's tick (200 ms) after four 50 ms churn ticks
            timed("refresher", lambda: live.rebuild() if live._dirty else None)
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, nargs="+", default=[5000])
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print("| nodes | event | CPU p50 ms | CPU p99 ms | calls |\n|---:|---|---:|---:|---:|")
    for n in args.nodes:
        for kind, values in measure(n, args.events, args.seed).items():
            a = np.array(values) * 1000
            print(f"| {n:,} | {kind} | {np.percentile(a, 50):.3f} | {np.percentile(a, 99):.3f} | {len(a)} |")


if __name__ == "__main__":
    main()
