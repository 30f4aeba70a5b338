"""The example's serving path, offline: what the agent prefetched into HF_HOME is what
a serving container with the same HF_HOME and HF_HUB_OFFLINE=1 resolves, with every
socket blocked, and the agent's scanner reports the same models for locality.

The serving side runs in a fresh interpreter (HF_HOME and HF_HUB_OFFLINE are read
when huggingface_hub is imported, as in the container) and makes the calls vLLM and
transformers make: snapshot_download(repo, allow_patterns=..., local_files_only=True,
cache_dir=None) for the weights (vLLM's weight_utils.download_weights_from_hf with
no --download-dir) and hf_hub_download for config and tokenizer."""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from scheduler.agent.cache import scan_cache
from scheduler.agent.prefetch import Prefetcher, PrefetchRequest
from tests.scheduler.agent.fakehub import FakeHub, Repo
from tests.scheduler.agent.fakes import FILES, SIZE, make_store

ROOT = pathlib.Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "deploy" / "examples" / "vllm-autoscaled.yaml"
VALUES = ROOT / "deploy" / "chart" / "gpusched" / "values.yaml"


def serving_container() -> tuple[dict, dict]:
    """The example's vLLM container and its pod spec."""
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    spec = deploy["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "vllm"]
    return container, spec


def example_model() -> str:
    container, _ = serving_container()
    (arg,) = [a for a in container["args"] if a.startswith("--model=")]
    return arg.split("=", 1)[1]


HUB_MODEL, DIR_MODEL = example_model(), "org/local"
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"

SERVE = r"""
import hashlib, json, socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[:2]))
    raise OSError("network blocked by the test")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.getaddrinfo = refuse
socket.create_connection = refuse

from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

out = {"offline": constants.HF_HUB_OFFLINE, "hub_cache": constants.HF_HUB_CACHE, "models": {}}
for repo in sys.argv[1:]:
    try:
        weights = snapshot_download(repo, allow_patterns=["*.safetensors", "*.json"], cache_dir=None,
                                    local_files_only=constants.HF_HUB_OFFLINE)
        config = hf_hub_download(repo, "config.json")
        tokenizer = hf_hub_download(repo, "tokenizer/tokenizer.json")
        out["models"][repo] = {
            "snapshot": weights, "config": config, "tokenizer": tokenizer,
            "weights_sha256": hashlib.sha256(open(weights + "/model.safetensors", "rb").read()).hexdigest(),
            "config_bytes": open(config, "rb").read().decode()}
    except LocalEntryNotFoundError as exc:
        out["models"][repo] = {"error": type(exc).__name__}
out["attempts"] = attempts
print(json.dumps(out))
"""


@pytest.fixture
def hf_home(tmp_path):
    """An HF_HOME filled by the agent's prefetch: one model from a Hub endpoint on
    loopback (stopped afterwards), one from a directory store."""
    home = tmp_path / "hf"
    home.mkdir()
    store = tmp_path / "store"
    make_store(store, model=DIR_MODEL)
    hub = FakeHub({HUB_MODEL: Repo(COMMIT, dict(FILES))}).start()
    try:
        p = Prefetcher(str(home), [hub.url, str(store)])
        p.fetch(PrefetchRequest(HUB_MODEL))
        p.fetch(PrefetchRequest(DIR_MODEL, source=str(store / "org" / "local")))
    finally:
        hub.stop()
    return home


def test_the_example_reads_the_agents_cache_as_hf_home():
    """The example's container: HF_HOME is where the agent's cache dir is mounted, offline,
    and no --download-dir sends vLLM elsewhere."""
    container, spec = serving_container()
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    cache_dir = yaml.safe_load(VALUES.read_text())["agent"]["cacheDir"]
    (volume,) = [v for v in spec["volumes"] if v.get("hostPath", {}).get("path") == cache_dir]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert env["HF_HOME"] == mount["mountPath"]
    assert env["HF_HUB_OFFLINE"] == "1"
    assert not [a for a in container["args"] if a.startswith("--download-dir")]


def serve_offline(home, *repos: str) -> dict:
    """The example's container environment, with HF_HOME at the host directory it mounts."""
    container, _ = serving_container()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update({e["name"]: e["value"] for e in container["env"] if e["name"].startswith("HF_")})
    env.update(HF_HOME=str(home), HF_MODULES_CACHE=str(home.parent / "modules"), HF_HUB_DISABLE_TELEMETRY="1")
    proc = subprocess.run([sys.executable, "-c", SERVE, *repos], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_prefetched_weights_are_what_the_serving_container_resolves_offline(hf_home):
    out = serve_offline(hf_home, HUB_MODEL, DIR_MODEL, "org/never-prefetched")
    assert out["offline"] is True and out["hub_cache"] == str(hf_home / "hub")
    assert out["attempts"] == []  # not one connection tried
    for repo in (HUB_MODEL, DIR_MODEL):
        got = out["models"][repo]
        assert got["snapshot"].startswith(str(hf_home / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots"))
        assert got["config"] == got["snapshot"] + "/config.json"
        assert got["tokenizer"] == got["snapshot"] + "/tokenizer/tokenizer.json"
        assert got["weights_sha256"] == hashlib.sha256(FILES["model.safetensors"]).hexdigest()
        assert got["config_bytes"] == FILES["config.json"].decode()
    assert out["models"][HUB_MODEL]["snapshot"].endswith("/" + COMMIT)
    # offline really is offline: what was not prefetched is not found, not downloaded
    assert out["models"]["org/never-prefetched"] == {"error": "LocalEntryNotFoundError"}

    scan = scan_cache([hf_home], measure_residency=False)
    assert {(m.model, m.bytes, m.layout) for m in scan.models} == {(HUB_MODEL, SIZE, "hf"), (DIR_MODEL, SIZE, "hf")}
    by_model = {m.model: m for m in scan.models}
    assert by_model[HUB_MODEL].revision == COMMIT
    assert by_model[HUB_MODEL].path == out["models"][HUB_MODEL]["snapshot"]
    assert by_model[DIR_MODEL].path == out["models"][DIR_MODEL]["snapshot"]
    assert scan.problems == () and scan.incomplete == ()
