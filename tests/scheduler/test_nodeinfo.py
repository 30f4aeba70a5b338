"""The node report codec: what the agent writes is what the extender reads; bad reports are named, not fatal."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from scheduler import contract
from scheduler.nodeinfo import (GPU, MiB, CachedModel, NodeReport, annotations_for, report_from_annotations)


def test_round_trip():
    at = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)
    rep = NodeReport(
        gpus=(GPU(0, "GPU-a", 81559 * MiB, 10767 * MiB, 35.0, True, "NVIDIA H100 80GB HBM3"),
              GPU(1, "GPU-b", 81559 * MiB, 0, 0.0, False)),
        models=(CachedModel("meta-llama/Llama-3.1-8B-Instruct", 16 * 2**30, "disk"),),
        reported_at=at)
    back = report_from_annotations(annotations_for(rep))
    assert back == rep


@pytest.mark.parametrize("key,value,error", [
    (contract.GPUS, "{", "not JSON"),
    (contract.GPUS, '{"index":0}', "expected a list"),
    (contract.GPUS, '[{"index":0,"memoryTotalMiB":-1}]', "memoryTotalMiB: -1 is outside"),
    (contract.GPUS, '[{"index":0,"memoryTotalMiB":1e300}]', "memoryTotalMiB"),
    (contract.GPUS, '[{"index":0,"memoryTotalMiB":"80Gi"}]', "expected a number"),
    (contract.GPUS, '[{"index":0,"memoryTotalMiB":100},{"index":0,"memoryTotalMiB":100}]', "appears twice"),
    (contract.GPUS, '[{"index":99,"memoryTotalMiB":100}]', "index: 99 is outside"),
    (contract.MODEL_CACHE, '{"m":{"bytes":5,"tier":"tape"}}', "is not one of"),
    (contract.MODEL_CACHE, '{"m":{"bytes":-5,"tier":"disk"}}', "bytes: -5 is outside"),
    (contract.MODEL_CACHE, '[]', "expected an object"),
    (contract.REPORTED_AT, "yesterday", "not an RFC 3339 time"),
])
def test_bad_fields_are_reported_and_left_empty(key, value, error):
    rep = report_from_annotations({key: value})
    assert len(rep.errors) == 1 and error in rep.errors[0], rep.errors
    assert rep.gpus == () and rep.models == ()


def test_used_is_clamped_to_total_and_util_to_0_100():
    rep = report_from_annotations({contract.GPUS: '[{"index":0,"memoryTotalMiB":100,"memoryUsedMiB":500,"util":250}]'})
    assert rep.gpus[0].memory_used == 100 * MiB and rep.gpus[0].utilization == 100.0


def test_nothing_present_is_an_empty_report():
    assert report_from_annotations(None) == NodeReport()
