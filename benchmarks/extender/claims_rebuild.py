"""What counting DRA claims costs the extender's live state: a full snapshot rebuild with
no GPU holders, with N x 8 ResourceClaims (20Gi of each GPU), and for comparison with
N x 8 annotation share pods; and one claim event that changes an allocation. Rebuilds run
off the hot path (the refresher thread), but hold the state's lock and the GIL.

    .venv/bin/python -m benchmarks.extender.claims_rebuild --nodes 1000
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone
from typing import Any

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import H100_MIB, NodeSpec
from scheduler import contract
from scheduler.extender.live import LiveState
from scheduler.nodeinfo import GPU, NodeReport, annotations_for


def _uuid(n: int, i: int) -> str:
    return f"GPU-{n:08x}-0000-0000-0000-{i:012x}"


def cluster(nodes: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    at = datetime.now(timezone.utc)
    node_objs, claims, pods = [], [], []
    for n in range(nodes):
        name = f"node-{n:05d}"
        body = node_body(NodeSpec(name, 8, "NVIDIA-H100-80GB-HBM3", H100_MIB), now=at)
        report = NodeReport(gpus=tuple(GPU(i, _uuid(n, i), 80 * 2**30, 0) for i in range(8)), reported_at=at)
        body["metadata"]["annotations"].update(annotations_for(report))
        node_objs.append(body)
        for i in range(8):
            claims.append({"metadata": {"namespace": "t", "name": f"c{n}-{i}"}, "status": {"allocation": {
                "devices": {"results": [{"request": "gpu", "driver": contract.DRA_DRIVER, "pool": name,
                                         "device": _uuid(n, i).lower(), "consumedCapacity": {"memory": "20Gi"}}]},
                "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [name]}]}]}}}})
            pods.append({"metadata": {"namespace": "t", "name": f"p{n}-{i}", "annotations": {
                contract.GPU_MEMORY: "20Gi", contract.GPU_IDS: str(i),
                contract.PLACEMENT: json.dumps({"node": name, "gpus": [i]})}},
                "spec": {"nodeName": name, "schedulerName": "gpusched", "containers": [{"name": "c"}]},
                "status": {"phase": "Running"}})
    return node_objs, claims, pods


def rebuild_ms(live: LiveState, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        live.rebuild()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    args = ap.parse_args()
    nodes, claims, pods = cluster(args.nodes)
    rows = []
    for label, load in (("no GPU holders", None), (f"{len(claims)} claims", "claims"),
                        (f"{len(pods)} annotation pods", "pods")):
        live = LiveState(stale_after_s=1e9)
        live.set_nodes(nodes)
        if load == "claims":
            live.set_claims(claims)
        elif load == "pods":
            live.set_pods(pods)
        rows.append((label, rebuild_ms(live)))
    live = LiveState(stale_after_s=1e9)
    live.set_nodes(nodes)
    live.set_claims(claims)
    events = []
    for c in claims[:500]:
        [r] = c["status"]["allocation"]["devices"]["results"]
        events.append({**c, "status": {"allocation": {**c["status"]["allocation"],
                                                      "devices": {"results": [{**r, "consumedCapacity":
                                                                               {"memory": "30Gi"}}]}}}})
    t = time.perf_counter()
    for e in events:
        live.on_claim("MODIFIED", e)
    per_event_us = (time.perf_counter() - t) / len(events) * 1e6
    print(f"{args.nodes} nodes x 8 GPUs")
    for label, ms in rows:
        print(f"  full rebuild, {label:<22} {ms:7.1f} ms (median of 7)")
    print(f"  claim event changing an allocation  {per_event_us:7.0f} us (mean of {len(events)})")


if __name__ == "__main__":
    main()
