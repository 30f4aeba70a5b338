"""`gpusched cluster` bad input that needs no cluster: one-line errors, nothing started."""
from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("args,expect", [
    (["--gpu-profile", "nope"], "unknown GPU profile 'nope'; choose one of: alibaba, small"),
    (["--nodes", "0"], "--nodes must be at least 1, got 0"),
    (["--nodes", "-3"], "--nodes must be at least 1, got -3"),
    (["--gpu-profile", "alibaba", "--nodes", "5000"], "the Alibaba node list has 1213 nodes; asked for 5000"),
])
def test_bad_input_gets_one_line_and_starts_nothing(tmp_path, args, expect):
    state = tmp_path / "state"
    r = subprocess.run([sys.executable, "-m", "scheduler.cli", "cluster", "up", "--state", str(state), *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == f"gpusched cluster: error: {expect}"
    assert not (state / "cluster.json").exists()


def test_down_without_state_says_so(tmp_path):
    r = subprocess.run([sys.executable, "-m", "scheduler.cli", "cluster", "down", "--state", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "nothing to stop" in r.stderr
