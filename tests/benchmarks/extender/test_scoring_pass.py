"""benchmarks/extender/scoring_pass.py: the pinned and unpinned passes score the same
cluster, and the pins change what they say."""
from __future__ import annotations

import numpy as np

from benchmarks.extender import scoring_pass
from scheduler.core import PodRequest, score_rows


def test_the_pinned_shapes_score_the_same_cluster_otherwise():
    s = scoring_pass.cluster(40)
    assert sorted({s.products[c] for c in s.product_code.tolist()}) == sorted(scoring_pass.PRODUCTS)
    req = PodRequest(gpu_memory=20 * scoring_pass.GiB, cpu_milli=6000)
    rows = np.arange(len(s))
    plain = score_rows(s, req, rows, None, scoring_pass.UNPINNED)
    pinned = score_rows(s, req, rows, None, scoring_pass.PINNED)
    assert [sh.weight for sh in scoring_pass.PINNED] == [sh.weight for sh in scoring_pass.UNPINNED]
    assert not np.array_equal(plain.fragmentation, pinned.fragmentation)  # the pins reach the scores


def test_main_prints_both_passes_and_their_ratio(capsys):
    scoring_pass.main(["--nodes", "30"])
    out = capsys.readouterr().out
    assert out.count("unpinned") == 2 and out.count("x)") == 2
