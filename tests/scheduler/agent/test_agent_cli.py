"""`gpusched agent`: --once JSON output, no-GPU mode, --require-gpus, help text."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from scheduler import cli as gpusched_cli
from scheduler import nodeinfo

ROOT = pathlib.Path(__file__).resolve().parents[3]
DATA = pathlib.Path(__file__).parent / "data"


def agent(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NODE_NAME": ""}
    return subprocess.run([sys.executable, "-m", "scheduler.agent", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def cache_dir(tmp_path):
    d = tmp_path / "models"
    (d / "org" / "m").mkdir(parents=True)
    (d / "org" / "m" / "config.json").write_text("{}")
    (d / "org" / "m" / "model.safetensors").write_bytes(b"w" * 2048)
    (d / "org" / "empty").mkdir()
    (d / "org" / "empty" / "model.safetensors").write_bytes(b"")
    return d


def test_once_json_without_gpu(cache_dir):
    r = agent("--once", "--no-publish", "--cache-dir", str(cache_dir), "--output", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # stdout is only the JSON; logs go to stderr
    assert [m["model"] for m in out["cache"]["models"]] == ["org/m"]
    assert out["cache"]["models"][0]["bytes"] == 2050
    assert any("0 bytes" in p for p in out["cache"]["problems"])
    assert out["published"] is False
    rep = nodeinfo.report_from_annotations(out["annotations"])
    assert rep.errors == () and [m.model for m in rep.models] == ["org/m"]
    if not out["nvml"]["available"]:  # this machine has no GPU: one line says so
        assert out["nvml"]["gpus"] == [] and out["labels"] == {}
        assert len([ln for ln in r.stderr.splitlines() if "no GPU" in ln]) == 1


def test_once_json_with_recording(cache_dir):
    r = agent("--once", "--no-publish", "--cache-dir", str(cache_dir), "--output", "json",
              "--nvml-recording", str(DATA / "nvml-8xh100-10gib.json"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    gpus = out["nvml"]["gpus"]
    assert len(gpus) == 8 and out["nvml"]["driver_version"] == "580.159.04"
    assert gpus[0]["memory_used"] // 2**20 == 10767 and gpus[0]["processes"][0]["pid"] == 41237
    assert out["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert len(nodeinfo.report_from_annotations(out["annotations"]).gpus) == 8


def test_once_text_output(cache_dir):
    r = agent("--once", "--no-publish", "--cache-dir", str(cache_dir),
              "--nvml-recording", str(DATA / "nvml-8xh100-gpu-lost.json"))
    assert r.returncode == 0, r.stderr
    assert "GPUs: 8 (driver 580.159.04)" in r.stdout and "org/m" in r.stdout and "problem:" in r.stdout


def test_require_gpus_without_gpu_is_a_clear_error(tmp_path):
    rec = json.loads((DATA / "nvml-8xh100-10gib.json").read_text())
    rec["nvmlInit"] = {"nvml_error": "DRIVER_NOT_LOADED"}
    path = tmp_path / "nodriver.json"
    path.write_text(json.dumps(rec))
    r = agent("--once", "--no-publish", "--require-gpus", "--nvml-recording", str(path))
    assert r.returncode == 1
    err = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(err) == 1 and "--require-gpus" in err[0] and "driver is not loaded" in err[0]
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args, words", [
    (["--once"], "no node name"),
    (["--once", "--no-publish", "--nvml-recording", "/nonexistent.json"], "cannot load NVML recording"),
    (["--no-publish", "--min-write-interval", "200", "--heartbeat", "100"], "must not exceed"),
    (["--no-publish", "--model-store", "https://x/y"], "needs a --cache-dir"),
])
def test_user_errors(args, words):
    r = agent(*args)
    assert r.returncode == 1 and words in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [["--interval", "0"], ["--mem-threshold", "lots"], ["--metrics-port", "70000"]])
def test_bad_flag_values(args):
    r = agent("--once", "--no-publish", *args)
    assert r.returncode == 2 and "usage:" in r.stderr


def test_registered_as_gpusched_agent(monkeypatch, capsys, cache_dir):
    monkeypatch.delenv("NODE_NAME", raising=False)
    ep = EntryPoint(name="agent", value="scheduler.agent.cli:register", group="gpusched.commands")
    monkeypatch.setattr(gpusched_cli, "entry_points", lambda group: [ep])
    with pytest.raises(SystemExit):
        gpusched_cli.main(["agent", "--help"])
    help_text = capsys.readouterr().out
    for words in ("examples:", "gpusched agent --once --no-publish --cache-dir", "gpusched.io/prefetch",
                  "--require-gpus", "--nvml-recording", "--model-store"):
        assert words in help_text
    assert gpusched_cli.main(["agent", "--once", "--no-publish", "--cache-dir", str(cache_dir), "--output",
                              "json"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"]["models"][0]["model"] == "org/m"
    assert gpusched_cli.main(["agent", "--once"]) == 1  # UserError: one line, no traceback
    assert "gpusched agent: error: no node name" in capsys.readouterr().err


def test_daemon_mode_serves_metrics_and_stops_on_sigterm(cache_dir):
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "scheduler.agent", "--no-publish", "--interval", "0.2",
                             "--cache-dir", str(cache_dir), "--metrics-addr", "127.0.0.1", "--metrics-port", str(port),
                             "--nvml-recording", str(DATA / "nvml-8xh100-gpu-lost.json")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        text = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until GPU 3's loss is exported
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                text = ""
            if 'gpusched_gpu_healthy{Hostname="",UUID="GPU-5a1c03e2-7d3b-4c1f-9e0a-3f6b2c820433",gpu="3"} 0.0' in text:
                break
            time.sleep(0.2)
        assert 'gpusched_gpu_healthy{Hostname="",UUID="GPU-5a1c03e2-7d3b-4c1f-9e0a-3f6b2c820433",gpu="3"} 0.0' in text, text[-2000:]
        assert 'gpusched_model_cache_bytes{model="org/m",tier=' in text
        assert 'gpusched_agent_errors_total{kind="gpu_lost"} 1.0' in text
        assert text.count("DCGM_FI_DEV_FB_USED{") == 7  # the lost GPU drops out of the DCGM series
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "GPU 3" in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
