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


def test_poisson_phases_copy_a_real_token_mix(tmp_path):
    """--rates 1,6: a step up that stays, each request with the tokens of a row of the
    given trace; seeded, about rate x length requests a phase."""
    from benchmarks.autoscale.synthetic import poisson_phases

    src = tmp_path / "mix.csv"
    src.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,100,10\n1,2000,200\n")
    out = tmp_path / "step.csv"
    assert main(["--rates", "1,6", "--phase-hours", "0.5", "--tokens-from", str(src), "--out", str(out)]) == 0
    rows = read_trace(str(out))
    a = np.array([r.t for r in rows])
    first, second = int(np.sum(a < 1800)), int(np.sum(a >= 1800))
    assert abs(first - 1800) < 5 * 1800 ** 0.5 and abs(second - 10800) < 5 * 10800 ** 0.5
    assert {(r.prompt_tokens, r.output_tokens) for r in rows} == {(100, 10), (2000, 200)}
    assert np.array_equal(poisson_phases(1, [1.0, 6.0], 1800.0), poisson_phases(1, [1.0, 6.0], 1800.0))


@pytest.mark.parametrize("args,why", [
    (["--rates", "1,6"], "--rates needs --tokens-from"),
    (["--rates", "1,x", "--tokens-from", "t.csv"], "is not a comma-separated list"),
    (["--rates", "0", "--tokens-from", "t.csv"], "rates must be finite numbers > 0"),
    (["--rates", "1", "--tokens-from", "missing.csv"], "missing.csv"),
])
def test_bad_phases_are_refused_with_a_reason(tmp_path, capsys, monkeypatch, args, why):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,1\n")
    assert main(args + ["--out", str(tmp_path / "x.csv")]) == 2
    assert why in capsys.readouterr().err
