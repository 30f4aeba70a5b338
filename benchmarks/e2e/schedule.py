"""End-to-end scheduling throughput on the test bed: the default kube-scheduler vs gpusched.

One run brings up the local control plane (etcd, kube-apiserver, kcm, kube-scheduler, kwok)
with N small-profile kwok nodes (8 x H100 each), starts the gpusched extender and its
kube-scheduler (deploy/scheduler/kube-scheduler-config.yaml), then for each scheduler in
turn — `default-scheduler` first (the baseline), then `gpusched` — creates the same P pods,
each asking one whole GPU (`nvidia.com/gpu: 1` limits), from a thread pool in a fresh
namespace. Seconds run from the first create call to the moment a watch of the namespace's
bound pods (`spec.nodeName!=`, opened before) sees the last of the P bound.
The namespace is then deleted and its pods waited out before the next scheduler runs.
The extender's /metrics is scraped before and after the gpusched run; filter/prioritize/bind
p50/p99 are estimated from the difference of the histogram buckets (linear interpolation
inside a bucket, as PromQL's histogram_quantile does). Each test bed process's CPU time
(utime + stime from /proc/<pid>/stat) is read at the start and the end of the timed span and
divided by the pods: on 2 shared cores the rate is bounded by the CPU all processes spend per
pod, and this says which one spends it.

Then, on the same cluster (or alone with phase="autoscale"), the autoscale phase
(benchmarks/e2e/autoscale.py): the autoscaler daemon with a real Prometheus and the fleet
simulator on a compressed window of the Azure LLM inference trace, against a static
baseline in the same run.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from prometheus_client.parser import text_string_to_metric_families

from scheduler import contract

SCHEDULERS = ("default-scheduler", "gpusched")
MODES = {"create": ("create",), "backlog": ("backlog",), "both": ("create", "backlog")}
PHASES = ("all", "schedule", "autoscale")
VERBS = ("filter", "prioritize", "bind")
METRIC = "gpusched_extender_request_seconds"


@dataclass
class Row:
    scheduler: str
    pods: int
    scheduled: int
    create_s: float  # first create call to last create call returning
    seconds: float   # first create call (backlog: the scheduler's start) to all pods bound
    pods_per_s: float  # pods / seconds; backlog: (pods - 1) / drain_s
    mode: str = "create"  # "create": pods created while the scheduler runs; "backlog": created first
    drain_s: float | None = None  # backlog: first pod bound to all bound
    # test bed process -> CPU ms per pod over the timed span (backlog: the scheduler's start to
    # all bound; create: first create to all bound); "bench" is this process (creates, watches)
    cpu_ms_per_pod: dict[str, float] = field(default_factory=dict)


@dataclass
class VerbLatency:
    verb: str
    calls: int
    p50_ms: float | None
    p99_ms: float | None
    mode: str = ""  # the gpusched run it was measured in


def pod_body(i: int, scheduler: str, share: str | None = None) -> dict[str, Any]:
    """One whole GPU (`nvidia.com/gpu: 1` limits), or with `share` (e.g. "10Gi") that much
    GPU memory by gpusched's annotation and no GPU limit: a memory share, which only
    gpusched places on a GPU (the default scheduler places such a pod as a CPU pod). An
    annotation share, the legacy path (the chart's extender.annotationShares=true; its default
    refuses them where the DRA plugin runs): the bench measures the extender's own placement."""
    resources = {} if share else {"limits": {contract.GPU_RESOURCE: "1"}}
    meta: dict[str, Any] = {"name": f"e2e-{i:05d}", "labels": {"app": "e2e"}}
    if share:
        meta["annotations"] = {contract.GPU_MEMORY: share}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": meta,
        "spec": {
            "schedulerName": scheduler,
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9", "resources": resources}],
        },
    }


CpuReader = Callable[[], dict[str, float]]


def process_cpu(procs) -> dict[str, float]:
    """CPU seconds (user + system) each live test bed process has used, by its name, and this
    process's as "bench"; a process that has exited is left out."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for p in procs:
        try:
            fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[19]) != p.start_time:  # the pid was reused
            continue
        out[p.name] = out.get(p.name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    t = os.times()
    out["bench"] = t.user + t.system
    return out


IDLE_S = 5.0  # how long the idle test bed's CPU is measured


def idle_cpu(cpu: CpuReader, seconds: float) -> dict[str, float]:
    """CPU ms per second each process uses over `seconds` while nothing is scheduled."""
    before, t0 = cpu(), time.monotonic()
    time.sleep(seconds)
    after, dt = cpu(), time.monotonic() - t0
    return {name: round((sec - before.get(name, 0.0)) * 1000 / dt, 1) for name, sec in after.items()
            if name in before and name != "bench"}


def cpu_per_pod(before: dict[str, float], after: dict[str, float], pods: int) -> dict[str, float]:
    """CPU ms per pod between two process_cpu readings; a process started between them (a
    scheduler started for a backlog) counts from 0."""
    return {name: round((sec - before.get(name, 0.0)) * 1000 / max(pods, 1), 2) for name, sec in after.items()
            if sec - before.get(name, 0.0) > 0}


def _bound(api, ns: str) -> int:
    resp = api.list_namespaced_pod(ns, field_selector="spec.nodeName!=", resource_version="0",
                                   _preload_content=False)
    return len(json.loads(resp.data)["items"])


class BoundWatch:
    """Counts a namespace's bound pods from a watch (spec.nodeName!=), started before the
    pods are created or their scheduler started: each bind is seen once, when it happens.
    (A poll listing the bound pods every 50 ms cost the API server and this process work
    in proportion to pods x seconds: on 2 cores, more for the slower scheduler, whose rate
    it then lowered further.)"""

    def __init__(self, api, ns: str):
        from scheduler.kube.client import loads, raw, request
        self._api, self._ns = api.api_client, ns
        self._loads, self._raw, self._request = loads, raw, request
        self._names: set[str] = set()
        self._cv = threading.Condition()
        self.first: float | None = None  # monotonic time the first bound pod was seen
        self.last: float | None = None   # ... and the latest new one
        self._stop = threading.Event()
        self._error: BaseException | None = None
        path = f"/api/v1/namespaces/{ns}/pods"
        _, listed = self._raw(self._api, "GET", path + "?fieldSelector=spec.nodeName%21%3D")
        self._rv = listed["metadata"]["resourceVersion"]
        self._add([p["metadata"]["name"] for p in listed["items"]])
        self._thread = threading.Thread(target=self._run, args=(path,), name=f"watch-{ns}", daemon=True)
        self._thread.start()

    def _add(self, names: list[str]) -> None:
        now = time.monotonic()
        with self._cv:
            new = [n for n in names if n not in self._names]
            if new:
                self._names.update(new)
                self.first = self.first if self.first is not None else now
                self.last = now
                self._cv.notify_all()

    def _run(self, path: str) -> None:
        try:
            while not self._stop.is_set():
                resp = self._request(self._api, "GET", path, query={
                    "watch": "1", "fieldSelector": "spec.nodeName!=", "resourceVersion": self._rv,
                    "allowWatchBookmarks": "true", "timeoutSeconds": 600}, timeout=(10, 630))
                try:
                    for line in resp:
                        ev = self._loads(line)
                        obj = ev.get("object") or {}
                        self._rv = (obj.get("metadata") or {}).get("resourceVersion", self._rv)
                        if ev.get("type") in ("ADDED", "MODIFIED"):
                            self._add([obj["metadata"]["name"]])
                        elif ev.get("type") == "ERROR":
                            raise RuntimeError(f"watch of {self._ns}: {obj.get('message')}")
                        if self._stop.is_set():
                            break
                finally:
                    resp.release_conn()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            with self._cv:
                self._error = exc
                self._cv.notify_all()

    def count(self) -> int:
        with self._cv:
            return len(self._names)

    def wait(self, pods: int, deadline: float) -> int:
        """Block until `pods` are bound or the deadline; the number bound."""
        with self._cv:
            while len(self._names) < pods and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(min(left, 1.0))
            if self._error is not None and len(self._names) < pods:
                raise RuntimeError(f"counting bound pods in {self._ns} failed: {self._error}") from self._error
            return len(self._names)

    def close(self) -> None:
        self._stop.set()


def _wait(check, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout:.0f}s")


def run_one(api, scheduler: str, pods: int, workers: int, timeout: float,
            hold: tuple[Callable[[], None], Callable[[], None]] | None = None,
            cpu: CpuReader = lambda: {}, share: str | None = None) -> Row:
    """Create `pods` pods for `scheduler` and time them until all are bound. With `hold`
    (stop, start) the scheduler is stopped while they are created and started after: the
    rate from its first bind to its last is then the scheduler's alone, without the
    creating client sharing the 2 cores (kube-scheduler's scheduler_perf measures so)."""
    from kubernetes.client.rest import ApiException

    ns = f"e2e-{scheduler.replace('-scheduler', '')}-{'b' if hold else 'c'}-{int(time.time())}"
    api.create_namespace({"metadata": {"name": ns}})
    try:
        # Pods are refused until the namespace's default ServiceAccount exists.
        _wait(lambda: _sa_exists(api, ns), 60, f"ServiceAccount default in {ns}")
        bodies = [pod_body(i, scheduler, share) for i in range(pods)]
        if hold:
            return _backlog(api, ns, scheduler, bodies, workers, timeout, *hold, cpu=cpu)
        watch = BoundWatch(api, ns)
        cpu0 = cpu()
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(api.create_namespaced_pod, ns, b) for b in bodies]
            done: list[float] = []
            for f in futs:
                f.add_done_callback(lambda _f: done.append(time.monotonic()))
            bound = watch.wait(pods, t0 + timeout)
            elapsed = (watch.last or time.monotonic()) - t0
            used = cpu_per_pod(cpu0, cpu(), pods)
            watch.close()
            for f in futs:
                f.result()
        create_s = max(done) - t0
        if bound < pods:
            raise TimeoutError(f"{scheduler}: only {bound} of {pods} pods bound within {timeout:.0f}s")
        return Row(scheduler, pods, bound, round(create_s, 3), round(elapsed, 3), round(pods / elapsed, 1),
                   cpu_ms_per_pod=used)
    finally:
        try:
            # Force-delete the pods first (grace 0: gone from the API at once, as
            # `kubectl delete --force` does): left to the namespace controller, 2,000 bound
            # pods each wait for kwok's pod-delete stage, which took over 300 s on a busy
            # 2-core machine and would overlap the next scheduler's run.
            api.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
        except ApiException:
            pass
        try:
            api.delete_namespace(ns)
        except ApiException:
            pass
        # GPUs are free again once the pods are gone; the namespace follows.
        _wait(lambda: not _ns_exists(api, ns), max(300.0, timeout), f"namespace {ns} deleted", interval=0.5)


def _backlog(api, ns: str, scheduler: str, bodies: list[dict[str, Any]], workers: int, timeout: float,
             stop: Callable[[], None], start: Callable[[], None], cpu: CpuReader = lambda: {}) -> Row:
    pods = len(bodies)
    stop()
    watch = BoundWatch(api, ns)
    try:
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda b: api.create_namespaced_pod(ns, b), bodies))
        create_s = time.monotonic() - t0
        if watch.count() or _bound(api, ns):
            raise RuntimeError(f"{scheduler}: pods were bound while it was stopped")
    finally:
        cpu0 = cpu()
        t_start = time.monotonic()
        start()
    try:
        bound = watch.wait(pods, t_start + timeout)
        used = cpu_per_pod(cpu0, cpu(), pods)
    finally:
        watch.close()
    first, end = watch.first, watch.last or time.monotonic()
    if bound < pods or first is None:
        raise TimeoutError(f"{scheduler}: only {bound} of {pods} pods bound within {timeout:.0f}s of its start")
    # rounded before the rate is taken from it, so the row's rate is its drain's: a drain of
    # 37 ms rounded after gave 1,042 pods/s beside a drain_s that says 1,054
    drain = round(max(end - first, 1e-3), 3)
    return Row(scheduler, pods, bound, round(create_s, 3), round(end - t_start, 3), round((pods - 1) / drain, 1),
               mode="backlog", drain_s=drain, cpu_ms_per_pod=used)


def _sa_exists(api, ns: str) -> bool:
    from kubernetes.client.rest import ApiException
    try:
        api.read_namespaced_service_account("default", ns)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def _ns_exists(api, ns: str) -> bool:
    from kubernetes.client.rest import ApiException
    try:
        api.read_namespace(ns)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def histograms(text: str) -> dict[str, dict[float, float]]:
    """verb -> {upper bound: cumulative count} of the extender's request histogram."""
    out: dict[str, dict[float, float]] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name != METRIC:
            continue
        for s in fam.samples:
            if s.name == METRIC + "_bucket":
                out.setdefault(s.labels["verb"], {})[float(s.labels["le"])] = s.value
    return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile over cumulative buckets; None when there are no observations."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if b == float("inf"):
                return prev_bound  # beyond the last finite bucket: its bound is all we know
            return prev_bound + (b - prev_bound) * (rank - prev_count) / max(c - prev_count, 1e-12)
        prev_bound, prev_count = b, c
    return prev_bound


def _counters(text: str) -> dict[tuple[str, ...], float]:
    """(metric, label values...) -> value of the extender's connection and answer-size counters."""
    out: dict[tuple[str, ...], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "gpusched_extender_connections_accepted_total" and s.labels.get("port") == "verbs":
                out[("accepted",)] = s.value
            elif s.name == "gpusched_extender_connections_closed_total" and s.labels.get("port") == "verbs":
                out[("closed", s.labels["reason"])] = s.value
            elif s.name == "gpusched_extender_response_bytes_total":
                out[("bytes", s.labels["verb"])] = s.value
    return out


def connections(before: str, after: str, pods: int, calls: dict[str, int]) -> dict[str, Any]:
    """What kube-scheduler's connections to the verbs' port cost over a run: TLS connections
    accepted in all and per pod, the closes by reason (who hung up), and the answers' mean
    size per verb."""
    b, a = _counters(before), _counters(after)
    diff = {k: v - b.get(k, 0.0) for k, v in a.items()}
    accepted = int(diff.get(("accepted",), 0))
    return {"accepted": accepted, "per_pod": round(accepted / max(pods, 1), 3),
            "closed": {k[1]: int(v) for k, v in sorted(diff.items()) if k[0] == "closed" and v},
            "answer_bytes": {verb: round(diff.get(("bytes", verb), 0.0) / calls[verb]) for verb in VERBS
                             if calls.get(verb)}}


def latencies(before: str, after: str) -> list[VerbLatency]:
    b, a = histograms(before), histograms(after)
    out = []
    for verb in VERBS:
        diff = {le: c - b.get(verb, {}).get(le, 0.0) for le, c in a.get(verb, {}).items()}
        p50, p99 = quantile(0.5, diff), quantile(0.99, diff)
        out.append(VerbLatency(verb, int(diff.get(float("inf"), 0)),
                               None if p50 is None else round(p50 * 1000, 3),
                               None if p99 is None else round(p99 * 1000, 3)))
    return out


def run(nodes: int, pods: int, workers: int = 31, timeout: float = 600.0,
        state_dir: Path | str | None = None, *, phase: str = "all", autoscale=None,
        modes: str = "backlog", share: str | None = None, nodes_to_score: int | None = None,
        tls: bool = True) -> dict[str, Any]:
    """phase: "all" (scheduling throughput, then the autoscale phase), "schedule" or
    "autoscale"; autoscale: e2e_autoscale.Settings (default: its defaults); modes: "create"
    (pods created while the schedulers run), "backlog" (created first) or "both"; share:
    each pod a GPU memory share of this size (pod_body) instead of a whole GPU; nodes_to_score:
    gpusched's kube-scheduler's percentageOfNodesToScore in place of the chart's 100 (0:
    kube-scheduler's adaptive default, as the default scheduler has it); tls=False: the extender
    on plain HTTP (the chart serves mutual TLS), to show what TLS costs."""
    from kubernetes import client

    from benchmarks.testbed.cli import wait_nodes_ready
    from benchmarks.testbed.cluster import LocalCluster
    from benchmarks.testbed.nodes import create_nodes
    from benchmarks.testbed.profiles import small
    from benchmarks.testbed.stack import GpuschedScheduler

    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    scheduling = phase in ("all", "schedule")
    if scheduling and pods > nodes * 8:
        raise ValueError(f"{pods} one-GPU pods do not fit on {nodes} nodes of 8 GPUs")
    tmp = None
    if state_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="gpusched-e2e-")
        state_dir = tmp.name
    cluster = LocalCluster(state_dir)
    gs = None
    try:
        t = time.monotonic()
        cluster.up()
        api = client.CoreV1Api(cluster.api_client())
        create_nodes(api, small(nodes), workers=32)
        wait_nodes_ready(api, nodes, timeout=300)
        gs = GpuschedScheduler(cluster, nodes_to_score=nodes_to_score, tls=tls)
        gs.start()
        # Let both schedulers' informers see every node before timing anything; then
        # measure what the idle test bed burns (node leases, heartbeats, resyncs): a run pays
        # it for every second it lasts, so a slower scheduler's pods carry more of it.
        time.sleep(3)
        idle = idle_cpu(lambda: process_cpu(cluster.state.procs), IDLE_S) if scheduling else {}
        setup_s = time.monotonic() - t
        rows, ext, conns = [], [], []
        t = time.monotonic()
        holds = {"default-scheduler": (lambda: cluster.stop_process("kube-scheduler"), cluster.start_default_scheduler),
                 "gpusched": (lambda: cluster.stop_process("gpusched-scheduler"),
                              lambda: cluster.start_scheduler("gpusched-scheduler", gs.scheduler_config()))}
        for mode in MODES[modes] if scheduling else ():
            for sched in SCHEDULERS:
                before = gs.metrics() if sched == "gpusched" else ""
                rows.append(run_one(api, sched, pods, workers, timeout, holds[sched] if mode == "backlog" else None,
                                    cpu=lambda: process_cpu(cluster.state.procs), share=share))
                if sched == "gpusched":
                    after = gs.metrics()
                    lat = latencies(before, after)
                    ext += [replace(v, mode=mode) for v in lat]
                    conns.append({"mode": mode, **connections(before, after, pods, {v.verb: v.calls for v in lat})})
        result: dict[str, Any] = {
            "params": {"nodes": nodes, "profile": "small (8 x H100 80GB per node)", "pods": pods if scheduling else 0,
                       "pod": (f"a {share} GPU memory share ({contract.GPU_MEMORY} annotation, the legacy "
                               "path of extender.annotationShares=true; the default "
                               "scheduler places it as a CPU pod), same set for both schedulers" if share else
                               "1 whole GPU (nvidia.com/gpu: 1 limits), same set for both schedulers"),
                       "create_workers": workers, "bound_seen_by": "watch",
                       "gpusched_nodes_to_score": "chart (100)" if nodes_to_score is None else
                       "adaptive" if nodes_to_score == 0 else nodes_to_score,
                       "extender_transport": "HTTPS, mutual TLS" if tls else "plain HTTP", "phase": phase, "modes": modes,
                       "kubernetes": cluster.state.kubernetes_version, "setup_s": round(setup_s, 1),
                       "schedule_phase_s": round(time.monotonic() - t, 1)},
            "idle_cpu_ms_per_s": idle,
            "rows": [asdict(r) for r in rows],
            "extender": [asdict(v) for v in ext],
            "extender_connections": conns,
        }
        if phase in ("all", "autoscale"):
            from benchmarks.e2e import autoscale as e2e_autoscale
            t = time.monotonic()
            result["autoscale"] = e2e_autoscale.run(cluster, autoscale)
            result["params"]["autoscale_phase_s"] = round(time.monotonic() - t, 1)
        return result
    finally:
        try:
            if gs is not None:
                gs.stop()
        finally:
            cluster.down()
            if tmp is not None:
                tmp.cleanup()


def table(result: dict[str, Any]) -> str:
    """The scheduling table, then the autoscale phase's when it ran."""
    parts = [_schedule_table(result)] if result["rows"] else []
    if "autoscale" in result:
        from benchmarks.e2e import autoscale as e2e_autoscale
        parts.append(e2e_autoscale.params_line(result["autoscale"]) + "\n\n" + e2e_autoscale.table(result["autoscale"]))
    return "\n\n".join(parts)


def _schedule_table(result: dict[str, Any]) -> str:
    rows = result["rows"]
    out = ["| mode | scheduler | pods | create s | seconds | pods/s | ratio to default |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        mode = r.get("mode", "create")
        base = next((b for b in rows if b["scheduler"] == "default-scheduler" and b.get("mode", "create") == mode), None)
        ratio = f"{r['pods_per_s'] / base['pods_per_s']:.2f}x" if base else "-"
        out.append(f"| {mode} | {r['scheduler']} | {r['pods']:,} | {r['create_s']:.2f} | {r['seconds']:.2f} | "
                   f"{r['pods_per_s']:.1f} | {ratio} |")
    out += ["", "| mode | extender verb (its own metrics, gpusched run) | calls | p50 ms | p99 ms |",
            "|---|---|---:|---:|---:|"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for v in result["extender"]:
        out.append(f"| {v.get('mode') or '-'} | {v['verb']} | {v['calls']:,} | {fmt(v['p50_ms'])} | "
                   f"{fmt(v['p99_ms'])} |")
    conns = result.get("extender_connections") or []
    if conns:
        out += ["", "| mode | connections accepted (gpusched run) | per pod | closed, by reason | "
                "answer bytes per call |", "|---|---:|---:|---|---|"]
        for c in conns:
            closed = ", ".join(f"{k} {v:,}" for k, v in c["closed"].items()) or "-"
            sizes = ", ".join(f"{k} {v:,}" for k, v in c["answer_bytes"].items()) or "-"
            out.append(f"| {c['mode']} | {c['accepted']:,} | {c['per_pod']:.3f} | {closed} | {sizes} |")
    return "\n".join(out + _cpu_table(rows, result.get("idle_cpu_ms_per_s") or {}))


def _cpu_table(rows: list[dict[str, Any]], idle: dict[str, float]) -> list[str]:
    """CPU ms per pod by process, one row per run, the busiest processes first; "idle part":
    what the test bed burns with nothing to schedule (IDLE_S measured) over the run's seconds."""
    used = [r.get("cpu_ms_per_pod") or {} for r in rows]
    if not any(used):
        return []
    total: dict[str, float] = {}
    for u in used:
        for name, ms in u.items():
            total[name] = total.get(name, 0.0) + ms
    names = sorted(total, key=lambda n: -total[n])
    out = ["", "| mode | scheduler | CPU ms per pod, all | of it idle part | " + " | ".join(names) + " |",
           "|---|---|---:|---:|" + "---:|" * len(names)]
    for r, u in zip(rows, used):
        idle_part = sum(idle.values()) * r["seconds"] / max(r["pods"], 1)
        out.append(f"| {r.get('mode', 'create')} | {r['scheduler']} | {sum(u.values()):.1f} | {idle_part:.1f} | "
                   + " | ".join(f"{u.get(n, 0.0):.1f}" for n in names) + " |")
    return out


def params_line(result: dict[str, Any]) -> str:
    p = result["params"]
    if not result["rows"]:
        return (f"e2e on {p['nodes']:,} kwok nodes ({p['profile']}), autoscale phase only; "
                f"Kubernetes {p['kubernetes']}")
    return (f"e2e scheduling throughput: {p['nodes']:,} kwok nodes ({p['profile']}), {p['pods']:,} pods of "
            f"{p['pod']}, created by {p['create_workers']} threads; mode create: seconds = first create to all bound "
            f"(bound pods seen by {p.get('bound_seen_by', 'a poll')}; create s = until the last create returned: where it is close to seconds, creation, not the scheduler, bounds the rate); "
            f"mode backlog: the scheduler is stopped while the pods are created, seconds = its start to all bound, "
            f"pods/s = (pods - 1) / (first bound to all bound); gpusched's percentageOfNodesToScore "
            f"{p.get('gpusched_nodes_to_score', 'chart (100)')}, extender over "
            f"{p.get('extender_transport', 'HTTPS, mutual TLS')}; Kubernetes {p['kubernetes']}")
