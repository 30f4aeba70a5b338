"""Node names to rows, from str or straight from a request's bytes (scheduler/extender/node_rows.py)."""
from __future__ import annotations

import json
import random
import string

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.extender import node_rows
from scheduler.extender.node_rows import NameTable, NodeRows

# rows: 0 "a", 1 "node-1", 2 "node-10", 3 "node-1x" (8 bytes: one whole word),
# 4 a 23-byte name (three words), 5 'we"ird' (never findable: JSON would escape the quote)
NAMES = ("a", "node-1", "node-10", "node-1x", "ip-10-0-0-1.internal-xy", 'we"ird')


def find(table: NameTable, queries: list[bytes]) -> list[int]:
    """Queries laid out as in a request, "a","b": each name between quotes."""
    items = b",".join(b'"%s"' % q for q in queries)
    buf = np.frombuffer(items + bytes(table.width), np.uint8)
    starts, at = [], 1
    for q in queries:
        starts.append(at)
        at += len(q) + 3
    return table.find(buf, np.array(starts, np.int64), np.array([len(q) for q in queries], np.int64)).tolist()


@pytest.mark.parametrize("query, want", [
    (b"a", 0),
    (b"node-1", 1),  # a prefix of rows 2 and 3: the bytes past its end must not count
    (b"node-10", 2),
    (b"node-1x", 3),  # fills its word exactly
    (b"ip-10-0-0-1.internal-xy", 4),
    (b"node-", -1),  # a prefix of stored names, itself not stored
    (b"node-100", -1),  # one byte past a stored name
    (b"node-11", -1),  # same length as row 2, one byte different
    (b"ip-10-0-0-1.internal-xz", -1),  # differs in the last byte of the last word
    (b"A", -1),  # names are bytes: no case folding
    (b"x" * 40, -1),  # longer than any stored name (wider than the table)
    (b'we\\"ird', -1),  # row 5 as JSON writes it: not findable by its raw bytes
])
def test_find(query, want):
    assert find(NameTable.build(NAMES), [query]) == [want]


def test_find_many_in_any_order_with_repeats():
    table = NameTable.build(NAMES)
    assert find(table, [b"node-10", b"ghost", b"a", b"node-10", b"node-1"]) == [2, -1, 0, 2, 1]


def test_an_empty_table_finds_nothing():
    assert find(NameTable.build(()), [b"a", b"node-1"]) == [-1, -1]


@pytest.mark.parametrize("name, findable", [
    ("node-1", True),
    ("n" * 253, True),
    ("n" * 254, False),  # longer than a DNS subdomain
    ('we"ird', False),
    ("back\\slash", False),
    ("tab\there", False),
    ("n\u00f6de", False),  # non-ASCII: JSON may send it escaped
    ("", False),
])
def test_only_names_json_sends_as_their_own_bytes_are_findable(name, findable):
    table = NameTable.build(("other", name))
    assert find(table, [name.encode()]) == [1 if findable else -1]
    assert table.by_bytes.get(name.encode(), -1) == (1 if findable else -1)  # the dict for few names


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.from_regex(r"\A[a-z0-9][a-z0-9.-]{0,62}\Z"), min_size=1, max_size=300, unique=True),
       st.lists(st.from_regex(r"\A[a-z0-9][a-z0-9.-]{0,70}\Z"), max_size=50), st.randoms(use_true_random=False))
def test_find_agrees_with_a_dict(names, others, rnd):
    """Every stored name is found at its row, anything else at -1, in any order."""
    table = NameTable.build(tuple(names))
    index = {n: i for i, n in enumerate(names)}
    queries = names + others
    rnd.shuffle(queries)
    assert find(table, [q.encode() for q in queries]) == [index.get(q, -1) for q in queries]


def test_names_that_differ_only_in_the_high_bytes_of_their_words_are_all_found():
    """A product carries a difference only upwards: without mixing, these 16-byte names (one
    varying byte high in each word) shared all but 16 bits of their hash, and 1,000 of them
    could not be stored without collisions."""
    chars = string.ascii_lowercase + string.digits
    rnd = random.Random(0)
    names = tuple(sorted({"gpu-rk%s%s-node-%s%s" % tuple(rnd.choice(chars) for _ in range(4)) for _ in range(1000)}))
    table = NameTable.build(names)
    assert len(table.by_bytes) == len(names) == 999
    assert find(table, [n.encode() for n in names[::-1]]) == list(range(len(names)))[::-1]


def test_a_name_that_cannot_be_encoded_is_left_out_without_failing_the_table():
    table = NameTable.build(("a", "lone-\ud800", "b"))  # a lone surrogate: no UTF-8 for it
    assert find(table, [b"a", b"b"]) == [0, 2] and len(table.by_bytes) == 2


def test_a_table_that_cannot_hash_its_names_apart_finds_nothing_rather_than_failing(monkeypatch):
    monkeypatch.setattr(node_rows, "_hash", lambda words, keys: np.zeros(len(words), np.uint64))
    table = NameTable.build(NAMES)
    assert find(table, [b"a", b"node-1"]) == [-1, -1] and not table.by_bytes  # callers decode in full


def test_remembered_lists_are_recalled_by_their_bytes_and_only_the_latest_are_kept():
    rows_of = NodeRows(NAMES)
    rows = np.array([1, 0])
    rows_of.remember(b'"node-1","a"', rows)
    assert rows_of.recall(b'"node-1","a"') is rows and rows_of.find(b'"node-1","a"') is rows
    assert rows_of.recall(b'"a","node-1"') is None
    for i in range(NodeRows.RECENT):
        rows_of.remember(b'"a"' * (i + 1), np.array([0] * (i + 1)))
    assert rows_of.recall(b'"node-1","a"') is None


@pytest.mark.parametrize("few_names_bytes", [node_rows.FEW_NAMES_BYTES, 0])  # a dict, then numpy
@pytest.mark.parametrize("items, want", [
    (b'"node-10","a","node-10"', [2, 0, 2]),
    (b'"node-1","ghost"', None),  # one name not in the list: the caller decodes
    (b'"node-1", "a"', None),  # whitespace: JSON, but not what Go writes
    (b'"node\\u002d1"', None),  # escaped
    (b'', None),
    (b'"a",,"a"', None),
])
def test_find_reads_rows_from_a_json_array_s_items_or_leaves_them_to_the_decoder(items, want, few_names_bytes,
                                                                                  monkeypatch):
    monkeypatch.setattr(node_rows, "FEW_NAMES_BYTES", few_names_bytes)
    got = NodeRows(NAMES).find(items)
    assert (got.tolist() if got is not None else None) == want


def test_rows_of_decoded_names():
    assert NodeRows(NAMES).rows_of(["node-1", 'we"ird', "ghost"]).tolist() == [1, 5, -1]


@pytest.mark.parametrize("names, matrix", [
    (("n0", "n1", "n2"), True),
    (("n0", "n1", "n" * 200), False),  # one long name would pad every row to its width
    (("a", "lone-\ud800"), True),  # no UTF-8 for a lone surrogate: JSON's escape instead
    ((), False),
])
def test_each_row_s_host_fragment_is_encoded_once(names, matrix):
    rows_of = NodeRows(names)
    assert [json.loads(f[1:] + b"0}") for f in rows_of.fragments] == [{"Host": n, "Score": 0} for n in names]
    assert (rows_of.fragment_matrix is not None) == matrix


@pytest.mark.parametrize("names", [
    ("node-00001", "node-00002", "node-00003"),  # as wide: gathered as they are
    ("a", "node-1", "ip-10-0-0-1.internal"),  # padded, the padding taken out
    ("a", "n" * 200, "b"),  # one long name: joined one by one
    ("a b", "c", "n\u00f6de", 'we"ird', "lone-\ud800"),  # a space, UTF-8, escapes: joined
    (),
])
def test_items_of_writes_the_names_at_rows_as_go_writes_a_list(names):
    rows_of = NodeRows(names)
    for rows in ([], list(range(len(names)))[::-1], [0, 0] if names else []):
        want = json.dumps([names[r] for r in rows], separators=(",", ":"), ensure_ascii=False)[1:-1]
        assert json.loads(b"[" + rows_of.items_of(np.array(rows, np.int64)) + b"]") == json.loads("[" + want + "]")
        if "lone-\ud800" not in names:  # byte for byte what orjson (and Go) write: recalled by those bytes
            assert rows_of.items_of(np.array(rows, np.int64)) == orjson.dumps([names[r] for r in rows])[1:-1]
