"""The day of long requests the autoscale bench checks its defaults on: seeded, of the
size and service time asked, and readable by the bench's own trace reader."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.autoscale.synthetic import day_of_requests, main
from benchmarks.fleet.model import read_trace


def test_the_day_is_seeded_and_has_the_size_asked(tmp_path):
    a1, s1 = day_of_requests(1, 2475, 40.0)
    a2, s2 = day_of_requests(1, 2475, 40.0)
    assert np.array_equal(a1, a2) and np.array_equal(s1, s2)
    assert len(a1) == 2485  # Poisson counts around 2,475 (seed 1)
    assert 0 <= a1[0] and a1[-1] < 86_400 and np.all(np.diff(a1) >= 0)
    assert s1.mean() == pytest.approx(40.0, rel=0.05)
    # bursts: the busiest minute has many times the mean minute's arrivals (2,485 / 1,440 = 1.7)
    per_minute = np.bincount((a1 // 60).astype(int), minlength=1440)
    assert per_minute.max() >= 20 * per_minute.mean()


def test_the_csv_reads_as_a_service_time_trace(tmp_path):
    out = tmp_path / "day.csv"
    assert main(["--seed", "2", "--requests", "300", "--mean-service", "20", "--out", str(out)]) == 0
    rows = read_trace(str(out), time_column="ts", service_column="secs")
    assert len(rows) == len(day_of_requests(2, 300, 20.0)[0])
    assert all(r.service_s and r.service_s > 0 for r in rows)


@pytest.mark.parametrize("args", [["--requests", "0"], ["--mean-service", "-5"], ["--mean-service", "nan"]])
def test_bad_sizes_are_refused_with_a_reason(tmp_path, capsys, args):
    assert main(args + ["--out", str(tmp_path / "x.csv")]) == 2
    assert "synthetic: error:" in capsys.readouterr().err
