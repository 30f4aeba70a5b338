"""`gpusched bench autoscale` end to end on small traces: bad input is one line and exit
code 2; a run writes JSON, markdown and PNGs with its parameters and seed; the same
seed gives the same numbers; a model column gives one workload per model."""
from __future__ import annotations

import json

import pytest

from scheduler.cli import main

H = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def _run(capsys, *argv):
    rc = main(["bench", "autoscale", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("text, kw, message", [
    ("", [], "{p} row 1: empty file; expected a header row (e.g. TIMESTAMP,ContextTokens,GeneratedTokens) and one "
             "row per request"),
    ("TIMESTAMP,ContextTokens\n0,5\n", [],
     "{p} row 1 (header): no output-token column (one of generatedtokens, generated_tokens, output_tokens, "
     "completion_tokens, outputtokens, response_tokens, or name it with a column option); columns are "
     "['TIMESTAMP', 'ContextTokens']"),
    (H + "".join(f"{i},10,10\n" for i in range(15)) + "15,-5,3\n", [],
     "{p} row 17: ContextTokens is -5; token counts must be >= 0"),
    (H + "0,1,1\n5,1,1\n4,1,1\n", [], "{p} row 4: TIMESTAMP '4' is earlier than row 3's '5'; sort the trace by time"),
    ("time,model,secs\n0,a,1\n1,a,-2\n", ["--service-column", "secs"],
     "{p} row 3: secs is -2; service times must be >= 0"),
    (H + "0,1,1\n", ["--model-column", "model"],
     "{p} row 1 (header): no column 'model' for model; columns are ['TIMESTAMP', 'ContextTokens', 'GeneratedTokens']"),
])
def test_bad_trace_is_one_line_and_exit_2(tmp_path, capsys, text, kw, message):
    p = tmp_path / "trace.csv"
    p.write_text(text)
    rc, out, err = _run(capsys, "--trace", str(p), "--out", str(tmp_path / "out"), *kw)
    assert rc == 2
    assert err.strip().splitlines()[-1] == f"gpusched bench autoscale: error: {message.format(p=p)}"
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_missing_file_and_bad_spec_are_one_line(tmp_path, capsys):
    rc, _, err = _run(capsys, "--trace", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o"))
    assert rc == 2 and err.strip().endswith(f"{tmp_path / 'nope.csv'}: cannot read (No such file or directory)")
    p = tmp_path / "t.csv"
    p.write_text(H + "0,1,1\n1,1,1\n")
    rc, _, err = _run(capsys, "--trace", str(p), "--out", str(tmp_path / "o"), "--ours-spec", '{"warmReplicas": -1}')
    assert rc == 2 and err.strip().endswith("--ours-spec: spec.warmReplicas: must be >= 0, got -1")


def test_a_default_set_half_present_fails_before_any_run(tmp_path, capsys, monkeypatch):
    # an old $GPUSCHED_TRACES with the Azure pair only: one line at once, naming the file
    # and the layout, and no results written for the traces that were there
    (tmp_path / "azure-llm-2023").mkdir()
    for name in ("AzureLLMInferenceTrace_code.csv", "AzureLLMInferenceTrace_conv.csv"):
        (tmp_path / "azure-llm-2023" / name).write_text(H + "0,1,1\n1,1,1\n")
    monkeypatch.setenv("GPUSCHED_TRACES", str(tmp_path))
    rc, out, err = _run(capsys, "--out", str(tmp_path / "o"))
    assert rc == 2 and out == ""
    assert f"{tmp_path / 'mooncake-2025' / 'MooncakeTrace_conversation.csv'}: cannot read" in err
    assert "$GPUSCHED_TRACES must hold azure-llm-2023/ and mooncake-2025/" in err
    assert not (tmp_path / "o").exists()


def _trace(path, models=("",)):
    """600 s: 1 req/s, a 6 req/s burst from 200 to 320 s, then 1 req/s."""
    lines, t, k = [], 0.0, 0
    while t < 600:
        m = models[k % len(models)]
        lines.append(f"{t:.3f},{m + ',' if m else ''}{300 + 17 * (k % 9)},{40 + 7 * (k % 5)}")
        t += 1 / (6.0 if 200 <= t < 320 else 1.0)
        k += 1
    head = "TIMESTAMP,model,ContextTokens,GeneratedTokens\n" if models != ("",) else H
    path.write_text(head + "\n".join(lines) + "\n")


def test_a_run_writes_everything_and_repeats_with_the_seed(tmp_path, capsys):
    p = tmp_path / "small.csv"
    _trace(p)
    outs = []
    for n in (1, 2):
        rc, out, err = _run(capsys, "--trace", str(p), "--out", str(tmp_path / f"o{n}"), "--seed", "7")
        assert rc == 0, err
        outs.append(json.loads((tmp_path / f"o{n}" / "autoscale.json").read_text()))
    assert "seed 7" in out and "| ours |" in out and "| oracle |" in out and "x oracle" in out
    assert "\r" not in err and "sim-s" not in err  # stderr is no terminal here: no progress bar
    for f in ("autoscale.md", "autoscale_small_replicas.png", "autoscale_slo_vs_gpu_hours.png"):
        assert (tmp_path / "o1" / f).stat().st_size > 0
    a, b = outs
    assert a["seed"] == 7 and a["params"]["ours_spec_example"]["serviceRatePerReplica"] > 0
    assert a["source"] == "the trace files given with --trace"  # no bundled trace to cite
    assert "Source: the trace files given with --trace." in (tmp_path / "o1" / "autoscale.md").read_text()
    assert [r["policy"] for r in a["rows"]] == ["ours", "ours-no-warm", "ours-no-forecast", "ours-no-queueing",
                                                "ours-no-panic", "ours-no-prewarm", "ours-no-recent",
                                                "ours-forecast-up", "ours-batch-slots", "ours-mmc", "hpa-util", "keda-queue",
                                                "static", "static-prev-window", "oracle", "lower_bound"]
    # concurrencyPerReplica from the same load test as serviceRatePerReplica, reported per model
    trace = a["params"]["traces"][0]
    assert a["params"]["ours_spec_example"]["concurrencyPerReplica"] == trace["concurrency"]["small"] >= 1
    strip = lambda d: [{k: v for k, v in r.items()} for r in d["rows"]]  # noqa: E731
    assert strip(a) == strip(b)  # same seed, same numbers
    rows = {r["policy"]: r for r in a["rows"]}
    assert rows["oracle"]["vs_oracle"] == 1.0
    assert rows["static"]["cold_starts"] == 0 and rows["static"]["scale_events"] == 0
    assert rows["ours"]["gpu_hours"] != rows["ours-no-warm"]["gpu_hours"]  # the warm pool costs GPU time
    # the bound is below every policy that met the SLO, and each row says how far above it is
    lb = rows["lower_bound"]["gpu_hours"]
    assert 0 < lb <= min(r["gpu_hours"] for r in a["rows"] if r["queue_wait_ok"] >= 0.99)
    assert rows["ours"]["vs_lower_bound"] == pytest.approx(rows["ours"]["gpu_hours"] / lb, rel=0.01)
    terms = a["params"]["lower_bound"]["small"]
    assert terms["gpu_hours"] == lb
    # the bound is the largest of its terms, each reported
    assert lb == pytest.approx(max(terms["work_gpu_hours"], terms["burst_gpu_hours"],
                                   terms["concurrency_gpu_hours"] - terms["allowance_gpu_hours"]), abs=0.002)
    assert "| lower_bound |" in out and "x lower bound" in out
    tally = a["params"]["ours_decide_replica_hours"]["small"]  # where ours' replicas came from
    assert tally["target"] > 0 and tally["queueing_rule"] > 0
    # static-prev-window: 600 s windows -> one window; it repeats its own count
    assert a["params"]["static_prev_window_replicas"]["small"]["small"] == [int(a["params"]["static_replicas"]["small"])]


def test_model_column_gives_one_workload_per_model(tmp_path, capsys):
    p = tmp_path / "multi.csv"
    _trace(p, models=("llama", "qwen"))
    rc, out, err = _run(capsys, "--trace", str(p), "--out", str(tmp_path / "o"), "--policies", "ours", "oracle",
                        "--pool-gpus", "40")
    assert rc == 0, err
    d = json.loads((tmp_path / "o" / "autoscale.json").read_text())
    assert d["params"]["traces"][0]["models"] == 2
    assert set(d["params"]["traces"][0]["service_rate"]) == {"llama", "qwen"}
    assert len(d["timelines"]["multi"]["ours"]) == 2  # one timeline per workload
    assert {r["requests"] for r in d["rows"]} == {d["params"]["traces"][0]["requests"]}


@pytest.mark.parametrize("flags, message", [
    (["--max-batch", "0"], "--max-batch must be at least 1 (1 = one request at a time), got 0"),
    (["--static-window", "0"], "--static-window must be > 0, got 0"),
    (["--service-rate-error", "0"], "--service-rate-error must be a finite number > 0 (1 = the load test's rate), got 0"),
    (["--service-rate-error", "inf"], ("--service-rate-error must be a finite number > 0 (1 = the load test's rate), "
                                       "got inf")),
    (["--recent-window", "60"], "--recent-window must be 0 (off) or seconds below the 1 m rate's window, got 60"),
    (["--cold-start-csv", "{d}/cold.csv"], ("--cold-start-csv: {d}/cold.csv row 2: load time 0 must be a finite "
                                             "number > 0")),
])
def test_bad_flags_are_one_line(tmp_path, capsys, flags, message):
    p = tmp_path / "t.csv"
    p.write_text(H + "0,1,1\n1,1,1\n")
    (tmp_path / "cold.csv").write_text("seconds\n0\n")
    flags = [f.format(d=tmp_path) for f in flags]
    rc, _, err = _run(capsys, "--trace", str(p), "--out", str(tmp_path / "o"), *flags)
    assert rc == 2 and err.strip().splitlines()[-1] == f"gpusched bench autoscale: error: {message.format(d=tmp_path)}"


def test_one_request_at_a_time_and_measured_cold_starts(tmp_path, capsys):
    p = tmp_path / "small.csv"
    _trace(p)
    cold = tmp_path / "cold.csv"
    cold.write_text("seconds\n20\n35\n60\n")
    rc, _, err = _run(capsys, "--trace", str(p), "--out", str(tmp_path / "o"), "--max-batch", "1",
                        "--cold-start-csv", str(cold), "--policies", "ours", "static", "oracle")
    assert rc == 0, err
    d = json.loads((tmp_path / "o" / "autoscale.json").read_text())
    assert d["params"]["max_batch"] == 1 and "batch 1," in d["params"]["service_model"]
    assert d["params"]["cold_start_s"] == {"measured": str(cold), "n": 3, "min": 20.0, "median": 35.0, "max": 60.0}
    assert d["params"]["ours_spec_example"]["coldStartSeconds"] == 60.0  # the worst measured load
    rows = {r["policy"]: r for r in d["rows"]}
    assert rows["lower_bound"]["gpu_hours"] <= min(r["gpu_hours"] for r in d["rows"] if r["queue_wait_ok"] >= 0.99)


def test_recent_window_0_is_ours_no_recent(tmp_path, capsys):
    p = tmp_path / "small.csv"
    _trace(p)
    rc, _, err = _run(capsys, "--trace", str(p), "--out", str(tmp_path / "o"), "--policies", "ours", "ours-no-recent",
                      "--recent-window", "0")
    assert rc == 0, err
    d = json.loads((tmp_path / "o" / "autoscale.json").read_text())
    assert d["params"]["recent_window_s"] == 0
    ours, off = ({k: v for k, v in r.items() if k not in ("policy", "what")} for r in d["rows"][:2])
    assert ours == off  # with the window at 0 the daemon reads no recent rate: ours is its own ablation


def test_a_service_rate_error_tells_ours_alone(tmp_path, capsys):
    """--service-rate-error 0.5 gives ours' spec half the load test's rate; the baselines,
    the oracle and the bound keep the true one, so only ours' rows move."""
    p = tmp_path / "small.csv"
    _trace(p)
    out = {}
    for f in ("1", "0.5"):
        rc, printed, err = _run(capsys, "--trace", str(p), "--out", str(tmp_path / f), "--policies", "ours", "static",
                                "oracle", "--service-rate-error", f)
        assert rc == 0, err
        out[f] = json.loads((tmp_path / f / "autoscale.json").read_text())
        assert ("(--service-rate-error)" in printed) == (f != "1")
    true, told = out["1"], out["0.5"]
    assert told["params"]["service_rate_error"] == 0.5 and true["params"]["service_rate_error"] == 1.0
    mu = true["params"]["traces"][0]["service_rate"]["small"]
    assert told["params"]["traces"][0]["service_rate"]["small"] == mu  # the load test's, reported as measured
    assert true["params"]["ours_spec_example"]["serviceRatePerReplica"] == round(mu, 3)
    assert told["params"]["ours_spec_example"]["serviceRatePerReplica"] == round(0.5 * mu, 3)
    rows = {f: {r["policy"]: r for r in d["rows"]} for f, d in out.items()}
    for policy in ("static", "oracle", "lower_bound"):
        assert rows["1"][policy] == rows["0.5"][policy]
    assert rows["1"]["ours"]["gpu_hours"] < rows["0.5"]["ours"]["gpu_hours"]  # told a slower replica, ours keeps more


def test_every_ours_policy_named_has_its_spec():
    from benchmarks.autoscale import policies as pol
    from benchmarks.autoscale.cli import NAMED_POLICIES, POLICIES
    assert {p for p in POLICIES + NAMED_POLICIES if p.startswith("ours")} <= set(pol.ABLATIONS)
    assert pol.ABLATIONS["ours-forecast-off"][0] == {"forecast": {"scaleUp": False}}


def test_the_forecast_asks_only_without_a_recent_rate(tmp_path, capsys):
    """With no recent rate read, ours (forecast.scaleUp unset) asks as ours-forecast-up does;
    ours-forecast-off never asks."""
    p = tmp_path / "small.csv"
    _trace(p)
    rc, _, err = _run(capsys, "--trace", str(p), "--out", str(tmp_path / "o"), "--policies", "ours",
                      "ours-forecast-up", "ours-forecast-off", "--recent-window", "0")
    assert rc == 0, err
    rows = {r["policy"]: {k: v for k, v in r.items() if k not in ("policy", "what")}
            for r in json.loads((tmp_path / "o" / "autoscale.json").read_text())["rows"]}
    assert rows["ours"] == rows["ours-forecast-up"]
    assert rows["ours-forecast-off"] != rows["ours"]  # the burst's trend asked for something


def test_a_trace_whose_requests_take_no_time_is_one_line(tmp_path, capsys):
    """Service times that round to 0 tokens leave the load test nothing to time: an error
    naming the file, not a traceback from the concurrency arithmetic."""
    p = tmp_path / "zero.csv"
    p.write_text("ts,secs\n" + "".join(f"{i},0.001\n" for i in range(50)))
    rc, _, err = _run(capsys, "--trace", str(p), "--time-column", "ts", "--service-column", "secs",
                      "--out", str(tmp_path / "o"), "--policies", "static")
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"gpusched bench autoscale: error: {p}: model zero: the load "
                                                   "test's requests take no time")
