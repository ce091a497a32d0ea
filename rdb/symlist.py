"""SymList: the process-wide symbol enumeration (kdb+ `sym`): str <-> int32 code, code 0 is `` (null).

Every symbol column of every rdb table stores int32 codes into one SymList, so a symbol costs 4 bytes
per row, comparisons are integer compares, and decoding is one fancy-index into the names array.
Codes are never reused or renumbered while the process lives (end of day keeps the list).
"""
from __future__ import annotations

import numpy as np

from rdb.growable import GrowableArray

NULL_CODE = 0


class SymList:
    def __init__(self):
        self._codes: dict[str, int] = {"": NULL_CODE}
        self._names = GrowableArray(object)
        self._names.extend(np.array([""], dtype=object))

    def __len__(self) -> int:
        return len(self._names)

    @property
    def names(self) -> np.ndarray:
        """Object array of str indexed by code (a live view)."""
        return self._names.view()

    def encode(self, values) -> np.ndarray:
        """Codes of `values` (a sequence of str), adding the symbols not seen before."""
        get = self._codes.get
        codes = [get(v) for v in values]
        if None in codes:
            codes = [self._add(v) if c is None else c for v, c in zip(values, codes)]
        return np.array(codes, dtype=np.int32)

    def _add(self, name) -> int:
        if type(name) is not str:
            raise TypeError(f"a symbol must be str, got {type(name).__name__}: {name!r}")
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self._names)
            self._names.extend(np.array([name], dtype=object))
        return code

    def lookup(self, values) -> np.ndarray:
        """Codes of `values` without adding any: -1 for a symbol never seen (it matches no row)."""
        get = self._codes.get
        return np.fromiter((get(v, -1) for v in values), dtype=np.int32, count=len(values))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Object array of str for an int32 code array."""
        return self._names.view()[codes]
