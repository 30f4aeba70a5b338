"""`gpusched bench placement`'s checks on its own flags, before any replay."""
from __future__ import annotations

import pytest

from tests.scheduler.test_cli import gpusched


@pytest.mark.parametrize("argv, message", [
    # every seed feeds numpy's default_rng([seed, stream]), which takes no negative number
    (["--seed", "1", "-1"], "--seed must be 0 or more, got -1"),
    (["--inflate", "11"], "--inflate must be above 0 and at most 10, got 11.0"),
])
def test_bad_flags_exit_1_with_one_line(argv, message):
    r = gpusched("bench", "placement", "--variants", *argv)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith(message)
    assert "Traceback" not in r.stderr
