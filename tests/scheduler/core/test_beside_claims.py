"""nvidia.com/gpu pods kept off nodes where claims hold GPUs (scheduler.core.beside_claims),
as tables: candidates, what filter said, which nodes hold claims; the answer."""
from __future__ import annotations

import numpy as np
import pytest

from scheduler.core.beside_claims import WHOLE_BESIDE_CLAIMS as W
from scheduler.core.beside_claims import claim_beside_plugin, claimed_rows, refuse_claimed

INDEX = {"a": 0, "b": 1, "c": 2, "d": 3}


@pytest.mark.parametrize("name,nodes,want", [
    ("none", [], [False, False, False, False]),
    ("two", ["b", "d"], [False, True, False, True]),
    ("unknown-node-ignored", ["zz", "a"], [True, False, False, False]),
])
def test_claimed_rows(name, nodes, want):
    assert claimed_rows(INDEX, 4, nodes).tolist() == want


# want_hard: every claimed candidate, sent as FailedAndUnresolvableNodes (preemption cannot
# free a claimed node: beside_claims' docstring), whatever else failed there; others resolvable
@pytest.mark.parametrize("name,rows,ok,reasons,claimed,want_ok,want_reasons,want_hard", [
    # b holds claims and passed filter: refused with W, unresolvable; the rest as filter said
    ("refuse-b", [0, 1, 2], [True, True, True], [], ["b"], [True, False, True], [W], [False, True, False]),
    # a failed filter (its reason kept, first in candidate order, resolvable), b refused after it
    ("keep-order", [0, 1, 2], [False, True, True], ["no room on a"], ["b"], [False, False, True],
     ["no room on a", W], [False, True, False]),
    # c already failed: its own reason stays, nothing added, yet unresolvable (claimed whatever
    # preemption would free on it)
    ("already-failed", [2, 0], [False, True], ["no room on c"], ["c"], [False, True], ["no room on c"],
     [True, False]),
    # c failed and b refused: both claimed, both unresolvable; a stays resolvable
    ("failed-and-refused", [0, 2, 1], [False, False, True], ["no room on a", "no room on c"], ["b", "c"],
     [False, False, False], ["no room on a", "no room on c", W], [False, True, True]),
    # -1: a node not in the snapshot, never "claimed"
    ("unknown-row", [-1, 3], [True, True], [], ["d"], [True, False], [W], [False, True]),
    ("no-claims", [0, 1], [True, True], [], [], [True, True], [], [False, False]),
])
def test_refuse_claimed(name, rows, ok, reasons, claimed, want_ok, want_reasons, want_hard):
    got_ok, got_reasons, hard = refuse_claimed(np.array(ok), list(reasons), np.array(rows),
                                               claimed_rows(INDEX, 4, claimed))
    assert (got_ok.tolist(), got_reasons, hard.tolist()) == (want_ok, want_reasons, want_hard)


def test_claim_beside_plugin_names_at_most_three_pods():
    msg = claim_beside_plugin("n1", ["ns/e", "ns/d", "ns/c", "ns/b", "ns/a"])
    assert "(ns/a, ns/b, ns/c and 2 more)" in msg and msg.startswith("n1 runs pods holding nvidia.com/gpu")
