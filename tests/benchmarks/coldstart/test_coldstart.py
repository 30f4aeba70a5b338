"""`gpusched bench coldstart`: the arithmetic, the caches, the policies on a hand-built
cluster, a hand-built replay, determinism and the CLI end to end."""
from __future__ import annotations

import json

import pytest

from benchmarks.coldstart import catalogue, cache, sim
from benchmarks.coldstart.catalogue import GiB, Model
from benchmarks.coldstart.workload import Arrival, generate
from scheduler.cli import main
from scheduler.core.scoring import DEFAULT_BANDWIDTH

BW = {"gpu": 20e9, "host-memory": 20e9, "disk": 2e9, "remote": 0.5e9}


@pytest.mark.parametrize("gib, source, seconds", [
    (16, "disk", 16 * 2**30 / 2e9),           # 8.59 s: 17.18 GB at 2 GB/s
    (16, "host-memory", 16 * 2**30 / 20e9),   # 0.86 s
    (16, "remote", 16 * 2**30 / 0.5e9),       # 34.36 s
    (135.4, "remote", 135.4 * 2**30 / 0.5e9),  # 290.77 s: the largest model, cold
    (1, "gpu", 2**30 / 20e9),                 # 0.054 s
])
def test_load_seconds_is_bytes_over_bandwidth(gib, source, seconds):
    nbytes = round(gib * GiB)
    assert sim.load_seconds(nbytes, source, BW) == pytest.approx(seconds)
    assert sim.time_to_ready(nbytes, source, BW, start_s=20) == pytest.approx(20 + seconds)


def test_default_bandwidths_are_the_scorers():
    # the CLI's defaults come from scheduler.core.scoring.DEFAULT_BANDWIDTH, in GB/s
    assert DEFAULT_BANDWIDTH == {"host-memory": 20e9, "disk": 2e9, "remote": 0.5e9}


@pytest.mark.parametrize("gib, whole, share_gib", [
    (1.0, 0, 8),      # 1.3 x 1 + 6 = 7.3 -> a share of 8 GiB
    (15.0, 0, 26),    # 19.5 + 6 = 25.5 -> 26 GiB
    (22.8, 0, 36),    # 29.64 + 6 = 35.64 -> 36 GiB (<= 40: still a share)
    (27.5, 1, 0),     # 35.75 + 6 = 41.75 > 40 -> 1 whole GPU (79.6 GiB)
    (61.0, 2, 0),     # 85.3 > 79.6 -> 2 GPUs
    (87.0, 2, 0),     # 119.1 <= 159.3 -> 2 GPUs
    (135.4, 4, 0),    # 182.0 > 159.3 -> 4 GPUs (tensor parallel: powers of two)
])
def test_sizing(gib, whole, share_gib):
    assert catalogue.sizing(round(gib * GiB)) == (whole, share_gib * GiB)


def test_catalogue_spans_1_to_135_gib_and_the_largest_needs_several_gpus():
    models = catalogue.catalogue(variants=2)
    assert len(models) == 2 * len(catalogue.BASE_MODELS)
    assert len({m.name for m in models}) == len(models)
    sizes = [m.bytes / GiB for m in models]
    assert min(sizes) == pytest.approx(1.0) and max(sizes) == pytest.approx(135.4)
    assert max(models, key=lambda m: m.bytes).whole_gpus >= 2
    req = models[0].request()
    assert req.model == models[0].name and req.model_bytes == models[0].bytes and req.gpu_pod


@pytest.mark.parametrize("capacity, puts, contents, evicted", [
    (10, [("a", 4), ("b", 4)], ["a", "b"], []),
    (10, [("a", 4), ("b", 4), ("c", 4)], ["b", "c"], ["a"]),            # 12 > 10: the oldest goes
    (10, [("a", 4), ("b", 4), ("a", 4), ("c", 4)], ["a", "c"], ["b"]),  # a refreshed, so b is oldest
    (10, [("a", 4), ("big", 11)], ["a"], []),                          # bigger than the tier: not cached
    (10, [("a", 3), ("b", 3), ("c", 3), ("d", 8)], ["d"], ["a", "b", "c"]),
    (0, [("a", 1)], [], []),
])
def test_tier_lru(capacity, puts, contents, evicted):
    t = cache.Tier(capacity)
    out = []
    for m, n in puts:
        out += t.put(m, n)
    assert t.models() == contents
    assert out == evicted
    assert t.used == sum(n for m, n in dict(puts).items() if m in contents)


@pytest.mark.parametrize("source, host, disk", [
    ("remote", ["m"], ["m"]),  # fetched: written to disk, read through host memory
    ("disk", ["m"], ["m"]),    # (already on disk) promoted to host memory
    ("host-memory", ["m"], []),  # only host memory held it: refreshed there, not written to disk
])
def test_node_cache_after_a_load(source, host, disk):
    c = cache.NodeCache(100, 100)
    if source == "disk":
        c.disk.put("m", 10)
    if source == "host-memory":
        c.host.put("m", 10)
    c.loaded("m", 10, source)
    assert c.host.models() == host and c.disk.models() == disk
    assert c.tier("m") == "host-memory"
    assert c.entries() == {"m": "host-memory"}


def test_host_eviction_falls_back_to_disk():
    c = cache.NodeCache(host_bytes=15, disk_bytes=100)
    c.loaded("a", 10, "remote")
    evicted = c.loaded("b", 10, "remote")
    assert evicted == [("host-memory", "a")]
    assert c.tier("a") == "disk" and c.tier("b") == "host-memory" and c.tier("c") is None


SMALL = Model("org/small", 15 * GiB, 0, 26 * GiB)
BIG = Model("org/big", 61 * GiB, 2, 0)


def _params(**kw) -> sim.Params:
    base = dict(nodes=2, duration_s=10_000, warmup_s=0, bandwidth=BW, start_s=20.0)
    return sim.Params(**{**base, **kw})


@pytest.mark.parametrize("policy, node", [
    ("gpusched", "gpu-node-0001"),     # the node whose disk holds the model wins
    ("no-locality", "gpu-node-0000"),  # both nodes empty: equal scores, first in node order
    ("spread", "gpu-node-0000"),       # equal free memory: first in node order
])
def test_policies_on_a_cluster_with_one_node_caching_the_model(policy, node):
    cl = sim.Cluster(_params(), [SMALL, BIG])
    cl.caches[1].loaded(SMALL.name, SMALL.bytes, "remote")
    s = cl.view(0.0)
    assert s.model_cache[SMALL.name].node_idx.tolist() == [1]
    req = SMALL.request()
    feasible = sim.feasible_names(s, req, cl.names)
    assert feasible == cl.names
    assert sim.make_policy(policy).choose(s, req, feasible) == node
    assert cl.source(1, 0) == "host-memory" and cl.source(0, 0) == "remote"


def test_replay_by_hand():
    """One node. r0 loads the 15 GiB model cold; r1 starts after r0 stopped and reads it
    from host memory; r2 starts while r1 serves and copies it from r1's GPU."""
    cold = 20 + 15 * 2**30 / 0.5e9     # 52.21 s
    warm = 20 + 15 * 2**30 / 20e9      # 20.81 s
    arrivals = [Arrival(0.0, 0, 100.0), Arrival(1000.0, 0, 500.0), Arrival(1100.0, 0, 10.0)]
    res = sim.run(sim.make_policy("gpusched"), _params(nodes=1), [SMALL, BIG], arrivals)
    r0, r1, r2 = res.replicas
    assert (r0.source, r1.source, r2.source) == ("remote", "host-memory", "gpu")
    assert r0.ttr == pytest.approx(cold) and r1.ttr == pytest.approx(warm)
    assert r2.ttr == pytest.approx(20 + 15 * 2**30 / 20e9)
    assert (r0.cached, r1.cached, r2.cached) == (False, True, True)
    assert (r0.cached_room, r1.cached_room, r2.cached_room) == (False, True, True)
    s = res.summary()
    assert s["replicas"] == 3 and s["cold_loads"] == 1
    assert s["placed_on_cached"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["placed_on_cached_when_room"] == 1.0 and s["with_cached_room"] == 2
    assert s["loads_by_source"] == {"gpu": 1, "host-memory": 1, "disk": 0, "remote": 1}


def test_a_replica_that_finds_no_room_waits_for_a_stop():
    # one node of 8 GPUs: four 2-GPU replicas fill it; the fifth waits until the first stops
    arrivals = [Arrival(float(i), 1, 1000.0) for i in range(5)]
    res = sim.run(sim.make_policy("spread"), _params(nodes=1), [SMALL, BIG], arrivals)
    first_stop = res.replicas[0].placed_at + res.replicas[0].ttr + 1000.0
    assert res.replicas[4].placed_at == pytest.approx(first_stop)
    assert res.summary()["waited_for_room"] == 1 and res.pending_at_end == 0


def test_workload_is_seeded_and_keeps_the_load():
    models = catalogue.catalogue(2)
    a1, p1, rate = generate(models, gpus=64, load=0.5, duration_s=36_000, lifetime_s=600, zipf=1.0, seed=3)
    a2, p2, _ = generate(models, gpus=64, load=0.5, duration_s=36_000, lifetime_s=600, zipf=1.0, seed=3)
    a3, _, _ = generate(models, gpus=64, load=0.5, duration_s=36_000, lifetime_s=600, zipf=1.0, seed=4)
    assert a1 == a2 and (p1 == p2).all() and a1 != a3
    assert p1.sum() == pytest.approx(1.0)
    # Little's law: rate x mean lifetime x mean GPUs per replica = busy GPUs
    mean_gpus = sum(q * m.gpus for q, m in zip(p1, models))
    assert rate * 600 * mean_gpus == pytest.approx(0.5 * 64)
    assert len(a1) == pytest.approx(rate * 36_000, rel=0.1)
    assert all(x.t <= y.t for x, y in zip(a1, a1[1:]))


SMALL_RUN = ["bench", "coldstart", "--nodes", "3", "--hours", "1.5", "--warmup-hours", "0.25",
             "--lifetime-min", "10", "--variants", "2"]


def test_cli_end_to_end_and_deterministic(tmp_path, capsys):
    assert main(SMALL_RUN + ["--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert main(SMALL_RUN + ["--out", str(tmp_path / "b")]) == 0
    assert main(SMALL_RUN + ["--seed", "2", "--out", str(tmp_path / "c")]) == 0
    a, b, c = ((tmp_path / d / "coldstart.json").read_text() for d in "abc")
    assert a == b  # same seed, same JSON, byte for byte
    assert json.loads(a)["rows"] != json.loads(c)["rows"]
    for f in ("coldstart.md", "coldstart.png"):
        assert (tmp_path / "a" / f).stat().st_size > 0
    data = json.loads(a)
    rows = {r["policy"]: r for r in data["rows"]}
    assert list(rows) == ["gpusched", "no-locality", "spread"]
    for r in rows.values():
        assert r["replicas"] > 0
        assert sum(r["loads_by_source"].values()) == r["replicas"]
        assert r["ttr_p50_s"] <= r["ttr_p99_s"]
        assert r["ttr_p50_s"] >= 20.0  # never faster than the container start
    assert rows["gpusched"]["placed_on_cached_when_room"] >= 0.9
    assert rows["gpusched"]["cold_loads"] <= rows["spread"]["cold_loads"]
    assert data["params"]["nodes"] == 3 and data["seed"] == 1
    assert "| gpusched |" in printed and "Seed 1" in printed


@pytest.mark.parametrize("argv, message", [
    (["--nodes", "0"], "argument --nodes: must be >= 1, got '0'"),
    (["--hours", "x"], "argument --hours: expected a number, got 'x'"),
    (["--load", "-1"], "argument --load: must be > 0"),
    (["--policies", "best"], "argument --policies: invalid choice: 'best'"),
    (["--hours", "1", "--warmup-hours", "1"], "--warmup-hours 1 must be less than --hours 1"),
])
def test_bad_flags_give_one_line_and_exit_2(argv, message, tmp_path, capsys):
    try:
        rc = main(["bench", "coldstart", "--out", str(tmp_path)] + argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert message in err and len(err.splitlines()) == 1


def test_node_report_is_what_the_extender_reads_from_the_node():
    """The simulated agent's report survives the Node annotations round trip (the
    extender's path: annotations_for on the agent side, report_from_annotations in
    node_state_of), so the snapshot the policies see is the one the extender builds."""
    from scheduler.nodeinfo import annotations_for, report_from_annotations
    cl = sim.Cluster(_params(), [SMALL, BIG])
    cl.caches[0].loaded(SMALL.name, SMALL.bytes, "remote")
    cl.caches[0].loaded(BIG.name, BIG.bytes, "remote")
    cl.serving[0][1] = 1  # a replica of BIG runs on node 0
    rep = cl.report(0, 125.0)
    back = report_from_annotations(annotations_for(rep))
    assert back.errors == ()
    assert back.gpus == rep.gpus and back.models == rep.models
    assert {m.model: m.tier for m in rep.models} == {SMALL.name: "host-memory", BIG.name: "gpu"}
    assert back.reported_at.timestamp() == pytest.approx(sim.EPOCH.timestamp() + 125.0, abs=1)
