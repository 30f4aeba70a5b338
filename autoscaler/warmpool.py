"""The warm pool: which pods to promote into traffic, which to demote out of it, and
the Deployment's replicas. Pure: plain data in, a plan out; no I/O, no clock.

Pods of a target Deployment carry the readiness gate ``gpusched.io/serving``. The pod
condition of that name says what the autoscaler wants of each pod:

- absent: a new pod. It starts warm: loading, then loaded (ContainersReady) but not
  Ready, so no Service sends it traffic. Every new pod starts this way, whether the
  ReplicaSet made it to refill the pool or for a scale-up.
- True: serving. The kubelet (kwok in the test bed) marks it Ready as soon as its
  containers are ready: within about a second for a loaded warm pod (a promotion),
  after its cold start for a pod still loading.
- False: demoted: out of traffic again (Ready False), still loaded: back in the pool.

So a pod is in one of four states (``PodView.state``):

    serving & Ready        READY     in traffic
    serving & not Ready    PENDING   promoted, not in traffic yet (loading, or the
                                     kubelet has not flipped Ready yet)
    not serving & loaded   WARM      the pool: promotable in about a second
    not serving & loading  LOADING   a cold start under way (pool refill or scale-up)

Pods without the gate (a Deployment that has not opted in) serve as soon as they are
Ready; they can be neither promoted nor demoted, and the pool is off (warm 0).

The plan, for ``serving`` replicas in traffic and ``warm`` in the pool:
- promote while fewer than ``serving`` pods serve: loaded warm pods first, longest
  warm first (their page cache and compiled graphs are the surest), then pods still
  loading, oldest first (they finish soonest): a promoted loading pod goes into
  traffic the moment it is loaded, without waiting for the next tick;
- demote while more than ``serving`` serve: not-yet-Ready serving pods first (out of
  traffic anyway), then the newest (created last, then promoted last): the oldest
  keep serving with their warm caches;
- replicas = serving + warm: the ReplicaSet creates the pool's missing pods (which
  start warm), or deletes the surplus.

Interplay with the ReplicaSet controller. When a ReplicaSet shrinks it deletes pods
in the order of ``ActivePodsWithRanks``: unscheduled before scheduled, Pending before
Running, not Ready before Ready, then pod-deletion-cost, pods doubled up on a node,
shorter Ready time, more restarts, newer before older. Readiness comes before the age
rules, so the pods it deletes are the not-Ready ones: loading pods first, then warm
and demoted ones. Hence demote-then-shrink: on a scale-down the excess serving pods
are demoted (newest first) and, once they show not Ready, the Deployment shrinks to
serving + warm; the ReplicaSet then deletes only pool pods and keeps the oldest
serving pods in traffic. A shrink issued before a demotion shows would let the
ReplicaSet delete a warm pod and keep a demoted one: no harm to traffic, one wasted
load; the daemon waits for the demotion to show (``Plan.shrink_after``).

Rollouts. During a rolling update, pods of the new template start warm like any
other; left alone they would never become available and the rollout would stall. So
while a serving pod of an old template and a loaded warm pod of the current one
exist, the plan swaps them (promote the new, demote the old), and the Deployment
controller then retires the old ReplicaSet's not-Ready pods.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Iterable, Mapping, Sequence

from scheduler.contract import SERVING_GATE
from scheduler.timestamps import parse_time

READY: Final = "ready"
PENDING: Final = "pending"
WARM: Final = "warm"
LOADING: Final = "loading"
GONE: Final = "gone"  # deleting, or terminated: not counted anywhere

TEMPLATE_HASH_LABEL: Final = "pod-template-hash"


@dataclass(frozen=True)
class PodView:
    """What the warm pool needs of a pod; ``pod_view`` reads it from Kubernetes JSON."""

    name: str
    created: float = 0.0  # Unix seconds
    ready: bool = False  # condition Ready True: in traffic
    loaded: bool = False  # condition ContainersReady True: weights loaded, server up
    serving: bool | None = None  # condition gpusched.io/serving: True, False, or None (absent)
    gated: bool = True  # spec.readinessGates names gpusched.io/serving
    deleting: bool = False  # deletionTimestamp set, or phase Succeeded/Failed
    loaded_since: float | None = None  # when ContainersReady last turned True
    serving_since: float | None = None  # when gpusched.io/serving last turned True
    template_hash: str = ""  # label pod-template-hash: which ReplicaSet (template) made it
    node: str = ""

    @property
    def is_serving(self) -> bool:
        """In traffic or meant to be: the gate says so, or the pod has no gate."""
        return (self.serving is True) if self.gated else True

    @property
    def state(self) -> str:
        if self.deleting:
            return GONE
        if self.is_serving:
            return READY if self.ready else PENDING
        return WARM if self.loaded else LOADING


def _conditions(pod: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for c in ((pod.get("status") or {}).get("conditions") or []):
        if isinstance(c, Mapping) and isinstance(c.get("type"), str):
            out[c["type"]] = c
    return out


def pod_view(pod: Mapping[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    conds = _conditions(pod)
    gate = conds.get(SERVING_GATE)
    serving = None
    if gate is not None:
        gate_status = gate.get("status")
        serving = True if gate_status == "True" else False if gate_status == "False" else None
    cr = conds.get("ContainersReady") or {}
    loaded = cr.get("status") == "True"
    gates = spec.get("readinessGates") or []
    return PodView(
        name=str(meta.get("name", "")),
        created=parse_time(meta.get("creationTimestamp")) or 0.0,
        ready=(conds.get("Ready") or {}).get("status") == "True",
        loaded=loaded,
        serving=serving,
        gated=any(isinstance(g, Mapping) and g.get("conditionType") == SERVING_GATE for g in gates),
        deleting=bool(meta.get("deletionTimestamp")) or status.get("phase") in ("Succeeded", "Failed"),
        loaded_since=parse_time(cr.get("lastTransitionTime")) if loaded else None,
        serving_since=parse_time(gate.get("lastTransitionTime")) if serving and gate is not None else None,
        template_hash=str((meta.get("labels") or {}).get(TEMPLATE_HASH_LABEL, "")),
        node=str(spec.get("nodeName") or ""),
    )


@dataclass(frozen=True)
class Counts:
    """The pool as the policy sees it (policy.Observation's ready, pending, warm)."""

    ready: int = 0
    pending: int = 0  # serving, not Ready, plus the loading pods the last target claims
    warm: int = 0  # loaded, not serving: promotable in about a second
    loading: int = 0  # not serving, not loaded, not claimed
    gated: bool = True  # every live pod has the gate (an empty target counts as gated)

    @property
    def current(self) -> int:
        return self.ready + self.pending


def count(pods: Iterable[PodView], last_target: int | None = None) -> Counts:
    """Count the pool. ``last_target``: the serving replicas last decided (None after a
    restart). Loading pods that the last scale-up asked for are counted as pending up to
    that target, although their gate is not set yet: the ReplicaSet made them after the
    last tick, and the plan promotes them on this one. Without this a scale-up would be
    counted twice (pending replicas must keep a slow start from asking again)."""
    live = [p for p in pods if p.state != GONE]
    by = {s: 0 for s in (READY, PENDING, WARM, LOADING)}
    for p in live:
        by[p.state] += 1
    serving = by[READY] + by[PENDING]
    claimed = min(by[LOADING], max(0, (last_target or 0) - serving))
    return Counts(ready=by[READY], pending=by[PENDING] + claimed, warm=by[WARM], loading=by[LOADING] - claimed,
                  gated=all(p.gated for p in live))


@dataclass(frozen=True)
class Plan:
    promote: tuple[str, ...]  # set gpusched.io/serving True, in this order
    demote: tuple[str, ...]  # set gpusched.io/serving False
    replicas: int  # the Deployment's spec.replicas: serving + warm
    serving: int  # pods serving once the plan is applied
    warm: int  # the pool size planned for (0 when pods lack the gate)
    # The demoted pods that are still Ready: shrink the Deployment only once they show
    # not Ready (or the ReplicaSet may delete a warm pod instead of a demoted one).
    shrink_after: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        return bool(self.promote or self.demote)


def _loaded_key(p: PodView) -> tuple:
    t = p.loaded_since if p.loaded_since is not None else p.created
    return (t, p.created, p.name)


def plan(pods: Sequence[PodView], serving: int, warm: int, current_hash: str | None = None) -> Plan:
    """Promotions, demotions and replicas for ``serving`` pods in traffic and ``warm``
    in the pool (the policy's Decision.replicas and Decision.warm). ``current_hash``:
    the pod-template-hash of the Deployment's newest ReplicaSet, during a rollout."""
    if serving < 0 or warm < 0:
        raise ValueError(f"serving ({serving}) and warm ({warm}) must not be negative")
    live = [p for p in pods if p.state != GONE]
    notes: list[str] = []
    ungated = [p for p in live if not p.gated]
    if ungated and warm:
        notes.append(f"{len(ungated)} pod(s) lack readinessGate {SERVING_GATE} (e.g. {ungated[0].name}): "
                     f"no warm pool, {warm} warm replica(s) not kept")
        warm = 0

    def old(p: PodView) -> bool:
        return bool(current_hash) and p.template_hash != current_hash

    in_traffic = [p for p in live if p.is_serving]
    promote: list[PodView] = []
    demote: list[PodView] = []
    need = serving - len(in_traffic)
    if need > 0:
        idle = [p for p in live if p.gated and not p.is_serving]
        loaded = sorted((p for p in idle if p.loaded), key=lambda p: (old(p),) + _loaded_key(p))
        loading = sorted((p for p in idle if not p.loaded), key=lambda p: (old(p), p.created, p.name))
        promote = (loaded + loading)[:need]
    elif need < 0:
        # old template first, not Ready first, newest first (names break ties, the last first)
        movable = _newest_first([p for p in in_traffic if p.gated], lambda p: (not old(p), p.ready))
        demote = movable[:-need]
        if len(demote) < -need:
            notes.append(f"{-need - len(demote)} serving pod(s) without the gate cannot be demoted; "
                         f"the ReplicaSet picks which pods go")

    if current_hash:
        # rollout: swap old-template serving pods for loaded warm pods of the current template
        taken = {p.name for p in promote} | {p.name for p in demote}
        stale = _newest_first([p for p in in_traffic if p.gated and old(p) and p.name not in taken],
                              lambda p: (p.ready,))
        fresh = sorted((p for p in live if p.gated and not p.is_serving and p.loaded and not old(p)
                        and p.name not in taken), key=_loaded_key)
        k = min(len(stale), len(fresh))
        if k:
            promote += fresh[:k]
            demote += stale[:k]
            notes.append(f"rollout: {k} pod(s) of template {current_hash} replace old-template pods")

    after = len(in_traffic) + len(promote) - len(demote)
    return Plan(
        promote=tuple(p.name for p in promote),
        demote=tuple(p.name for p in demote),
        replicas=serving + warm,
        serving=after,
        warm=warm,
        shrink_after=tuple(p.name for p in demote if p.ready),
        notes=tuple(notes),
    )


def _newest_first(pods: list[PodView], first) -> list[PodView]:
    """Sorted by ``first(pod)``, then newest first (created, then promoted most recently;
    last by name)."""
    out = sorted(pods, key=lambda p: (p.created, p.serving_since or 0.0, p.name), reverse=True)
    out.sort(key=first)  # stable: keeps newest-first within equal keys
    return out


def template_hash_of_newest(replicasets: Iterable[Mapping[str, Any]], deployment_uid: str) -> str | None:
    """The pod-template-hash of the Deployment's newest ReplicaSet (highest
    deployment.kubernetes.io/revision among those it owns), or None."""
    best: tuple[int, str] | None = None
    for rs in replicasets:
        meta = rs.get("metadata") or {}
        owners = meta.get("ownerReferences") or []
        if deployment_uid and not any(o.get("uid") == deployment_uid and o.get("controller") for o in owners):
            continue
        try:
            rev = int((meta.get("annotations") or {}).get("deployment.kubernetes.io/revision", "0"))
        except ValueError:
            rev = 0
        h = (meta.get("labels") or {}).get(TEMPLATE_HASH_LABEL)
        if h and (best is None or rev > best[0]):
            best = (rev, h)
    return best[1] if best else None


__all__ = ["PodView", "pod_view", "Counts", "count", "Plan", "plan", "parse_time", "template_hash_of_newest",
           "READY", "PENDING", "WARM", "LOADING", "GONE"]

