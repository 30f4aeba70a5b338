"""Which nodes can take a pod's GPUs at all, and why the others cannot.

One vectorised check over the candidate rows gives each a reason code and up to two
numbers; messages are then formatted once per distinct (code, numbers), not once per
node, because 5,000 f-strings alone would spend the whole latency budget.
Reasons read like kube-scheduler's and start with "gpusched:" so users can tell whose
filter said no.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from scheduler import contract
from scheduler.core import snapshot as snap
from scheduler.core.request import PodRequest
from scheduler.core.row_memo import DENSE, RowMemo
from scheduler.core.snapshot import ClusterSnapshot, first_match
from scheduler.quantity import format_bytes

# Reason codes, in the order they are reported (the first that applies wins).
FITS, UNKNOWN, BAD_REPORT, STALE, NO_GPUS, PRODUCT, MEMORY_UNKNOWN, TOO_FEW_WHOLE, NO_ROOM = range(9)
PREFIX = "gpusched: "
# The age reported for a node that never said when it reported: below any clock skew.
NEVER_REPORTED = -(2**40)


class Check(NamedTuple):
    rows: np.ndarray  # [C] snapshot row of each candidate, -1 if unknown
    ok: np.ndarray  # [C] bool
    code: np.ndarray  # [C] int8 reason code (FITS where ok)
    v1: np.ndarray  # [C] int64: count, bytes, seconds, product code or row, by code
    v2: np.ndarray  # [C] int64: unhealthy GPUs where it helps explain


def eligible_whole(s: ClusterSnapshot, rows: np.ndarray, req: PodRequest) -> np.ndarray:
    """[C,G] GPUs that can be given whole to `req` on each row."""
    wf = s.whole_free[rows]
    return wf & (s.gpu_mem_total[rows] >= req.gpu_memory) if req.gpu_memory else wf


# Every snapshot array that _check_rows reads; `now` and the product table go in the memo's key.
CHECK_INPUTS = ("status", "product_code", "unhealthy_count", "whole_free", "gpu_mem_total", "whole_free_count",
                "memory_known", "max_free", "reported_at")


def check(s: ClusterSnapshot, req: PodRequest, rows: np.ndarray, memo: RowMemo | None = None) -> Check:
    """Feasibility of every candidate row for a GPU pod (callers pass non-GPU pods by). A
    `memo` carries every row's answer from one call to the next; the answer is the same."""
    known = rows >= 0
    r = np.where(known, rows, 0)
    n = len(rows)
    if len(s) == 0:
        zeros = np.zeros(n, np.int64)
        return Check(rows, np.zeros(n, bool), np.full(n, UNKNOWN, np.int8), zeros, zeros)
    if memo is not None and n * DENSE >= len(s):
        key = ("check", req.whole_gpus, req.gpu_memory, req.products, s.products, s.now)
        code_all, v1_all, v2_all = memo.get(s, key, CHECK_INPUTS, lambda rows: _check_rows(s, req, rows))
        code, v1, v2 = code_all[r], v1_all[r], v2_all[r]
    else:
        code, v1, v2 = _check_rows(s, req, r)
    if not known.all():
        code, v1, v2 = np.where(known, code, UNKNOWN).astype(np.int8), np.where(known, v1, 0), np.where(known, v2, 0)
    return Check(rows, code == FITS, code, v1, v2)


def _check_rows(s: ClusterSnapshot, req: PodRequest, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reason code, v1, v2) of rows `r`, all of them in the snapshot."""
    n = len(r)
    status = s.status[r]
    product = s.product_code[r]
    wrong_product = ~s.accepts_products(req.products, r) if req.products else np.zeros(n, bool)
    unhealthy = s.unhealthy_count[r].astype(np.int64)
    if req.whole_gpus:
        have = (eligible_whole(s, r, req).sum(axis=1) if req.gpu_memory else s.whole_free_count[r]).astype(np.int64)
        short = have < req.whole_gpus
        mem_unknown = ~s.memory_known[r] if req.gpu_memory else np.zeros(n, bool)
        room_code, room_v1 = TOO_FEW_WHOLE, have
    else:
        largest = s.max_free[r]
        short = largest < req.gpu_memory
        mem_unknown = ~s.memory_known[r]
        room_code, room_v1 = NO_ROOM, largest
    age = np.nan_to_num(s.now - s.reported_at[r], nan=NEVER_REPORTED).astype(np.int64)
    conds = [status == snap.BAD_REPORT, (status == snap.STALE) | (status == snap.CLOCK_SKEW), status == snap.NO_GPUS,
             wrong_product, mem_unknown, short]
    code = first_match(list(zip(conds, [BAD_REPORT, STALE, NO_GPUS, PRODUCT, MEMORY_UNKNOWN, room_code])), FITS).astype(np.int8)
    v1 = first_match([(code == BAD_REPORT, r), (code == STALE, age), (code == PRODUCT, product), (code == room_code, room_v1)],
                0).astype(np.int64)
    v2 = np.where(code == room_code, unhealthy, 0)
    return code, v1, v2


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _describe(s: ClusterSnapshot, req: PodRequest, code: int, v1: int, v2: int) -> str:
    sick = f" ({v2} unhealthy)" if v2 else ""
    if code == UNKNOWN:
        return "node unknown to gpusched (not in snapshot yet)"
    if code == BAD_REPORT:
        return f"GPU report unreadable ({s.report_error.get(v1, 'unknown error')[:200]})"
    if code == STALE:
        if v1 == NEVER_REPORTED:
            return f"GPU report stale (no {contract.REPORTED_AT} time)"
        if v1 < 0:  # only a skew past nodeinfo.MAX_CLOCK_SKEW_S gets here
            return f"clock skew: GPU report dated {-v1}s in the future; not trusted until the node's clock is fixed"
        return f"GPU report stale (last {v1}s ago)"
    if code == NO_GPUS:
        return "node has no GPUs"
    if code == PRODUCT:
        return f"GPU product {s.products[v1] or 'unknown'} not in [{', '.join(sorted(req.products))}]"
    if code == MEMORY_UNKNOWN:
        return (f"GPU memory unknown (no gpusched report and no {contract.GPU_MEMORY_LABEL} label); "
                "cannot place by memory")
    if code == TOO_FEW_WHOLE:
        with_mem = f" with >= {format_bytes(req.gpu_memory)}" if req.gpu_memory else ""
        return f"needs {_plural(req.whole_gpus, 'free whole GPU', 'free whole GPUs')}{with_mem}, node has {v1}{sick}"
    if code == NO_ROOM:
        return f"no GPU has {format_bytes(req.gpu_memory)} free (largest free {format_bytes(v1)}){sick}"
    return "fits"


def reasons(s: ClusterSnapshot, req: PodRequest, c: Check, where: np.ndarray) -> list[str]:
    """Messages for the candidates selected by `where`, formatted once per distinct case."""
    code, v1, v2 = c.code[where].astype(np.int64), c.v1[where], c.v2[where]
    if len(code) == 0:
        return []
    # Bytes are told apart at MiB (messages round coarser than that); v2 <= 64 GPUs.
    scaled = np.where(code == NO_ROOM, v1 >> 20, v1)
    key = (scaled * 128 + np.minimum(v2, 127)) * 16 + code
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    table = np.array([PREFIX + _describe(s, req, int(code[i]), int(v1[i]), int(v2[i])) for i in first], dtype=object)
    return table[inverse.ravel()].tolist()


def filter_rows(s: ClusterSnapshot, req: PodRequest, rows: np.ndarray,
                memo: RowMemo | None = None) -> tuple[np.ndarray, list[str]]:
    """Which candidate rows (-1 for a node not in the snapshot) can take the pod's GPUs,
    and the reason of each that cannot, in candidate order. Non-GPU pods pass everywhere
    (gpusched has nothing to say about them). A `memo` carries every row's answer from one
    call to the next; the answer is the same."""
    if not req.gpu_pod:
        return np.ones(len(rows), bool), []
    c = check(s, req, rows, memo)
    return c.ok, reasons(s, req, c, ~c.ok)
