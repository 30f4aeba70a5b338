"""DNS-1123 names (scheduler.names) and the adapter's paths built from them
(autoscaler.kube): a name that is not one the API server could have given is refused
before a request, every segment is quoted, and an answer about another object is
refused."""
from __future__ import annotations

import pytest

from autoscaler import kube
from scheduler import names


@pytest.mark.parametrize("name,ok", [
    ("llm", True),
    ("llama-3.1-8b", True),            # dots: a subdomain
    ("a" * 253, True),
    ("a" * 254, False),                # longer than 253
    ("../../tenant-b/deployments/victim", False),
    ("victim/scale", False),
    ("..", False),
    ("Llm", False),                    # upper case
    ("-llm", False), ("llm-", False), ("llm.", False),
    ("llm%2Fx", False),                # pre-quoted
    ("llm\n", False), ("llm x", False),
    ("", False), ("  ", False),
    (None, False), (7, False),
])
def test_subdomain(name, ok):
    assert names.is_subdomain(name) is ok


@pytest.mark.parametrize("name,ok", [
    ("tenant-a", True), ("a" * 63, True), ("a" * 64, False), ("kube.system", False), ("../x", False), ("", False),
])
def test_label(name, ok):
    assert names.is_label(name) is ok


@pytest.mark.parametrize("build", [
    lambda: kube.deployment_path("tenant-a", "../../tenant-b/deployments/victim", "scale"),
    lambda: kube.deployment_path("tenant-a/../kube-system", "x"),
    lambda: kube.pod_path("ns", "p/../../x", "status"),
    lambda: kube.node_path("n/../../namespaces/kube-system"),
    lambda: kube.ias_path("ns", "a?b=c", "status"),
    lambda: kube.events_path("ns", "e#frag"),
    lambda: kube.pods_path("NS"),
])
def test_paths_refuse_names_that_are_not_names(build):
    with pytest.raises(kube.KubeError) as e:
        build()
    assert e.value.reason == "InvalidName"


def test_paths_of_good_names():
    assert kube.deployment_path("tenant-a", "llama-3.1", "scale") == \
        "/apis/apps/v1/namespaces/tenant-a/deployments/llama-3.1/scale"
    assert kube.ias_path("ns", "llm", "status") == "/apis/gpusched.io/v1alpha1/namespaces/ns/inferenceautoscalers/llm/status"
    assert kube.ias_path() == "/apis/gpusched.io/v1alpha1/inferenceautoscalers"
    assert kube.pod_path("ns", "p-0", "status") == "/api/v1/namespaces/ns/pods/p-0/status"


@pytest.mark.parametrize("answer,ok", [
    ({"metadata": {"namespace": "tenant-a", "name": "llm"}}, True),
    ({"metadata": {"namespace": "tenant-b", "name": "llm"}}, False),
    ({"metadata": {"namespace": "tenant-a", "name": "victim"}}, False),
    ({"metadata": {}}, False),
    ({}, False),
    (None, False),
    ([], False),
])
def test_get_deployment_checks_what_came_back(monkeypatch, answer, ok):
    monkeypatch.setattr(kube, "raw", lambda api, method, path, *a, **kw: (200, answer))
    if ok:
        assert kube.get_deployment(None, "tenant-a", "llm") == answer
    else:
        with pytest.raises(kube.KubeError) as e:
            kube.get_deployment(None, "tenant-a", "llm")
        assert e.value.reason == "UnexpectedObject"


def test_event_names_stay_names_for_the_longest_object_name(monkeypatch):
    posted = []
    monkeypatch.setattr(kube, "raw", lambda api, method, path, body=None, **kw: posted.append((path, body)) or (201, {}))
    rec = kube.EventRecorder(None, "me")
    obj = {"metadata": {"namespace": "ns", "name": "a" * 253, "uid": "u"}}
    assert rec.record(obj, "Normal", "R", "m")
    (path, body), = posted
    assert path == "/api/v1/namespaces/ns/events" and names.is_subdomain(body["metadata"]["name"])


def test_the_crd_pattern_is_the_parser_rule():
    import yaml
    from tests.deploy import manifests
    crd = yaml.safe_load(manifests.CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["scaleTargetRef"]["properties"]["name"]["pattern"] == names.SUBDOMAIN_PATTERN
    assert spec["maxReplicas"]["maximum"] == 10_000 and spec["serviceRatePerReplica"]["minimum"] == 0.001
