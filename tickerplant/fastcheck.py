"""Fast acceptance of an ingest payload against its table's schema, without decoding it.

The tickerplant's hot path: `FastCheck.rows(payload)` returns the row count when the payload is
certainly a batch that `TableSchema.validate` accepts unchanged (every column present with the
exact dtype, 1-d, equal lengths, no null where none is allowed, text columns lists of str, `time`
present). Otherwise it returns None, and the caller runs the full decode + `TableSchema.validate`,
which accepts it or gives the precise error.

A Numba kernel walks the msgpack bytes of the codec's wire form (common/codec.py: a map of column
name to value; a numeric column is ExtType 1 holding `dtype.str + NUL + raw bytes`, a text column an
array of str) without building a Python object. Anything it does not recognise as plainly valid
(another msgpack form, a shape suffix, non-ASCII text, which the full check decodes and verifies as
UTF-8) sends the payload to the full check.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from common.codec import EXT_NDARRAY, pack
from common.schema import NULLABLE_KINDS, TableSchema

NUMERIC, TEXT = 0, 1
NO_NULL_CHECK, FLOAT_NAN, INT64_NAT = 0, 1, 2
_NAT_BITS = np.uint64(0x8000000000000000)
_EXP_BITS = np.uint64(0x7FF0000000000000)
_MANTISSA_BITS = np.uint64(0x000FFFFFFFFFFFFF)


@njit(cache=True)
def _be(buf, pos, nbytes):
    """A big-endian unsigned integer of nbytes at pos (msgpack lengths)."""
    v = 0
    for j in range(nbytes):
        v = (v << 8) | buf[pos + j]
    return v


@njit(cache=True)
def _le64(buf, pos):
    v = np.uint64(0)
    for j in range(8):
        v |= np.uint64(buf[pos + j]) << np.uint64(8 * j)
    return v


@njit(cache=True)
def _str_header(buf, pos, end):
    """(length, position of the bytes) of a msgpack str at pos, or (-1, pos) if it is not one."""
    if pos >= end:
        return -1, pos
    b = buf[pos]
    if 0xA0 <= b <= 0xBF:
        return b & 0x1F, pos + 1
    if b == 0xD9 and pos + 2 <= end:
        return _be(buf, pos + 1, 1), pos + 2
    if b == 0xDA and pos + 3 <= end:
        return _be(buf, pos + 1, 2), pos + 3
    if b == 0xDB and pos + 5 <= end:
        return _be(buf, pos + 1, 4), pos + 5
    return -1, pos


@njit(cache=True)
def _ext_header(buf, pos, end):
    """(data length, ext type, position of the data) of a msgpack ext at pos, or (-1, 0, pos)."""
    if pos >= end:
        return -1, 0, pos
    b = buf[pos]
    if 0xD4 <= b <= 0xD8 and pos + 2 <= end:                    # fixext 1, 2, 4, 8, 16
        return 1 << (b - 0xD4), buf[pos + 1], pos + 2
    if b == 0xC7 and pos + 3 <= end:
        return _be(buf, pos + 1, 1), buf[pos + 2], pos + 3
    if b == 0xC8 and pos + 4 <= end:
        return _be(buf, pos + 1, 2), buf[pos + 3], pos + 4
    if b == 0xC9 and pos + 6 <= end:
        return _be(buf, pos + 1, 4), buf[pos + 5], pos + 6
    return -1, 0, pos


@njit(cache=True)
def _find(buf, pos, length, names, name_off):
    """The column whose name is buf[pos:pos+length], or -1."""
    for c in range(len(name_off) - 1):
        a, b = name_off[c], name_off[c + 1]
        if b - a != length:
            continue
        same = True
        for j in range(length):
            if names[a + j] != buf[pos + j]:
                same = False
                break
        if same:
            return c
    return -1


@njit(cache=True)
def accepted_rows(buf, names, name_off, kind, prefixes, prefix_off, itemsize, null, ext_type):
    """Row count of a payload that is plainly a valid batch of the table described, else -1."""
    end = len(buf)
    if end == 0:
        return -1
    b = buf[0]
    if 0x80 <= b <= 0x8F:
        count, pos = b & 0x0F, 1
    elif b == 0xDE and end >= 3:
        count, pos = _be(buf, 1, 2), 3
    else:
        return -1
    ncols = len(kind)
    if count != ncols:
        return -1
    seen = np.zeros(ncols, np.bool_)
    n = -1
    for _ in range(count):
        klen, pos = _str_header(buf, pos, end)
        if klen < 0 or pos + klen > end:
            return -1
        col = _find(buf, pos, klen, names, name_off)
        if col < 0 or seen[col]:
            return -1
        seen[col] = True
        pos += klen
        if kind[col] == NUMERIC:
            dlen, etype, pos = _ext_header(buf, pos, end)
            if dlen < 0 or etype != ext_type or pos + dlen > end:
                return -1
            p0, p1 = prefix_off[col], prefix_off[col + 1]
            plen = p1 - p0
            if dlen < plen:
                return -1
            for j in range(plen):
                if buf[pos + j] != prefixes[p0 + j]:
                    return -1
            size = itemsize[col]
            nbytes = dlen - plen
            if nbytes % size:
                return -1
            k = nbytes // size
            if n >= 0 and k != n:
                return -1
            n = k
            data = pos + plen
            if null[col] == FLOAT_NAN:
                for i in range(k):
                    u = _le64(buf, data + 8 * i)
                    if (u & _EXP_BITS) == _EXP_BITS and (u & _MANTISSA_BITS) != 0:
                        return -1
            elif null[col] == INT64_NAT:
                for i in range(k):
                    if _le64(buf, data + 8 * i) == _NAT_BITS:
                        return -1
            pos += dlen
        else:
            if pos >= end:
                return -1
            b = buf[pos]
            if 0x90 <= b <= 0x9F:
                m, pos = b & 0x0F, pos + 1
            elif b == 0xDC and pos + 3 <= end:
                m, pos = _be(buf, pos + 1, 2), pos + 3
            elif b == 0xDD and pos + 5 <= end:
                m, pos = _be(buf, pos + 1, 4), pos + 5
            else:
                return -1
            if n >= 0 and m != n:
                return -1
            n = m
            for _i in range(m):
                slen, pos = _str_header(buf, pos, end)
                if slen < 0 or pos + slen > end:
                    return -1
                for j in range(slen):
                    if buf[pos + j] >= 0x80:            # non-ASCII: the full check verifies UTF-8
                        return -1
                pos += slen
    if pos != end or n < 0:
        return -1
    return n


def _packed(parts: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated bytes and their offsets (len(parts) + 1)."""
    offsets = np.zeros(len(parts) + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in parts])
    return np.frombuffer(b"".join(parts) or b"\0", np.uint8).copy(), offsets


class FastCheck:
    """The fast path of one table's validation."""

    def __init__(self, schema: TableSchema):
        kind, prefixes, itemsize, null = [], [], [], []
        for col in schema.columns:
            if col.is_text:
                kind.append(TEXT)
                prefixes.append(b"")
                itemsize.append(1)
                null.append(NO_NULL_CHECK)
                continue
            dt = col.dtype
            kind.append(NUMERIC)
            prefixes.append(dt.str.encode() + b"\0")
            itemsize.append(dt.itemsize)
            if col.nullable or dt.kind not in NULLABLE_KINDS:
                null.append(NO_NULL_CHECK)
            elif dt.kind == "f" and dt.itemsize == 8:
                null.append(FLOAT_NAN)
            elif dt.kind in "Mm" and dt.itemsize == 8:
                null.append(INT64_NAT)
            else:                                   # a null kind the kernel does not check: no fast path
                kind[-1], prefixes[-1] = NUMERIC, b"\xff"
                null.append(NO_NULL_CHECK)
        self._names, self._name_off = _packed([c.name.encode() for c in schema.columns])
        self._prefixes, self._prefix_off = _packed(prefixes)
        self._kind = np.array(kind, np.int64)
        self._itemsize = np.array(itemsize, np.int64)
        self._null = np.array(null, np.int64)
        self.rows(pack(schema.empty()))             # compile / load the kernel now, not on the first message

    def rows(self, payload: bytes) -> int | None:
        """Row count of a certainly valid payload, else None (use the full validation)."""
        n = accepted_rows(np.frombuffer(payload, np.uint8), self._names, self._name_off, self._kind,
                          self._prefixes, self._prefix_off, self._itemsize, self._null, EXT_NDARRAY)
        return None if n < 0 else int(n)
