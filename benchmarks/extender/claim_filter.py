"""What filtering a claim pod (a gpusched pod asking 20Gi of gpu.gpusched.io by ResourceClaim)
costs the extender, against an annotation share of the same size, over N nodes of 8 GPUs,
each GPU holding one allocated 20Gi claim and one 20Gi annotation share. Both calls go
through Extender.filter with every node as a candidate (kube-scheduler's DRA filter would
pass fewer); the median of the runs is printed.

    .venv/bin/python -m benchmarks.extender.claim_filter --nodes 1000
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from benchmarks.extender.claims_rebuild import _uuid, cluster
from scheduler import contract
from scheduler.extender.claim_pods import ClaimPods
from scheduler.extender.live import LiveState
from scheduler.extender.server import Extender


def _slice(n: int) -> dict[str, Any]:
    name = f"node-{n:05d}"
    return {"metadata": {"name": f"{name}-{contract.DRA_DRIVER}"},
            "spec": {"driver": contract.DRA_DRIVER, "nodeName": name, "pool": {"name": name},
                     "devices": [{"name": _uuid(n, i).lower(), "allowMultipleAllocations": True,
                                  "capacity": {"memory": {"value": str(80 * 2**30)}}} for i in range(8)]}}


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()
    nodes, claims, pods = cluster(a.nodes)
    live = LiveState(stale_after_s=10**9)
    live.set_nodes(nodes)
    live.set_pods(pods)
    cps = ClaimPods(live, lambda ns, name: None)
    cps.set_slices([_slice(n) for n in range(a.nodes)])
    ask = {"metadata": {"namespace": "t", "name": "ask"}, "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {
        "deviceClassName": contract.DRA_DRIVER, "capacity": {"requests": {"memory": "20Gi"}}}}]}}}
    cps.set_claims(claims + [ask])
    ext = Extender(live=live, binder=lambda *_: None, get_pod=lambda *_: None, claim_pods=cps)
    names = [n["metadata"]["name"] for n in nodes]
    base = {"metadata": {"namespace": "t", "uid": "u"}, "spec": {"schedulerName": contract.SCHEDULER_NAME,
                                                                  "containers": [{"name": "c"}]}}
    claim_pod = {**base, "metadata": {**base["metadata"], "name": "claim-pod"},
                 "spec": {**base["spec"], "resourceClaims": [{"name": "gpu", "resourceClaimName": "ask"}]}}
    share_pod = {**base, "metadata": {**base["metadata"], "name": "share-pod",
                                      "annotations": {contract.GPU_MEMORY: "20Gi"}}}
    out = {}
    for label, pod in (("claim pod", claim_pod), ("annotation share", share_pod)):
        body = json.dumps({"Pod": pod, "NodeNames": names}).encode()
        answer = json.loads(ext.filter(body))
        ext._inflight.clear()  # no bind follows here: the next call must not wait for one
        out[label] = len(answer.get("NodeNames") or [])

        def call(body: bytes = body) -> None:
            ext.filter(body)
            ext._inflight.clear()
        print(f"{label:17s} filter over {a.nodes} nodes: {_median_ms(call, a.runs):7.2f} ms median "
              f"({out[label]} pass)")


if __name__ == "__main__":
    main()
