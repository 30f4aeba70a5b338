"""The CRD on the real kube-apiserver: its schema and CEL rules reject bad specs with
our messages, defaults come back in a form spec.py parses, the status subresource
and `kubectl get ias` columns work."""
from __future__ import annotations

import copy
import json

import pytest

from autoscaler.spec import parse_spec
from tests.autoscaler.bed import GROUP, PLURAL, VERSION, install_crd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ias(cluster):
    from kubernetes import client

    install_crd(cluster)
    return client.CustomObjectsApi(cluster.api_client())


def obj(name, **spec):
    o = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceAutoscaler", "metadata": {"name": name},
         "spec": {"scaleTargetRef": {"name": "llm"}, "maxReplicas": 4, "signals": [{"type": "queueDepth", "target": 5}]}}
    for k, v in spec.items():
        if v is None:
            o["spec"].pop(k, None)
        else:
            o["spec"][k] = copy.deepcopy(v)
    return o


@pytest.mark.parametrize("spec,message", [
    ({"minReplicas": 5, "maxReplicas": 3}, "maxReplicas must be >= minReplicas"),
    ({"signals": [{"type": "queueDepth", "target": -1}]}, "spec.signals[0].target in body should be greater than 0"),
    ({"signals": [{"type": "cpu", "target": 1}]}, 'Unsupported value: "cpu"'),
    ({"signals": [{"type": "promql", "target": 1, "query": "  "}]}, "a promql signal needs a non-empty query"),
    ({"signals": [{"type": "promql", "target": 1}]}, "a promql signal needs a non-empty query"),
    ({"signals": [{"type": "queueDepth", "target": 1, "query": "x"}]}, "only promql signals take a query"),
    ({"signals": [{"type": "gpuUtilization", "target": 120}]}, "gpuUtilization target is a percent"),
    ({"signals": [{"type": "kvCache", "target": 0.5, "server": "tgi"}]}, "kvCache is read from vLLM's metrics only"),
    ({"signals": []}, "at least one signal is needed"),
    ({"slo": {}, "serviceRatePerReplica": 2}, "slo needs queueWaitSeconds or ttftSeconds"),
    ({"slo": {"queueWaitSeconds": 1}}, "serviceRatePerReplica is required with slo"),
    ({"minReplicas": -1}, "should be greater than or equal to 0"),
    ({"minReplicas": 0}, "minReplicas 0 needs an activation"),
    ({"minReplicas": 0, "activation": {"labels": {"a-b": "x"}}}, "keys must be Prometheus label names"),
    ({"minReplicas": 0, "activation": {"labels": {}}}, "should have at least 1 properties"),
], ids=["max<min", "target<0", "type", "blank-query", "no-query", "query-on-queue", "gpu>100", "kv-tgi",
        "no-signals", "empty-slo", "slo-no-rate", "min<0",
        "zero-no-activation", "activation-label", "activation-no-labels"])
def test_api_server_rejects(ias, namespace, spec, message):
    from kubernetes.client.rest import ApiException
    with pytest.raises(ApiException) as e:
        ias.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj("bad", **spec))
    assert e.value.status == 422
    assert message in json.loads(e.value.body)["message"]


def test_scale_to_zero_object_defaults_parse(ias, namespace):
    ias.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj(
        "zero", minReplicas=0, activation={"labels": {"destination_service_name": "llm"}}))
    got = ias.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "zero")
    s = parse_spec(got["spec"])
    assert s.min_replicas == 0 and s.activation.metric == "istio_requests_total"
    assert s.activation.namespace_label == "destination_service_namespace"


def test_defaults_parse_and_status_shows(ias, namespace, cluster):
    ias.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj("llm", warmReplicas=1))
    ias.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                        obj("slo-only", signals=None, slo={"queueWaitSeconds": 1},
                                            serviceRatePerReplica=2))
    got = ias.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "llm")
    assert got["spec"]["minReplicas"] == 1 and got["spec"]["signals"][0]["server"] == "vllm"
    s = parse_spec(got["spec"])  # what the API server stores, defaults included, parses
    assert (s.min_replicas, s.max_replicas, s.warm_replicas, s.cold_start_s) == (1, 4, 1, 45)
    assert parse_spec(ias.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "slo-only")["spec"]).slo

    ias.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "llm", {"status": {
        "currentReplicas": 2, "desiredReplicas": 3, "warmReplicas": 1,
        "lastDecision": {"time": "2025-01-01T00:00:00Z", "replicas": 3, "rule": "signal:queueDepth",
                         "reason": "queueDepth 7/replica vs target 5 over 2 ready -> ceil(2*7/5)=3"},
        "conditions": [{"type": "ScalingActive", "status": "True", "reason": "SignalsKnown", "message": "",
                        "lastTransitionTime": "2025-01-01T00:00:00Z"}]}})
    r = cluster.kubectl("-n", namespace, "get", "ias", "llm", "--no-headers", "-o", "wide")
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    # NAME TARGET MIN MAX CURRENT DESIRED WARM RULE REASON... AGE
    assert out[:8] == ["llm", "llm", "1", "4", "2", "3", "1", "signal:queueDepth"]
