from __future__ import annotations

import copy

import pytest

from autoscaler.spec import AutoscalerSpec, SpecError, parse_spec

BASE = {
    "scaleTargetRef": {"name": "llama-8b"},
    "maxReplicas": 10,
    "signals": [{"type": "queueDepth", "target": 5}],
}


def with_(**changes):
    d = copy.deepcopy(BASE)
    for k, v in changes.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    return d


def test_defaults_match_hpa_and_kpa():
    s = parse_spec(BASE)
    assert s.scale_target_ref.api_version == "apps/v1" and s.scale_target_ref.kind == "Deployment"
    assert (s.min_replicas, s.max_replicas, s.warm_replicas) == (1, 10, 0)
    b = s.behavior
    assert b.tolerance == 0.1                                   # HPA
    assert b.scale_down.stabilization_window_s == 300          # HPA
    assert (b.scale_down.max_percent, b.scale_down.period_s) == (100, 15)
    assert b.scale_up.stabilization_window_s == 0
    assert (b.scale_up.max_pods, b.scale_up.max_percent, b.scale_up.period_s) == (4, 100, 15)  # max(100%, 4)/15 s
    assert (b.panic.threshold, b.panic.window_s, b.panic.stable_window_s) == (2.0, 6, 60)      # KPA
    assert s.cold_start_s == 45 and s.slo is None
    assert s.concurrency_per_replica == 1  # each replica one M/M/c server, as before the field existed
    assert s.signals[0].name == "queueDepth" and s.signals[0].server == "vllm"


def test_full_spec():
    s = AutoscalerSpec.from_dict({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
        "minReplicas": 0, "maxReplicas": 8, "model": "meta-llama/Llama-3.1-8B-Instruct",
        "signals": [
            {"type": "queueDepth", "target": 5, "server": "tgi"},
            {"type": "gpuUtilization", "target": 80},
            {"type": "kvCache", "target": 0.8},
            {"type": "promql", "target": 3, "query": "sum(x)/count(x)", "name": "custom"},
            {"type": "promql", "target": 2, "query": "avg(y)"},
        ],
        "warmReplicas": 2,
        "behavior": {"tolerance": 0.05,
                     "scaleUp": {"maxPodsPerPeriod": 2, "periodSeconds": 30},
                     "scaleDown": {"stabilizationWindowSeconds": 120, "maxPodsPerPeriod": 1},
                     "panic": {"threshold": 3, "stableWindowSeconds": 30}},
        "slo": {"queueWaitSeconds": 2, "ttftSeconds": 1.5, "percentile": 0.95},
        "coldStartSeconds": 30, "serviceRatePerReplica": 4.5, "concurrencyPerReplica": 256,
        "forecast": {"alpha": 0.3, "beta": 0.1, "scaleUp": True},
        "activation": {"labels": {"destination_service_name": "llm"}},
        "scaleToZeroAfterSeconds": 900,
    })
    assert s.activation.metric == "istio_requests_total" and s.scale_to_zero_window_s == 900
    assert s.concurrency_per_replica == 256
    assert [x.name for x in s.signals] == ["queueDepth", "gpuUtilization", "kvCache", "custom", "promql"]
    assert s.signal("custom").query == "sum(x)/count(x)"
    # a direction's policies left out keep defaults; one given replaces both
    assert (s.behavior.scale_up.max_pods, s.behavior.scale_up.max_percent, s.behavior.scale_up.period_s) == (2, None, 30)
    assert (s.behavior.scale_down.max_pods, s.behavior.scale_down.max_percent) == (1, None)
    assert s.behavior.scale_down.stabilization_window_s == 120
    assert s.slo.wait_bound_s == 1.5  # queue wait is part of TTFT: the tighter bound
    assert s.slo.target_utilization == 0.8 and s.slo.percentile == 0.95
    assert (s.forecast.alpha, s.forecast.beta, s.forecast.scale_up) == (0.3, 0.1, True)
    # unset: the policy decides (it asks only while no recent rate is read); false is kept as false
    assert parse_spec(with_()).forecast.scale_up is None
    assert parse_spec(with_(forecast={"scaleUp": False})).forecast.scale_up is False
    assert parse_spec(with_(forecast={"scaleUp": None})).forecast.scale_up is None  # null: unset, as pruned


def test_repeated_types_get_numbered_names():
    s = parse_spec(with_(signals=[{"type": "promql", "target": 1, "query": "a"},
                                  {"type": "promql", "target": 1, "query": "b"}]))
    assert [x.name for x in s.signals] == ["promql-0", "promql-1"]


def test_slo_alone_is_enough():
    s = parse_spec(with_(signals=None, slo={"queueWaitSeconds": 1}, serviceRatePerReplica=2))
    assert s.signals == () and s.slo.queue_wait_s == 1


@pytest.mark.parametrize("spec,msg", [
    (with_(minReplicas=5, maxReplicas=3), "spec.maxReplicas (3) must be >= spec.minReplicas (5)"),
    (with_(maxReplicas=0), "spec.maxReplicas: must be >= 1"),
    (with_(maxReplicas=None), "spec.maxReplicas: required"),
    (with_(minReplicas=-1), "spec.minReplicas: must be >= 0"),
    (with_(minReplicas=1.5), "spec.minReplicas: must be an integer"),
    (with_(maxReplicas="10"), "spec.maxReplicas: must be a number"),
    (with_(maxReplicas=True), "spec.maxReplicas: must be a number"),
    (with_(warmReplicas=-2), "spec.warmReplicas: must be >= 0"),
    (with_(scaleTargetRef=None), "spec.scaleTargetRef: required"),
    (with_(scaleTargetRef={"name": " "}), "spec.scaleTargetRef.name: must not be empty"),
    (with_(scaleTargetRef={"kind": "Deployment"}), "spec.scaleTargetRef.name: required"),
    (with_(signals=[{"type": "queueDepth", "target": -5}]), "spec.signals[0].target: must be > 0"),
    (with_(signals=[{"type": "queueDepth", "target": 0}]), "spec.signals[0].target: must be > 0"),
    (with_(signals=[{"type": "queueDepth", "target": float("nan")}]), "must be finite"),
    (with_(signals=[{"type": "queueDepth"}]), "spec.signals[0].target: required"),
    (with_(signals=[{"type": "cpu", "target": 1}]), "spec.signals[0].type: unknown signal type 'cpu'"),
    (with_(signals=[{"type": "promql", "target": 1}]), "a promql signal needs a non-empty query"),
    (with_(signals=[{"type": "promql", "target": 1, "query": "  "}]), "a promql signal needs a non-empty query"),
    (with_(signals=[{"type": "queueDepth", "target": 1, "query": "x"}]), "only promql signals take a query"),
    (with_(signals=[{"type": "queueDepth", "target": 1, "server": "sglang"}]), "unknown server 'sglang'"),
    (with_(signals=[{"type": "kvCache", "target": 0.8, "server": "tgi"}]), "kvCache is read from vLLM"),
    (with_(signals=[{"type": "gpuUtilization", "target": 120}]), "gpuUtilization is a percent"),
    (with_(signals=[{"type": "kvCache", "target": 80}]), "kvCache is a fraction"),
    (with_(signals=[{"type": "queueDepth", "target": 1, "name": "a"},
                    {"type": "kvCache", "target": 0.5, "name": "a"}]), "duplicate signal name(s) a"),
    (with_(signals=[]), "at least one signal is needed"),
    (with_(signals="queueDepth"), "spec.signals: must be a list"),
    (with_(slo={"percentile": 0.9}), "spec.slo: needs queueWaitSeconds or ttftSeconds"),
    # the daemon does not measure the service rate: without it every scale-down would wait for ever
    (with_(slo={"queueWaitSeconds": 1}), "spec.serviceRatePerReplica: required with slo"),
    (with_(slo={"queueWaitSeconds": 1, "percentile": 1}), "spec.slo.percentile: must be < 1"),
    (with_(slo={"queueWaitSeconds": 0}), "spec.slo.queueWaitSeconds: must be > 0"),
    (with_(slo={"queueWaitSeconds": 1, "targetUtilization": 1.5}), "spec.slo.targetUtilization: must be <= 1"),
    (with_(behavior={"scaleUp": {"periodSeconds": 0}}), "spec.behavior.scaleUp.periodSeconds: must be > 0"),
    (with_(behavior={"scaleDown": {"maxPodsPerPeriod": 0}}), "spec.behavior.scaleDown.maxPodsPerPeriod: must be >= 1"),
    (with_(behavior={"tolerance": -0.1}), "spec.behavior.tolerance: must be >= 0"),
    (with_(behavior={"panic": {"threshold": 1}}), "spec.behavior.panic.threshold: must be > 1"),
    (with_(behavior={"scaleUp": {"stabilisationWindowSeconds": 5}}), "unknown field(s) stabilisationWindowSeconds"),
    (with_(replicas=3), "spec: unknown field(s) replicas"),
    (with_(serviceRatePerReplica=0), "spec.serviceRatePerReplica: must be >= 0.001"),
    (with_(concurrencyPerReplica=0), "spec.concurrencyPerReplica: must be >= 1, got 0"),
    (with_(concurrencyPerReplica=2.5), "spec.concurrencyPerReplica: must be an integer, got 2.5"),
    (with_(concurrencyPerReplica="32"), "spec.concurrencyPerReplica: must be a number, got '32'"),
    (with_(concurrencyPerReplica=True), "spec.concurrencyPerReplica: must be a number"),
    (with_(concurrencyPerReplica=5000), "spec.concurrencyPerReplica: must be <= 4096, got 5000"),
    (with_(forecast={"alpha": 0}), "spec.forecast.alpha: must be > 0"),
    (with_(forecast={"enabled": "yes"}), "spec.forecast.enabled: must be true or false"),
    (with_(forecast={"scaleUp": 1}), "spec.forecast.scaleUp: must be true or false"),
    ([], "spec: must be an object"),
])
def test_bad_specs(spec, msg):
    with pytest.raises(SpecError) as e:
        parse_spec(spec)
    assert msg in str(e.value)
