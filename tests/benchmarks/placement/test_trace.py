"""Reading the trace: each bad input gets one error naming the file, line and column."""
from __future__ import annotations

import json

import pytest

from benchmarks.placement.trace import BenchInputError, read_nodes, read_pods
from scheduler.cli import UserError

POD_HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time"
NODE_HEADER = "sn,cpu_milli,memory_mib,gpu,model"


def write(tmp_path, text: str, name: str = "pods.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_pods_in_creation_order_and_counts_unsorted_rows(tmp_path):
    p = write(tmp_path, POD_HEADER + "\n"
              "a,1000,100,1,1000,,LS,Running,30,0,0\n"
              "b,2000,200,1,460,V100M16|V100M32,LS,Running,10,0,0\n"
              "c,3000,300,0,0,,LS,Running,20,0,0\n"
              "d,4000,400,8,1000,,LS,Running,30,0,0\n")
    pods = read_pods(p)
    assert [x.key for x in pods.pods] == ["b", "c", "a", "d"]  # stable: a before d at t=30
    assert pods.out_of_order == 2 and pods.ordered_by == "creation_time order"
    b = pods.pods[0]
    assert (b.kind, b.gpu_milli, b.gpu_spec, b.line) == ("share", 460, frozenset({"V100M16", "V100M32"}), 3)
    assert [x.kind for x in pods.pods[1:]] == ["cpu", "whole", "whole"]
    assert pods.pods[3].demand_milli == 8000


def test_pod_list_without_creation_time_is_replayed_in_file_order(tmp_path):
    p = write(tmp_path, "name,cpu_milli,memory_mib,num_gpu,gpu_milli\nb,1,1,1,1000\na,1,1,0,0\n")
    pods = read_pods(p)
    assert [x.key for x in pods.pods] == ["b", "a"] and pods.ordered_by.startswith("file order")


ROW = "x,1000,100,1,500,,LS,Running,5,0,0"
BAD_PODS = [
    # (file text, message fragment)
    ("", "empty file"),
    (POD_HEADER + "\n", "no data rows"),
    ("name,cpu_milli,memory_mib,num_gpu\nx,1,1,1\n", "line 1 (header): missing column gpu_milli"),
    ("name,memory_mib,num_gpu\nx,1,1\n", "missing columns cpu_milli, gpu_milli"),
    (POD_HEADER + "\n" + ROW + "\ny,-5,100,1,500,,LS,Running,6,0,0\n", "line 3: cpu_milli is negative (-5)"),
    (POD_HEADER + "\ny,1000,-1,1,500,,LS,Running,6,0,0\n", "line 2: memory_mib is negative (-1)"),
    (POD_HEADER + "\ny,1000,1,-1,500,,LS,Running,6,0,0\n", "line 2: num_gpu is negative (-1)"),
    (POD_HEADER + "\ny,1000,1,1,1500,,LS,Running,6,0,0\n", "line 2: gpu_milli 1500 is more than 1000"),
    (POD_HEADER + "\ny,12.5,1,1,500,,LS,Running,6,0,0\n", "line 2: cpu_milli '12.5' is not a whole number"),
    (POD_HEADER + "\n" + ROW + "\ny,1000,1,1,500,,LS,Running,soon,0,0\n", "line 3: creation_time 'soon' is not a number"),
    (POD_HEADER + "\ny,1000,1,1,500,,LS,Running,nan,0,0\n", "line 2: creation_time 'nan' is not a number"),
    (POD_HEADER + "\ny,1000,1,2,500,,LS,Running,6,0,0\n", "line 2: num_gpu 2 with gpu_milli 500"),
    (POD_HEADER + "\ny,1000,1,0,500,,LS,Running,6,0,0\n", "line 2: gpu_milli 500 with num_gpu 0"),
    (POD_HEADER + "\ny,1000,1,1,0,,LS,Running,6,0,0\n", "line 2: num_gpu 1 with gpu_milli 0"),
    (POD_HEADER + "\ny,1000,1,1,500,A100,LS,Running,6,0,0\n", "line 2: gpu_spec names unknown GPU model 'A100'"),
    (POD_HEADER + "\n" + ROW + "\n" + ROW + "\n", "line 3: pod 'x' repeated (first on line 2)"),
    (POD_HEADER + "\ny,1000,1,1\n", "line 2: 4 fields, the header has 11"),
]


@pytest.mark.parametrize("text,msg", BAD_PODS, ids=[m for _, m in BAD_PODS])
def test_bad_pod_lists(tmp_path, text, msg):
    p = write(tmp_path, text)
    with pytest.raises(BenchInputError) as err:
        read_pods(p)
    assert msg in str(err.value) and str(p) in str(err.value)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, UserError)  # the CLI prints it as one line


BAD_NODES = [
    ("", "empty file"),
    ("sn,cpu_milli,memory_mib,gpu\nn,1,1,1\n", "missing column model"),
    (NODE_HEADER + "\nn0,64000,1024,2,H100\n", "line 2: GPU model 'H100' unknown"),
    (NODE_HEADER + "\nn0,64000,1024,-2,T4\n", "line 2: gpu is negative (-2)"),
    (NODE_HEADER + "\nn0,64000,1024,65,T4\n", "line 2: gpu 65 is more than 64"),
    (NODE_HEADER + "\nn0,64000,1024,2,T4\nn0,64000,1024,2,T4\n", "line 3: node 'n0' repeated"),
]


@pytest.mark.parametrize("text,msg", BAD_NODES, ids=[m for _, m in BAD_NODES])
def test_bad_node_lists(tmp_path, text, msg):
    p = write(tmp_path, text, "nodes.csv")
    with pytest.raises(BenchInputError) as err:
        read_nodes(p)
    assert msg in str(err.value) and str(p) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(BenchInputError, match="cannot read pod list"):
        read_pods(tmp_path / "nope.csv")


# ---------- the command

def _cli(argv):
    from scheduler.cli import main
    return main(["bench", "placement", *argv])


def test_cli_prints_one_line_for_bad_input(tmp_path, capsys):
    nodes = write(tmp_path, NODE_HEADER + "\nn0,64000,1024,2,T4\n", "nodes.csv")
    pods = write(tmp_path, POD_HEADER + "\ny,1000,1,1,500,,LS,Running,x,0,0\n")
    assert _cli(["--nodes", str(nodes), "--pods", str(pods), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 2: creation_time 'x' is not a number" in err[0]


def test_cli_writes_json_table_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    nodes = write(tmp_path, NODE_HEADER + "\nn0,16000,65536,2,T4\nn1,32000,65536,4,V100M32\n", "nodes.csv")
    rows = [f"p{i},2000,1024,{n},{m},,LS,Running,{i},0,0" for i, (n, m) in
            enumerate([(1, 500), (1, 1000), (0, 0), (2, 1000), (1, 250), (1, 700), (1, 1000), (4, 1000)])]
    pods = write(tmp_path, POD_HEADER + "\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert _cli(["--nodes", str(nodes), "--pods", str(pods), "--pods", str(pods), "--seed", "3",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seed 3" in printed and "| gpusched |" in printed and "| fgd |" in printed
    data = json.loads((out / "placement.json").read_text())
    assert data["seed"] == 3 and data["params"]["seed"] == 3
    assert len(data["rows"]) == 2 * 8  # the file twice x the default policies
    row = data["rows"][0]
    assert row["policy"] == "gpusched" and 0 < row["gpu_allocation_at_first_failure"] <= 1
    assert {"pods_placed", "stranded_gpus", "first_failure"} <= set(row)
    assert (out / "placement.md").read_text().count("| gpusched |") == 2
    assert (out / "placement_pods.png").stat().st_size > 0 and (out / "placement_summary.png").stat().st_size > 0


def test_cli_monte_carlo_rows_carry_unallocated_at_100pct(tmp_path, capsys):
    """--inflate 1.3 with two seeds: pods drawn until 130% of the 6 GPUs (7,800 milli) arrived;
    each (policy, seed) row has the unallocated GPUs when the demand first reached 100%
    (6,000 milli), and the summary is their mean."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    nodes = write(tmp_path, NODE_HEADER + "\nn0,16000,65536,2,T4\nn1,32000,65536,4,V100M32\n", "nodes.csv")
    rows = [f"p{i},2000,1024,{n},{m},,LS,Running,{i},0,0" for i, (n, m) in
            enumerate([(1, 500), (1, 1000), (0, 0), (2, 1000), (1, 250), (1, 700)])]
    pods = write(tmp_path, POD_HEADER + "\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert _cli(["--nodes", str(nodes), "--pods", str(pods), "--inflate", "1.3", "--seed", "4", "5",
                 "--policies", "gpusched", "fgd", "best-fit", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seeds 4 5" in printed and "unallocated GPUs at 100% arrived" in printed
    data = json.loads((out / "placement.json").read_text())
    assert len(data["rows"]) == 3 * 2 and {r["seed"] for r in data["rows"]} == {4, 5}
    for r in data["rows"]:
        assert 0 <= r["unallocated_gpus_at_100pct"] <= 6
    for s in data["summary"]:
        mine = [r["unallocated_gpus_at_100pct"] for r in data["rows"] if r["policy"] == s["policy"]]
        assert s["unallocated_gpus_at_100pct"] == pytest.approx(sum(mine) / 2, abs=0.01)
    levels = json.loads((out / "placement_levels.json").read_text())["levels"]
    got = [lv["percent"] for lv in levels[0]["levels"]]  # the last pod may carry the demand past 130%
    assert got == list(range(1, len(got) + 1)) and 130 <= len(got) < 130 + 2000 * 100 // 6000 + 1
    assert (out / "placement_mc_pods.png").stat().st_size > 0


def test_inflate_draws_until_the_demand_reaches_the_target():
    from benchmarks.placement.sim import inflate
    from tests.benchmarks.placement.tiny import pod, pods
    ps = pods(pod(1, 500), pod(2, 1000), pod())
    a, b = inflate(ps, 10_000, 1.3, seed=1), inflate(ps, 10_000, 1.3, seed=1)
    demand = [p.demand_milli for p in a.pods]
    # stops at the first pod that brings the demand to 13,000 milli or more
    assert sum(demand) >= 13_000 and sum(demand[:-1]) < 13_000 and demand[-1] > 0
    assert [p.key for p in a.pods] == [p.key for p in b.pods]  # seeded
    assert len({p.key for p in a.pods}) == len(a.pods)  # copies keyed apart, as the extender needs
    assert [p.key for p in inflate(ps, 10_000, 1.3, seed=2).pods] != [p.key for p in a.pods]


def test_cli_combine_averages_runs_written_apart(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    nodes = write(tmp_path, NODE_HEADER + "\nn0,16000,65536,2,T4\nn1,32000,65536,4,V100M32\n", "nodes.csv")
    rows = [f"p{i},2000,1024,{n},{m},,LS,Running,{i},0,0" for i, (n, m) in
            enumerate([(1, 500), (1, 1000), (0, 0), (2, 1000), (1, 250)])]
    pods = write(tmp_path, POD_HEADER + "\n" + "\n".join(rows) + "\n")
    common = ["--nodes", str(nodes), "--pods", str(pods), "--inflate", "1.3", "--policies", "best-fit", "fgd"]
    assert _cli([*common, "--seed", "1", "--out", str(tmp_path / "a")]) == 0
    assert _cli([*common, "--seed", "2", "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert _cli(["--combine", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c")]) == 0
    assert "seeds: 1 2" in capsys.readouterr().out
    runs = [json.loads((tmp_path / d / "placement.json").read_text()) for d in "abc"]
    for s in runs[2]["summary"]:
        parts = [r["unallocated_gpus_at_100pct"] for run in runs[:2] for r in run["rows"] if r["policy"] == s["policy"]]
        assert len(parts) == 2 and s["unallocated_gpus_at_100pct"] == pytest.approx(sum(parts) / 2, abs=0.01)
    # the same seed twice would count twice: refused in one line
    assert _cli(["--combine", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(tmp_path / "d")]) == 1
    assert "already in an earlier directory" in capsys.readouterr().err


def test_variants_are_the_pod_lists_beside_the_node_list_default_first(tmp_path, monkeypatch):
    from benchmarks.placement.trace import pod_list_variants
    d = tmp_path / "alibaba-gpu-2023"
    d.mkdir()
    for name in ("openb_node_list_gpu_node.csv", "openb_pod_list_multigpu20.csv", "openb_pod_list_default.csv",
                 "openb_pod_list_cpu050.csv", "other.csv"):
        (d / name).write_text("")
    monkeypatch.setenv("GPUSCHED_TRACES", str(tmp_path))
    assert [p.name for p in pod_list_variants()] == [
        "openb_pod_list_default.csv", "openb_pod_list_cpu050.csv", "openb_pod_list_multigpu20.csv"]
