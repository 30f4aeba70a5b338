"""benchmarks/placement/derive.py: pod lists drawn from another, FGD's variants' recipe."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.placement import derive, trace
from tests.benchmarks.placement.tiny import pod, pods


def _base():
    # 2 CPU-only, 2 shares (demand 500 each), 1 whole, 1 two-GPU pod: GPU demand 500+500+1000+2000 = 4000
    return pods(pod(cpu=8000, key="c0"), pod(cpu=4000, key="c1"), pod(1, 500, key="s0"), pod(1, 500, key="s1"),
                pod(1, 1000, key="w0"), pod(2, 1000, key="m0"))


def _kinds(p: trace.Pods) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in p.pods:
        out[x.kind] = out.get(x.kind, 0) + 1
    return out


@pytest.mark.parametrize("spec, kinds", [
    # cpuP: every GPU pod kept, 7.5 x P CPU-only pods (rounded): cpu000 none, cpu004 30 = 15 copies of each of 2
    ("cpu000", {"share": 2, "whole": 2}),
    ("cpu004", {"cpu": 30, "share": 2, "whole": 2}),
    ("cpu001", {"cpu": 8, "share": 2, "whole": 2}),  # 7.5 rounds to 8 (round() goes half to even)
    # gpushareP: 4 GPU pods, P% of them shares: 50% -> 2 shares and 2 of the 2 others; 100% -> 4 shares
    ("gpushare50", {"cpu": 2, "share": 2, "whole": 2}),
    ("gpushare100", {"cpu": 2, "share": 4}),
    ("gpushare25", {"cpu": 2, "share": 1, "whole": 3}),
    # multigpuP: the list plus two-GPU pods until they ask P%: 2000/4000 = 50% now; 60% needs x with
    # (2000 + x) / (4000 + x) >= 0.6, x >= 1000: one more two-GPU pod (4000 / 6000 = 66.7%)
    ("multigpu60", {"cpu": 2, "share": 2, "whole": 3}),
    # 80%: x >= (3200 - 2000) / 0.2 = 6000: three more (8000 / 10000 = 80%)
    ("multigpu80", {"cpu": 2, "share": 2, "whole": 5}),
])
def test_derived_lists_hold_the_recipes_counts(spec, kinds):
    assert _kinds(derive.derive(_base(), spec, seed=1)) == kinds


def test_draws_are_even_and_keys_unique():
    out = derive.derive(_base(), "cpu004", seed=7)
    cpu = [p.key.split("~")[0] for p in out.pods if p.kind == "cpu"]
    assert cpu.count("c0") == cpu.count("c1") == 15
    assert len({p.key for p in out.pods}) == len(out)
    # copies of one pod stay together, in the base's order: the replay order is kept
    base_order = [p.key for p in _base().pods]
    seen = [p.key.split("~")[0] for p in out.pods]
    assert [k for i, k in enumerate(seen) if i == 0 or seen[i - 1] != k] == base_order


@pytest.mark.parametrize("n, copies", [(2, [0, 1, 1]), (3, [1, 1, 1]), (6, [2, 2, 2]), (7, [2, 2, 3]), (8, [2, 3, 3])])
def test_even_draw_gives_each_index_n_over_len_or_one_more(n, copies):
    got = derive.even_draw(np.arange(3), n, np.random.default_rng(0))
    assert len(got) == n
    assert sorted(int((got == i).sum()) for i in range(3)) == copies


def test_same_seed_same_list_other_seed_other_draws():
    base = _base()
    assert derive.derive(base, "gpushare25", seed=3) == derive.derive(base, "gpushare25", seed=3)
    drawn = {tuple(p.key for p in derive.derive(base, "gpushare25", seed=s).pods) for s in range(12)}
    assert len(drawn) > 1


def test_name_says_what_it_is():
    out = derive.derive(_base(), "cpu250", seed=derive.DEFAULT_SEED)
    assert out.name == "openb_pod_list_cpu250_derived"
    assert "derived (cpu250) from tiny-pods.csv, seed 2023" in out.ordered_by
    # another seed's draws are another list: --combine must not average them as one
    assert derive.derive(_base(), "cpu250", seed=1).name == "openb_pod_list_cpu250_derived_seed1"


@pytest.mark.parametrize("text, msg", [
    ("cpu", "expected cpuP, gpushareP or multigpuP"),
    ("gpu50", "expected cpuP"),
    ("cpu-5", "expected cpuP"),
    ("cpu1e30", "expected cpuP"),
    ("cpu401", "P must be in 1..400 for cpu (or 0"),
    ("gpushare0", "P must be in 1..100 for gpushare"),
    ("gpushare101", "P must be in 1..100"),
    ("multigpu91", "P must be in 1..90"),
])
def test_bad_specs_say_what_is_accepted(text, msg):
    with pytest.raises(trace.BenchInputError, match=msg.replace(".", r"\.").replace("(", r"\(")):
        derive.parse_spec(text)


@pytest.mark.parametrize("base, spec, msg", [
    (pods(pod(1, 1000), pod(2, 1000)), "cpu050", "no CPU-only pods to draw cpu050 from"),
    (pods(pod(), pod(1, 1000)), "gpushare50", "no GPU-sharing pods"),
    (pods(pod(), pod(1, 500)), "gpushare50", "no whole-GPU pods"),
    (pods(pod(1, 1000)), "multigpu20", "no multi-GPU pods"),
    # 2000 of 3000 = 66.7% already: the recipe only adds
    (pods(pod(1, 1000), pod(2, 1000)), "multigpu50", "already ask 66.7%"),
])
def test_a_list_without_the_pods_a_recipe_needs_is_refused(base, spec, msg):
    with pytest.raises(trace.BenchInputError, match=msg):
        derive.derive(base, spec, seed=1)


def _cli(argv: list[str]) -> int:
    from scheduler.cli import main
    return main(["bench", "placement", *argv])


def test_cli_runs_the_derived_lists_it_names(tmp_path, capsys):
    assert _cli(["--derive", "cpu050", "gpushare80", "cpu50", "--limit", "300", "--policies", "gpusched", "best-fit",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "openb_pod_list_cpu050_derived" in out and "openb_pod_list_gpushare080_derived" in out
    assert "openb_pod_list_default**" not in out  # --derive alone replays only what it names
    data = json.loads((tmp_path / "placement.json").read_text())
    assert data["params"]["derive_seed"] == 2023
    assert [t["name"] for t in data["params"]["traces"]] == ["openb_pod_list_cpu050_derived",
                                                              "openb_pod_list_gpushare080_derived"]


def test_cli_refuses_a_bad_spec_in_one_line(tmp_path, capsys):
    assert _cli(["--derive", "cpu-5", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected cpuP, gpushareP or multigpuP" in err[0]
