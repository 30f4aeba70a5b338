"""Two kube-scheduler + extender pairs, as the chart runs them: each pair one pod (a host
name of its own), kube-scheduler leader-elected on one Lease and calling the extender
beside it over mutual TLS on localhost, the extender following that Lease
(scheduler/extender/leadership.py). The case SIGKILLs the active pair mid-burst.

The Lease is shorter than the chart's (15 s / 10 s / 2 s) so that a case takes seconds,
not minutes, of waiting; the rule the extender follows is the same.
"""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from typing import Any

from benchmarks.chaos.bed import ChaosBed, gpu_pod, wait_for
from benchmarks.chaos.checks import check_gpus, extender_view_overcommit, gpu_capacity
from benchmarks.testbed.stack import GpuschedScheduler
from scheduler import contract
from scheduler.kube.client import raw

log = logging.getLogger(__name__)

SCHEDULER = "gpusched-ha"  # the pairs' profile: apart from the bed's own gpusched scheduler
LEASE_NS = "gpusched-system"
SHARE = "10Gi"
SHARES_PER_GPU = 7


class Pair(GpuschedScheduler):
    """One pod of the chart's scheduler Deployment: kube-scheduler and its extender sidecar."""

    def __init__(self, bed: ChaosBed, host: str, lease_s: float):
        super().__init__(bed.cluster, tls=True, name=f"{SCHEDULER}-{host}")
        self.host = host
        self.lease_s = lease_s
        self.renew_s = round(lease_s * 2 / 3, 1)  # kube-scheduler's default ratio, 10 of 15 s
        self.config.write_text(
            f"staleAfterSeconds: 86400\nschedulerName: {SCHEDULER}\n"
            f"leaderElection:\n  resourceNamespace: {LEASE_NS}\n  resourceName: {SCHEDULER}\n"
            f"  renewDeadlineSeconds: {self.renew_s:g}\n  identity: {host}\n")

    def scheduler_config(self) -> dict:
        cfg = super().scheduler_config()
        cfg["profiles"][0]["schedulerName"] = SCHEDULER
        cfg["leaderElection"] = {
            "leaderElect": True, "resourceLock": "leases", "resourceName": SCHEDULER, "resourceNamespace": LEASE_NS,
            "leaseDuration": f"{self.lease_s:g}s", "renewDeadline": f"{self.renew_s:g}s",
            "retryPeriod": f"{max(0.5, self.lease_s / 7.5):g}s"}
        return cfg

    def start(self) -> None:
        self.start_extender()
        self.cluster.start_scheduler(f"{self.name}-scheduler", self.scheduler_config(), hostname=self.host)

    def kill(self, part: str) -> None:
        """SIGKILL one container ("scheduler" or "extender")."""
        self.cluster.stop_process(f"{self.name}-{part}", signal.SIGKILL)

    def bind_directly(self, ns: str, pod: dict, node: str) -> tuple[int, str]:
        """A /bind as kube-scheduler sends it (its client certificate), from outside any scheduler."""
        r = self.post("/bind", json={"PodName": pod["metadata"]["name"], "PodNamespace": ns,
                                     "PodUID": pod["metadata"]["uid"], "Node": node})
        return r.status_code, r.text[:300]

    def acting(self) -> bool:
        try:
            return any(line.startswith("gpusched_extender_acting ") and line.endswith(" 1.0")
                       for line in self.metrics().splitlines())
        except Exception:  # noqa: BLE001 - dead
            return False

    def binds(self) -> float:
        from benchmarks.chaos.cases import _binds
        return _binds(self)

    def log_count(self, text: str) -> int:
        path = self.cluster.dir / "logs" / f"{self.name}-scheduler.log"
        return path.read_text(errors="replace").count(text) if path.is_file() else 0


def lease_rbac(bed: ChaosBed) -> None:
    """What the chart grants kube-scheduler on its Lease (templates/scheduler.yaml), for the
    test bed's system:kube-scheduler user; nothing more."""
    api = bed.api

    def post(path: str, body: dict) -> None:
        try:
            raw(api, "POST", path, body)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) != 409:
                raise
    post("/api/v1/namespaces", {"metadata": {"name": LEASE_NS}})
    rules = [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
             {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [SCHEDULER],
              "verbs": ["get", "update"]}]
    post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{LEASE_NS}/roles",
         {"metadata": {"name": f"{SCHEDULER}-leases"}, "rules": rules})
    post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{LEASE_NS}/rolebindings",
         {"metadata": {"name": f"{SCHEDULER}-leases"},
          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{SCHEDULER}-leases"},
          "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:kube-scheduler"}]})


def lease_holder(bed: ChaosBed) -> str:
    status, lease = raw(bed.api, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/{SCHEDULER}")
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or "" if status == 200 else ""


def _burst_bodies(pods: int) -> list[dict]:
    return [gpu_pod(f"ha-{i:05d}", gpus=1, scheduler=SCHEDULER) if i % 4 == 0
            else gpu_pod(f"ha-{i:05d}", memory=SHARE, scheduler=SCHEDULER) for i in range(pods)]


def active_pair_killed_during_burst(bed: ChaosBed, pods: int = 1000, lease_s: float = 6.0, kill_at: float = 0.3,
                                    timeout: float | None = None) -> Any:
    """Two kube-scheduler + extender pairs, leader-elected; SIGKILL the active pair once its
    extender has bound kill_at of a burst. The standby pair must take over: every pod bound,
    each by an extender with GPU ids, no GPU given twice in the API's records."""
    from benchmarks.chaos.cases import CaseResult

    t_case = time.monotonic()
    gpus = bed.nodes * 8
    whole = math.ceil(pods / 4)
    need = whole + math.ceil((pods - whole) / SHARES_PER_GPU)
    if need > gpus * 0.9:
        raise ValueError(f"{pods} pods need about {need} GPUs; the bed has {gpus}")
    lease_rbac(bed)
    pairs = {h: Pair(bed, h, lease_s) for h in ("pair-a", "pair-b")}
    ns = bed.namespace("ha")
    try:
        for p in pairs.values():
            p.start()
        holder = wait_for(lambda: lease_holder(bed), 60, "a kube-scheduler holding the Lease")
        active = next(p for h, p in pairs.items() if holder.startswith(h + "_"))
        standby = next(p for p in pairs.values() if p is not active)
        wait_for(active.acting, 60, "the leader's extender acting")
        standby_acting_before = standby.acting()
        # a pod of this scheduler that no node fits: Pending throughout, the deposed extender's target
        nodes_names = sorted(n["metadata"]["name"] for n in bed.list_nodes())
        bed.create_pods(ns, [gpu_pod("ha-probe", memory=SHARE, scheduler=SCHEDULER,
                                     node_selector={"gpusched.io/no-such-node": "x"})])
        probe = next(p for p in bed.pods(ns) if p["metadata"]["name"] == "ha-probe")

        created = [0]
        creator_error: list[BaseException] = []

        def create() -> None:
            try:
                bed.create_pods(ns, _burst_bodies(pods), on_created=lambda n: created.__setitem__(0, n))
            except BaseException as exc:  # noqa: BLE001 - reported below
                creator_error.append(exc)

        t0 = time.monotonic()
        creator = threading.Thread(target=create, name="ha-burst", daemon=True)
        creator.start()
        deadline = time.monotonic() + (timeout or 600)
        while active.binds() < pods * kill_at and creator.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        bound_at_kill = int(active.binds())
        created_at_kill = created[0]
        # kube-scheduler first: its extender lives on as a deposed leader's would (a partition,
        # a paused process), and must refuse a bind once the Lease is past renewDeadline
        active.kill("scheduler")
        t_kill = time.monotonic()
        wait_for(lambda: lease_holder(bed).startswith(standby.host + "_"), lease_s * 4 + 30,
                 "the standby kube-scheduler holding the Lease", interval=0.1)
        takeover = time.monotonic() - t_kill
        code, text = active.bind_directly(ns, probe, nodes_names[0])
        deposed_bound = bool(next(p for p in bed.pods(ns) if p["metadata"]["name"] == "ha-probe")["spec"]
                             .get("nodeName"))
        deposed_refused = code != 200 or bool(_error_of(text))
        active.kill("extender")
        wait_for(standby.acting, 60, "the standby's extender acting", interval=0.1)
        acting_after = time.monotonic() - t_kill
        wait_for(lambda: standby.binds() >= 1 or not creator.is_alive() and created[0] == bound_at_kill, 120,
                 "the first bind by the new leader", interval=0.1)
        first_bind = time.monotonic() - t_kill
        # the killed pod's containers come back (its kubelet restarts them): now the standby pair
        active.start()
        creator.join(timeout or 600)
        if creator_error:
            raise creator_error[0]

        def burst() -> list[dict]:
            return [p for p in bed.pods(ns) if p["metadata"]["name"] != "ha-probe"]

        def all_bound():
            items = burst()
            return len(items) == pods and all((p.get("spec") or {}).get("nodeName") for p in items)
        try:
            wait_for(all_bound, timeout or max(300.0, pods * 0.6), f"all {pods} pods bound", interval=2.0)
        except TimeoutError:
            pass
        elapsed = time.monotonic() - t0
        items = burst()
        bound = sum(1 for p in items if (p.get("spec") or {}).get("nodeName"))
        nodes = bed.list_nodes()
        chk = check_gpus(bed.pods(), gpu_capacity(nodes))
        # bound behind an extender's back: no GPU ids, or a placement that does not name the pod's node
        unaccounted = [p["metadata"]["name"] for p in items if (p.get("spec") or {}).get("nodeName") and not _accounted(p)]
        view = [v for n in nodes for v in extender_view_overcommit(standby.debug_node(n["metadata"]["name"]))]
        skipped = sum(p.log_count("Skipping extender") for p in pairs.values())
        new_binds = int(standby.binds())
        lost = pods - bound
        passed = (lost == 0 and chk.violations == 0 and not unaccounted and not view and skipped == 0
                  and not standby_acting_before and bound_at_kill >= 1 and new_binds >= 1
                  and deposed_refused and not deposed_bound)
        found = (f"{bound}/{pods} bound in {elapsed:.0f}s; {active.host}'s kube-scheduler (leader) killed after its "
                 f"extender bound {bound_at_kill} ({created_at_kill} created); {standby.host} held the Lease "
                 f"{takeover:.1f}s later; the deposed extender, asked to bind a Pending pod then, answered {code} "
                 f"{text[:140]!r} (pod {'BOUND' if deposed_bound else 'still Pending'}); "
                 f"its extender acted {acting_after:.1f}s and bound its first pod {first_bind:.1f}s after the kill, "
                 f"{new_binds} in all; standby acting before the kill: {standby_acting_before}; "
                 f"{len(unaccounted)} pods bound without the extender's GPU ids; "
                 f"{len(chk.double_booked)} GPUs double-booked, {len(chk.node_overcommit)} nodes over-committed "
                 f"(API records), {len(view)} GPUs over-committed in the new leader's view; "
                 f"'Skipping extender' in kube-scheduler logs: {skipped}")
        if chk.double_booked or chk.node_overcommit or view or unaccounted:
            found += f": {list(chk.double_booked.items())[:3]} {list(chk.node_overcommit.items())[:3]} " \
                     f"{view[:3]} {unaccounted[:3]}"
        figures = {"pods_created": pods, "pods_scheduled": bound, "pods_lost": lost,
                   "double_booked": len(chk.double_booked), "nodes_overcommitted": len(chk.node_overcommit),
                   "extender_view_overcommitted": len(view), "bound_without_gpu_ids": len(unaccounted),
                   "bound_at_kill": bound_at_kill, "killed_after_created": created_at_kill,
                   "bound_by_new_leader": new_binds, "lease_s": lease_s, "takeover_s": round(takeover, 1),
                   "acting_after_kill_s": round(acting_after, 1), "first_bind_after_kill_s": round(first_bind, 1),
                   "standby_acting_before_kill": int(standby_acting_before), "skipping_extender_logs": skipped,
                   "deposed_bind_refused": int(deposed_refused), "deposed_bind_bound": int(deposed_bound),
                   "pods_per_s": round(bound / elapsed, 1)}
        return CaseResult(
            "active scheduler/extender pair killed during a burst",
            f"two kube-scheduler + extender pairs (leader election, Lease {lease_s:g}s, mutual TLS on localhost); "
            f"SIGKILL the leader's kube-scheduler once its extender has bound {int(kill_at * 100)}% of a burst of "
            f"{pods} GPU pods (1/4 whole GPUs, 3/4 {SHARE} shares, {bed.nodes} nodes), its extender once the standby "
            "holds the Lease: every pod bound, each with the binding extender's GPU ids, no GPU given twice nor over "
            "its memory in the API's records, the standby extender silent until its kube-scheduler leads, the "
            "deposed extender refusing a bind after the takeover", found, passed, figures,
            round(time.monotonic() - t_case, 1))
    finally:
        for p in pairs.values():
            p.stop()
        bed.delete_namespace(ns)


def _error_of(text: str) -> str:
    import json
    try:
        return str(json.loads(text).get("Error") or "")
    except (ValueError, AttributeError):
        return text


def _accounted(pod: dict) -> bool:
    """Bound by an extender: GPU ids and a placement naming the pod's node and the same GPUs."""
    import json
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        placement = json.loads(ann.get(contract.PLACEMENT) or "{}")
    except ValueError:
        return False
    ids = ann.get(contract.GPU_IDS)
    return bool(ids) and placement.get("node") == pod["spec"]["nodeName"] and \
        ",".join(map(str, placement.get("gpus") or [])) == ids
