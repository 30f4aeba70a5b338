"""The simulator's pod life: cold start by tier, a warm promotion in a second, the
shared pool's capacity, drained deletions, GPU time by state."""
from __future__ import annotations

import pytest

from benchmarks.autoscale.service import ColdStart, service_model
from benchmarks.autoscale.sim import Action, SimConfig, WorkloadInput, simulate
from benchmarks.fleet.model import TraceRow

SVC = service_model("h100")


def rows(n: int, every: float = 1.0, start: float = 0.0) -> list[TraceRow]:
    return [TraceRow(start + k * every, 100, 20) for k in range(n)]


class Script:
    """A controller that applies scripted actions at given times."""

    def __init__(self, initial, script, gated=True, interval=1.0):
        self.name, self.gated, self.interval_s = "script", gated, interval
        self._initial, self.script = initial, dict(script)

    def initial(self):
        return self._initial

    def act(self, now, wl):
        self.wl = wl
        f = self.script.get(now)
        return f(wl) if f else None


def run(ctl, trace, **cfg):
    res = simulate([WorkloadInput("m", trace, SVC, 5.0)], lambda i: ctl, SimConfig(drain_after_s=120.0, **cfg))
    return res.workloads[0]


def test_cold_start_from_remote_and_warm_promotion_in_a_second():
    seen = {}

    def scale_up(wl):
        seen["warm"] = next(p.name for p in wl.pods.values() if not p.serving)
        return Action(promote=(seen["warm"],), replicas=3)  # promote the warm pod, one more pod cold

    def look(wl):
        seen[wl.fleet.now] = {p.name: p.ready for p in wl.pods.values()}

    script = {10.0: scale_up, 11.0: look, 57.0: look}
    ctl = Script((1, 1), script)
    w = run(ctl, rows(100))
    warm = seen["warm"]
    assert seen[11.0][warm] is True  # promoted at 10 s, Ready 1 s later
    new = [n for n in seen[57.0] if n != warm and not seen[57.0][n]]  # the pod started cold at 10 s
    assert len(new) == 1 and w.cold_starts == {"host-memory": 0, "disk": 0, "remote": 1}
    # remote: 15 s + 16 GB / 0.5 GB/s = 47 s after 10 s -> loaded at 57 s; not promoted, so warm: not Ready
    p = ctl.wl.pods[new[0]]
    assert p.loaded_since == 57.0 and p.tier == "remote" and not p.ready
    assert w.promotions == 1


def test_pool_capacity_holds_pods_without_a_gpu():
    ctl = Script((1, 0), {5.0: lambda wl: Action(replicas=4)}, gated=False)
    w = run(ctl, rows(60), pool_gpus=2)
    # 2 GPUs: the seeded pod and one new one; the other two never get a GPU
    assert sum(w.cold_starts.values()) == 1
    assert w.gpu_s["serving"] + w.gpu_s["loading"] <= 2 * 59 + 1e-9


def test_deleted_pods_drain_and_free_a_cached_gpu():
    # 600 output tokens: ~10 s of decode each, then light requests so the controller acts to 60 s
    long = [TraceRow(0.5 * k, 100, 600) for k in range(20)] + rows(20, 2.0, start=20.0)
    ctl = Script((2, 0), {8.0: lambda wl: Action(replicas=1), 30.0: lambda wl: Action(replicas=2)}, gated=False)
    w = run(ctl, long)
    assert w.aborted == 0  # the deleted pod finished what it ran (within the 30 s grace)
    assert w.gpu_s["draining"] > 0
    assert w.cold_starts == {"host-memory": 1, "disk": 0, "remote": 0}  # the freed GPU kept the weights in memory


@pytest.mark.parametrize("state_share", ["serving", "warm"])
def test_gpu_time_by_state(state_share):
    ctl = Script((1, 1), {})
    w = run(ctl, rows(101))  # trace of 100 s: one serving and one warm pod for 100 s each
    assert w.gpu_s[state_share] == pytest.approx(100.0)


def test_cold_start_seconds_are_documented():
    assert ColdStart().table() == {"gpu": 1.0, "host-memory": 15.8, "disk": 23.0, "remote": 47.0}


def test_measured_cold_starts_are_drawn_seeded_and_replace_the_tiers():
    def loads(samples, seed):
        ctl = Script((1, 0), {5.0: lambda wl: Action(replicas=4)}, gated=False)
        run(ctl, rows(100), cold_samples=samples, cold_seed=seed)
        return sorted(p.loaded_at - p.scheduled_at for p in ctl.wl.pods.values() if p.scheduled_at is not None)

    # one measured time: every load takes it, whatever the tier (the seeded pod loaded at 0)
    assert loads((7.0,), 1) == [0.0, 7.0, 7.0, 7.0]
    a, b = loads((3.0, 9.0, 30.0), 1), loads((3.0, 9.0, 30.0), 1)
    assert a == b and set(a[1:]) <= {3.0, 9.0, 30.0}  # the same seed draws the same times


def test_one_request_at_a_time_queues_the_second():
    from benchmarks.autoscale.service import service_model

    svc1 = service_model("h100", 1)
    trace = [TraceRow(0.0, 0, 600), TraceRow(0.1, 0, 600)]  # 10 s of decode each at 60 tok/s
    ctl = Script((1, 0), {}, gated=False)
    res = simulate([WorkloadInput("m", trace, svc1, 0.1)], lambda i: ctl, SimConfig(drain_after_s=60.0))
    qw = res.workloads[0].queue_wait
    assert qw[0] == pytest.approx(0.0) and qw[1] == pytest.approx(10.0 - 0.1, abs=1e-6)
    assert service_model("h100").max_batch == 32
    with pytest.raises(ValueError, match="at least 1"):
        service_model("h100", 0)


def test_recent_arrival_rate_reads_the_last_two_scrapes():
    """1 req/s for 120 s, then 10 req/s; scrapes every 15 s; the daemon's query
    (completions' rate plus the growth in flight). At 151 s the 1 m range (91, 151] holds
    the completion counts at 105..150 s, 105 -> 417: 312 in 45 s, which Prometheus
    extrapolates 14 s back to the range's start and 1 s on to its end (both under 1.1
    scrapes): 312 x 60 / 45 / 60 = 6.93 req/s, plus 3 in flight at 150 s against 0 at 90 s
    over 60 s: 6.98, above the 5.65 that arrived in that minute. The recent one (twice the
    scrape, 30 s) holds 267 -> 417 at 135 and 150 s: 150 x 30 / 15 / 30 = 10, plus 3 / 30
    in flight since 120 s: 10.1 req/s. A 10 s window holds one scrape: no rate, while the
    pod was there 10 s before, so the query is empty: unknown, not 0."""
    seen = {}

    def look(wl):
        seen.update(minute=wl.arrival_reading(151.0).value, recent=wl.arrival_reading(151.0, wl.cfg.recent_s).value,
                    short=wl.arrival_reading(151.0, 10.0).value, window=wl.cfg.recent_s)

    trace = rows(120) + rows(500, every=0.1, start=120.0)
    run(Script((1, 0), {151.0: look}), trace)
    assert seen["window"] == 30.0
    assert seen["minute"] == pytest.approx(312 / 45 + 3 / 60)
    assert seen["recent"] == pytest.approx(10.0 + 3 / 30)
    assert seen["short"] is None


def test_load_test_concurrency_is_throughput_times_the_time_alone():
    """The bench's concurrencyPerReplica comes from the load test that gives mu: 64 requests
    of 40 s of decode alone (2,400 tokens at 60 tok/s) all at once on one H100 replica of
    32 slots run 32 at a time at 60 / (1 + 0.02 x 31) = 37 tok/s each, 64.8 s a batch, so
    mu = 64 / 129.6 s = 0.49 req/s and mu x 40 s = 19.8 -> 20 servers, fewer than the 32
    slots."""
    from autoscaler.queueing import effective_concurrency
    from benchmarks.autoscale.service import calibrate_service_rate, seconds_alone

    long = [TraceRow(float(i), 0, 0, service_s=40.0) for i in range(64)]
    mu, s1 = calibrate_service_rate(long, SVC, n=64), seconds_alone(long, SVC, n=64)
    assert s1 == pytest.approx(40.0)
    assert mu == pytest.approx(64 / 129.6, rel=0.02)
    assert effective_concurrency(mu, s1, SVC.max_batch) == 20
    # one request at a time: mu = 1 / s1, one server
    svc1 = service_model("h100", 1)
    assert effective_concurrency(calibrate_service_rate(long, svc1, n=64), seconds_alone(long, svc1, n=64), 1) == 1


def test_the_time_alone_is_read_on_the_rows_the_load_test_runs():
    """seconds_alone and calibrate_service_rate draw the same rows: mixed service times, a
    sample of 40 of 200, and each equals its figure computed on those 40 rows alone."""
    from benchmarks.autoscale.service import _load_test_rows, calibrate_service_rate, seconds_alone

    mixed = [TraceRow(float(i), 0, 0, service_s=float(1 + (i * 37) % 90)) for i in range(200)]
    idx = sorted(_load_test_rows(mixed, 40, 5))
    sample = [mixed[i] for i in idx]
    assert seconds_alone(mixed, SVC, n=40, seed=5) == pytest.approx(
        sum(SVC.service_time(0, round(r.service_s * SVC.decode_rate(1))) for r in sample) / 40)
    assert calibrate_service_rate(mixed, SVC, n=40, seed=5) == pytest.approx(calibrate_service_rate(sample, SVC, n=40))
    assert seconds_alone(mixed, SVC, n=40, seed=6) != seconds_alone(mixed, SVC, n=40, seed=5)
