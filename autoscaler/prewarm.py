"""Cache pre-warming: when the forecast says more replicas will be needed, ask the node
agents on the nodes where those replicas would land to prefetch the model, so the
replicas start from a local copy instead of the remote store.

Where they would land is decided the way the extender decides it, with the same pure
core (scheduler.core): a snapshot of the Nodes (scheduler.extender.live's reading of
them, of the pods bound to them and of the ResourceClaims kube-scheduler's allocator gave GPU
memory of gpu.gpusched.io), the target's pod template as the request, then
for each future replica in turn: filter, prioritize, take the best node (ties by
name), count the replica there (best-fit GPUs, as at bind) and go on. The nodes so
chosen that neither cache the model nor were already asked to prefetch it are the
ones asked. (kube-scheduler adds its own plugins' scores, so this is the extender's
view of the placement, not a promise.)

The request is the node agent's (scheduler/agent/prefetch.py): the Node annotation
``gpusched.io/prefetch``, a JSON list of {"model": ID}; entries already there are kept.

``choose`` is pure; ``Prewarmer`` is the thin adapter (one list each of Nodes, bound pods
and ResourceClaims per pre-warm, one PATCH per node asked), rate-limited to one pre-warm per
model per cold-start horizon (a prefetch takes about that long; asking again sooner
would only see the same picture).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from scheduler import contract
from scheduler.core.claim_fit import claim_demand, pod_claims
from scheduler.core.objects import snapshot_of
from scheduler.core import (Allocation, ClusterSnapshot, PodRequest, RequestError, Shape, Weights, assign_gpus,
                            filter_rows, parse_pod, score_rows, workload_shapes)

from . import kube

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 30.0  # never more often than this per model, whatever coldStartSeconds says


@dataclass(frozen=True)
class Placement:
    node: str
    score: int
    cached: bool  # the node's cache already holds the model (or was asked to fetch it)


@dataclass(frozen=True)
class Choice:
    nodes: tuple[str, ...]  # to ask for a prefetch, in placement order
    placements: tuple[Placement, ...]  # where each future replica would land
    reason: str


def cached_nodes(snapshot: ClusterSnapshot, model: str) -> set[str]:
    cache = snapshot.model_cache.get(model)
    if cache is None:
        return set()
    return {snapshot.names[int(i)] for i in cache.node_idx}


def choose(snapshot: ClusterSnapshot, req: PodRequest, replicas: int, *, requested: Iterable[str] = (),
           weights: Weights | None = None, shapes: Sequence[Shape] | None = None) -> Choice:
    """Where ``replicas`` more pods like ``req`` would be placed, one after the other,
    and which of those nodes lack the model. ``requested``: nodes already asked to
    prefetch it (treated as cached). ``shapes``: the workload the fragmentation score
    weighs; by default learnt from the snapshot's pods (workload_shapes). The extender
    also counts the whole-GPU pods pending for gpusched, which the autoscaler does not
    watch: a plan made while many wait may weigh their shapes less than the bind will."""
    if replicas <= 0:
        return Choice((), (), "no replicas to pre-warm for")
    if not req.model:
        return Choice((), (), f"the pod template names no model ({contract.MODEL})")
    if not req.gpu_pod:
        return Choice((), (), "the pod template asks for no GPU")
    have = cached_nodes(snapshot, req.model) | set(requested)
    snap = snapshot
    shapes = workload_shapes(snapshot) if shapes is None else shapes
    placements: list[Placement] = []
    why_stop = ""
    for i in range(replicas):
        ok, why = filter_rows(snap, req, np.arange(len(snap)))
        # kube-scheduler's NodeResourcesFit, which the extender leaves to it: a replica
        # planned where its CPU or memory does not fit would never land there
        hosted = ok & (snap.cpu_free >= req.cpu_milli) & (snap.ram_free >= req.ram)
        if ok.any() and not hosted.any():
            why = [f"{snap.names[int(np.flatnonzero(ok)[0])]}: not enough free CPU or memory", *why]
        ok = hosted
        if not ok.any():
            why_stop = f"; no room for replica {i + 1} of {replicas}" + (f" (e.g. {why[0]})" if why else "")
            break
        feasible = np.flatnonzero(ok)
        scores = score_rows(snap, req, feasible, weights, shapes).score.tolist()
        node, score = min(zip((snap.names[r] for r in feasible.tolist()), scores), key=lambda ns: (-ns[1], ns[0]))
        a = assign_gpus(snap, node, req)
        if a.gpu_ids is None:  # filter said it fits; never expected
            why_stop = f"; {a.reason}"
            break
        snap = snap.with_allocation(node, Allocation(
            pod_key=f"gpusched-prewarm/{i}", gpu_ids=a.gpu_ids, memory_per_gpu=a.memory_per_gpu,
            whole=req.whole_gpus > 0, count=max(req.whole_gpus, 1)))
        if req.cpu_milli or req.ram:  # the next replica sees the CPU and memory this one took: the
            row = snap.index[node]  # fragmentation score counts what is free of both
            snap = snap.with_requested({node: (int(snap.cpu_requested[row]) + req.cpu_milli,
                                               int(snap.ram_requested[row]) + req.ram)})
        placements.append(Placement(node, int(score), node in have))
    nodes: list[str] = []
    for p in placements:
        if not p.cached and p.node not in nodes:
            nodes.append(p.node)
    where = ", ".join(f"{p.node}({p.score}{', cached' if p.cached else ''})" for p in placements) or "nowhere"
    reason = f"{len(placements)} more replica(s) of {req.model} would land on {where}{why_stop}"
    return Choice(tuple(nodes), tuple(placements), reason)


def template_pod(deployment: Mapping[str, Any], model: str | None) -> dict[str, Any]:
    """A pod like the Deployment's (its template), with the spec's model where the
    template names none."""
    tpl = ((deployment.get("spec") or {}).get("template")) or {}
    meta = dict(tpl.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    if model and not annotations.get(contract.MODEL):
        annotations[contract.MODEL] = model
    meta["annotations"] = annotations
    return {"metadata": meta, "spec": dict(tpl.get("spec") or {})}


def selector_matches(selector: Any, labels: Mapping[str, Any]) -> bool:
    """Whether a Deployment's spec.selector selects these labels, as Kubernetes evaluates a
    LabelSelector: every matchLabels pair and every matchExpressions requirement (In, NotIn,
    Exists, DoesNotExist; NotIn and DoesNotExist hold where the label is absent). A missing or
    empty selector, or one Kubernetes would refuse, selects nothing here: a Deployment has a
    non-empty one, and a replica read by mistake would be taken for this one's ask."""
    if not isinstance(selector, Mapping):
        return False
    match = selector.get("matchLabels") or {}
    exprs = selector.get("matchExpressions") or []
    if not isinstance(match, Mapping) or not isinstance(exprs, list) or not (match or exprs):
        return False
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for e in exprs:
        if not isinstance(e, Mapping):
            return False
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if not isinstance(key, str) or not isinstance(values, list):
            return False
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            return False
        if not ok:
            return False
    return True


def owned_by(pod: Mapping[str, Any], deployment: str | None) -> bool:
    """Whether the pod's ReplicaSet is one of the Deployment's, as far as the pod itself says
    (the autoscaler does not read ReplicaSets): its controller is a ReplicaSet named
    <deployment>-<the pod's pod-template-hash label>, as the Deployment controller names them."""
    meta = pod.get("metadata") or {}
    digest = (meta.get("labels") or {}).get("pod-template-hash")
    if not deployment or not digest:
        return False
    return any(isinstance(o, Mapping) and o.get("kind") == "ReplicaSet" and o.get("controller")
               and o.get("name") == f"{deployment}-{digest}" for o in meta.get("ownerReferences") or [])


def asked(asks: Sequence[int | None], req: PodRequest) -> PodRequest:
    """The request a claim pod's asks (None: a whole device; bytes: a share) are placed as: its
    largest share, or its whole devices; both, as a whole device for each ask (a share fits on
    a whole free device, so a node with that many fits the pod: the view errs on fewer nodes,
    never on a node the pod would not fit)."""
    shares = [m for m in asks if m is not None]
    if shares and len(shares) < len(asks):
        return replace(req, whole_gpus=len(asks))
    return replace(req, gpu_memory=max(shares)) if shares else replace(req, whole_gpus=len(asks))


def claim_request(req: PodRequest, pod: Mapping[str, Any], deployment: Mapping[str, Any],
                  pods: Sequence[Mapping[str, Any]], claims: Sequence[Mapping[str, Any]]) -> tuple[PodRequest, str]:
    """What a template that asks by ResourceClaimTemplate (a claim share, the chart's default)
    asks, read from the claims of one of the Deployment's running replicas (a pod of its
    namespace that its spec.selector selects, one its own ReplicaSets made first, whose claims
    are all listed). The templates themselves are not read (the autoscaler may list claims, not
    read templates), so with no replica running the request stays as it was, with the reason.
    ("" when nothing was to be done or it was read.)"""
    spec = pod.get("spec") or {}
    named = [e.get("resourceClaimTemplateName") for e in spec.get("resourceClaims") or [] if isinstance(e, Mapping)]
    if req.gpu_pod or not any(named):
        return req, ""
    dmeta = deployment.get("metadata") or {}
    namespace, name = dmeta.get("namespace"), dmeta.get("name")
    selector = (deployment.get("spec") or {}).get("selector")
    by_name = {((c.get("metadata") or {}).get("namespace"), (c.get("metadata") or {}).get("name")): c for c in claims}
    mine = [p for p in pods if (p.get("metadata") or {}).get("namespace") == namespace
            and selector_matches(selector, (p.get("metadata") or {}).get("labels") or {})]
    # a selector may overlap another Deployment's pods (Kubernetes warns, does not refuse)
    mine.sort(key=lambda p: not owned_by(p, name))
    for p in mine:
        meta = p.get("metadata") or {}
        names, problem = pod_claims(p)
        found = [c for c in (by_name.get((namespace, n)) for n in names) if c is not None]
        if problem or not names or len(found) < len(names):
            continue
        asks: list[int | None] = []
        for c in found:
            # its spec only: an allocated claim still says what it asked
            demand, problem = claim_demand({"metadata": c.get("metadata"), "spec": c.get("spec")})
            if problem:
                return req, f"the claims of {meta.get('name')}: {problem}"
            asks += demand.asks if demand else []
        if asks:
            return asked(asks, req), ""
    return req, ("the pod template asks by ResourceClaimTemplate and no running replica's claims say what "
                 "(pre-warming reads claims, not templates)")


def requested_nodes(nodes: Iterable[Mapping[str, Any]], model: str) -> set[str]:
    out = set()
    for n in nodes:
        meta = n.get("metadata") or {}
        entries = kube.prefetch_entries((meta.get("annotations") or {}).get(contract.PREFETCH))
        if any(kube.entry_model(e) == model for e in entries):
            out.add(meta.get("name", ""))
    return out


@dataclass(frozen=True)
class Result:
    model: str
    asked: tuple[str, ...]  # nodes whose annotation was changed
    choice: Choice
    errors: tuple[str, ...] = ()


class Prewarmer:
    def __init__(self, api, *, stale_after_s: float = 600.0, clock: Callable[[], float] = time.time,
                 weights: Weights | None = None):
        self.api = api
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.weights = weights
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, model: str, horizon_s: float, now: float) -> bool:
        with self._lock:
            last = self._last.get(model)
        return last is None or now - last >= max(horizon_s, MIN_INTERVAL_S)

    def prewarm(self, deployment: Mapping[str, Any], model: str | None, replicas: int, horizon_s: float,
                now: float | None = None) -> Result | None:
        """Ask for prefetches for ``replicas`` future replicas; None when not due (rate
        limit) or nothing to do. Raises KubeError/RequestError for the caller to report."""
        now = self.clock() if now is None else now
        pod = template_pod(deployment, model)
        try:
            req = parse_pod(pod)
        except RequestError:
            raise
        if replicas <= 0 or not req.model:
            return None
        if not self.due(req.model, horizon_s, now):
            return None
        with self._lock:
            self._last[req.model] = now  # counted even if it fails: retry next horizon, not every tick
        nodes = kube.list_nodes(self.api)
        pods = kube.list_bound_pods(self.api)
        claims = kube.list_claims(self.api)  # claim shares hold memory no pod annotation shows
        snapshot = snapshot_of(nodes, pods, now=now, stale_after_s=self.stale_after_s, claims=claims)
        ask, unknown = claim_request(req, pod, deployment, pods, claims)
        choice = Choice((), (), unknown) if unknown else choose(
            snapshot, ask, replicas, requested=requested_nodes(nodes, req.model), weights=self.weights)
        asked, errors = [], []
        for node in choice.nodes:
            try:
                if kube.add_prefetch(self.api, node, req.model):
                    asked.append(node)
            except kube.KubeError as exc:
                errors.append(str(exc))
        log.info("prewarm %s: %s; asked %s", req.model, choice.reason, asked or "no node")
        return Result(req.model, tuple(asked), choice, tuple(errors))
