"""The node agent publishing on the real API server, and the extender's snapshot following it."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import small
from tests.helpers import eventually

pytestmark = pytest.mark.integration

NODE = "gpu-node-0003"
RECORDING = Path(__file__).resolve().parents[1] / "agent" / "data" / "nvml-8xh100-10gib.json"


def make_model(root: Path, model_id: str, size: int) -> Path:
    d = root / model_id
    d.mkdir(parents=True)
    (d / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (d / "model.safetensors").write_bytes(b"\0" * size)
    return d


def test_extender_sees_what_the_agent_publishes(cluster, gpusched, core, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    model = make_model(cache, "acme/tiny-llm", 1 << 20)
    cluster.spawn("agent-test", [
        sys.executable, "-m", "scheduler.cli", "agent", "--kubeconfig", str(cluster.kubeconfig),
        "--node-name", NODE, "--cache-dir", str(cache), "--interval", "0.5", "--min-write-interval", "0.5",
        "--nvml-recording", str(RECORDING), "--no-residency", "--metrics-port", "0"])
    try:
        view = eventually(lambda: (v := gpusched.debug_node(NODE)).get("models", {}).get("acme/tiny-llm") and v,
                          timeout=30, what="extender sees the cached model")
        assert view["models"]["acme/tiny-llm"]["tier"] == "disk"
        # the recording holds 10 GiB on GPU 0 (10,767 MiB as nvidia-smi shows): not free for pods
        gpu0 = next(g for g in view["gpus"] if g["index"] == 0)
        assert gpu0["freeMiB"] <= gpu0["totalMiB"] - 10_000
        shutil.rmtree(model)
        eventually(lambda: "acme/tiny-llm" not in gpusched.debug_node(NODE).get("models", {}), timeout=30,
                   what="extender sees the model gone")
    finally:
        cluster.stop_process("agent-test")
        spec = next(s for s in small(4) if s.name == NODE)
        core.patch_node(NODE, {"metadata": {"annotations": node_body(spec)["metadata"]["annotations"]}})
        eventually(lambda: not gpusched.debug_node(NODE).get("models") and
                   all(g["freeMiB"] == g["totalMiB"] for g in gpusched.debug_node(NODE)["gpus"]),
                   timeout=30, what="node restored")
