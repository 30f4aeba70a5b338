"""spec.activation and scaleToZeroAfterSeconds: what minReplicas 0 needs to come back."""
import pytest

from autoscaler.spec import SpecError, parse_spec

BASE = {"scaleTargetRef": {"name": "llm"}, "maxReplicas": 4, "signals": [{"type": "queueDepth", "target": 5}]}
ISTIO = {"labels": {"destination_service_name": "llm"}}


def with_(**kw):
    return {**BASE, **kw}


def test_min_zero_needs_activation():
    with pytest.raises(SpecError, match="spec.activation: required with minReplicas 0"):
        parse_spec(with_(minReplicas=0))


def test_istio_defaults():
    s = parse_spec(with_(minReplicas=0, activation=ISTIO))
    a = s.activation
    assert (a.type, a.metric, a.namespace_label) == ("requestCount", "istio_requests_total",
                                                     "destination_service_namespace")
    assert a.labels == (("destination_service_name", "llm"),)


def test_ingress_nginx():
    s = parse_spec(with_(minReplicas=0, activation={
        "metric": "nginx_ingress_controller_requests", "namespaceLabel": "exported_namespace",
        "labels": {"service": "llm", "ingress": "models"}}))
    assert s.activation.labels == (("ingress", "models"), ("service", "llm"))  # sorted: one query text


@pytest.mark.parametrize("cold, given, window", [
    # max(300, 5 x coldStartSeconds) unless given
    (45, None, 300),      # 5*45=225 < 300
    (120, None, 600),     # 5*120=600
    (0, None, 300),
    (45, 60, 60),         # given wins
    (45, 0, 0),
])
def test_idle_window(cold, given, window):
    d = with_(minReplicas=0, activation=ISTIO, coldStartSeconds=cold)
    if given is not None:
        d["scaleToZeroAfterSeconds"] = given
    assert parse_spec(d).scale_to_zero_window_s == window


@pytest.mark.parametrize("act, msg", [
    ({}, "at least one label"),
    ({"labels": {"destination_service_name": ""}}, "non-empty string"),
    ({"labels": {"destination_service_name": 3}}, "non-empty string"),
    ({"labels": {"a-b": "x"}}, "not a Prometheus label name"),
    ({"labels": {"destination_service_namespace": "other"}}, "always this object's namespace"),
    ({"labels": {f"l{i}": "x" for i in range(9)}}, "at most 8 labels"),
    ({"metric": "rate(x[1m])", **ISTIO}, "not a Prometheus metric name"),
    ({"metric": 'x{a="b"}', **ISTIO}, "not a Prometheus metric name"),
    ({"namespaceLabel": "ns}", **ISTIO}, "not a Prometheus label name"),
    ({"type": "promql", **ISTIO}, "unknown activation type"),
    ({"query": "sum(x)", **ISTIO}, "unknown field"),
    ("istio", "must be an object"),
])
def test_hostile_activation(act, msg):
    with pytest.raises(SpecError, match=msg):
        parse_spec(with_(minReplicas=0, activation=act))


def test_negative_idle_window():
    with pytest.raises(SpecError, match="scaleToZeroAfterSeconds: must be >= 0"):
        parse_spec(with_(minReplicas=0, activation=ISTIO, scaleToZeroAfterSeconds=-1))
