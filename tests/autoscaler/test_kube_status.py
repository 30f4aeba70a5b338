"""The Kubernetes adapter with the transport swapped for a function, and the status
helpers: selectors, scale retries on 409, Event folding, condition reasons."""
from __future__ import annotations

import json

import pytest
from kubernetes.client.rest import ApiException

from autoscaler import kube, status
from scheduler import contract


@pytest.mark.parametrize("sel,text", [
    ({"matchLabels": {"app": "llm", "tier": "a"}}, "app=llm,tier=a"),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]},
                           {"key": "x", "operator": "Exists"}, {"key": "y", "operator": "DoesNotExist"},
                           {"key": "z", "operator": "NotIn", "values": ["c"]}]},
     "app in (a,b),x,!y,z notin (c)"),
])
def test_selector_string(sel, text):
    assert kube.selector_string(sel) == text


@pytest.mark.parametrize("sel", [None, {}, {"matchLabels": {}}, {"matchExpressions": [{"key": "a", "operator": "Gt"}]}])
def test_selector_string_refuses(sel):
    with pytest.raises(ValueError):
        kube.selector_string(sel)


class FakeApi:
    """Records calls; answers from a script of (status, body) or exceptions."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    def __call__(self, api, method, path, body=None, **kw):
        self.calls.append((method, path, body, kw.get("content_type")))
        r = self.script.pop(0)
        if isinstance(r, Exception):
            raise r
        return r


def dep(rv, replicas):
    return {"metadata": {"name": "llm", "namespace": "ns", "resourceVersion": rv}, "spec": {"replicas": replicas}}


def test_scale_retries_on_conflict(monkeypatch):
    scale = {"kind": "Scale", "metadata": {"name": "llm", "namespace": "ns"}, "spec": {"replicas": 5}}
    fake = FakeApi([ApiException(status=409, reason="Conflict"), (200, dep("2", 3)), (200, scale)])
    monkeypatch.setattr(kube, "raw", fake)
    slept = []
    before = kube.scale(None, "ns", "llm", 5, deployment=dep("1", 2), sleep=slept.append)
    assert before == 3  # re-read after the conflict: someone had set 3
    (m1, p1, b1, ct1), (m2, p2, _, _), (m3, p3, b3, _) = fake.calls
    assert (m1, p1, ct1) == ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/llm/scale", kube.MERGE)
    assert b1 == {"spec": {"replicas": 5}, "metadata": {"resourceVersion": "1"}}
    assert (m2, p2) == ("GET", "/apis/apps/v1/namespaces/ns/deployments/llm")
    assert b3["metadata"]["resourceVersion"] == "2"
    assert len(slept) == 1 and 0.1 <= slept[0] <= 0.15


def test_scale_gives_up_after_attempts(monkeypatch):
    fake = FakeApi([ApiException(status=409, reason="Conflict"), (200, dep("2", 3))] * 2
                   + [ApiException(status=409, reason="Conflict")])
    monkeypatch.setattr(kube, "raw", fake)
    with pytest.raises(kube.KubeError) as e:
        kube.scale(None, "ns", "llm", 5, deployment=dep("1", 2), attempts=3, sleep=lambda s: None)
    assert e.value.reason == "Conflict"


def test_scale_noop_and_missing(monkeypatch):
    monkeypatch.setattr(kube, "raw", FakeApi([(404, None)]))
    assert kube.scale(None, "ns", "llm", 2, deployment=dep("1", 2)) is None
    with pytest.raises(kube.KubeError) as e:
        kube.scale(None, "ns", "llm", 2)
    assert e.value.reason == "TargetNotFound"


def test_set_serving_is_a_strategic_status_patch(monkeypatch):
    fake = FakeApi([(200, {})])
    monkeypatch.setattr(kube, "raw", fake)
    kube.set_serving(None, "ns", "p1", True, "Promoted", "why")
    method, path, body, ct = fake.calls[0]
    assert (method, path, ct) == ("PATCH", "/api/v1/namespaces/ns/pods/p1/status", kube.STRATEGIC)
    (c,) = body["status"]["conditions"]
    assert c["type"] == contract.SERVING_GATE and c["status"] == "True" and c["reason"] == "Promoted"


def test_add_prefetch_keeps_other_entries(monkeypatch):
    node = {"metadata": {"name": "n1", "resourceVersion": "7",
                         "annotations": {contract.PREFETCH: json.dumps(["a/b"])}}}
    fake = FakeApi([(200, node), (200, {})])
    monkeypatch.setattr(kube, "raw", fake)
    assert kube.add_prefetch(None, "n1", "org/m")
    body = fake.calls[1][2]
    assert body["metadata"]["resourceVersion"] == "7"
    assert json.loads(body["metadata"]["annotations"][contract.PREFETCH]) == ["a/b", {"model": "org/m"}]
    fake2 = FakeApi([(200, node)])
    monkeypatch.setattr(kube, "raw", fake2)
    assert not kube.add_prefetch(None, "n1", "a/b")  # already asked: no write
    assert len(fake2.calls) == 1


def test_events_fold_repeats(monkeypatch):
    fake = FakeApi([(201, {}), (200, {}), (201, {})])
    monkeypatch.setattr(kube, "raw", fake)
    t = [1000.0]
    rec = kube.EventRecorder(None, "me", clock=lambda: t[0])
    obj = {"metadata": {"name": "ias", "namespace": "ns", "uid": "u1"}}
    assert rec.record(obj, "Warning", "PrometheusTimeout", "timed out")
    t[0] += 5
    assert rec.record(obj, "Warning", "PrometheusTimeout", "timed out")  # folded, not written yet
    assert len(fake.calls) == 1
    t[0] += kube.EVENT_PATCH_EVERY_S
    assert rec.record(obj, "Warning", "PrometheusTimeout", "timed out")
    method, path, body, _ = fake.calls[1]
    assert method == "PATCH" and path.startswith("/api/v1/namespaces/ns/events/ias.") and body["count"] == 3
    assert rec.record(obj, "Warning", "TargetNotFound", "gone")  # another reason: a new Event
    created = fake.calls[2][2]
    assert created["involvedObject"] == {"apiVersion": "gpusched.io/v1alpha1", "kind": "InferenceAutoscaler",
                                         "name": "ias", "namespace": "ns", "uid": "u1", "resourceVersion": ""}
    assert created["reportingInstance"] == "me"


@pytest.mark.parametrize("text,reason", [
    ("Prometheus timed out after 2s", "PrometheusTimeout"),
    ("Prometheus unreachable: connection refused (http://x)", "PrometheusUnreachable"),
    ("Prometheus answered non-JSON (an HTML page or a proxy?): Expecting value", "PrometheusBadResponse"),
    ("Prometheus HTTP 502 (HTML page: <html>)", "PrometheusBadResponse"),
    ("Prometheus HTTP 400 bad_data: 1:9: parse error: unexpected <op:+>", "InvalidQuery"),
    ("Prometheus HTTP 503 unavailable: x", "PrometheusError"),
    ("query returned no series (target not scraped, wrong labels, or metric not exported)", "NoData"),
    ("query returned 3 series ({a='1'}...); one is expected: aggregate it", "AmbiguousQuery"),
    ("1 series are NaN/Inf (e.g. {}=nan)", "InvalidValue"),
    ("something else", "SignalUnknown"),
])
def test_classify_unknown(text, reason):
    assert status.classify_unknown(text) == reason


def test_signals_condition():
    assert status.signals_condition({}, ["queueDepth"])[:2] == ("True", "AllSignalsKnown")
    s, r, m = status.signals_condition({"q": "Prometheus timed out after 2s"}, ["q"])
    assert (s, r) == ("False", "PrometheusTimeout") and "q: Prometheus timed out" in m and "holding" in m
    assert status.signals_condition({"a": "Prometheus timed out", "b": "no series"}, [])[1] == "SignalsUnknown"


def test_merge_conditions_keeps_transition_time():
    old = [{"type": "Ready", "status": "True", "reason": "A", "lastTransitionTime": "t0"},
           {"type": "Custom", "status": "True", "lastTransitionTime": "t0"}]
    new = [status.cond("Ready", "True", "B", "m"), status.cond("SignalsKnown", "False", "NoData", "m")]
    got = {c["type"]: c for c in status.merge_conditions(old, new, "t1")}
    assert got["Ready"]["lastTransitionTime"] == "t0" and got["Ready"]["reason"] == "B"
    assert got["SignalsKnown"]["lastTransitionTime"] == "t1"
    assert "Custom" in got
    flipped = status.merge_conditions(old, [status.cond("Ready", "False", "X", "m")], "t2")
    assert flipped[0]["lastTransitionTime"] == "t2"
