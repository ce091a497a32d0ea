"""GrowableArray: an append-only numpy column with amortised doubling (the storage of every rdb column).

Capacity doubles when full, so n appends cost O(n) copies in all. Buffers of MMAP_BYTES or more are
anonymous memory maps: the unused tail of the capacity is never written, so the OS does not back it
with memory, and a buffer dropped after a regrow goes straight back to the OS (malloc would keep it
in its heap). Resident memory follows the rows, not the capacity.
"""
from __future__ import annotations

import mmap

import numpy as np

MIN_CAPACITY = 64
MMAP_BYTES = 1 << 20


def allocate(capacity: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialised 1-d buffer; large non-object buffers are anonymous mmaps (zero pages until written)."""
    dtype = np.dtype(dtype)
    nbytes = capacity * dtype.itemsize
    if dtype.hasobject or nbytes < MMAP_BYTES:
        return np.empty(capacity, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype)


class GrowableArray:
    """A 1-d numpy buffer with a length; `view()` is the live rows (valid until the next write)."""

    __slots__ = ("_buf", "_n")

    def __init__(self, dtype, capacity: int = 0):
        self._buf = allocate(capacity, dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def dtype(self) -> np.dtype:
        return self._buf.dtype

    @property
    def capacity(self) -> int:
        return len(self._buf)

    def view(self) -> np.ndarray:
        return self._buf[:self._n]

    def reserve(self, rows: int) -> None:
        """Makes room for `rows` rows in all, doubling at least, copying the live rows once."""
        if rows <= len(self._buf):
            return
        new = allocate(max(rows, 2 * len(self._buf), MIN_CAPACITY), self._buf.dtype)
        new[:self._n] = self._buf[:self._n]
        self._buf = new

    def extend(self, values: np.ndarray) -> None:
        k = len(values)
        self.reserve(self._n + k)
        self._buf[self._n:self._n + k] = values
        self._n += k

    def truncate(self, rows: int) -> None:
        """Drops the rows from `rows` on (the buffer keeps its capacity)."""
        if not 0 <= rows <= self._n:
            raise ValueError(f"truncate to {rows} rows: outside 0..{self._n}")
        if self._buf.dtype == object:
            self._buf[rows:self._n] = None          # release the dropped Python objects
        self._n = rows
