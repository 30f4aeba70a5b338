"""`gpusched bench e2e` at a tiny size on its own small test bed (the session cluster keeps
its own gpusched scheduler running, which would race a second one for the same pods)."""
from __future__ import annotations

import pytest

from benchmarks.e2e import schedule as e2e


@pytest.mark.integration
def test_e2e_schedules_every_pod_with_both_schedulers(tmp_path):
    result = e2e.run(nodes=20, pods=40, workers=8, timeout=120, state_dir=tmp_path / "state", phase="schedule",
                     modes="both")
    rows = {(r["mode"], r["scheduler"]): r for r in result["rows"]}
    assert set(rows) == {(m, s) for m in ("create", "backlog") for s in ("default-scheduler", "gpusched")}
    assert all(r["scheduled"] == 40 for r in rows.values())
    for s in ("default-scheduler", "gpusched"):
        # the backlog run times the scheduler alone: from its first bind, after all 40 existed
        b = rows[("backlog", s)]
        assert 0 < b["drain_s"] <= b["seconds"] and b["pods_per_s"] == pytest.approx(39 / b["drain_s"], rel=0.01)
    # the extender's own latencies, for the gpusched run of each mode
    calls = {(v["mode"], v["verb"]): v["calls"] for v in result["extender"]}
    for mode in ("create", "backlog"):
        assert calls[(mode, "filter")] >= 40 and calls[(mode, "bind")] >= 40, calls
    text = e2e.table(result)
    assert "| create | default-scheduler | 40 |" in text and "| backlog | gpusched | 40 |" in text
    assert "| backlog | prioritize |" in text


def test_quantile_from_cumulative_buckets():
    before = ('# TYPE gpusched_extender_request_seconds histogram\n'
              'gpusched_extender_request_seconds_bucket{le="0.001",verb="filter"} 1\n'
              'gpusched_extender_request_seconds_bucket{le="0.01",verb="filter"} 1\n'
              'gpusched_extender_request_seconds_bucket{le="+Inf",verb="filter"} 1\n')
    after = before.replace('"0.001",verb="filter"} 1', '"0.001",verb="filter"} 51') \
                  .replace('"0.01",verb="filter"} 1', '"0.01",verb="filter"} 101') \
                  .replace('"+Inf",verb="filter"} 1', '"+Inf",verb="filter"} 101')
    lat = {v.verb: v for v in e2e.latencies(before, after)}
    assert lat["filter"].calls == 100
    assert lat["filter"].p50_ms == pytest.approx(1.0)
    assert lat["filter"].p99_ms == pytest.approx(9.82)
    assert lat["bind"].calls == 0 and lat["bind"].p50_ms is None


@pytest.mark.parametrize("before, after, pods, per_pod", [
    # 2 s of API server CPU over 1,000 pods: 2 ms each
    ({"kube-apiserver": 10.0}, {"kube-apiserver": 12.0}, 1000, {"kube-apiserver": 2.0}),
    # a scheduler started in between (a backlog's) counts from 0; an idle process is left out
    ({"etcd": 3.0}, {"etcd": 3.0, "gpusched-scheduler": 0.5}, 250, {"gpusched-scheduler": 2.0}),
])
def test_cpu_per_pod(before, after, pods, per_pod):
    assert e2e.cpu_per_pod(before, after, pods) == per_pod


def _scrape(accepted: int, peer: int, idle: int, filter_bytes: int) -> str:
    return (f'gpusched_extender_connections_accepted_total{{port="verbs"}} {accepted}\n'
            f'gpusched_extender_connections_accepted_total{{port="metrics"}} 99\n'
            f'gpusched_extender_connections_closed_total{{port="verbs",reason="peer"}} {peer}\n'
            f'gpusched_extender_connections_closed_total{{port="verbs",reason="idle"}} {idle}\n'
            f'gpusched_extender_response_bytes_total{{verb="filter"}} {filter_bytes}\n')


@pytest.mark.parametrize("before, after, pods, want", [
    # 1,190 - 4 = 1,186 accepted over 2,000 pods = 0.593 per pod; closes by the client only;
    # filter answers (32,176,004 - 4) / 2,000 calls = 16,088 bytes each; the metrics port not counted
    ((4, 2, 0, 4), (1190, 1186, 0, 32176004), 2000,
     {"accepted": 1186, "per_pod": 0.593, "closed": {"peer": 1184}, "answer_bytes": {"filter": 16088}}),
    # no new connection: one kept connection served the run
    ((1, 0, 0, 0), (1, 0, 0, 1000), 10, {"accepted": 0, "per_pod": 0.0, "closed": {}, "answer_bytes": {"filter": 100}}),
])
def test_connections_per_pod_from_two_scrapes(before, after, pods, want):
    assert e2e.connections(_scrape(*before), _scrape(*after), pods, {"filter": pods}) == want


def test_cpu_table_shows_each_process_and_the_idle_part():
    rows = [{"mode": "backlog", "scheduler": "gpusched", "pods": 100, "seconds": 2.0,
             "cpu_ms_per_pod": {"kube-apiserver": 7.5, "gpusched-extender": 5.0}}]
    # idle: 300 ms/s for 2 s over 100 pods = 6 ms per pod
    lines = e2e._cpu_table(rows, {"kube-apiserver": 250.0, "kwok": 50.0})
    assert lines[1] == "| mode | scheduler | CPU ms per pod, all | of it idle part | kube-apiserver | gpusched-extender |"
    assert lines[3] == "| backlog | gpusched | 12.5 | 6.0 | 7.5 | 5.0 |"


@pytest.mark.parametrize("share, limits, annotations", [
    (None, {"nvidia.com/gpu": "1"}, None),
    ("10Gi", None, {"gpusched.io/gpu-memory": "10Gi"}),
])
def test_pod_body_whole_gpu_or_share(share, limits, annotations):
    pod = e2e.pod_body(7, "gpusched", share)
    assert pod["metadata"]["name"] == "e2e-00007" and pod["spec"]["schedulerName"] == "gpusched"
    assert pod["spec"]["containers"][0]["resources"].get("limits") == limits
    assert pod["metadata"].get("annotations") == annotations


# ---------------------------------------------------------------- the autoscale phase

from benchmarks.e2e import autoscale as eas  # noqa: E402
from benchmarks.fleet.model import Request, ServiceModel, TraceRow  # noqa: E402


def _req(arrival, admitted=None, first=None, aborted=False):
    r = Request(arrival, 100, 10)
    r.admitted, r.first_token, r.aborted = admitted, first, aborted
    return r


@pytest.mark.parametrize("done, total, wait_ok, ttft_ok", [
    ([_req(0, 1.0, 1.5), _req(0, 3.0, 3.5)], 2, 0.5, 1.0),   # waits 1 and 3 s (bound 2); TTFTs 1.5, 3.5 (bound 5)
    ([_req(0, 1.0, 6.0)], 4, 0.25, 0.0),                     # 3 of 4 never finished: misses
    ([_req(0, 0.5, 0.6, aborted=True)], 1, 0.0, 0.0),        # aborted: a miss, however fast it started
    ([], 3, 0.0, 0.0),
])
def test_attainment_counts_every_request_of_the_window(done, total, wait_ok, ttft_ok):
    a = eas.attainment(done, total, queue_wait_s=2.0, ttft_s=5.0)
    assert (a.requests, a.queue_wait_ok, a.ttft_ok) == (total, wait_ok, ttft_ok)


def test_window_shifts_rows_to_its_start_and_peak_rate_is_compressed():
    rows = [TraceRow(t, 100, 10) for t in (5, 10, 11, 12, 25, 31)]
    w = eas.window(rows, 10, 20)  # 10 <= t < 30
    assert [r.t for r in w] == [0, 1, 2, 15]
    # compressed x2: arrivals at 0, 0.5, 1, 7.5 s; the busiest 10 s bucket holds 4
    assert eas.peak_rate(w, 2.0) == pytest.approx(0.4)
    assert eas.peak_rate([], 2.0) == 0.0


@pytest.mark.parametrize("key, values, events", [
    ("deployment_replicas", [2, 2, 6, 16, 16, 4], [(2, 2, 6), (3, 6, 16), (5, 16, 4)]),
    ("deployment_replicas", [3, 3], []),
])
def test_scale_events_and_gpu_seconds(key, values, events):
    samples = [{"t": float(i), key: v} for i, v in enumerate(values)]
    assert [(e["t"], e["from"], e["to"]) for e in eas.scale_events(samples, key)] == events
    # rectangles between samples, 1 s apart: the last sample has no width
    assert eas.gpu_seconds(samples, key) == sum(values[:-1])


def test_static_sizing_meets_the_slo_offline_and_one_fewer_does_not():
    # 20 req/s of 1,000-token prompts for 10 s: one replica prefills 10 req/s, so more are needed
    rows = [TraceRow(i * 0.05, 1000, 10) for i in range(200)]
    s = eas.Settings(max_replicas=8, drain_s=30.0)
    n, ok = eas.size_static(rows, 1.0, ServiceModel(), s)
    assert 2 <= n < 8 and ok >= s.percentile
    fewer = eas.attainment(eas.offline(rows, 1.0, n - 1, ServiceModel(), 30.0), len(rows), 2.0, 5.0)
    assert fewer.queue_wait_ok < s.percentile


def test_concurrency_is_the_load_tests_throughput_times_the_time_alone():
    svc = ServiceModel()
    rows = [TraceRow(0.0, 0, 600)] * 3
    alone = svc.service_time(0, 600)  # each request's time alone on a replica
    assert eas.concurrency(rows, svc, 2.0 / alone) == 2  # round(mu x s1) = round(2.0)
    assert eas.concurrency(rows, svc, 2.6 / alone) == 3  # round(2.6)
    assert eas.concurrency(rows, svc, 100.0 / alone) == svc.max_batch  # at most --max-num-seqs
    assert eas.concurrency([], svc, 0.0) == 1  # no load test: one server per replica


def test_the_autoscaled_object_is_valid_and_carries_the_load_test():
    from autoscaler.spec import parse_spec

    obj = eas.autoscaled(eas.Settings(), 5.058, 3)
    spec = parse_spec(obj["spec"])  # what the daemon and the CRD's schema accept
    assert (spec.service_rate_per_replica, spec.concurrency_per_replica) == (5.058, 3)
    assert spec.behavior.scale_down.stabilization_window_s == 90.0  # 300 s of trace at x3.33


@pytest.mark.parametrize("kw, wall_s", [
    ({}, 6.0),                                       # 20 trace seconds at x3.33: compressed with the trace
    ({"compression": 2.0}, 10.0),                    # 20 / 2
    ({"compression": 2.0, "cold_start_s": 8}, 8),    # given: wall seconds, as is
])
def test_cold_start_is_compressed_with_the_trace_unless_given(kw, wall_s):
    assert eas.Settings(**kw).cold_start_s == wall_s


@pytest.mark.parametrize("times, since, want", [
    ([0, 1, 2, 3], float("-inf"), 2 + 4 + 6),  # GPUs 2, 4, 6 held 1 s each; the last sample has no width
    ([0, 1, 2, 3], 1.0, 4 + 6),                # the warm-up (t < 1) not counted
    ([0, 1, 2, 3], 1.5, 4 * 0.5 + 6),          # a sample straddling the warm-up's end counts from there on
    ([0, 1, 2, 3], 5.0, 0),
])
def test_gpu_seconds_count_the_scored_window_only(times, since, want):
    samples = [{"t": float(t), "g": 2 * (i + 1)} for i, t in enumerate(times)]
    assert eas.gpu_seconds(samples, "g", since=since) == pytest.approx(want)
    assert eas.replicas_summary(samples, "g", since=2.0) == {"min": 6, "mean": 7.0, "max": 8}


def test_static_sizing_serves_the_warm_up_but_scores_the_window():
    # warm-up: 40 req/s of 1,000-token prompts for 2.5 s (4x one replica's 10 req/s of prefill:
    # 10 s of work), quiet until the window at 15 s, 2 req/s: the backlog is gone before the
    # window, so one replica meets the SLO on it; scored over everything, the burst needs more
    burst = [TraceRow(i * 0.025, 1000, 10) for i in range(100)]
    calm = [TraceRow(15.0 + i * 0.5, 1000, 10) for i in range(20)]
    s = eas.Settings(max_replicas=8, drain_s=30.0)
    assert eas.size_static(burst + calm, 1.0, ServiceModel(), s, warmup_s=15.0)[0] == 1
    assert eas.size_static(burst + calm, 1.0, ServiceModel(), s)[0] > 1
    done = eas.offline(burst + calm, 1.0, 1, ServiceModel(), 30.0)
    assert len(eas.scored(done, 15.0)) == 20 and all(r.arrival >= 15.0 for r in eas.scored(done, 15.0))


def test_misses_by_bin_counts_arrivals_less_those_admitted_in_time():
    # scored from t=100, 10 s bins: arrivals at 100, 101 (bin 0) and 125 (bin 2); 101 waited 3 s
    # (a miss at a 2 s bound), 125 never finished (a miss); bin 1 had none
    done = [_req(100.0, 100.5, 101.0), _req(101.0, 104.0, 105.0)]
    bins = eas.misses_by_bin([100.0, 101.0, 125.0], done, 2.0, 100.0, 10.0)
    assert bins == [{"t": 100.0, "arrived": 2, "missed": 1}, {"t": 110.0, "arrived": 0, "missed": 0},
                    {"t": 120.0, "arrived": 1, "missed": 1}]
    assert eas.misses_by_bin([], [], 2.0, 0.0, 10.0) == []


@pytest.mark.parametrize("prompt, output, low, high", [
    (1000, 10, 9.0, 10.0),  # prefill-bound: 10,000 prompt tokens/s / 1,000 = 10 req/s, less the decode tail
    (100, 200, 5.0, 6.0),   # decode-bound: 32 running x 37.0 tok/s / 200 tokens = 5.9 req/s, less prefill
])
def test_service_rate_is_what_one_replica_sustains(prompt, output, low, high):
    rows = [TraceRow(i * 0.05, prompt, output) for i in range(400)]
    assert low <= eas.service_rate(rows, ServiceModel()) <= high


@pytest.mark.integration
def test_autoscale_phase_scales_up_in_the_burst(tmp_path):
    """Two minutes of the Azure code trace (a silent minute, then 632 requests) in one
    minute, after a warm-up of the two minutes before (63 requests, then a silent minute):
    the autoscaler starts at 1 serving + 1 warm, promotes the warm pod and scales up during
    the burst; the static baseline gets the same requests; only the window is scored."""
    settings = eas.Settings(window_start_s=780, window_s=120, warmup_s=120, compression=2.0, cold_start_s=8,
                            max_replicas=8, lead_s=10, drain_s=30)
    result = e2e.run(nodes=3, pods=1, workers=4, timeout=60, state_dir=tmp_path / "state", phase="autoscale",
                     autoscale=settings)
    assert result["rows"] == [] and result["params"]["phase"] == "autoscale"
    a = result["autoscale"]
    rows = {r["deployment"]: r for r in a["rows"]}
    assert set(rows) == {"autoscaled", "static"}
    p = a["params"]
    scored_from = settings.lead_s + 120 / settings.compression  # the warm-up, compressed
    assert (p["warmup_requests"], p["scored_from_s"]) == (63, scored_from)
    burst_at = scored_from + 60 / settings.compression  # the window's quiet minute, compressed
    ups = [e for e in a["scale_events"] if e["to"] > e["from"] and e["t"] >= scored_from]
    assert ups and ups[0]["t"] >= burst_at - 2, a["scale_events"]  # not before the burst
    assert max(x["deployment_replicas"] for x in a["samples"]) > 1 + settings.warm
    asr = rows["autoscaled"]
    assert asr["scale_ups"] >= 1 and asr["promotions"]["from_warm_pool"] >= 1
    assert asr["requests"] == rows["static"]["requests"] == a["params"]["requests"] == 632  # not the warm-up's
    assert asr["warmup_queue_wait_ok"] is not None
    assert sum(b["arrived"] for b in a["misses_by_10s"]["autoscaled"]) == 632
    assert rows["static"]["replicas"] == a["params"]["static_replicas"] >= 2
    assert rows["static"]["queue_wait_ok"] >= 0.9
    for r in rows.values():
        for field in ("queue_wait_ok", "ttft_ok", "queue_wait_p99_s", "ttft_p99_s", "gpu_hours_trace", "serving"):
            assert field in r
        assert 0 < r["gpu_hours_trace"] and 0 <= r["queue_wait_ok"] <= 1
    assert {d["rule"] for d in a["decisions"]}
    text = e2e.table(result)
    assert "| autoscaled |" in text and f"| static ({rows['static']['replicas']}) |" in text


@pytest.mark.parametrize("argv, message", [
    (["--as-compression", "0"], "--as-compression must be > 0, got 0.0"),
    (["--as-window", "-5"], "--as-window must be > 0"),
    (["--as-warmup", "-1"], "--as-warmup must be >= 0"),
    (["--as-warmup", "700"], "--as-warmup 700 is longer than the trace before the window: --as-window-start 600"),
    (["--as-max-replicas", "0"], "--as-max-replicas must be >= 1"),
    (["--as-trace", "/nonexistent.csv"], "--as-trace /nonexistent.csv: no such file"),
    (["--nodes", "2", "--pods", "17"], "--pods 17 one-GPU pods do not fit on --nodes 2 nodes of 8 GPUs"),
])
def test_e2e_bad_flags_give_one_line_and_exit_2_before_any_cluster(argv, message, capsys, tmp_path):
    from scheduler.cli import main
    assert main(["bench", "e2e", "--out", str(tmp_path)] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


@pytest.mark.parametrize("warmup, says", [
    ({"warmup_s": 300.0, "warmup_requests": 701, "warmup_wall_s": 90.0},
     "after a warm-up of the 300 trace seconds before it (701 requests, 90 s, not scored)"),
    ({"warmup_s": 0.0, "warmup_requests": 0, "warmup_wall_s": 0.0}, "started cold (no warm-up)"),
    ({}, "started cold (no warm-up)"),  # a result from before the warm-up
])
def test_params_line_says_how_the_run_started(warmup, says):
    p = {"trace": "/x/code.csv", "window_start_s": 600.0, "window_s": 600.0, "requests": 2146,
         "peak_rate_per_s": 48.0, "compression": 10 / 3, "wall_window_s": 180.0, "model": "m",
         "cold_start_s": 6.0, "max_replicas": 16, "warm": 1, "queue_target": 5.0, "queue_wait_slo_s": 2.0,
         "percentile": 0.99, "static_replicas": 9, **warmup}
    line = eas.params_line({"params": p})
    assert says in line and "6 s cold start (20 s of trace)" in line  # 6 s x 3.33
