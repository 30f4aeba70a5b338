"""The daemon's side of prefetch: done requests pruned from the Node's annotation, and
the cache quota evicting the least recently used model no pod on the node uses."""
from __future__ import annotations

import json
import os
from types import SimpleNamespace

from scheduler import contract
from scheduler.agent.cache import scan_cache
from scheduler.agent.daemon import Agent, AgentConfig
from scheduler.agent.metrics import AgentMetrics
from scheduler.agent.prefetch import Prefetcher
from scheduler.agent.publish import NodePublisher
from tests.scheduler.agent.fakes import SIZE, FakeCoreV1, make_store


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_agent(tmp_path, annotation, **cfg):
    store = tmp_path / "store"
    for m in ("org/a", "org/b", "org/c"):
        make_store(store, model=m)
    api = FakeCoreV1({contract.PREFETCH: json.dumps(annotation)})
    clock = Clock()
    cache_dir = tmp_path / "hf"
    cache_dir.mkdir()
    agent = Agent(AgentConfig(node_name="gpu-7", cache_dirs=(str(cache_dir),), measure_residency=False, **cfg),
                  publisher=NodePublisher(api, "gpu-7", clock=clock), metrics=AgentMetrics("gpu-7"), clock=clock,
                  prefetcher=Prefetcher(str(cache_dir), [str(store)]))
    agent.start()
    return agent, api, clock, cache_dir


def settle(agent, clock) -> list[str]:
    """Tick until every queued prefetch is done and collected; the Events' reasons."""
    agent.tick()
    assert agent.wait_prefetches(30)
    clock.t += 30
    agent.tick()
    return [b["reason"] for _, b in agent.publisher.api.events]


def cached(cache_dir) -> set[str]:
    return {m.model for m in scan_cache([cache_dir], measure_residency=False).models}


def pod(model: str, phase: str = "Running") -> SimpleNamespace:
    return SimpleNamespace(metadata=SimpleNamespace(annotations={contract.MODEL: model}, labels={}),
                           status=SimpleNamespace(phase=phase))


def test_done_requests_are_pruned_and_the_rest_kept(tmp_path):
    agent, api, clock, cache_dir = make_agent(tmp_path, ["org/a", {"model": "../x"}])
    settle(agent, clock)
    assert cached(cache_dir) == {"org/a"}
    assert json.loads(api.annotations[contract.PREFETCH]) == [{"model": "../x"}]
    agent.close()


def test_the_last_done_request_removes_the_annotation(tmp_path):
    agent, api, clock, _ = make_agent(tmp_path, ["org/a"])
    settle(agent, clock)
    assert contract.PREFETCH not in api.annotations
    agent.close()


def test_a_request_added_meanwhile_is_not_lost(tmp_path, monkeypatch):
    agent, api, clock, _ = make_agent(tmp_path, ["org/a"])
    agent.tick()
    assert agent.wait_prefetches(30)
    real_read = agent.publisher.node_annotations

    def read_then_someone_writes():
        seen = real_read()
        api.annotations[contract.PREFETCH] = json.dumps(["org/a", "org/b"])  # after our read, before our patch
        return seen

    monkeypatch.setattr(agent.publisher, "node_annotations", read_then_someone_writes)
    clock.t += 30
    agent.tick()
    assert json.loads(api.annotations[contract.PREFETCH]) == ["org/a", "org/b"]  # the test op refused our write
    assert api.json_patches == []
    monkeypatch.undo()
    clock.t += 30
    agent.tick()  # the next poll reads the new list and prunes only what is done
    assert json.loads(api.annotations[contract.PREFETCH]) == ["org/b"]
    agent.close()


def test_quota_evicts_the_least_recently_used_model_no_pod_uses(tmp_path):
    # quota 2.5 models: a and b cached; c coming needs one out. a is older but a pod
    # on the node serves it, so b goes.
    agent, api, clock, cache_dir = make_agent(tmp_path, ["org/a"], cache_quota_bytes=SIZE * 5 // 2)
    settle(agent, clock)
    api.annotations[contract.PREFETCH] = json.dumps(["org/b"])
    clock.t += 30
    settle(agent, clock)
    assert cached(cache_dir) == {"org/a", "org/b"}
    hub = cache_dir / "hub"
    for model, when in (("org/a", 1_000_000), ("org/b", 2_000_000)):  # a used longest ago
        for f in (hub / f"models--{model.replace('/', '--')}" / "blobs").iterdir():
            os.utime(f, (when, when))
    api.pods = [pod("org/a"), pod("org/b", "Succeeded")]
    api.annotations[contract.PREFETCH] = json.dumps(["org/c"])
    clock.t += 30
    reasons = settle(agent, clock)
    assert cached(cache_dir) == {"org/a", "org/c"}
    (msg,) = [b["message"] for _, b in api.events if b["reason"] == "ModelEvicted"]
    assert msg.startswith("org/b for org/c: ") and "PrefetchFailed" not in reasons
    agent.close()


def test_quota_fails_the_prefetch_rather_than_evict_what_pods_use(tmp_path):
    agent, api, clock, cache_dir = make_agent(tmp_path, ["org/a"], cache_quota_bytes=SIZE * 3 // 2)
    settle(agent, clock)
    api.pods = [pod("org/a")]
    api.annotations[contract.PREFETCH] = json.dumps(["org/b"])
    clock.t += 30
    settle(agent, clock)
    assert cached(cache_dir) == {"org/a"}
    (msg,) = [b["message"] for _, b in api.events if b["reason"] == "PrefetchFailed"]
    assert "cache quota" in msg and "models in use hold" in msg
    agent.close()


def test_quota_never_evicts_blind_when_pods_cannot_be_listed(tmp_path):
    agent, api, clock, cache_dir = make_agent(tmp_path, ["org/a"], cache_quota_bytes=SIZE * 3 // 2)
    settle(agent, clock)
    api.pods = None  # 403
    api.annotations[contract.PREFETCH] = json.dumps(["org/b"])
    clock.t += 30
    settle(agent, clock)
    assert cached(cache_dir) == {"org/a"}
    (msg,) = [b["message"] for _, b in api.events if b["reason"] == "PrefetchFailed"]
    assert "pods on this node cannot be listed" in msg
    agent.close()


def test_cli_wires_the_token_file_and_the_quota(tmp_path):
    import argparse

    from scheduler.agent.cli import add_arguments, build_agent

    p = argparse.ArgumentParser()
    add_arguments(p)
    (tmp_path / "store").mkdir()
    args = p.parse_args(["--no-publish", "--cache-dir", str(tmp_path / "hf"), "--model-store", "hf",
                         "--model-store", str(tmp_path / "store"), "--hf-token-file", str(tmp_path / "token"),
                         "--cache-quota", "500Gi"])
    agent = build_agent(args)
    assert agent.config.cache_quota_bytes == 500 * 2**30
    assert agent.prefetcher.token_file == str(tmp_path / "token")
    assert agent.prefetcher.stores == ["https://huggingface.co", str((tmp_path / "store").resolve())]
    assert agent.prefetcher.hub_dir == str((tmp_path / "hf").resolve() / "hub")


def test_a_request_is_pruned_only_once_the_node_shows_the_model(tmp_path):
    # writes at most every 1000 s: the model is cached at t+30 but published only at t+1000,
    # and until then the request stays (the prewarmer would otherwise ask again)
    agent, api, clock, cache_dir = make_agent(tmp_path, ["org/a"], min_interval_s=1000, heartbeat_s=2000)
    settle(agent, clock)
    assert cached(cache_dir) == {"org/a"}
    assert "org/a" not in api.patches[-1][1]["metadata"]["annotations"][contract.MODEL_CACHE]
    assert json.loads(api.annotations[contract.PREFETCH]) == ["org/a"]
    clock.t += 1000
    agent.tick()
    assert "org/a" in api.patches[-1][1]["metadata"]["annotations"][contract.MODEL_CACHE]
    assert contract.PREFETCH not in api.annotations
    agent.close()
