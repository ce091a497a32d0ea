"""Fast acceptance of an ingest payload against its table's schema, without building arrays.

The tickerplant's hot path: `FastCheck.rows(payload)` returns the row count when the payload is
certainly a batch that `TableSchema.validate` accepts unchanged (every column present with the
exact dtype, 1-d, equal lengths, no null where none is allowed, text columns lists of str, `time`
present). Otherwise it returns None, and the caller runs the full decode + `TableSchema.validate`,
which accepts it or gives the precise error. It reads the codec's wire form (common/codec.py): a
numeric column is msgpack ExtType 1 holding `dtype.str + NUL + raw bytes`, a text column a list.
"""

from __future__ import annotations

import struct

import msgpack
import numpy as np

from common.codec import EXT_NDARRAY
from common.schema import NULLABLE_KINDS, TableSchema

_NAT = np.iinfo(np.int64).min
_SMALL = 8


def _has_null(data: bytes, offset: int, n: int, kind: str) -> bool:
    if kind == "f":
        if n <= _SMALL:
            return any(v != v for v in struct.unpack_from(f"<{n}d", data, offset))
        return bool(np.isnan(np.frombuffer(data, "<f8", n, offset)).any())
    if n <= _SMALL:
        return _NAT in struct.unpack_from(f"<{n}q", data, offset)
    return bool((np.frombuffer(data, "<i8", n, offset) == _NAT).any())


def _ext_pair(code: int, data: bytes) -> tuple[int, bytes]:
    """Keeps an ExtType undecoded (cheaper than msgpack.ExtType); only ext types make tuples."""
    return code, data


class FastCheck:
    """The fast path of one table's validation."""

    def __init__(self, schema: TableSchema):
        self.names = frozenset(schema.column_names)
        self.numeric: list[tuple[str, bytes, int, str]] = []
        self.text: list[str] = []
        for col in schema.columns:
            if col.is_text:
                self.text.append(col.name)
                continue
            kind = col.dtype.kind
            if col.nullable or kind not in NULLABLE_KINDS:
                null = ""
            elif kind == "f" and col.dtype == np.float64:
                null = "f"
            elif kind in "Mm" and col.dtype.itemsize == 8:
                null = "q"
            else:
                null = "?"                 # not expected: leave such a column to the full check
            self.numeric.append((col.name, col.dtype.str.encode() + b"\0", col.dtype.itemsize,
                                 null))

    def rows(self, payload: bytes) -> int | None:
        """Row count of a certainly valid payload, else None (use the full validation)."""
        try:
            obj = msgpack.unpackb(payload, raw=False, ext_hook=_ext_pair)
        except Exception:                   # noqa: BLE001 - anything odd goes to the full check
            return None
        if type(obj) is not dict or obj.keys() != self.names:
            return None
        n = -1
        for name, prefix, size, null in self.numeric:
            v = obj[name]
            if type(v) is not tuple or v[0] != EXT_NDARRAY:
                return None
            data = v[1]
            if not data.startswith(prefix):
                return None
            nbytes = len(data) - len(prefix)
            k, rest = divmod(nbytes, size)
            if rest or n >= 0 and k != n or null == "?":
                return None
            n = k
            if null and k and _has_null(data, len(prefix), k, null):
                return None
        for name in self.text:
            v = obj[name]
            if type(v) is not list or len(v) != n or v and set(map(type, v)) != {str}:
                return None
        return n if n >= 0 else None
