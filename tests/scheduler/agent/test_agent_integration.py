"""The agent against the real API server of the test bed, through the chart's RBAC and
ValidatingAdmissionPolicy (deploy/manifests, rendered from deploy/chart/gpusched): it updates its own Node when the cache gains or loses a
model, prefetches what the Node asks for, and may change nothing else.

The agent's identity is its ServiceAccount impersonated with the node-name extra
that a bound token carries (Kubernetes >= 1.30): the test bed has no kubelets to
mount real tokens into pods.
"""
from __future__ import annotations

import json
import os
import pathlib
import time
import urllib.parse

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from scheduler import contract, nodeinfo
from scheduler.agent.daemon import Agent, AgentConfig
from scheduler.agent.metrics import AgentMetrics
from scheduler.agent.nvml import RecordedNVML
from scheduler.agent.prefetch import Prefetcher
from scheduler.agent.publish import NodePublisher
from tests.deploy import manifests
from tests.helpers import eventually
from tests.scheduler.agent.fakes import MODEL, SIZE, make_store

pytestmark = pytest.mark.integration

DATA = pathlib.Path(__file__).parent / "data"
SA_USER = manifests.sa_user("gpusched-agent")


def kubectl(cluster, *args: str) -> None:
    r = cluster.kubectl(*args)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def agent_rbac(cluster, core):
    manifests.apply(cluster)  # RBAC, the admission policies and the DaemonSet, with the rest of the chart
    # The API server loads a new policy asynchronously: wait until it denies.
    probe = f"agent-it-probe-{os.getpid() % 10000}"
    core.create_node({"metadata": {"name": probe}})
    try:
        eventually(lambda: _denied(as_agent(cluster, probe), probe), timeout=60, what="policy enforced")
    finally:
        core.delete_node(probe)
    yield
    # the agent's policies and RBAC go (other tests re-apply the manifests); not the namespaces
    kubectl(cluster, "delete", "--ignore-not-found",
            "validatingadmissionpolicybinding/gpusched-agent-own-node", "validatingadmissionpolicy/gpusched-agent-own-node",
            "clusterrolebinding/gpusched-agent", "clusterrole/gpusched-agent")
    kubectl(cluster, "delete", "--ignore-not-found", "-n", manifests.AGENT_NAMESPACE,
            "daemonset/gpusched-agent", "serviceaccount/gpusched-agent")


@pytest.fixture
def nodes(core):
    """Two plain Nodes (no kwok annotation, no GPU capacity: nothing schedules there)."""
    names = [f"agent-it-{os.getpid() % 10000}-{i}" for i in range(2)]
    for n in names:
        core.create_node({"metadata": {"name": n, "labels": {"keep": "me"}, "annotations": {"other.io/x": "1"}}})
    yield names
    for n in names:
        core.delete_node(n)


def as_agent(cluster, node: str | None) -> client.CoreV1Api:
    api = cluster.api_client()
    api.default_headers["Impersonate-User"] = SA_USER
    if node is not None:
        key = urllib.parse.quote("authentication.kubernetes.io/node-name", safe="")
        api.default_headers[f"Impersonate-Extra-{key}"] = node
    return client.CoreV1Api(api)


def _denied(api: client.CoreV1Api, node: str) -> bool:
    try:
        api.patch_node(node, {"metadata": {"labels": {"probe": str(time.monotonic_ns())}}},
                       _content_type="application/merge-patch+json")  # a new value each time: a real change
    except ApiException as exc:
        return exc.status == 403
    return False


def make_agent(cluster, node, cache_dir, clock, **kw):
    cfg = AgentConfig(node_name=node, cache_dirs=(str(cache_dir),), min_interval_s=1, heartbeat_s=120,
                      measure_residency=False, **kw)
    pub = NodePublisher(as_agent(cluster, node), node)
    return Agent(cfg, nvml=RecordedNVML.load(DATA / "nvml-8xh100-10gib.json"), publisher=pub,
                 metrics=AgentMetrics(node), clock=lambda: clock[0])


def node_report(core, name):
    return nodeinfo.report_from_annotations(core.read_node(name).metadata.annotations)


def test_agent_updates_its_node_when_the_cache_changes(cluster, core, agent_rbac, nodes, tmp_path):
    node = nodes[0]
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    clock = [0.0]
    agent = make_agent(cluster, node, cache_dir, clock)
    agent.start()
    try:
        assert agent.tick().published, agent.publisher.last_error
        rep = node_report(core, node)
        assert rep.errors == () and len(rep.gpus) == 8 and rep.models == ()
        assert rep.gpus[0].memory_used // 2**20 == 10767
        labels = core.read_node(node).metadata.labels
        assert labels[contract.GPU_PRODUCT_LABEL] == "NVIDIA-H100-80GB-HBM3" and labels["keep"] == "me"

        make_store(cache_dir, manifest=False)  # a complete model appears in the cache
        clock[0] += 2
        res = agent.tick()
        assert res.published and "models +org/tiny" in res.reason
        assert {m.model: m.bytes for m in node_report(core, node).models} == {MODEL: SIZE}

        (cache_dir / "org" / "tiny" / "model.safetensors").unlink()  # and loses its weights
        (cache_dir / "org" / "tiny" / "model.safetensors").write_bytes(b"")
        clock[0] += 2
        assert agent.tick().published
        assert node_report(core, node).models == ()
        events = core.list_namespaced_event("default", field_selector=f"involvedObject.name={node}").items
        # the agent's own Events (the session's extender may also say it distrusts this test node's
        # report, and the node controller that it registered the node)
        own = [e for e in events if e.source.component == agent.publisher.component]
        assert [e.reason for e in own] == ["ModelCacheProblem"]
        assert "0 bytes" in own[0].message and own[0].involved_object.kind == "Node"
        assert core.read_node(node).metadata.annotations["other.io/x"] == "1"
    finally:
        agent.close()


def test_prefetch_requested_on_the_node(cluster, core, agent_rbac, nodes, tmp_path):
    node = nodes[0]
    store, cache_dir = tmp_path / "store", tmp_path / "cache"
    make_store(store)
    cache_dir.mkdir()
    clock = [0.0]
    agent = make_agent(cluster, node, cache_dir, clock)
    agent.prefetcher = Prefetcher(str(cache_dir), [str(store)])
    core.patch_node(node, {"metadata": {"annotations": {contract.PREFETCH: json.dumps([{"model": MODEL}])}}})
    agent.start()
    try:
        agent.tick()
        assert agent.wait_prefetches(60)
        clock[0] += 2
        res = agent.tick()
        assert res.published and MODEL in {m.model for m in node_report(core, node).models}
        reasons = eventually(lambda: [e.reason for e in core.list_namespaced_event(
            "default", field_selector=f"involvedObject.name={node}").items if e.reason.startswith("Prefetch")],
            what="prefetch events")
        assert "PrefetchStarted" in reasons and "Prefetched" in reasons
        clock[0] += 30
        agent.tick()  # the next poll prunes the done request: a JSON patch the admission policy admits
        assert contract.PREFETCH not in (core.read_node(node).metadata.annotations or {})
    finally:
        agent.close()


@pytest.mark.parametrize("before, after, allowed", [
    ('["org/a","org/b"]', '["org/b"]', True),  # a done request pruned
    ('["org/a"]', None, True),  # the last one: the annotation removed
    ('["org/a"]', '["org/a","org/evil"]', False),  # never adds a request
    ('["org/a"]', '["org/b"]', False),  # nor swaps one for another of the same length
])
def test_the_agent_may_only_shorten_the_prefetch_request(cluster, core, agent_rbac, nodes, before, after, allowed):
    own = nodes[0]
    core.patch_node(own, {"metadata": {"annotations": {contract.PREFETCH: before}}})
    body = {"metadata": {"annotations": {contract.PREFETCH: after}}}
    api = as_agent(cluster, own)
    if allowed:
        api.patch_node(own, body, _content_type="application/merge-patch+json")
    else:
        with pytest.raises(ApiException) as exc:
            api.patch_node(own, body, _content_type="application/merge-patch+json")
        assert exc.value.status == 403, exc.value.body
    assert (core.read_node(own).metadata.annotations or {}).get(contract.PREFETCH) == (after if allowed else before)


@pytest.mark.parametrize("what, token_node, target, body, allowed", [
    ("own annotations", "self", "self", {"metadata": {"annotations": {contract.REPORTED_AT: "2025-01-01T00:00:00Z"}}},
     True),
    ("own labels", "self", "self", {"metadata": {"labels": {contract.GPU_COUNT_LABEL: "8"}}}, True),
    ("another node", "self", "other", {"metadata": {"annotations": {contract.REPORTED_AT: "x"}}}, False),
    ("a token without a node", None, "self", {"metadata": {"annotations": {contract.REPORTED_AT: "x"}}}, False),
    ("a foreign annotation", "self", "self", {"metadata": {"annotations": {"other.io/x": "2"}}}, False),
    ("deleting a foreign annotation", "self", "self", {"metadata": {"annotations": {"other.io/x": None}}}, False),
    ("the prefetch request", "self", "self", {"metadata": {"annotations": {contract.PREFETCH: "[]"}}}, False),
    ("a foreign label", "self", "self", {"metadata": {"labels": {"keep": "not"}}}, False),
    ("a taint", "self", "self", {"spec": {"taints": [{"key": "x", "effect": "NoSchedule"}]}}, False),
])
def test_the_agent_may_change_only_its_own_keys_on_its_own_node(cluster, core, agent_rbac, nodes, what, token_node,
                                                                target, body, allowed):
    own, other = nodes
    api = as_agent(cluster, own if token_node == "self" else token_node)
    name = own if target == "self" else other
    if allowed:
        api.patch_node(name, body, _content_type="application/merge-patch+json")
    else:
        with pytest.raises(ApiException) as exc:
            api.patch_node(name, body, _content_type="application/merge-patch+json")
        assert exc.value.status == 403, exc.value.body
        n = core.read_node(name)
        assert n.metadata.annotations.get("other.io/x") == "1" and n.metadata.labels.get("keep") == "me"
        assert not n.spec.taints or all(t.key != "x" for t in n.spec.taints)
