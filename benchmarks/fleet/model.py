"""A queueing model of LLM inference replicas: pure, seeded, `now` always a parameter.

Requests (arrival time, prompt tokens, output tokens) arrive for a *model* (any string
key naming a pool of interchangeable replicas) and are dispatched at arrival to the
least-loaded Ready replica of that model (fewest waiting + running, ties by name).
A replica admits requests from its own FIFO queue while it runs fewer than
``max_batch`` and the KV cache can hold the request's prompt + output tokens; every
running request then goes through prefill and decode.

Service-time model (``ServiceModel``; defaults for one H100 80GB serving an 8B model
in bf16, e.g. Llama-3.1-8B-Instruct on vLLM; deliberately conservative):

- prefill is compute-bound: a replica processes ``prefill_tps`` = 10,000 prompt
  tokens/s, shared equally by the requests in prefill at that moment; alone, a
  request's prefill takes prompt_tokens / prefill_tps (1,000 tokens: 0.1 s);
- decode is memory-bound and batched: with b requests running, each decodes at
      decode_rate(b) = decode_tps / (1 + decode_slowdown * (b - 1))
  tokens/s, decode_tps = 60, decode_slowdown = 0.02: 60 tok/s at b=1, 56.6 at b=4,
  37.0 at b=32 (1,185 tok/s for the replica); a request's decode takes
  output_tokens / decode_rate(b) at a constant batch;
- ``max_batch`` = 32 requests run at once (vLLM's max_num_seqs);
- KV cache: ``kv_capacity_tokens`` = 400,000. An 8B Llama keeps 2 (K,V) x 32 layers
  x 8 KV heads x 128 dims x 2 bytes = 128 KiB per token; 0.9 x 80 GiB minus 15 GiB of
  weights and ~3 GiB of activations leaves ~54 GiB, about 440k tokens. A request is
  admitted only when prompt + output tokens fit beside those already reserved (vLLM
  allocates blocks as it goes and preempts instead; reserving up front avoids
  modelling preemption). A request larger than the whole cache runs alone.
  kv_cache_usage_perc = tokens in flight (prompt tokens prefilled + output tokens
  decoded, over running requests) / kv_capacity_tokens, a fraction 0..1 as vLLM's is.

Per replica the model exposes what vLLM exports: requests waiting and running, KV
cache usage, time-to-first-token (arrival to end of prefill, so router and replica
queueing included) and queue-time histograms with vLLM's buckets, success and token
counters; and GPU utilisation as DCGM reports it: the share of the last
``util_window`` seconds during which the replica had at least one request running,
0..100.

Router queue: a request that arrives while its model has no Ready replica waits in a
model-level router queue (as a gateway or a queueing proxy would hold it) and is
dispatched, oldest first, as soon as a replica becomes Ready. The exporter publishes
its length as ``vllm:num_requests_waiting`` on a pseudo-target with no pod label, so
that an autoscaler sees demand at zero replicas.

Replica life: not Ready replicas (starting, warm behind a readiness gate, demoted,
terminating) get no new requests but finish those they hold. A removed replica's
waiting requests are dispatched again (or go to the router queue); its running ones
are aborted (counted, never finished).

Load sources yield requests in arrival order: ``Schedule`` (piecewise-constant rate,
evenly spaced or Poisson), ``ConstantRate``, ``burst``, and ``Trace`` (rows of a
request trace such as Azure's LLM inference traces, with time compression).
"""
from __future__ import annotations

import csv
import heapq
import io
import math
import os
import re
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import count
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np

# vLLM's buckets (vllm/v1/metrics/loggers.py) for time_to_first_token_seconds and for
# request_queue_time_seconds (its request-latency buckets).
TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
QUEUE_TIME_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0)

_EPS_TOKENS = 1e-6  # a phase with less than this left is done (float residue)


# ---------------------------------------------------------------- service model

@dataclass(frozen=True)
class ServiceModel:
    """How fast one replica serves; see the module docstring for the formulas and why
    these defaults (H100 80GB, 8B model, bf16)."""

    prefill_tps: float = 10_000.0  # prompt tokens/s per replica, shared by requests in prefill
    decode_tps: float = 60.0  # output tokens/s of one request at batch 1
    decode_slowdown: float = 0.02  # per extra request in the batch
    max_batch: int = 32
    kv_capacity_tokens: int = 400_000

    def __post_init__(self) -> None:
        if not (self.prefill_tps > 0 and self.decode_tps > 0):
            raise ValueError("prefill_tps and decode_tps must be > 0")
        if self.decode_slowdown < 0:
            raise ValueError("decode_slowdown must be >= 0")
        if self.max_batch < 1 or self.kv_capacity_tokens < 1:
            raise ValueError("max_batch and kv_capacity_tokens must be >= 1")

    def decode_rate(self, batch: int) -> float:
        """Output tokens/s of each request when ``batch`` requests run."""
        return self.decode_tps / (1.0 + self.decode_slowdown * (max(batch, 1) - 1))

    def service_time(self, prompt_tokens: int, output_tokens: int, batch: int = 1) -> float:
        """Seconds one request takes at a constant batch, prefilling alone."""
        return prompt_tokens / self.prefill_tps + output_tokens / self.decode_rate(batch)


# ---------------------------------------------------------------- requests

@dataclass(eq=False)
class Request:
    arrival: float
    prompt_tokens: int
    output_tokens: int
    model: str = ""
    replica: str | None = None
    dispatched: float | None = None  # put on a replica's queue
    admitted: float | None = None  # started running (end of queueing)
    first_token: float | None = None  # end of prefill
    finished: float | None = None
    aborted: bool = False
    prefill_left: float = field(default=0.0, repr=False)
    decode_left: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.prompt_tokens < 0 or self.output_tokens < 0:
            raise ValueError(f"negative token count in {self!r}")
        self.prefill_left = float(self.prompt_tokens)
        self.decode_left = float(self.output_tokens)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @property
    def in_flight_tokens(self) -> float:
        return (self.prompt_tokens - self.prefill_left) + (self.output_tokens - self.decode_left)

    @property
    def queue_wait(self) -> float | None:
        return None if self.admitted is None else self.admitted - self.arrival

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.arrival


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts as Prometheus exposes them: counts[i] = observations
    <= bounds[i]; count (the +Inf bucket) and sum apart."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float
    count: int


class _Hist:
    __slots__ = ("bounds", "per_bucket", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.per_bucket = [0] * len(bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        i = bisect_left(self.bounds, v)  # first bound >= v: Prometheus buckets are "le"
        if i < len(self.bounds):
            self.per_bucket[i] += 1
        self.sum += v
        self.count += 1

    def snapshot(self) -> Histogram:
        acc, cum = 0, []
        for c in self.per_bucket:
            acc += c
            cum.append(acc)
        return Histogram(self.bounds, tuple(cum), self.sum, self.count)


@dataclass(frozen=True)
class ReplicaMetrics:
    """What one replica's vLLM (and its GPUs' DCGM) would report at the fleet's now."""

    name: str
    model: str
    ready: bool
    waiting: int
    running: int
    kv_cache_usage: float  # 0..1
    gpu_util: float  # 0..100
    ttft: Histogram
    queue_time: Histogram
    success_total: int
    prompt_tokens_total: int
    generation_tokens_total: int


# ---------------------------------------------------------------- replica

class Replica:
    def __init__(self, name: str, model: str, service: ServiceModel, now: float, util_window: float = 1.0):
        self.name, self.model, self.service = name, model, service
        self.util_window = util_window
        self.ready = False
        self.created = now
        self.t = now
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.kv_reserved = 0
        self.busy = 0.0  # cumulative seconds with >= 1 request running
        # (t, busy at t, busy from t on): one mark per busy/idle change, pruned to the window
        self.marks: deque[tuple[float, float, bool]] = deque([(now, 0.0, False)])
        self.ttft = _Hist(TTFT_BUCKETS)
        self.queue_time = _Hist(QUEUE_TIME_BUCKETS)
        self.success = 0
        self.prompt_total = 0
        self.generation_total = 0

    @property
    def load(self) -> int:
        return len(self.waiting) + len(self.running)

    def _fits(self, r: Request) -> bool:
        if len(self.running) >= self.service.max_batch:
            return False
        return not self.running or self.kv_reserved + r.tokens <= self.service.kv_capacity_tokens

    def _admit(self) -> None:
        while self.waiting and self._fits(self.waiting[0]):
            r = self.waiting.popleft()
            r.admitted = self.t
            self.queue_time.observe(self.t - r.arrival)
            self.kv_reserved += r.tokens
            self.running.append(r)
            if r.prefill_left <= _EPS_TOKENS:
                self._first_token(r)  # nothing to prefill: the first token comes at once

    def _first_token(self, r: Request) -> None:
        r.prefill_left = 0.0
        r.first_token = self.t
        self.ttft.observe(self.t - r.arrival)
        self.prompt_total += r.prompt_tokens

    def _mark(self) -> None:
        state = bool(self.running)
        if self.marks[-1][2] != state:
            self.marks.append((self.t, self.busy, state))
            if len(self.marks) > 64:
                self._prune(self.t - self.util_window)

    def _prune(self, start: float) -> None:
        """Drop marks older than the one in force at ``start``."""
        while len(self.marks) > 1 and self.marks[1][0] <= start:
            self.marks.popleft()

    def step(self, t_end: float, done: list[Request]) -> None:
        """Serve until t_end: admit, progress, complete, re-admit, with rates that hold
        constant between two completions."""
        s = self.service
        while True:
            self._admit()
            self._mark()
            horizon = t_end - self.t
            if not self.running:
                self.t = max(self.t, t_end)
                return
            n = len(self.running)
            prefilling = sum(1 for r in self.running if r.first_token is None)
            prate = s.prefill_tps / prefilling if prefilling else 0.0
            drate = s.decode_rate(n)
            dt = max(0.0, min(r.prefill_left / prate if r.first_token is None else r.decode_left / drate
                              for r in self.running))
            step = min(dt, max(horizon, 0.0))
            if step > 0.0:
                for r in self.running:
                    if r.first_token is None:
                        r.prefill_left -= prate * step
                    else:
                        r.decode_left -= drate * step
                self.busy += step
                self.t += step
            finished = False
            keep = []
            for r in self.running:
                if r.first_token is None and r.prefill_left <= _EPS_TOKENS:
                    self._first_token(r)
                if r.first_token is not None and r.decode_left <= _EPS_TOKENS:
                    r.decode_left = 0.0
                    r.finished = self.t
                    self.kv_reserved -= r.tokens
                    self.success += 1
                    self.generation_total += r.output_tokens
                    done.append(r)
                    finished = True
                else:
                    keep.append(r)
            self.running = keep
            if dt > horizon and not finished:
                self._mark()
                return

    def busy_at(self, t: float) -> float:
        """Cumulative busy seconds at time t (t <= self.t)."""
        prev = None
        for m in self.marks:
            if m[0] > t:
                break
            prev = m
        if prev is None:
            return 0.0
        mt, mb, state = prev
        return mb + (min(t, self.t) - mt if state else 0.0)

    def gpu_util(self) -> float:
        start = max(self.t - self.util_window, self.created)
        span = self.t - start
        self._prune(start)
        if span <= 0:
            return 100.0 if self.running else 0.0
        return max(0.0, min(100.0, 100.0 * (self.busy_at(self.t) - self.busy_at(start)) / span))

    def kv_usage(self) -> float:
        used = sum(r.in_flight_tokens for r in self.running)
        return max(0.0, min(1.0, used / self.service.kv_capacity_tokens))


# ---------------------------------------------------------------- fleet

@dataclass
class ModelStats:
    arrived: int = 0
    dispatched: int = 0
    finished: int = 0
    aborted: int = 0


class LoadSource(Protocol):
    def requests(self) -> Iterator[Request]:
        """A fresh iterator over the source's requests in arrival order (same seed,
        same requests)."""


class _Model:
    def __init__(self, name: str, service: ServiceModel, load: LoadSource | None):
        self.name, self.service = name, service
        self.load_iter = load.requests() if load is not None else None
        self.load_head: Request | None = None
        self.submitted: list[tuple[float, int, Request]] = []  # heap
        self.router: deque[Request] = deque()
        self.replicas: dict[str, Replica] = {}
        self.stats = ModelStats()

    def peek(self) -> Request | None:
        if self.load_head is None and self.load_iter is not None:
            self.load_head = next(self.load_iter, None)
            if self.load_head is None:
                self.load_iter = None
        a, b = self.load_head, (self.submitted[0][2] if self.submitted else None)
        if a is None or (b is not None and b.arrival < a.arrival):
            return b
        return a

    def pop(self) -> Request:
        r = self.peek()
        if r is self.load_head:
            self.load_head = None
        else:
            heapq.heappop(self.submitted)
        assert r is not None
        r.model = self.name
        return r


class Fleet:
    """All models, their replicas and router queues. Not thread-safe: callers lock."""

    def __init__(self, *, start: float = 0.0, util_window: float = 1.0, keep_finished: bool = True):
        if util_window <= 0:
            raise ValueError("util_window must be > 0")
        self.now = start
        self.util_window = util_window
        self.keep_finished = keep_finished
        self._models: dict[str, _Model] = {}
        self._replicas: dict[str, Replica] = {}
        self._finished: list[Request] = []
        self._seq = count()

    # ---- set-up

    def add_model(self, model: str, load: LoadSource | None = None, service: ServiceModel | None = None) -> None:
        if model in self._models:
            raise ValueError(f"model {model!r} already added")
        self._models[model] = _Model(model, service or ServiceModel(), load)

    def submit(self, model: str, request: Request) -> None:
        """Add one request; it arrives at request.arrival (not before the fleet's now)."""
        if request.arrival < self.now:
            raise ValueError(f"request arrives at {request.arrival} before now {self.now}")
        heapq.heappush(self._model(model).submitted, (request.arrival, next(self._seq), request))

    def set_replica(self, name: str, model: str, ready: bool, now: float) -> None:
        """Create a replica (not Ready unless told) or change whether it is Ready, at now."""
        self.advance(now)
        m = self._model(model)
        rep = self._replicas.get(name)
        if rep is None:
            rep = Replica(name, model, m.service, self.now, self.util_window)
            self._replicas[name] = m.replicas[name] = rep
        elif rep.model != model:
            raise ValueError(f"replica {name!r} serves {rep.model!r}, not {model!r}")
        rep.ready = ready
        if ready:
            while m.router:
                self._dispatch(m, m.router.popleft())

    def remove_replica(self, name: str, now: float) -> list[Request]:
        """Remove a replica at now: its queue is dispatched again, its running requests
        are aborted and returned."""
        self.advance(now)
        rep = self._replicas.pop(name, None)
        if rep is None:
            return []
        m = self._models[rep.model]
        del m.replicas[name]
        for r in rep.running:
            r.aborted, r.finished = True, self.now
            m.stats.aborted += 1
        requeue = list(rep.waiting)
        rep.waiting.clear()
        for r in requeue:
            r.replica = r.dispatched = None
            m.stats.dispatched -= 1
            self._dispatch(m, r)
        if m.router:
            m.router = deque(sorted(m.router, key=lambda r: r.arrival))
        return list(rep.running)

    # ---- time

    def advance(self, now: float) -> None:
        """Bring every replica and queue to time now; arrivals at exactly now wait for
        the next call (windows are half-open)."""
        if now < self.now:
            raise ValueError(f"time goes forward only: now {now} < {self.now}")
        done: list[Request] = []
        for m in self._models.values():
            reps = list(m.replicas.values())
            while True:
                nxt = m.peek()
                if nxt is None or nxt.arrival >= now:
                    break
                r = m.pop()
                t = max(r.arrival, self.now)
                for rep in reps:
                    rep.step(t, done)
                m.stats.arrived += 1
                self._dispatch(m, r, t)
            for rep in reps:
                rep.step(now, done)
        for r in done:
            self._models[r.model].stats.finished += 1
        if self.keep_finished:
            self._finished.extend(done)
        self.now = now

    def _dispatch(self, m: _Model, r: Request, t: float | None = None) -> None:
        ready = [rep for rep in m.replicas.values() if rep.ready]
        if not ready:
            m.router.append(r)
            return
        rep = min(ready, key=lambda x: (x.load, x.name))
        r.replica, r.dispatched = rep.name, rep.t if t is None else t
        m.stats.dispatched += 1
        rep.waiting.append(r)
        rep._admit()

    # ---- reading

    def _model(self, model: str) -> _Model:
        try:
            return self._models[model]
        except KeyError:
            raise KeyError(f"unknown model {model!r}; add_model first") from None

    @property
    def models(self) -> list[str]:
        return list(self._models)

    def replicas(self, model: str | None = None) -> list[str]:
        if model is None:
            return sorted(self._replicas)
        return sorted(self._model(model).replicas)

    def has_replica(self, name: str) -> bool:
        return name in self._replicas

    def router_waiting(self, model: str) -> int:
        return len(self._model(model).router)

    def stats(self, model: str) -> ModelStats:
        s = self._model(model).stats
        return ModelStats(s.arrived, s.dispatched, s.finished, s.aborted)

    def metrics(self, name: str) -> ReplicaMetrics:
        rep = self._replicas[name]
        return ReplicaMetrics(
            name=name, model=rep.model, ready=rep.ready, waiting=len(rep.waiting), running=len(rep.running),
            kv_cache_usage=rep.kv_usage(), gpu_util=rep.gpu_util(),
            ttft=rep.ttft.snapshot(), queue_time=rep.queue_time.snapshot(), success_total=rep.success,
            prompt_tokens_total=rep.prompt_total, generation_tokens_total=rep.generation_total)

    def sample(self, name: str) -> tuple[int, int, float]:
        """(waiting, running, GPU utilisation 0..100) of one replica: the three gauges a
        scrape reads, without the histogram snapshots of ``metrics`` (the trace
        simulator scrapes every replica every few seconds)."""
        rep = self._replicas[name]
        return len(rep.waiting), len(rep.running), rep.gpu_util()

    def success_total(self, name: str) -> int:
        """vllm:request_success_total of one replica: the requests it finished."""
        return self._replicas[name].success

    def load(self, name: str) -> int:
        """Requests a replica holds (waiting + running): 0 means drained."""
        return self._replicas[name].load

    def pop_finished(self) -> list[Request]:
        out, self._finished = self._finished, []
        return out


# ---------------------------------------------------------------- load sources

class Schedule:
    """Piecewise-constant arrival rate: ``steps`` = [(t, requests/s), ...] sorted by t;
    the rate before the first step is 0, the last one holds until ``until`` (or for
    ever). Arrivals are evenly spaced in cumulative rate (the k-th, k = 0, 1, ..., when
    the integral of the rate passes k) or, with ``poisson``, a Poisson process.
    Token counts are fixed, or drawn (seeded) from ``token_pairs`` of (prompt, output)."""

    def __init__(self, steps: Sequence[tuple[float, float]], prompt_tokens: int = 100, output_tokens: int = 50,
                 *, token_pairs: Sequence[tuple[int, int]] | None = None, poisson: bool = False, seed: int = 0,
                 until: float | None = None):
        if not steps:
            raise ValueError("a schedule needs at least one (t, rate) step")
        ts = [float(t) for t, _ in steps]
        if any(b < a for a, b in zip(ts, ts[1:])):
            raise ValueError(f"schedule steps must be sorted by time: {list(steps)}")
        if any(r < 0 or not math.isfinite(r) for _, r in steps):
            raise ValueError(f"rates must be finite and >= 0: {list(steps)}")
        if prompt_tokens < 0 or output_tokens < 0:
            raise ValueError("token counts must be >= 0")
        if token_pairs is not None and (not token_pairs or any(p < 0 or o < 0 for p, o in token_pairs)):
            raise ValueError("token_pairs must be non-empty pairs of counts >= 0")
        self.steps = [(float(t), float(r)) for t, r in steps]
        self.prompt_tokens, self.output_tokens = prompt_tokens, output_tokens
        self.token_pairs = np.asarray(token_pairs, dtype=np.int64) if token_pairs is not None else None
        self.poisson, self.seed, self.until = poisson, seed, until

    def rate_at(self, t: float) -> float:
        rate = 0.0
        for st, r in self.steps:
            if st > t:
                break
            rate = r
        return rate if self.until is None or t < self.until else 0.0

    def _segments(self) -> Iterator[tuple[float, float, float]]:
        """(start, end, rate) with end possibly inf."""
        for i, (t, r) in enumerate(self.steps):
            end = self.steps[i + 1][0] if i + 1 < len(self.steps) else math.inf
            if self.until is not None:
                end = min(end, self.until)
            if end > t:
                yield t, end, r
            if self.until is not None and end >= self.until:
                return

    def requests(self) -> Iterator[Request]:
        rng = np.random.default_rng(self.seed)
        level = 0.0  # integral of the rate at the start of the segment
        target = rng.exponential() if self.poisson else 0.0
        for start, end, rate in self._segments():
            if rate <= 0:
                continue
            top = level + rate * (end - start)
            while target < top:
                t = start + (target - level) / rate
                if self.token_pairs is not None:
                    p, o = self.token_pairs[rng.integers(len(self.token_pairs))]
                    yield Request(t, int(p), int(o))
                else:
                    yield Request(t, self.prompt_tokens, self.output_tokens)
                target += rng.exponential() if self.poisson else 1.0
            level = top


def ConstantRate(rate: float, prompt_tokens: int = 100, output_tokens: int = 50, *, start: float = 0.0,
                 **kw) -> Schedule:
    """``rate`` requests/s from ``start`` on (see Schedule for the keywords)."""
    return Schedule([(start, rate)], prompt_tokens, output_tokens, **kw)


def burst(base: float, peak: float, at: float, duration: float, prompt_tokens: int = 100,
          output_tokens: int = 50, **kw) -> Schedule:
    """``base`` requests/s, ``peak`` from ``at`` for ``duration`` seconds, then base again."""
    return Schedule([(0.0, base), (at, peak), (at + duration, base)], prompt_tokens, output_tokens, **kw)


class TraceError(ValueError):
    """A request trace that cannot be replayed; the message names the file and row."""


@dataclass(frozen=True)
class TraceRow:
    t: float  # seconds since the trace's first request
    prompt_tokens: int
    output_tokens: int
    model: str = ""  # the trace's model column, "" without one
    service_s: float | None = None  # a service-time column instead of token counts


_TIME_NAMES = ("timestamp", "time", "arrival", "arrival_time", "ts")
_PROMPT_NAMES = ("contexttokens", "context_tokens", "prompt_tokens", "input_tokens", "prompttokens",
                 "inputtokens", "request_tokens")
_OUTPUT_NAMES = ("generatedtokens", "generated_tokens", "output_tokens", "completion_tokens",
                 "outputtokens", "response_tokens")
_FRACTION = re.compile(r"(\.\d{6})\d+")


def _parse_time(text: str) -> float | datetime:
    s = text.strip()
    try:
        v = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(v):
            raise ValueError(f"timestamp {text!r} is not finite")
        return v
    s = _FRACTION.sub(r"\1", s)  # Python takes at most 6 fraction digits
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    d = datetime.fromisoformat(s)
    return d if d.tzinfo is not None else d.replace(tzinfo=timezone.utc)


def parse_timestamp(text: str) -> float:
    """Seconds: a number as is, else an ISO-like datetime ('2023-11-16 18:15:46.6805900',
    'T' or space, any number of fraction digits, 'Z' or an offset; naive means UTC) as
    seconds since the epoch."""
    v = _parse_time(text)
    return v.timestamp() if isinstance(v, datetime) else v


def _column(header: list[str], given: str | None, names: tuple[str, ...], what: str, where: str,
            required: bool = True) -> int | None:
    lowered = [h.strip().lower() for h in header]
    if given is not None:
        if given.strip().lower() in lowered:
            return lowered.index(given.strip().lower())
        raise TraceError(f"{where} row 1 (header): no column {given!r} for {what}; columns are {header}")
    for n in names:
        if n in lowered:
            return lowered.index(n)
    if not required:
        return None
    raise TraceError(f"{where} row 1 (header): no {what} column (one of {', '.join(names)}, or name it "
                     f"with a column option); columns are {header}")


_MODEL_NAMES = ("model", "model_id", "model_name", "modelid")


def read_trace(source: str | os.PathLike | Iterable[str], *, time_column: str | None = None,
               prompt_column: str | None = None, output_column: str | None = None,
               model_column: str | None = None, service_column: str | None = None,
               limit: int | None = None) -> list[TraceRow]:
    """Rows of a CSV request trace: a header, then a time (seconds or a datetime) and
    either prompt (context) and output (generated) token counts or, with
    ``service_column``, a service time in seconds per row; optionally a model column
    (found by name: model, model_id, model_name; or named). The Azure LLM inference
    trace's TIMESTAMP,ContextTokens,GeneratedTokens is found by name. Times come back
    relative to the first row. Missing columns, bad values, negative sizes, timestamps
    that go backwards and an empty file raise one TraceError naming the file, the row
    (1 = header, as a spreadsheet numbers them) and the column:
    ``trace.csv row 17: ContextTokens is -5; token counts must be >= 0``."""
    if isinstance(source, (str, os.PathLike)):
        where = os.fspath(source)
        try:
            with open(source, newline="", encoding="utf-8-sig") as f:
                return _read_rows(f, where, time_column, prompt_column, output_column, model_column,
                                  service_column, limit)
        except OSError as exc:
            raise TraceError(f"{where}: cannot read ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise TraceError(f"{where}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    return _read_rows(io.StringIO("".join(line if line.endswith("\n") else line + "\n" for line in source)), "<trace>",
                      time_column, prompt_column, output_column, model_column, service_column, limit)


def _read_rows(f, where, time_column, prompt_column, output_column, model_column, service_column,
               limit) -> list[TraceRow]:
    reader = csv.reader(f)
    try:
        header = next(reader, None)
        while header is not None and not any(c.strip() for c in header):
            header = next(reader, None)
    except csv.Error as exc:
        raise TraceError(f"{where} row 1 (header): unreadable ({exc})") from None
    if header is None:
        raise TraceError(f"{where} row 1: empty file; expected a header row (e.g. "
                         f"TIMESTAMP,ContextTokens,GeneratedTokens) and one row per request")
    ti = _column(header, time_column, _TIME_NAMES, "time", where)
    mi = _column(header, model_column, _MODEL_NAMES, "model", where, required=False)
    if service_column is not None:
        si = _column(header, service_column, (), "service time", where)
        size_cols = [(si, "service times", True)]
    else:
        pi = _column(header, prompt_column, _PROMPT_NAMES, "prompt-token", where)
        oi = _column(header, output_column, _OUTPUT_NAMES, "output-token", where)
        size_cols = [(pi, "token counts", False), (oi, "token counts", False)]
    names = [h.strip() for h in header]
    need = max([ti] + [c for c, _, _ in size_cols] + ([mi] if mi is not None else []))
    rows: list[TraceRow] = []
    t0: float | datetime | None = None
    prev: float | datetime | None = None
    prev_text = ""
    rowno = 1
    try:
        for rowno, row in enumerate(reader, start=2):
            if not any(c.strip() for c in row):
                continue
            if limit is not None and len(rows) >= limit:
                break
            if len(row) <= need:
                raise TraceError(f"{where} row {rowno}: {len(row)} fields, the header has {len(header)} "
                                 f"({','.join(names)}): {row}")
            try:
                t = _parse_time(row[ti])
                if t0 is not None and isinstance(t, datetime) != isinstance(t0, datetime):
                    raise ValueError("mixes numbers and datetimes")
            except ValueError as exc:
                raise TraceError(f"{where} row {rowno}: {names[ti]} {row[ti]!r} is not a time ({exc})") from None
            sizes: list[float] = []
            for i, what, real in size_cols:
                text = row[i].strip()
                try:
                    v = float(text)
                except ValueError:
                    raise TraceError(f"{where} row {rowno}: {names[i]} {text!r} is not a number") from None
                if not math.isfinite(v):
                    raise TraceError(f"{where} row {rowno}: {names[i]} is {text}; {what} must be finite")
                if v < 0:
                    raise TraceError(f"{where} row {rowno}: {names[i]} is {text}; {what} must be >= 0")
                if not real and v != int(v):
                    raise TraceError(f"{where} row {rowno}: {names[i]} is {text}; {what} must be whole numbers")
                sizes.append(v)
            if prev is not None and t < prev:
                raise TraceError(f"{where} row {rowno}: {names[ti]} {row[ti].strip()!r} is earlier than row "
                                 f"{rowno - 1}'s {prev_text!r}; sort the trace by time")
            if t0 is None:
                t0 = t
            prev, prev_text = t, row[ti].strip()
            # datetimes subtract exactly (microseconds); epoch floats would round to ~0.2 us
            dt = (t - t0).total_seconds() if isinstance(t, datetime) else t - t0
            model = row[mi].strip() if mi is not None else ""
            if mi is not None and not model:
                raise TraceError(f"{where} row {rowno}: {names[mi]} is empty; every row needs a model")
            if service_column is not None:
                rows.append(TraceRow(dt, 0, 0, model, sizes[0]))
            else:
                rows.append(TraceRow(dt, int(sizes[0]), int(sizes[1]), model))
    except csv.Error as exc:
        raise TraceError(f"{where} row {rowno}: unreadable CSV ({exc})") from None
    if not rows:
        raise TraceError(f"{where} row 2: no data rows after the header; the trace is empty")
    return rows


class Trace:
    """Replays trace rows: a row at trace time t arrives at start + t / compression
    (compression 60: an hour of trace in a minute)."""

    def __init__(self, rows: Sequence[TraceRow], *, compression: float = 1.0, start: float = 0.0):
        if not compression > 0:
            raise ValueError("compression must be > 0")
        self.rows, self.compression, self.start = list(rows), compression, start

    @classmethod
    def from_csv(cls, path: str | os.PathLike, *, compression: float = 1.0, start: float = 0.0,
                 limit: int | None = None, **columns) -> "Trace":
        return cls(read_trace(path, limit=limit, **columns), compression=compression, start=start)

    @property
    def duration(self) -> float:
        """Seconds of simulated time from the first to the last arrival."""
        return (self.rows[-1].t / self.compression) if self.rows else 0.0

    def requests(self) -> Iterator[Request]:
        for row in self.rows:
            yield Request(self.start + row.t / self.compression, row.prompt_tokens, row.output_tokens)
