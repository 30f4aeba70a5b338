"""The demo behind `./dev demo`: real pods placed and scaled on the local test bed.

Every step prints what gpusched decided and why (the pod's `gpusched.io/placement`
annotation, or the FailedScheduling event that kube-scheduler shows for it). Shares are
ResourceClaims of DeviceClass gpu.gpusched.io, the chart's default (extender.annotationShares
`auto`: annotation shares are refused where the DRA plugin runs): each kwok node's GPUs are
published as the DRA plugin publishes them, and kube-scheduler's allocator picks a share's GPU.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from benchmarks.testbed import dra
from benchmarks.testbed.cli import wait_nodes_ready
from benchmarks.testbed.cluster import LocalCluster
from benchmarks.testbed.nodes import create_nodes
from benchmarks.testbed.profiles import small
from benchmarks.testbed.stack import GpuschedScheduler
from scheduler import contract
from scheduler.claim_template import REQUEST, claim_template
from scheduler.core.claims import allocations_on, claim_held
from scheduler.core.objects import node_state_of
from scheduler.core.snapshot import NodeState
from scheduler.kube.client import raw
from scheduler.quantity import format_bytes

NS = "demo"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen2.5-7B-Instruct"


def deployment(name: str, replicas: int, *, gpus: int = 0, claim: str | None = None, model: str,
               ready_delay: str = "2s") -> dict[str, Any]:
    """`gpus` whole GPUs by nvidia.com/gpu, or a share by the ResourceClaimTemplate `claim`."""
    annotations = {contract.MODEL: model, contract.READY_DELAY: ready_delay}
    resources: dict[str, Any] = {"limits": {contract.GPU_RESOURCE: str(gpus)}} if gpus else {}
    claims = [{"name": REQUEST, "resourceClaimTemplateName": claim}] if claim else []
    if claim:
        resources["claims"] = [{"name": REQUEST}]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"schedulerName": contract.SCHEDULER_NAME, "terminationGracePeriodSeconds": 0,
                         **({"resourceClaims": claims} if claims else {}),
                         "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.9.0",
                                         "args": ["--model", model], "resources": resources}]},
            },
        },
    }


def wait_for(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = fn()
        if out:
            return out
        time.sleep(0.3)
    raise RuntimeError(f"demo: timed out waiting for {what}")


def claim_shares(core: client.CoreV1Api, ns: str) -> dict[str, list[tuple[int | str, str, int | None]]]:
    """pod UID -> (GPU index, claim name, bytes held or None for a whole GPU) for each
    gpu.gpusched.io device allocated to a claim the pod owns (made from its template) or is
    reserved for: the allocation is the record, resolved by the extender's own code
    (scheduler.core.claims: claim_held, then allocations_on against the node's report). A
    device it cannot resolve shows as its problem instead of an index."""
    code, body = raw(core.api_client, "GET", f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims")
    states: dict[str, NodeState] = {}
    out: dict[str, list[tuple[int | str, str, int | None]]] = {}
    for c in (body or {}).get("items", []) if code == 200 else []:
        uids = {o.get("uid") for o in c["metadata"].get("ownerReferences") or [] if o.get("kind") == "Pod"}
        uids |= {r.get("uid") for r in (c.get("status") or {}).get("reservedFor") or [] if r.get("resource") == "pods"}
        held, problems = claim_held(c)
        found: list[tuple[int | str, str, int | None]] = [(p, c["metadata"]["name"], None) for p in problems]
        if held is not None:
            if held.node not in states:
                states[held.node] = node_state_of(core.api_client.sanitize_for_serialization(core.read_node(held.node)))
            allocs, problems = allocations_on(held, states[held.node])
            found += [(a.gpu_ids[0], c["metadata"]["name"], None if a.whole else a.memory_per_gpu) for a in allocs]
            found += [(p, c["metadata"]["name"], None) for p in problems]
        for uid in uids:
            out.setdefault(uid, []).extend(found)
    return out


def describe(core: client.CoreV1Api, app: str, ns: str = NS) -> list[str]:
    """One line per pod: where it went, on which GPUs and why, or why it is Pending. A bound
    GPU pod always has GPU ids: the extender is not ignorable, so nothing binds it but the
    extender's own bind, which assigns GPUs even when kube-scheduler skipped prioritize
    because one node was left ("only feasible node (not scored)"). A claim share's GPU is
    the one kube-scheduler's allocator wrote into its claim."""
    lines = []
    claims = None
    for p in sorted(core.list_namespaced_pod(ns, label_selector=f"app={app}").items, key=lambda p: p.metadata.name):
        ann = p.metadata.annotations or {}
        if p.spec.node_name and p.spec.resource_claims:
            claims = claim_shares(core, ns) if claims is None else claims
            held = claims.get(p.metadata.uid, [])
            ids = ",".join(str(g) for g, _, _ in held) or "?"
            what = "; ".join(f"{format_bytes(b) if b else 'whole'} of GPU {g} in claim {n}" for g, n, b in held)
            lines.append(f"    {p.metadata.name:30s} -> {p.spec.node_name} GPU {ids:3s} "
                         f"{what or 'no allocated claim'} (node: gpusched; GPU: kube-scheduler's allocator)")
        elif p.spec.node_name:
            placement = json.loads(ann.get(contract.PLACEMENT, "{}"))
            sc = placement.get("score") or {}
            why = (f"score {sc.get('score')}/10 (packing {sc.get('packing')}, fragmentation {sc.get('fragmentation')}, "
                   f"locality {sc.get('locality')}: {sc.get('loadSecondsAvoided')}s of load avoided)") if sc else \
                "only feasible node (not scored)"
            lines.append(f"    {p.metadata.name:30s} -> {p.spec.node_name} GPU {ann.get(contract.GPU_IDS, '?'):3s} {why}")
        else:
            evs = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={p.metadata.name}").items
            why = next((e.message for e in reversed(evs) if e.reason == "FailedScheduling"), "pending")
            lines.append(f"    {p.metadata.name:34s} -> Pending: {why[:150]}")
    return lines


def template(core: client.CoreV1Api, name: str, memory: str) -> None:
    """The share's ResourceClaimTemplate, from the builder behind `gpusched claim-template`."""
    raw(core.api_client, "POST", f"/apis/resource.k8s.io/v1/namespaces/{NS}/resourceclaimtemplates",
        claim_template(memory=memory, name=name, namespace=NS))


def packing(core: client.CoreV1Api, app: str) -> str:
    """What the claims' allocations show: which GPUs hold the app's shares, and how many each."""
    pods = {p.metadata.uid: p.spec.node_name for p in core.list_namespaced_pod(NS, label_selector=f"app={app}").items}
    per_gpu: dict[tuple[str, int | str], int] = {}
    for uid, held in claim_shares(core, NS).items():
        for gpu, _, _ in held:
            if uid in pods:
                per_gpu[(pods[uid], gpu)] = per_gpu.get((pods[uid], gpu), 0) + 1
    shown = ", ".join(f"{n} on {node} GPU {gpu}" for (node, gpu), n in sorted(per_gpu.items(), key=str))
    two = any(n >= 2 for n in per_gpu.values())
    return (f"in the claims' allocations: {shown}: " +
            ("two shares packed on one GPU" if two else "the allocator spread them, one per GPU"))


def ready(core: client.CoreV1Api, app: str) -> int:
    return sum(1 for p in core.list_namespaced_pod(NS, label_selector=f"app={app}").items
               if any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or [])))


def placed(core: client.CoreV1Api, app: str, n: int):
    pods = core.list_namespaced_pod(NS, label_selector=f"app={app}").items
    return len([p for p in pods if p.spec.node_name]) >= n and pods


def show(unresolved: list[str], lines: list[str]) -> None:
    """Print a step's pod lines; a bound pod whose GPUs are unknown ("GPU ?") is kept to fail the demo."""
    print("\n".join(lines))
    unresolved += [line.strip() for line in lines if " GPU ? " in line]


def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    unresolved: list[str] = []
    cluster = LocalCluster(Path(args.state))
    cluster.down()  # a previous demo left running is replaced, not joined
    specs = small(4)
    specs[2].cached_models[LLAMA] = (16 * 2**30, "disk")
    try:
        cluster.up()
        core = client.CoreV1Api(cluster.api_client())
        apps = client.AppsV1Api(cluster.api_client())
        create_nodes(core, specs)
        wait_nodes_ready(core, len(specs), 60)
        dra.publish(cluster.api_client(), specs)  # what each node's DRA plugin would publish
        stack = GpuschedScheduler(cluster)
        stack.start()
        print(f"gpusched demo: Kubernetes {cluster.state.kubernetes_version} on 127.0.0.1, 4 kwok nodes x 8 "
              f"H100 80GB, extender + gpusched kube-scheduler up in {time.monotonic() - started:.0f}s")
        print(f"  {specs[2].name} has {LLAMA} (16Gi) in its model cache")
        core.create_namespace({"metadata": {"name": NS}})

        print(f"\n1. One replica of {LLAMA} (1 whole GPU): locality sends it where the weights are")
        apps.create_namespaced_deployment(NS, deployment("llama", 1, gpus=1, model=LLAMA))
        wait_for(lambda: placed(core, "llama", 1), 60, "llama placed")
        show(unresolved, describe(core, "llama"))

        print(f"\n2. Three 38Gi shares of {QWEN}, each a ResourceClaim (`gpusched claim-template --memory 38Gi`):")
        print("   gpusched picks the node (packing: 2 x 38 = 76 GiB <= 79.2 GiB usable), the allocator the GPU")
        template(core, "qwen-38gi", "38Gi")
        apps.create_namespaced_deployment(NS, deployment("qwen", 3, claim="qwen-38gi", model=QWEN))
        wait_for(lambda: placed(core, "qwen", 3), 60, "qwen placed")
        show(unresolved, describe(core, "qwen"))
        print(f"    {packing(core, 'qwen')}")

        print("\n3. A 100Gi share fits no 80 GB GPU: it stays Pending with the allocator's reason")
        template(core, "too-big-100gi", "100Gi")
        apps.create_namespaced_deployment(NS, deployment("too-big", 1, claim="too-big-100gi", model=QWEN))
        wait_for(lambda: [e for e in core.list_namespaced_event(NS).items
                          if e.reason == "FailedScheduling" and "too-big" in e.involved_object.name], 60,
                 "FailedScheduling event")
        show(unresolved, describe(core, "too-big"))

        print(f"\n4. Scale {LLAMA} to 10 replicas of 1 GPU")
        apps.patch_namespaced_deployment_scale("llama", NS, {"spec": {"replicas": 10}})
        t0 = time.monotonic()
        wait_for(lambda: placed(core, "llama", 10), 120, "10 llama replicas placed")
        t_placed = time.monotonic() - t0
        wait_for(lambda: ready(core, "llama") >= 10, 120, "10 llama replicas Ready")
        show(unresolved, describe(core, "llama"))
        print(f"    placed in {t_placed:.1f}s, all Ready in {time.monotonic() - t0:.1f}s (each pod models a 2s load)")
        print("    the cached node fills first (locality), then the rest pack node by node; none goes where the")
        print("    Qwen claims are: the device plugin handing out nvidia.com/gpu does not see claims")

        print(f"\n5. Scale {LLAMA} back to 2: GPUs are released and counted free at once")
        apps.patch_namespaced_deployment_scale("llama", NS, {"spec": {"replicas": 2}})
        wait_for(lambda: len(core.list_namespaced_pod(NS, label_selector="app=llama").items) == 2, 60,
                 "scale-down")
        show(unresolved, describe(core, "llama"))

        print("\n6. Autoscaling with a warm replica: a burst promotes the loaded-but-idle pod, no cold start")
        from benchmarks.demo import autoscale as demo_autoscale
        demo_autoscale.run(cluster, NS, LLAMA)
        skipped = [f.name for f in sorted((cluster.dir / "logs").glob("*scheduler*"))
                   if f.is_file() and "Skipping extender" in f.read_text(errors="replace")]
        if skipped:  # kube-scheduler bound a pod behind the extender's back (issue 13)
            print(f"\ndemo: 'Skipping extender' in {', '.join(skipped)}")
            return 1
        if unresolved:
            print(f"\ndemo: {len(unresolved)} bound pod line(s) without GPU ids, e.g. {unresolved[0]}")
            return 1
        print(f"\ndemo done in {time.monotonic() - started:.0f}s, no bind behind the extender's back "
              f"(no 'Skipping extender' in kube-scheduler's logs). Logs: {cluster.dir / 'logs'}")
        if args.keep:
            print(f"cluster left running: export KUBECONFIG={cluster.kubeconfig}; "
                  f"stop with gpusched cluster down --state {args.state}")
    finally:
        if not args.keep:
            cluster.down()
    return 0
