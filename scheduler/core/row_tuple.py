"""An immutable sequence of one value per snapshot row, stored in chunks.

A snapshot holds each node's allocations and cached models as Python objects, one per
row. Copying a plain tuple of 5,000 of them for a watch event that changes one row
touches 5,000 scattered objects (a reference count each): more than the rest of the
event. Here replacing rows copies their chunks and the short tuple of chunks, so
readers holding the old sequence keep it whole, as they would a tuple.
"""
from __future__ import annotations

from itertools import chain
from typing import Iterable, Iterator, Mapping, Sequence, TypeVar, overload

T = TypeVar("T")

CHUNK = 64  # rows per chunk: a replaced row copies ~N/64 + 64 references


class RowTuple(Sequence[T]):
    __slots__ = ("_chunks", "_len")

    def __init__(self, items: Iterable[T] = ()):
        flat = tuple(items)
        self._chunks: tuple[tuple[T, ...], ...] = tuple(flat[i:i + CHUNK] for i in range(0, len(flat), CHUNK))
        self._len = len(flat)

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[T, ...]: ...

    def __getitem__(self, i: int | slice) -> T | tuple[T, ...]:
        if isinstance(i, slice):
            return tuple(self)[i]
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("row out of range")
        return self._chunks[i // CHUNK][i % CHUNK]

    def __iter__(self) -> Iterator[T]:
        return chain.from_iterable(self._chunks)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RowTuple):
            return self._len == other._len and self._chunks == other._chunks
        return isinstance(other, tuple) and tuple(self) == other

    def __hash__(self) -> int:
        return hash(self._chunks)

    def __repr__(self) -> str:
        return f"RowTuple({list(self)!r})"

    def replaced(self, changes: Mapping[int, T]) -> "RowTuple[T]":
        """A new sequence with each row of `changes` holding its value there."""
        if not changes:
            return self
        chunks = list(self._chunks)
        edited: dict[int, list[T]] = {}
        for i, value in changes.items():
            if not 0 <= i < self._len:
                raise IndexError(f"row {i} out of range")
            c = i // CHUNK
            if c not in edited:
                edited[c] = list(chunks[c])
            edited[c][i % CHUNK] = value
        for c, items in edited.items():
            chunks[c] = tuple(items)
        out: RowTuple[T] = RowTuple.__new__(RowTuple)
        out._chunks, out._len = tuple(chunks), self._len
        return out


def rows_of(items: Sequence[T]) -> RowTuple[T]:
    """`items` as a RowTuple (itself when it is one)."""
    return items if isinstance(items, RowTuple) else RowTuple(items)
