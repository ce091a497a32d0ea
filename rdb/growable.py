"""GrowableArray: an append-only numpy column with amortised doubling (the storage of every rdb column).

Capacity doubles when full, so n appends cost O(n) copies in all. The unused tail of the buffer is
allocated but never written, so the OS does not back it with memory (large numpy buffers are
mmapped): resident memory follows the rows, not the capacity.
"""
from __future__ import annotations

import numpy as np

MIN_CAPACITY = 64


class GrowableArray:
    """A 1-d numpy buffer with a length; `view()` is the live rows (valid until the next write)."""

    __slots__ = ("_buf", "_n")

    def __init__(self, dtype, capacity: int = 0):
        self._buf = np.empty(capacity, dtype=dtype)
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
        new = np.empty(max(rows, 2 * len(self._buf), MIN_CAPACITY), dtype=self._buf.dtype)
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
