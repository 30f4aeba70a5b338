"""The pure queueing model: tables whose rows show the arithmetic."""
from __future__ import annotations

import math

import pytest

from benchmarks.fleet.model import (TTFT_BUCKETS, ConstantRate, Fleet, Request, Schedule, ServiceModel, Trace,
                                    TraceError, burst, parse_timestamp, read_trace)

M = "m"
DEFAULT = ServiceModel()
# Round numbers for exact rows: prefill 1,000 tok/s, decode 100 tok/s whatever the batch.
ROUND = ServiceModel(prefill_tps=1_000, decode_tps=100, decode_slowdown=0.0, max_batch=1)


def fleet(load=None, service=DEFAULT, ready=(), warm=(), **kw) -> Fleet:
    f = Fleet(**kw)
    f.add_model(M, load, service)
    for name in ready:
        f.set_replica(name, M, True, 0.0)
    for name in warm:
        f.set_replica(name, M, False, 0.0)
    return f


def totals(f: Fleet) -> tuple[int, int]:
    ms = [f.metrics(n) for n in f.replicas(M)]
    return sum(m.waiting for m in ms), sum(m.running for m in ms)


# ---------------------------------------------------------------- service model

@pytest.mark.parametrize("batch, rate", [
    (1, 60.0),  # 60 / (1 + 0.02 * 0)
    (4, 60 / 1.06),  # 60 / (1 + 0.02 * 3) = 56.60
    (32, 60 / 1.62),  # 60 / (1 + 0.02 * 31) = 37.04; x 32 = 1,185 tok/s for the replica
])
def test_decode_rate_falls_with_batch(batch, rate):
    assert DEFAULT.decode_rate(batch) == pytest.approx(rate)


def test_service_time_is_prefill_plus_decode():
    # 1,000 prompt tokens / 10,000 tok/s = 0.1 s; 120 output tokens / 60 tok/s = 2 s
    assert DEFAULT.service_time(1000, 120) == pytest.approx(2.1)
    # at batch 4 the decode takes 120 / 56.60 = 2.12 s
    assert DEFAULT.service_time(1000, 120, batch=4) == pytest.approx(0.1 + 120 * 1.06 / 60)


@pytest.mark.parametrize("bad", [dict(prefill_tps=0), dict(decode_tps=-1), dict(decode_slowdown=-0.1),
                                 dict(max_batch=0), dict(kv_capacity_tokens=0)])
def test_service_model_rejects_bad_numbers(bad):
    with pytest.raises(ValueError):
        ServiceModel(**bad)


# ---------------------------------------------------------------- queues

QUEUE_ROWS = [
    # (name, replicas, service, rate req/s, prompt, output, at, waiting, running)
    # 1 replica, batch 1, 1.0 s per request (100/1000 prefill + 90/100 decode), 2 req/s from t=0:
    # 21 arrivals in [0, 10.25) (0, 0.5, ..., 10.0); done at 1, 2, ..., 10 -> 10 finished,
    # 1 running, 21 - 10 - 1 = 10 waiting.
    ("batch 1 over capacity", 1, ROUND, 2.0, 100, 90, 10.25, 10, 1),
    # The brief's row: 2 replicas, batch 4, defaults, 10 req/s of 100+50 tokens.
    # Service at batch 4: 100/10,000 + 50/56.60 = 0.893 s; 8 slots serve 8.96 req/s < 10.
    # Slot k (k = 0..7) starts at 0.1k s and finishes floor((10 - 0.1k)/0.893) requests by
    # t=10: 11+11+10x6 = 82; arrivals in [0, 10): 100; in flight 8 -> 100 - 82 - 8 = 10 waiting.
    ("2 replicas batch 4 at 10 req/s", 2, ServiceModel(max_batch=4), 10.0, 100, 50, 10.0, 10, 8),
    # Under capacity: 2 req/s for a 0.85 s service never queues; at 10.25 the requests that
    # arrived at 9.5 (ends ~10.36) and 10.0 run.
    ("under capacity", 1, ServiceModel(max_batch=4), 2.0, 100, 50, 10.25, 0, 2),
    # KV cache binds before the batch: 1,000 tokens hold 2 requests of 400+100; service
    # 0.04 + 100/59.4 = 1.72 s; 2 req/s into 1.16 req/s: waiting grows.
    # Arrivals in [0, 10): 20; 2 slots started at 0 and 0.5 finish 5 each by t=10 (1.72 x 5 =
    # 8.6, +0.5 = 9.1; a 6th would end at 10.3 and 10.8) -> 10 done, 2 running, 8 waiting.
    ("kv cache binds", 1, ServiceModel(max_batch=32, kv_capacity_tokens=1000), 2.0, 400, 100, 10.0, 8, 2),
]


@pytest.mark.parametrize("name, replicas, service, rate, prompt, output, at, waiting, running", QUEUE_ROWS,
                         ids=[r[0] for r in QUEUE_ROWS])
def test_queue_rows(name, replicas, service, rate, prompt, output, at, waiting, running):
    f = fleet(ConstantRate(rate, prompt, output), service, ready=[f"r{i}" for i in range(replicas)])
    f.advance(at)
    assert totals(f) == (waiting, running)
    assert f.router_waiting(M) == 0


def test_least_loaded_dispatch_splits_evenly():
    # 2 replicas, 4 requests at once, nothing can finish within 0 s: 2 each, ties by name
    f = fleet(service=DEFAULT, ready=["a", "b"])
    for _ in range(4):
        f.submit(M, Request(0.0, 100, 50))
    f.advance(0.001)
    assert [(f.metrics(n).running, f.metrics(n).waiting) for n in "ab"] == [(2, 0), (2, 0)]


def test_max_batch_holds_the_rest_in_the_replica_queue():
    f = fleet(service=ServiceModel(max_batch=4), ready=["a"])
    for _ in range(10):
        f.submit(M, Request(0.0, 100, 50))
    f.advance(0.001)
    m = f.metrics("a")
    assert (m.running, m.waiting) == (4, 6)


# ---------------------------------------------------------------- router queue and readiness

def test_no_replica_queues_at_the_router():
    # 10 req/s for 3 s and no replica: 30 wait at the router
    f = fleet(ConstantRate(10.0))
    f.advance(3.0)
    assert f.router_waiting(M) == 30
    assert f.stats(M).arrived == 30 and f.stats(M).dispatched == 0


def test_warm_replica_gets_no_traffic():
    # "w" is up but not Ready (held by the readiness gate): everything goes to "a"
    f = fleet(ConstantRate(10.0), ready=["a"], warm=["w"])
    f.advance(3.0)
    w = f.metrics("w")
    assert (w.waiting, w.running, w.success_total, w.gpu_util) == (0, 0, 0, 0.0)
    assert f.metrics("a").success_total > 0


def test_only_warm_replicas_means_router_queue():
    f = fleet(ConstantRate(10.0), warm=["w"])
    f.advance(3.0)
    assert f.router_waiting(M) == 30
    assert totals(f) == (0, 0)


def test_promotion_drains_the_router_queue_oldest_first():
    # 30 wait at t=3; "w" becomes Ready: batch 32 takes all 30 at once
    f = fleet(ConstantRate(10.0), warm=["w"])
    f.advance(3.0)
    f.set_replica("w", M, True, 3.0)
    assert f.router_waiting(M) == 0
    assert f.metrics("w").running == 30
    f.advance(30.0)
    done = f.pop_finished()
    assert f.stats(M).arrived == 300  # 10 req/s over [0, 30)
    assert len(done) + sum(totals(f)) == 300  # the last ones still run
    assert sum(1 for r in done if r.arrival < 3.0) == 30
    first = min(done, key=lambda r: r.arrival)
    assert first.arrival == 0.0 and first.queue_wait == pytest.approx(3.0)  # waited at the router from 0 to 3


def test_demoted_replica_drains_what_it_holds():
    f = fleet(service=ROUND, ready=["a"])
    f.submit(M, Request(0.0, 100, 90))  # 1 s of work
    f.advance(0.5)
    f.set_replica("a", M, False, 0.5)
    f.submit(M, Request(0.6, 100, 90))  # no Ready replica any more: router
    f.advance(2.0)
    assert f.metrics("a").success_total == 1
    assert f.router_waiting(M) == 1


def test_removed_replica_aborts_running_and_requeues_waiting():
    # a: batch 1, 3 requests: 1 running, 2 waiting; removing it sends the 2 to b, aborts 1
    f = fleet(service=ROUND, ready=["a"])
    for _ in range(3):
        f.submit(M, Request(0.0, 100, 90))
    f.advance(0.5)
    f.set_replica("b", M, True, 0.5)
    aborted = f.remove_replica("a", 0.6)
    assert len(aborted) == 1 and aborted[0].aborted
    assert (f.metrics("b").running, f.metrics("b").waiting) == (1, 1)
    assert f.stats(M).aborted == 1
    f.advance(3.0)
    assert f.metrics("b").success_total == 2  # done at 1.6 and 2.6


# ---------------------------------------------------------------- metrics

def test_ttft_and_queue_time():
    # batch 1: request 1 prefills 1,000 tokens at 10,000 tok/s -> first token at 0.1 s;
    # request 2 waits for request 1 (0.1 + 60/60 = 1.1 s) then prefills: ttft 1.2 s, queued 1.1 s
    f = fleet(service=ServiceModel(max_batch=1), ready=["a"])
    f.submit(M, Request(0.0, 1000, 60))
    f.submit(M, Request(0.0, 1000, 60))
    f.advance(5.0)
    m = f.metrics("a")
    assert m.ttft.count == 2 and m.ttft.sum == pytest.approx(0.1 + 1.2)
    assert m.ttft.counts[TTFT_BUCKETS.index(0.1)] == 1  # "le" is inclusive: 0.1 falls in le=0.1
    assert m.ttft.counts[TTFT_BUCKETS.index(2.5)] == 2
    assert m.queue_time.sum == pytest.approx(1.1)
    assert (m.success_total, m.prompt_tokens_total, m.generation_tokens_total) == (2, 2000, 120)


def test_concurrent_prefills_share_the_prefill_rate():
    # two 1,000-token prompts at once: 2,000 tokens at 10,000 tok/s -> both first tokens at 0.2 s
    f = fleet(service=DEFAULT, ready=["a"])
    f.submit(M, Request(0.0, 1000, 10))
    f.submit(M, Request(0.0, 1000, 10))
    f.advance(1.0)
    assert f.metrics("a").ttft.sum == pytest.approx(0.4)


def test_kv_cache_usage_counts_tokens_in_flight():
    # 4 requests of 1,000 prompt tokens share 10,000 tok/s: all prefilled at 0.4 s; then at
    # batch 4 each decodes 60/1.06 = 56.6 tok/s: at t=0.9, 4 x (1000 + 56.6 x 0.5) = 4,113 of 10,000
    f = fleet(service=ServiceModel(kv_capacity_tokens=10_000), ready=["a"])
    for _ in range(4):
        f.submit(M, Request(0.0, 1000, 500))
    f.advance(0.9)
    assert f.metrics("a").kv_cache_usage == pytest.approx(4 * (1000 + 0.5 * 60 / 1.06) / 10_000)


GPU_ROWS = [
    # (window, at, util %): 0.5 s requests (30 tokens at 60 tok/s, no prompt) arriving each second
    (1.0, 10.75, 50.0),  # window [9.75, 10.75): busy 10.0..10.5
    (1.0, 10.25, 50.0),  # window [9.25, 10.25): busy 9.25..9.5 and 10.0..10.25
    (2.0, 10.5, 50.0),  # window [8.5, 10.5): busy 9.0..9.5, 10.0..10.5
    (4.0, 2.0, 50.0),  # replica only 2 s old: busy 0..0.5 and 1.0..1.5 = 1 s of 2
    (1.0, 10.4, 50.0),  # window [9.4, 10.4): busy 9.4..9.5 and 10.0..10.4 = 0.5 s
    (1.0, 10.1, 50.0),  # window [9.1, 10.1): busy 9.1..9.5 and 10.0..10.1 = 0.5 s
    (0.5, 10.5, 100.0),  # window [10.0, 10.5): busy throughout
    (0.25, 10.75, 0.0),  # window [10.5, 10.75): idle
]


@pytest.mark.parametrize("window, at, util", GPU_ROWS)
def test_gpu_util_is_busy_share_of_the_window(window, at, util):
    f = fleet(ConstantRate(1.0, 0, 30), service=DEFAULT, ready=["a"], util_window=window)
    f.advance(at)
    assert f.metrics("a").gpu_util == pytest.approx(util)


def test_time_goes_forward_only():
    f = fleet()
    f.advance(2.0)
    with pytest.raises(ValueError):
        f.advance(1.0)


# ---------------------------------------------------------------- load sources

def arrivals(src, until: float) -> list[float]:
    out = []
    for r in src.requests():
        if r.arrival >= until:
            break
        out.append(r.arrival)
    return out


def test_burst_schedule_counts():
    # 1 req/s on [0,5): 5; 10 req/s on [5,7): 20; 1 req/s on [7,10): 3 -> 28
    a = arrivals(burst(1.0, 10.0, at=5.0, duration=2.0), 10.0)
    assert len(a) == 28
    assert a[:6] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert a[-3:] == pytest.approx([7.0, 8.0, 9.0])


def test_schedule_starts_when_the_rate_does():
    a = arrivals(Schedule([(0.0, 0.0), (5.0, 2.0)], until=7.0), 100.0)
    assert a == pytest.approx([5.0, 5.5, 6.0, 6.5])


def test_poisson_is_seeded():
    one = arrivals(ConstantRate(10.0, poisson=True, seed=7), 1000.0)
    assert one == arrivals(ConstantRate(10.0, poisson=True, seed=7), 1000.0)
    assert one != arrivals(ConstantRate(10.0, poisson=True, seed=8), 1000.0)
    assert abs(len(one) - 10_000) < 400  # mean 10,000, sd 100


def test_token_pairs_are_drawn_from_the_given_sizes():
    src = ConstantRate(5.0, token_pairs=[(10, 1), (20, 2)], seed=3)
    sizes = {(r.prompt_tokens, r.output_tokens) for r, _ in zip(src.requests(), range(100))}
    assert sizes == {(10, 1), (20, 2)}


def test_fleet_is_deterministic_with_a_seed():
    def run():
        f = fleet(ConstantRate(12.0, poisson=True, seed=1), ServiceModel(max_batch=4), ready=["a", "b"])
        out = []
        for t in range(1, 20):
            f.advance(float(t))
            out.append((totals(f), f.metrics("a").ttft.sum))
        return out
    assert run() == run()


def test_chunking_of_advance_does_not_change_the_result():
    def run(step):
        f = fleet(ConstantRate(9.0, 300, 40, poisson=True, seed=2), ServiceModel(max_batch=4), ready=["a", "b"])
        t = 0.0
        while t < 20.0:
            t = min(20.0, t + step)
            f.advance(t)
        return totals(f), f.stats(M), f.metrics("a").ttft.count
    assert run(0.05) == run(1.0) == run(20.0)


# ---------------------------------------------------------------- traces

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:52.6805900,879,30
"""


def test_azure_trace_rows_and_compression():
    rows = read_trace(AZURE.splitlines())
    assert [(round(r.t, 6), r.prompt_tokens, r.output_tokens) for r in rows] == [
        (0.0, 374, 44), (4.314579, 396, 109), (6.0, 879, 30)]
    assert rows[1].t == 4.314579  # exact: datetimes subtract in microseconds
    # compression 2: 6 s of trace in 3 s, starting at 100
    tr = Trace(rows, compression=2.0, start=100.0)
    assert [r.arrival for r in tr.requests()] == pytest.approx([100.0, 102.1572895, 103.0])
    assert tr.duration == pytest.approx(3.0)


@pytest.mark.parametrize("text, seconds", [
    ("12.5", 12.5),
    ("2023-11-16 18:15:46.6805900", 1700158546.68059),
    ("2023-11-16T18:15:46Z", 1700158546.0),
    ("2023-11-16T19:15:46+01:00", 1700158546.0),
])
def test_parse_timestamp(text, seconds):
    assert parse_timestamp(text) == pytest.approx(seconds)


H = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


# One error per bad trace, naming the file ("<trace>" for lines given in memory), the
# row as a spreadsheet numbers it (1 = header) and the column; the whole message.
@pytest.mark.parametrize("text, kw, message", [
    ("", {}, "<trace> row 1: empty file; expected a header row (e.g. TIMESTAMP,ContextTokens,GeneratedTokens) "
             "and one row per request"),
    ("\n\n", {}, "<trace> row 1: empty file; expected a header row (e.g. TIMESTAMP,ContextTokens,GeneratedTokens) "
                 "and one row per request"),
    (H, {}, "<trace> row 2: no data rows after the header; the trace is empty"),
    ("TIMESTAMP,ContextTokens\n1,2\n", {},
     "<trace> row 1 (header): no output-token column (one of generatedtokens, generated_tokens, output_tokens, "
     "completion_tokens, outputtokens, response_tokens, or name it with a column option); "
     "columns are ['TIMESTAMP', 'ContextTokens']"),
    (H + "1,2,3\n", {"model_column": "model"},
     "<trace> row 1 (header): no column 'model' for model; columns are "
     "['TIMESTAMP', 'ContextTokens', 'GeneratedTokens']"),
    # unsorted: row 3 goes back in time
    (H + "1,2,3\n0.5,2,3\n", {}, "<trace> row 3: TIMESTAMP '0.5' is earlier than row 2's '1'; sort the trace by time"),
    # negative sizes, each column named
    (H + "1,2,3\n2,2,3\n3,-5,3\n", {}, "<trace> row 4: ContextTokens is -5; token counts must be >= 0"),
    (H + "1,2,-1\n", {}, "<trace> row 2: GeneratedTokens is -1; token counts must be >= 0"),
    (H + "1,2.5,1\n", {}, "<trace> row 2: ContextTokens is 2.5; token counts must be whole numbers"),
    (H + "1,nan,1\n", {}, "<trace> row 2: ContextTokens is nan; token counts must be finite"),
    (H + "1,many,1\n", {}, "<trace> row 2: ContextTokens 'many' is not a number"),
    ("time,model,secs\n0,a,1.5\n1,b,-0.25\n", {"service_column": "secs"},
     "<trace> row 3: secs is -0.25; service times must be >= 0"),
    ("time,model,secs\n0,a,1.5\n1,,2\n", {"service_column": "secs"},
     "<trace> row 3: model is empty; every row needs a model"),
    (H + "yesterday,2,3\n", {},
     "<trace> row 2: TIMESTAMP 'yesterday' is not a time (Invalid isoformat string: 'yesterday')"),
    (H + "1,2\n", {}, "<trace> row 2: 2 fields, the header has 3 (TIMESTAMP,ContextTokens,GeneratedTokens): ['1', '2']"),
])
def test_bad_traces_name_the_file_row_and_column(text, kw, message):
    with pytest.raises(TraceError) as err:
        read_trace(text.splitlines(), **kw)
    assert str(err.value) == message


def test_bad_trace_file_is_named(tmp_path):
    p = tmp_path / "trace.csv"
    p.write_text(H + "".join(f"{i},10,10\n" for i in range(15)) + "15,-5,3\n")
    with pytest.raises(TraceError) as err:
        read_trace(p)
    assert str(err.value) == f"{p} row 17: ContextTokens is -5; token counts must be >= 0"
    with pytest.raises(TraceError, match=r"nope\.csv: cannot read \(No such file or directory\)"):
        read_trace(tmp_path / "nope.csv")


def test_model_and_service_time_columns():
    rows = read_trace(["time,model,secs", "0,a,1.5", "2.5,b,0"], service_column="secs")
    assert [(r.t, r.model, r.service_s, r.prompt_tokens, r.output_tokens) for r in rows] == [
        (0.0, "a", 1.5, 0, 0), (2.5, "b", 0.0, 0, 0)]
    rows = read_trace(["TIMESTAMP,Model,ContextTokens,GeneratedTokens", "10,m1,5,6", "12,m2,7,8"])
    assert [(r.t, r.model, r.prompt_tokens, r.output_tokens, r.service_s) for r in rows] == [
        (0.0, "m1", 5, 6, None), (2.0, "m2", 7, 8, None)]


def test_the_bundled_azure_trace_reads_whole():
    from benchmarks.traces import azure_dir
    rows = read_trace(azure_dir() / "AzureLLMInferenceTrace_conv.csv")
    assert len(rows) == 19_366  # the last row has no newline, so `wc -l` says one less
    assert 3000 < rows[-1].t < 3700  # one hour
    assert all(r.prompt_tokens >= 0 and r.output_tokens >= 0 for r in rows)
    assert not math.isnan(sum(r.t for r in rows))


def test_the_bundled_mooncake_trace_reads_whole_with_the_papers_figures():
    from benchmarks.traces import mooncake_dir
    rows = read_trace(mooncake_dir() / "MooncakeTrace_conversation.csv")
    # FAST'25, Mooncake's conversation trace: 12,031 requests, 12,035 input and 343 output tokens
    # on average; the columns are found by name (timestamp, input_tokens, output_tokens)
    assert len(rows) == 12_031
    assert rows[-1].t == pytest.approx(3536.999)
    assert round(sum(r.prompt_tokens for r in rows) / len(rows)) == 12_035
    assert round(sum(r.output_tokens for r in rows) / len(rows)) == 343
