"""The pure placement core: plain data in, decision and reason out; no I/O, no clock.

The same functions run in the extender, the simulator and the unit tests."""
from scheduler.core.assign import Assignment, assign_gpus
from scheduler.core.feasibility import filter_rows
from scheduler.core.request import PodRequest, RequestError, parse_pod
from scheduler.core.scoring import (DEFAULT_SHAPES, ScoreDetails, Shape, Weights, score_rows,
                                     workload_shapes)
from scheduler.core.snapshot import Allocation, ClusterSnapshot, NodeState, SnapshotError, build_snapshot

__all__ = [
    "Allocation", "Assignment", "ClusterSnapshot", "DEFAULT_SHAPES", "NodeState", "PodRequest", "RequestError",
    "ScoreDetails", "Shape", "SnapshotError", "Weights", "assign_gpus", "build_snapshot", "filter_rows",
    "parse_pod", "score_rows", "workload_shapes",
]
