"""The extender's map from node names as kube-scheduler sends them to the snapshot's rows.

The placement core takes rows; the names are a wire matter, turned into rows here, once
per request. `NodeRows` owns everything that map needs for one node list (the snapshot's
names in row order): the names' rows by str, a `NameTable` that finds them in a request's
raw bytes, the lists recently answered, and each row's host fragment of prioritize's
answer. LiveState builds one with each snapshot whose node list changed; the snapshots
patched from it (binds, pod events) keep the same names, and so the same NodeRows.

Why the bytes: kube-scheduler sends filter every node's name, in a new order on each call: 5,000 names at
5,000 nodes. Decoding them into str objects and looking each up in a dict was the largest
part of a filter call. Here the names stay bytes: each is gathered as one fixed-width row of
8-byte words (one numpy gather for all of them), hashed (each word times a key, mixed, then
summed), found by that hash in an open-addressing table, then compared with the stored name
word by word. A row is returned only for an exact match: no hash collision aliases two nodes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import repeat
from typing import Mapping, Sequence

import numpy as np
import orjson

MAX_NAME = 253  # a node name is a DNS subdomain
# Bytes a name may hold to be found here: those that stand for themselves inside a JSON
# string, so a name matched in a request's raw bytes is also what JSON decoding would give.
_PLAIN = frozenset(range(0x20, 0x80)) - {ord('"'), ord("\\")}


def _plain(name: str) -> bytes:
    """`name` as bytes when it can be found by them, else b"" (never found)."""
    try:
        b = name.encode()
    except UnicodeEncodeError:  # a lone surrogate: no node is named so, but never raise on it
        return b""
    return b if 0 < len(b) <= MAX_NAME and _PLAIN.issuperset(b) else b""


@dataclass(frozen=True, eq=False)
class NameTable:
    width: int  # bytes per stored name, a multiple of 8 at least as long as the longest
    words: np.ndarray  # [N, width // 8] uint64: each row's name, NUL-padded; empty for one not findable
    lengths: np.ndarray  # [N] int64 bytes of each stored name
    keys: np.ndarray  # [width // 8] odd uint64 multipliers
    shift: int  # a hash's slot is its top bits
    slot_hash: np.ndarray  # [slots] uint64
    slot_row: np.ndarray  # [slots] int64, -1 = empty
    word_masks: np.ndarray  # [width + 1, width // 8] uint64: the first L bytes set
    by_bytes: dict[bytes, int]  # the findable names' rows: for a few names, a dict is quicker

    @classmethod
    def build(cls, names: tuple[str, ...] | list[str]) -> "NameTable":
        """A table of `names` (a snapshot's, by row). Names that are not plain printable
        ASCII of 1..253 bytes are left out: they are never found, and callers fall back."""
        encoded = [_plain(n) for n in names]
        width = max(8, -(-max(map(len, encoded), default=0) // 8) * 8)
        stored = np.array(encoded, dtype=f"S{width}")
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        words = stored.view(np.uint64).reshape(len(encoded), width // 8)
        rows = np.flatnonzero(lengths)
        bits = max(8, (8 * len(rows)).bit_length())  # load under 1/8: probes rarely go past one slot
        shift = 64 - bits
        for seed in range(16):
            keys = np.random.default_rng(seed).integers(1, 2**63, width // 8, dtype=np.uint64) | np.uint64(1)
            hashes = _hash(words[rows], keys)
            if len(np.unique(hashes)) == len(hashes):  # the probe stops at the first equal hash
                break
        else:  # never seen: then nothing is findable, and every request is decoded in full
            rows, hashes = rows[:0], hashes[:0]
        # Linear probing, built at once: in home-slot order, each name takes its home slot or
        # the one after the previous name's, whichever is later (the running max below).
        home = (hashes >> np.uint64(shift)).astype(np.int64)
        order = np.argsort(home, kind="stable")
        ranks = np.arange(len(order))
        at = np.maximum.accumulate(home[order] - ranks) + ranks if len(order) else ranks
        slot_hash = np.zeros((1 << bits) + len(order) + 1, np.uint64)
        slot_row = np.full(len(slot_hash), -1, np.int64)
        slot_hash[at] = hashes[order]
        slot_row[at] = rows[order]
        masks = np.zeros((width + 1, width), np.uint8)
        masks[np.arange(width)[None, :] < np.arange(width + 1)[:, None]] = 0xFF
        return cls(width, words, lengths, keys, shift, slot_hash, slot_row,
                   masks.view(np.uint64).reshape(width + 1, width // 8),
                   {encoded[r]: int(r) for r in rows.tolist()})

    def find(self, buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Rows of the names at buf[starts[i]:starts[i] + lengths[i]] (-1 for one not in
        the table). `buf` is uint8 and must hold `width` more bytes past its last name."""
        m = len(starts)
        if not len(self.lengths):
            return np.full(m, -1, np.int64)
        window = np.ndarray((len(buf) - self.width + 1,), dtype=f"S{self.width}", buffer=buf, strides=(1,))
        fits = lengths <= self.width
        # take, not [], for every row gather here: 5-10x faster on 2-D arrays
        words = window[starts].view(np.uint64).reshape(m, self.width // 8)
        words &= np.take(self.word_masks, np.where(fits, lengths, 0), axis=0)  # the bytes past each name
        hashes = _hash(words, self.keys)
        slot = (hashes >> np.uint64(self.shift)).astype(np.int64)
        rows = np.take(self.slot_row, slot)
        hit = np.take(self.slot_hash, slot) == hashes
        todo = np.flatnonzero(~hit & (rows >= 0))  # a name past its home slot, or one not there
        rows[~hit] = -1
        while len(todo):
            slot[todo] += 1
            at = slot[todo]
            row = self.slot_row[at]
            hit = self.slot_hash[at] == hashes[todo]
            rows[todo[hit]] = row[hit]
            todo = todo[~hit & (row >= 0)]  # an empty slot ends the probe: not there
        known = np.where(fits & (rows >= 0), rows, 0)
        same = np.take(self.lengths, known) == lengths
        stored = np.take(self.words, known, axis=0)
        for j in range(words.shape[1]):
            same &= words[:, j] == stored[:, j]
        return np.where(same & (rows >= 0), rows, -1)


def _hash(words: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Each word times its key, mixed (MurmurHash3's fmix64) before the words are summed: a
    product alone carries a difference only upwards, so names that differ in the high bytes
    of their words alone would share most of their bits (and collide by the thousand)."""
    h = np.zeros(len(words), np.uint64)
    for j in range(words.shape[1]):
        v = words[:, j] * keys[j]
        v ^= v >> _S33
        v *= _M1
        v ^= v >> _S33
        v *= _M2
        v ^= v >> _S33
        h += v
    return h


_S33, _M1, _M2 = np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)


# Below this many bytes of names (~400 short ones) a dict lookup per name beats the fixed
# cost of NameTable.find's two dozen numpy calls (~0.08 ms).
FEW_NAMES_BYTES = 8192


def json_string(name: str) -> bytes:
    """`name` as a JSON string, as orjson writes it in a list."""
    try:
        return orjson.dumps(name)
    except orjson.JSONEncodeError:  # a lone surrogate: json escapes it, where orjson refuses
        return json.dumps(name).encode()


def host_fragment(host: str) -> bytes:
    """`,{"Host":"<name>","Score":`: prioritize's answer is these and the scores, joined."""
    return b',{"Host":' + json_string(host) + b',"Score":'


def padded(items: list[bytes]) -> np.ndarray | None:
    """`items` as one fixed-size numpy item each, padded with spaces: numpy gathers those
    with a copy each, where joining 5,000 bytes objects reads each one's scattered memory.
    None when a few long items would pad every one (widths past twice the median)."""
    widths = np.fromiter(map(len, items), np.int64, len(items))
    if not len(items) or widths.max() > 2 * np.median(widths):
        return None
    width = int(widths.max())
    return np.frombuffer(b"".join(f.ljust(width) for f in items), f"V{width}")


class NodeRows:
    """Node names to snapshot rows, for one node list. Safe across threads: built whole
    before it is published; the one thing it changes later, the recent lists, is a list
    replaced at once."""

    RECENT = 4  # lists remembered: kube-scheduler sends prioritize the list filter answered

    def __init__(self, names: Sequence[str], index: Mapping[str, int] | None = None):
        self.names: tuple[str, ...] = tuple(names)
        self.index: Mapping[str, int] = index if index is not None else {n: i for i, n in enumerate(self.names)}
        self.table = NameTable.build(self.names)
        # Recent lists (as the bytes they came in) and their rows, most recent last
        self._recent: list[tuple[bytes, np.ndarray]] = []
        # prioritize's answer: each row's host fragment, padded with spaces after "Score":
        # (JSON whitespace) in the matrix
        self.fragments = [host_fragment(h) for h in self.names]
        self.fragment_matrix = padded(self.fragments)
        # filter's answer: each row's `"name",`. Padded, the spaces are taken out after the
        # gather (Go writes the list compact, and prioritize's is recalled by its bytes), so
        # only while no name holds one; when all are as wide, there is nothing to take out.
        self._quoted = [json_string(n) for n in self.names]
        items = [q + b"," for q in self._quoted]
        self._items_matrix = padded(items) if not any(b" " in q for q in self._quoted) else None
        self._items_even = len(set(map(len, items))) <= 1

    def __len__(self) -> int:
        return len(self.names)

    def rows_of(self, names: Sequence[str]) -> np.ndarray:
        """Rows of decoded `names`, -1 for a name not in the list."""
        return np.fromiter(map(self.index.get, names, repeat(-1)), np.int64, len(names))

    def items_of(self, rows: np.ndarray) -> bytes:
        """The names at `rows` as a JSON array's items, `"a","b"`, compact as Go writes them."""
        if not len(rows):
            return b""
        matrix = self._items_matrix
        if matrix is None:
            return b",".join(map(self._quoted.__getitem__, rows.tolist()))
        out = matrix[rows]
        if not self._items_even:
            raw = out.view(np.uint8)
            out = raw[raw != 32]
        return out.tobytes()[:-1]  # less the last comma

    def find(self, items: bytes) -> np.ndarray | None:
        """Rows of the names in `"a","b"` (a JSON array's items, as sent), if every one is
        plain and in the list; else None, and the caller decodes the array."""
        rows = self.recall(items)
        if rows is not None:
            return rows
        table = self.table
        if len(items) < FEW_NAMES_BYTES:
            if len(items) < 2 or items[0] != 34 or items[-1] != 34:
                return None
            # exact: a name found holds no quote, so every `","` is between two names
            names = items[1:-1].split(b'","')
            rows = np.fromiter(map(table.by_bytes.get, names, repeat(-1)), np.int64, len(names))
            return None if (rows < 0).any() else rows
        buf = np.frombuffer(items + bytes(table.width), np.uint8)
        quotes = np.flatnonzero(buf[:len(items)] == 34)
        n = len(quotes) // 2
        if (n == 0 or len(quotes) != 2 * n or quotes[0] != 0 or quotes[-1] != len(items) - 1
                or (quotes[2::2] != quotes[1:-1:2] + 2).any() or (buf[quotes[1:-1:2] + 1] != 44).any()):
            return None  # every quote opens or closes a name, and one comma lies between names
        starts = quotes[0::2] + 1
        rows = table.find(buf, starts, quotes[1::2] - starts)
        return None if (rows < 0).any() else rows

    def recall(self, items: bytes) -> np.ndarray | None:
        """The rows remembered for `items`, or None. One bytes comparison per entry, and a
        different list almost always differs in length first."""
        for seen, rows in self._recent:
            if seen == items:
                return rows
        return None

    def remember(self, items: bytes, rows: np.ndarray) -> None:
        """Note that the list `items` (as it will be sent) is at `rows`."""
        recent = self._recent
        if recent and recent[-1][1] is rows:
            return  # a list recalled and answered whole
        rows.flags.writeable = False
        # a new list, swapped in at once: readers on other threads iterate the old one
        self._recent = (recent + [(items, rows)])[-self.RECENT:]
