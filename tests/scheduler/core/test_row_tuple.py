from __future__ import annotations

import pytest

from scheduler.core import row_tuple
from scheduler.core.row_tuple import RowTuple, rows_of


@pytest.mark.parametrize("n, changes", [
    (0, {}),
    (1, {0: "x"}),
    (row_tuple.CHUNK, {row_tuple.CHUNK - 1: "x"}),  # the last row of the only chunk
    (row_tuple.CHUNK + 1, {row_tuple.CHUNK: "x", 0: "y"}),  # a row in each of two chunks
    (1000, {5: "a", 6: "b", 999: "c"}),
])
def test_replaced_rows_read_as_a_tuple_with_those_rows_replaced_and_the_old_one_is_untouched(n, changes):
    items = tuple(f"r{i}" for i in range(n))
    old = RowTuple(items)
    new = old.replaced(changes)
    want = tuple(changes.get(i, v) for i, v in enumerate(items))
    assert tuple(new) == want and len(new) == n and new == want
    assert [new[i] for i in range(n)] == list(want) and (n == 0 or new[-1] == want[-1])
    assert tuple(old) == items and old == RowTuple(items)


def test_a_replacement_shares_the_chunks_it_does_not_touch():
    old = RowTuple(range(3 * row_tuple.CHUNK))
    new = old.replaced({row_tuple.CHUNK + 1: -1})
    assert [a is b for a, b in zip(old._chunks, new._chunks)] == [True, False, True]


@pytest.mark.parametrize("row", [-1, 3, 10])
def test_rows_out_of_range_are_refused(row):
    with pytest.raises(IndexError):
        RowTuple("abc").replaced({row: "x"})
    if row != -1:
        with pytest.raises(IndexError):
            RowTuple("abc")[row]


def test_rows_of_keeps_a_row_tuple_and_wraps_anything_else():
    r = RowTuple("ab")
    assert rows_of(r) is r and rows_of(("a", "b")) == r and r[0:1] == ("a",)
