from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from benchmarks.testbed.nodes import node_body
from benchmarks.testbed.profiles import ALIBABA_GPU_MIB, ProfileError, alibaba, nodes_for, small
from scheduler.nodeinfo import MiB, report_from_annotations


def test_small_profile_is_8_h100_per_node():
    specs = small(3)
    assert [s.name for s in specs] == ["gpu-node-0000", "gpu-node-0001", "gpu-node-0002"]
    assert {(s.gpus, s.gpu_memory_mib) for s in specs} == {(8, 81559)}


def test_alibaba_profile_reads_the_trace_in_order():
    specs = alibaba(1213)
    assert len(specs) == 1213
    assert specs[0].name == "openb-node-0000" and specs[0].gpus == 2 and specs[0].product == "Tesla-P100-PCIE-16GB"
    # 549 G2 nodes x 8 GPUs in the trace, each assumed 80 GiB
    g2 = [s for s in specs if s.product == ALIBABA_GPU_MIB["G2"][0]]
    assert len(g2) == 549 and {s.gpus for s in g2} == {8}


@pytest.mark.parametrize("profile,n,msg", [
    ("h200", 1, "unknown GPU profile 'h200'"),
    ("small", 0, "--nodes must be at least 1"),
])
def test_bad_profiles(profile, n, msg):
    with pytest.raises(ProfileError, match=msg):
        nodes_for(profile, n)


def test_node_body_carries_what_device_plugin_gfd_and_agent_would():
    spec = small(1)[0]
    at = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
    body = node_body(spec, now=at)
    assert body["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert body["metadata"]["labels"]["nvidia.com/gpu.memory"] == "81559"
    report = report_from_annotations(body["metadata"]["annotations"])
    assert not report.errors
    # 81,559 MiB per GPU less the driver's 480 MiB = 81,079 usable, none used, all healthy
    assert [(g.index, g.memory_total // MiB, g.memory_used, g.healthy) for g in report.gpus] == \
        [(i, 81079, 0, True) for i in range(8)]
    assert report.reported_at == at
    assert json.loads(body["metadata"]["annotations"]["gpusched.io/model-cache"]) == {}
