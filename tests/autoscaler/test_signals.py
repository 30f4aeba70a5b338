"""Signal adapters against a stubbed transport: a requests Session whose only adapter
is a function from the request to (status, body) or an exception. The real
Prometheus comes in the integration tests."""
from __future__ import annotations

import json
import math
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from autoscaler.signals import (ADAPTERS, Scope, TimeoutSession, arrival_rate_query, connect, promql_duration,
                                instant_query, read_arrival_rate, read_signal, read_signals, reasons,
                                values)
from autoscaler.spec import SignalSpec, parse_spec

URL = "http://prometheus.test:9090"
NOW = 1_700_000_000.0


class StubAdapter(requests.adapters.BaseAdapter):
    def __init__(self, handler):
        super().__init__()
        self.handler = handler
        self.calls: list[tuple[str, dict, object]] = []  # (path, params, timeout)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        u = urlparse(request.url)
        params = {k: v[0] for k, v in parse_qs(u.query).items()}
        self.calls.append((u.path, params, timeout))
        out = self.handler(params.get("query", ""))
        if isinstance(out, BaseException):
            raise out
        status, body = out
        resp = requests.Response()
        resp.status_code = status
        resp._content = body.encode() if isinstance(body, str) else body
        resp.url, resp.request = request.url, request
        return resp

    def close(self):
        pass


class StubSession(TimeoutSession):
    def __init__(self, adapter, timeout):
        super().__init__(timeout)
        self.stub = adapter

    def get_adapter(self, url):
        return self.stub


def client_for(handler, timeout=3.0):
    adapter = StubAdapter(handler)
    return connect(URL, timeout=timeout, session=StubSession(adapter, timeout)), adapter


def vector(*series):
    """series: (labels, value) -> Prometheus JSON for an instant vector."""
    return 200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": lab, "value": [NOW, v if isinstance(v, str) else repr(float(v))]} for lab, v in series]}})


def scalar(v):
    return 200, json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [NOW, str(v)]}})


HTML = "<!DOCTYPE html><html><head><title>Sign in</title></head><body>proxy login</body></html>"
BAD_DATA = json.dumps({"status": "error", "errorType": "bad_data",
                       "error": 'invalid parameter "query": 1:5: parse error: unexpected ")"'})
SCOPE = Scope(namespace="llm", pods=("vllm-0", "vllm-1"), model_name="meta-llama/Llama-3.1-8B-Instruct")

QD = SignalSpec("queueDepth", 5, "queueDepth")
PROMQL = SignalSpec("promql", 3, "custom", query="sum(rate(x[1m]))")


# ---- what goes wrong is unknown, with a reason; never 0, never an exception

@pytest.mark.parametrize("name,answer,reason", [
    ("empty", vector(), "query returned no series"),
    ("nan", vector(({"pod": "vllm-0"}, "NaN")), "NaN/Inf"),
    ("inf", vector(({"pod": "vllm-0"}, "+Inf")), "NaN/Inf"),
    ("html-200", (200, HTML), "non-JSON"),
    ("html-502", (502, HTML), "Prometheus HTTP 502 (HTML page"),
    ("syntax-error", (400, BAD_DATA), "Prometheus HTTP 400 bad_data: invalid parameter \"query\": 1:5: parse error"),
    ("json-not-prometheus", (200, json.dumps({"hello": "world"})), "malformed JSON"),
    ("timeout", requests.exceptions.ReadTimeout("read timed out"), "Prometheus timed out after 3s"),
    ("connect-timeout", requests.exceptions.ConnectTimeout("connect timed out"), "Prometheus timed out after 3s"),
    ("refused", requests.exceptions.ConnectionError("[Errno 111] Connection refused"),
     "Prometheus unreachable: connection refused (http://prometheus.test:9090)"),
    ("timeout-after-retries", requests.exceptions.ConnectionError(
        "Max retries exceeded (Caused by ReadTimeoutError(\"Read timed out. (read timeout=3)\"))"),
     "Prometheus timed out after 3s"),
    ("odd-exception", RuntimeError("boom"), "Prometheus query failed: RuntimeError: boom"),
    ("range-vector", (200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[NOW, "1"]]}]}})), "range vector"),
    ("bad-sample", (200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {}, "value": [NOW, "many"]}]}})), "unparseable sample value"),
])
@pytest.mark.parametrize("spec", [QD, PROMQL], ids=["queueDepth", "promql"])
def test_failures_are_unknown(name, answer, reason, spec):
    client, _ = client_for(lambda q: answer)
    r = read_signal(client, spec, NOW, scope=SCOPE, ready=2, timeout=3.0)
    assert r.value is None and not r.known
    assert reason in r.reason


def test_several_series_where_one_is_expected():
    client, _ = client_for(lambda q: vector(({"pod": "a"}, 1), ({"pod": "b"}, 2)))
    r = read_signal(client, PROMQL, NOW, scope=SCOPE, ready=2)
    assert r.value is None
    assert "query returned 2 series; one is expected" in r.reason
    assert "pod" not in r.reason  # counts, never another series' label set


def test_timeout_is_always_passed_and_time_is_now():
    client, stub = client_for(lambda q: scalar(4), timeout=2.5)
    r = read_signal(client, PROMQL, NOW, scope=SCOPE, ready=2, timeout=2.5)
    assert r.value == 4.0
    path, params, timeout = stub.calls[0]
    assert path == "/api/v1/query" and params["query"] == 'sum(rate(x{namespace="llm"}[1m]))'  # scoped
    assert float(params["time"]) == NOW
    assert timeout == 2.5
    assert params["timeout"] == "2.5"  # and Prometheus stops evaluating when the client gives up


def test_timeout_session_fills_a_missing_timeout():
    stub = StubAdapter(lambda q: scalar(1))
    s = StubSession(stub, 7.0)
    s.get(URL + "/api/v1/query", params={"query": "1"})
    assert stub.calls[0][2] == 7.0


# ---- per-kind queries and arithmetic

@pytest.mark.parametrize("server,metric", [
    ("vllm", "vllm:num_requests_waiting"),
    ("tgi", "tgi_queue_size"),
    ("triton", "nv_inference_pending_request_count"),
])
def test_queue_metric_per_server(server, metric):
    q = ADAPTERS["queueDepth"].query(SignalSpec("queueDepth", 5, server=server), SCOPE)
    assert q.startswith(metric + "{")
    assert 'namespace="llm"' in q and 'pod=~"vllm\\\\-0|vllm\\\\-1"' in q
    assert ('model_name="meta-llama/Llama-3.1-8B-Instruct"' in q) == (server == "vllm")


@pytest.mark.parametrize("series,ready,want,reason", [
    ([({"pod": "vllm-0"}, 10), ({"pod": "vllm-1"}, 4)], 2, 7.0, "14 waiting / 2 ready = 7/replica"),
    # (10 + 4) / 2 ready = 7
    ([({"pod": "vllm-0", "engine": "0"}, 3), ({"pod": "vllm-0", "engine": "1"}, 5), ({"pod": "vllm-1"}, 0)], 2, 4.0,
     "8 waiting / 2 ready"),
    # two engines in one pod: (3 + 5 + 0) / 2 = 4
    ([({"pod": "vllm-0"}, 12)], 3, 12.0, "12 waiting over 1 of 3 ready replicas that report = 12/replica"),
    # one of three ready reports: a missing pod is not an empty queue: 12 / 1
    ([({"pod": "vllm-0"}, 0), ({"pod": "vllm-1"}, 0)], 2, 0.0, "0 waiting / 2 ready = 0/replica"),
    # a real zero is a value
])
def test_queue_depth_per_replica(series, ready, want, reason):
    client, _ = client_for(lambda q: vector(*series))
    r = read_signal(client, QD, NOW, scope=SCOPE, ready=ready)
    assert r.value == pytest.approx(want) and reason in r.reason
    # the policy weighs the ready replicas without a sample as HPA does: it needs their number
    assert r.reporting == (1 if "over 1 of 3" in reason else None)


def test_queue_depth_without_ready_replicas_is_unknown():
    client, _ = client_for(lambda q: vector(({"pod": "vllm-0"}, 3)))
    r = read_signal(client, QD, NOW, scope=SCOPE, ready=0)
    assert r.value is None and "no ready serving replicas" in r.reason


def test_gpu_util_accepts_both_label_spellings():
    q = ADAPTERS["gpuUtilization"].query(SignalSpec("gpuUtilization", 80), SCOPE)
    assert 'DCGM_FI_DEV_GPU_UTIL{namespace="llm",pod=~' in q
    assert 'DCGM_FI_DEV_GPU_UTIL{exported_namespace="llm",exported_pod=~' in q and " or " in q
    hq = ADAPTERS["gpuUtilization"].query(SignalSpec("gpuUtilization", 80), Scope(hosts=("gpu-node-1",)))
    assert 'Hostname=~"gpu\\\\-node\\\\-1"' in hq and 'hostname=~"gpu\\\\-node\\\\-1"' in hq
    client, _ = client_for(lambda q: vector(({"exported_pod": "vllm-0", "gpu": "0"}, 90),
                                            ({"exported_pod": "vllm-0", "gpu": "1"}, 70),
                                            ({"pod": "vllm-1", "gpu": "0"}, 50)))
    r = read_signal(client, SignalSpec("gpuUtilization", 80), NOW, scope=SCOPE, ready=2)
    assert r.value == pytest.approx(70.0)  # (90 + 70 + 50) / 3 GPUs


@pytest.mark.parametrize("signal, series, ready, want", [
    ("kvCache", [({"pod": "vllm-0"}, 0.9), ({"pod": "vllm-1"}, 0.5)], 2, None),  # both ready pods report
    ("kvCache", [({"pod": "vllm-0"}, 0.9)], 2, 1),  # vllm-1 Ready since the last scrape: 1 of 2
    ("kvCache", [({"engine": "0"}, 0.9)], 2, None),  # no pod label: how many pods is not known
    ("gpuUtilization", [({"pod": "vllm-0", "gpu": "0"}, 90), ({"pod": "vllm-0", "gpu": "1"}, 70)], 2, 1),
    # two GPUs of one pod: 1 pod of 2 reports
    ("gpuUtilization", [({"pod": "vllm-0"}, 90), ({"exported_pod": "vllm-1"}, 50)], 2, None),
])
def test_per_replica_averages_say_how_many_replicas_report(signal, series, ready, want):
    client, _ = client_for(lambda q: vector(*series))
    sig = SignalSpec(signal, 0.8 if signal == "kvCache" else 80)
    assert read_signal(client, sig, NOW, scope=SCOPE, ready=ready).reporting == want
    # a regex may match pods that are not Ready or not the target's: no count of the ready ones
    assert read_signal(client, sig, NOW, scope=Scope(namespace="llm", pod_regex="vllm-.*"),
                       ready=ready).reporting is None


def test_gpu_util_out_of_range_is_unknown():
    client, _ = client_for(lambda q: vector(({"pod": "vllm-0"}, 250)))
    r = read_signal(client, SignalSpec("gpuUtilization", 80), NOW, scope=SCOPE, ready=1)
    assert r.value is None and "outside 0..100" in r.reason


def test_kv_cache_new_and_old_names():
    q = ADAPTERS["kvCache"].query(SignalSpec("kvCache", 0.8), SCOPE)
    assert "vllm:kv_cache_usage_perc{" in q and " or vllm:gpu_cache_usage_perc{" in q
    client, _ = client_for(lambda q: vector(({"pod": "vllm-0"}, 0.9), ({"pod": "vllm-1"}, 0.5)))
    assert read_signal(client, SignalSpec("kvCache", 0.8), NOW, scope=SCOPE, ready=2).value == pytest.approx(0.7)
    client, _ = client_for(lambda q: vector(({"pod": "vllm-0"}, 85)))  # a percent where a fraction belongs
    assert read_signal(client, SignalSpec("kvCache", 0.8), NOW, scope=SCOPE, ready=1).value is None


def test_pod_regex_scope_and_label_escaping():
    s = Scope(namespace='we"ird', pod_regex="llm-[a-z0-9]+-[a-z0-9]+")
    q = ADAPTERS["queueDepth"].query(QD, s)
    assert q == 'vllm:num_requests_waiting{namespace="we\\"ird",pod=~"llm-[a-z0-9]+-[a-z0-9]+"}'


@pytest.mark.parametrize("server,needle", [
    ("vllm", "rate(vllm:request_success_total"),
    ("tgi", "rate(tgi_request_count"),
    ("triton", "rate(nv_inference_request_success"),
])
def test_arrival_rate(server, needle):
    assert needle in arrival_rate_query(server, SCOPE)
    client, _ = client_for(lambda q: vector(({}, 12.5)))
    assert read_arrival_rate(client, server, SCOPE, NOW).value == 12.5
    client, _ = client_for(lambda q: vector(({}, -0.4)))  # a draining queue is not negative demand
    assert read_arrival_rate(client, server, SCOPE, NOW).value == 0.0
    client, _ = client_for(lambda q: vector())
    assert read_arrival_rate(client, server, SCOPE, NOW).value is None


# A scale-up, 15 s scrapes: pod a serves all along; pod b starts at 75 s and takes 10
# requests. Evaluated by the real Prometheus engine (promtool) at 80 s over 1 m.
SCALE_UP = {
    "success": {"a": [0, 10, 20, 30, 40, 50], "b": [None] * 5 + [0]},
    "running": {"a": [2, 2, 2, 5, 8, 4], "b": [None] * 5 + [10]},
    "waiting": {"a": [0, 0, 0, 3, 6, 0], "b": [None] * 5 + [0]},
}


@pytest.mark.parametrize("at, want", [
    # a's completions: 20 -> 50 over 30..75 s, extrapolated to the range (20, 80]: 30 x 60 / 45 / 60;
    # b, scraped once, has no rate. In flight: 4 + 0 + 10 + 0 at 75 s against 2 at 15 s (the
    # latest samples at 80 and 20 s): + 12 / 60
    (80, 30 * 60 / 45 / 60 + 12 / 60),
    (10, 2 / 60),  # no sample a minute before: everything in flight arrived within it
])
def test_arrival_query_counts_a_new_pods_requests(tmp_path, at, want):
    from tests.promtool import evaluate

    names = {"success": "vllm:request_success_total", "running": "vllm:num_requests_running",
             "waiting": "vllm:num_requests_waiting"}
    series = {f'{names[k]}{{namespace="ns",pod="{p}"}}': v for k, pods in SCALE_UP.items() for p, v in pods.items()}
    scope = Scope(namespace="ns")
    # what the query was before: the sum of per-pod slopes, where b has none and a's running fell
    per_pod = ('sum(rate(vllm:request_success_total{namespace="ns"}[1m]))'
               ' + sum(deriv(vllm:num_requests_waiting{namespace="ns"}[1m]))'
               ' + sum(deriv(vllm:num_requests_running{namespace="ns"}[1m]))')
    got = evaluate(tmp_path, series, 15, [(arrival_rate_query("vllm", scope), at), (per_pod, at)])
    assert got[(arrival_rate_query("vllm", scope), at)]["{}"] == pytest.approx(want)
    if at == 80:
        # 0.75: b's 10 requests (0.17 req/s over the minute) are in no slope, and a's are fitted
        assert got[(per_pod, at)]["{}"] < want - 0.1


def test_arrival_query_with_no_sample_within_the_window_is_unknown(tmp_path):
    from tests.promtool import evaluate

    q = arrival_rate_query("vllm", Scope(namespace="ns"))
    # scraped at 0 and 15 s, then nothing: at 80 s no pod has a sample within the minute, and
    # one had a minute before, so nothing reads as 0
    quiet = {f'{m}{{namespace="ns",pod="a"}}': [3, 3] for m in (
        "vllm:request_success_total", "vllm:num_requests_running", "vllm:num_requests_waiting")}
    assert evaluate(tmp_path, quiet, 15, [(q, 80)]) == {(q, 80): {}}
    # a recent window of one scrape (15 s): no rate, and a pod existed then: unknown, not 0
    short = arrival_rate_query("vllm", Scope(namespace="ns"), 15)
    steady = {f'{m}{{namespace="ns",pod="a"}}': [0, 5, 10, 15, 20] for m in (
        "vllm:request_success_total", "vllm:num_requests_running", "vllm:num_requests_waiting")}
    assert evaluate(tmp_path, steady, 15, [(short, 52)]) == {(short, 52): {}}


def test_arrival_query_skips_a_failed_scrape(tmp_path):
    """Two pods, 20 running each, each finishing 10 requests per 15 s scrape; b's scrape at
    120 s failed (Prometheus writes staleness markers for all its series). Over 30 s at 151 s:
    completions 10 x 30 / 15 / 30 = 0.67 req/s per pod, and the growth in flight is 0: b's last
    sample before 121 s is the one at 105 s, not missing."""
    from tests.promtool import evaluate

    q = arrival_rate_query("vllm", Scope(namespace="ns"), 30)
    series = {}
    for pod in ("a", "b"):
        gap = pod == "b"
        series[f'vllm:request_success_total{{namespace="ns",pod="{pod}"}}'] = [
            "stale" if gap and k == 8 else 10 * k for k in range(11)]
        series[f'vllm:num_requests_running{{namespace="ns",pod="{pod}"}}'] = [
            "stale" if gap and k == 8 else 20 for k in range(11)]
        series[f'vllm:num_requests_waiting{{namespace="ns",pod="{pod}"}}'] = [
            "stale" if gap and k == 8 else 0 for k in range(11)]
    assert evaluate(tmp_path, series, 15, [(q, 151)])[(q, 151)]["{}"] == pytest.approx(2 * 10 * 30 / 15 / 30)


@pytest.mark.parametrize("seconds, want", [(30, "30s"), (10.0, "10s"), (2.5, "2500ms"), (0.0001, "1ms")])
def test_promql_duration(seconds, want):
    assert promql_duration(seconds) == want


def test_recent_arrival_rate_is_the_same_query_over_its_window():
    # the daemon's --recent-window 30: every range, offset and divisor of the 1 m query is 30 s
    q = arrival_rate_query("vllm", SCOPE, 30)
    assert q == arrival_rate_query("vllm", SCOPE).replace("60s", "30s").replace("/ 60", "/ 30") and "60" not in q


def test_read_signals_feeds_the_observation():
    spec = parse_spec({"scaleTargetRef": {"name": "llm"}, "maxReplicas": 4, "signals": [
        {"type": "queueDepth", "target": 5}, {"type": "gpuUtilization", "target": 80}]})

    def answer(q):
        if q.startswith("vllm:num_requests_waiting"):
            return vector(({"pod": "vllm-0"}, 6), ({"pod": "vllm-1"}, 2))
        return requests.exceptions.ConnectionError("Connection refused")

    client, _ = client_for(answer)
    readings = read_signals(client, spec, NOW, scope=SCOPE, ready=2)
    assert values(readings) == {"queueDepth": 4.0, "gpuUtilization": None}
    assert reasons(readings) == {"gpuUtilization": f"Prometheus unreachable: connection refused ({URL})"}


def test_instant_query_scalar():
    client, _ = client_for(lambda q: scalar("3.5"))
    series, why = instant_query(client, "vector(3.5)", NOW)
    assert series == [({}, 3.5)] and why == ""
    assert not any(math.isnan(v) for _, v in series)


# ---- gpuUtilization: DCGM for the pods it names, the node agent's per-pod series for the rest

def dcgm_or_agent(dcgm, agent):
    def answer(q):
        if q.startswith("(DCGM_FI_DEV_GPU_UTIL"):
            return dcgm
        assert q.startswith("(gpusched_pod_gpu_utilization{namespace=\"llm\",pod=~")
        return agent
    return answer


REFUSED = requests.exceptions.ConnectionError("[Errno 111] Connection refused")
GPU_ROWS = [
    # (what, DCGM answer, agent answer, value, reason has, queries sent)
    ("dcgm names every pod: the agent is not asked",
     vector(({"pod": "vllm-0"}, 90), ({"pod": "vllm-1"}, 50)), None, (90 + 50) / 2, "over 2 GPUs", 1),
    ("share pod vllm-1 has no DCGM pod label: its agent series fills in; vllm-0's agent series is not counted twice",
     vector(({"pod": "vllm-0"}, 90)), vector(({"pod": "vllm-0"}, 80), ({"pod": "vllm-1", "gpu": "3"}, 30)),
     (90 + 30) / 2, "1 of them per-pod SM shares from the node agent", 2),
    ("both share pods, one GPU, scraped without honorLabels",
     vector(), vector(({"exported_pod": "vllm-0", "gpu": "0"}, 40), ({"exported_pod": "vllm-1", "gpu": "0"}, 20)),
     (40 + 20) / 2, "2 of them per-pod SM shares", 2),
    ("neither has a series: unknown, not 0", vector(), vector(), None, "query returned no series", 2),
    ("no DCGM series and the agent's unreadable: unknown", vector(), REFUSED, None,
     "no DCGM series; the agent's per-pod series: Prometheus unreachable", 2),
    ("the agent's unreadable: what DCGM has", vector(({"pod": "vllm-0"}, 90)), REFUSED, 90.0,
     "the agent's per-pod series unreadable", 2),
    ("Prometheus fails: unknown, nothing more asked", REFUSED, None, None, "Prometheus unreachable", 1),
    ("an agent value out of range: unknown", vector(), vector(({"pod": "vllm-1"}, 150)), None,
     "outside 0..100", 2),
    ("NaN from the agent: unknown", vector(), vector(({"pod": "vllm-1"}, "NaN")), None, "NaN/Inf", 2),
]


@pytest.mark.parametrize("dcgm, agent, value, reason, sent", [r[1:] for r in GPU_ROWS], ids=[r[0] for r in GPU_ROWS])
def test_gpu_util_falls_back_to_the_agent_for_pods_dcgm_does_not_name(dcgm, agent, value, reason, sent):
    client, adapter = client_for(dcgm_or_agent(dcgm, agent))
    r = read_signal(client, SignalSpec("gpuUtilization", 80), NOW, scope=SCOPE, ready=2)
    assert r.value == (pytest.approx(value) if value is not None else None)
    assert reason in r.reason
    assert len(adapter.calls) == sent


def test_gpu_util_with_a_pod_regex_asks_the_agent_too():
    client, adapter = client_for(dcgm_or_agent(vector(({"pod": "vllm-0"}, 90)), vector(({"pod": "vllm-1"}, 10))))
    scope = Scope(namespace="llm", pod_regex="vllm-.*")
    assert read_signal(client, SignalSpec("gpuUtilization", 80), NOW, scope=scope, ready=2).value == 50.0


def test_the_agent_metric_name_is_the_agents():
    from scheduler.agent.metrics import POD_GPU_UTIL

    from autoscaler.signals import POD_GPU_UTIL_METRIC
    assert POD_GPU_UTIL_METRIC == POD_GPU_UTIL


def test_label_names_are_configurable():
    from autoscaler.signals import Labels

    lab = Labels(pod="kubernetes_pod_name", namespace="kubernetes_namespace", hosts=("node",), model_name="model")
    s = Scope(namespace="llm", pods=("vllm-0",), model_name="m", labels=lab)
    assert ADAPTERS["queueDepth"].query(QD, s) == \
        'vllm:num_requests_waiting{kubernetes_namespace="llm",kubernetes_pod_name=~"vllm\\\\-0",model="m"}'
    gq = ADAPTERS["gpuUtilization"].query(SignalSpec("gpuUtilization", 80), s)
    assert 'exported_kubernetes_namespace="llm",exported_kubernetes_pod_name=~' in gq
    hq = ADAPTERS["gpuUtilization"].query(SignalSpec("gpuUtilization", 80), Scope(hosts=("n1",), labels=lab))
    assert hq == '(DCGM_FI_DEV_GPU_UTIL{node=~"n1"})'
    client, _ = client_for(lambda q: vector(({"kubernetes_pod_name": "vllm-0"}, 3)))
    assert read_signal(client, QD, NOW, scope=s, ready=1).value == 3.0
    for bad in ({"pod": "pod-name"}, {"namespace": ""}, {"hosts": ()}, {"model_name": "1x"}):
        with pytest.raises(ValueError):
            Labels(**bad)


def test_activation_query_is_scoped_and_escaped():
    from autoscaler.signals import activation_query
    from autoscaler.spec import ActivationSpec
    act = ActivationSpec(labels=(("destination_service_name", 'llm"} or vector(1) #'),))
    q = activation_query(act, "team-a")
    sel = ('{destination_service_namespace="team-a",'
           'destination_service_name="llm\\"} or vector(1) #"}')
    # growth over 1m, or the whole count of a counter born within it
    assert q == (f"clamp_min(sum(istio_requests_total{sel}) - sum(istio_requests_total{sel} offset 1m), 0)"
                 f" or sum(istio_requests_total{sel})")


@pytest.mark.parametrize("at_zero, act, want", [
    # serving: every unknown input is reported
    (False, 0.0, {"queueDepth", "arrivalRate"}),
    # at zero: the pods' series are gone as expected; only the gateway's absence is a fault
    (True, 0.0, set()),
    (True, None, {"activation"}),
])
def test_observation_at_zero_reports_only_the_activation(at_zero, act, want):
    from autoscaler.signals import Reading, observation
    act_r = Reading(act, "0 requests" if act is not None else "no series")
    obs, notes = observation(0, 0, 0, {"queueDepth": Reading(None, "no series")}, Reading(None, "no series"),
                             act_r, at_zero=at_zero)
    assert set(notes) == want
    assert obs.signals["queueDepth"] is None and obs.activation == act  # the policy still sees them unknown
    assert obs.notes == {"queueDepth": "no series"}  # and says why in its reason
