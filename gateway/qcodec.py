"""Python values <-> kdb+ IPC for the gateway.

Decoding (requests from q / PyKX clients) is PyKX: `kx.deserialize` validates and decodes a whole
message (malformed bytes raise, never crash), `plain` turns its `.py()` into plain Python
(symbols and strings -> str, timestamps -> numpy datetime64[ns], tables -> dict of lists).

Encoding (replies, pushes) writes the kdb+ serialization layout directly from numpy buffers:
PyKX in unlicensed mode cannot build tables (that needs q) and converting every leaf through
`kx.toq` + `kx.serialize` costs ~20 us per vector, ten times the whole what-if budget. The layout
is the documented one (type byte, attribute byte, little-endian count, raw items; symbols NUL
terminated; table = 98 0 + dict of column names -> general list of columns); tests check every
type against `kx.serialize` byte for byte and decode replies with the real PyKX client.

`encode(value, qtypes)`: a batch (dict of equal-length columns) becomes a table, with `qtypes`
(column -> q type name as in q/schema.q) deciding symbol vs string columns; dicts become symbol-keyed
dictionaries (float vector values when all values are floats); str -> symbol, bytes -> string,
float -> float, int -> long, bool -> boolean, None -> (::), numpy datetime64 -> timestamp.

Symbols are NUL terminated, so a value holding a NUL, or a str that is not valid Unicode (lone
surrogates, e.g. bytes decoded with surrogateescape), could make a message no client decodes. The
rule: in a symbol a NUL is written as the four visible characters `\000` (q's escape for it) and an
unencodable character as its Python backslash escape (`\udcff`); strings (char vectors) are counted
and keep their NULs, with the same escape for unencodable characters. So every reply decodes,
whatever a feed booked and journaled.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
import struct
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pykx as kx

from common.schema import QTYPES

ASYNC, SYNC, RESPONSE = 0, 1, 2
_KDB_EPOCH_NS = 946_684_800_000_000_000          # 2000.01.01 in Unix nanoseconds
_KDB_EPOCH_DAYS = 10_957
_NULL_J = NULL_LONG = np.iinfo(np.int64).min          # q 0N (long null)
# numpy kind/itemsize -> (q vector type, dtype written)
_VECTOR = {"b": (1, "u1"), "f8": (9, "<f8"), "f4": (8, "<f4"), "i8": (7, "<i8"), "i4": (6, "<i4"),
           "i2": (5, "<i2"), "u1": (4, "u1")}


class QTypeError(TypeError):
    """A value that has no kdb+ form here."""


@dataclass
class KeyedTable:
    """A keyed table: key columns -> value columns (a q dictionary of two tables)."""
    keys: dict
    values: dict


class ColumnDict(dict):
    """A dictionary of column name -> vector that stays a dictionary (q `exec a, b from t`)."""


@dataclass
class TypedVector:
    """A vector whose q type (a q/schema.q type name) the producer decided."""
    values: object
    qtype: str


def _vector(qtype: int, n: int) -> bytes:
    return struct.pack("<bBi", qtype, 0, n)


def _symbol(value) -> bytes:
    """One symbol's bytes (without its NUL), escaped by the rule in the module docstring."""
    return ("" if value is None else str(value)).encode("utf-8", "backslashreplace").replace(b"\0", b"\\000")


def _symbols(values) -> bytes:
    if not len(values):
        return _vector(11, 0)
    try:
        body = b"\0".join([str(v).encode() if v is not None else b"" for v in values])
    except UnicodeEncodeError:
        body = None
    if body is None or body.count(b"\0") != len(values) - 1:       # a value held a NUL or no UTF-8 form
        body = b"\0".join([_symbol(v) for v in values])
    return _vector(11, len(values)) + body + b"\0"


def _strings(values) -> bytes:
    out = [_vector(0, len(values))]
    for v in values:
        raw = v if isinstance(v, (bytes, bytearray)) else ("" if v is None else str(v)).encode("utf-8", "backslashreplace")
        out.append(_vector(10, len(raw)) + bytes(raw))
    return b"".join(out)


def _timestamps(arr: np.ndarray) -> bytes:
    ns = arr.astype("datetime64[ns]").view(np.int64)
    q = np.where(ns == _NULL_J, _NULL_J, ns - _KDB_EPOCH_NS)
    return _vector(12, len(q)) + q.astype("<i8").tobytes()


def _column(values, qtype: str | None) -> bytes:
    """One column (or any vector) in serialized form."""
    if qtype == "string":
        return _strings(values)
    if isinstance(values, list):
        if qtype == "symbol" or (values and all(isinstance(v, str) for v in values)):
            return _symbols(values)
        if not values:
            return _column(np.empty(0, QTYPES[qtype][1]), qtype) if qtype in QTYPES else _vector(0, 0)
        if not all(isinstance(v, (bool, int, float, np.generic)) for v in values):
            return _general(values)
        values = np.asarray(values)
    arr = values
    kind = arr.dtype.kind
    if kind in "OUS":
        return _symbols(arr.tolist())
    if kind == "M":
        if qtype == "date":
            days = arr.astype("datetime64[D]").view(np.int64)
            return _vector(14, len(days)) + np.where(days == _NULL_J, -2**31, days - _KDB_EPOCH_DAYS).astype("<i4").tobytes()
        return _timestamps(arr)
    if kind == "m":
        return _vector(16, len(arr)) + arr.astype("timedelta64[ns]").view(np.int64).astype("<i8").tobytes()
    if qtype == "float" and kind in "iu":
        arr = arr.astype(np.float64)
    key = "b" if kind == "b" else f"{'i' if kind == 'u' and arr.itemsize > 1 else kind}{arr.itemsize}"
    if key not in _VECTOR:
        raise QTypeError(f"type: cannot send a column of dtype {arr.dtype}")
    qt, dtype = _VECTOR[key]
    return _vector(qt, len(arr)) + np.ascontiguousarray(arr, dtype=dtype).tobytes()


def _general(items) -> bytes:
    return _vector(0, len(items)) + b"".join(encode(v) for v in items)


def schema_qtypes(schemas: dict) -> dict[str, dict[str, str]]:
    """{table: {column: q type name}} of TableSchemas (common.schema), for `encode(..., qtypes)`."""
    return {name: {c.name: c.qtype for c in schema.columns} for name, schema in schemas.items()}


def is_batch(value) -> bool:
    """A non-empty dict of equal-length 1-d columns (numpy arrays or lists)."""
    if not isinstance(value, dict) or not value:
        return False
    lengths = set()
    for v in value.values():
        if not isinstance(v, (np.ndarray, list)) or (isinstance(v, np.ndarray) and v.ndim != 1):
            return False
        lengths.add(len(v))
    return len(lengths) == 1


def table(columns: dict, qtypes: dict | None = None) -> bytes:
    """A kdb+ table (serialized) from a columnar batch {name: array-like}."""
    qtypes = qtypes or {}
    return (b"\x62\x00\x63" + _names(columns) + _vector(0, len(columns))
            + b"".join(_column(v, qtypes.get(c)) for c, v in columns.items()))


_NAME_VECTORS: dict[tuple, bytes] = {}      # symbol vectors of dict keys / column names already seen
_FLOAT_DICTS: dict[tuple, tuple] = {}       # keys -> (header, packer) of float-valued dicts already seen
_MAX_NAME_VECTORS, _MAX_NAMES = 4096, 64
_FLOAT_ATOM = struct.Struct("<bd").pack


def _names(keys) -> bytes:
    """The symbol vector of dict keys or column names, memoized (replies repeat the same few sets)."""
    keys = tuple(keys)
    out = _NAME_VECTORS.get(keys)
    if out is None:
        out = _symbols([str(k) for k in keys])
        if len(keys) <= _MAX_NAMES and len(_NAME_VECTORS) < _MAX_NAME_VECTORS:
            _NAME_VECTORS[keys] = out
    return out


def _float_dictionary(keys: tuple) -> tuple[bytes, Callable]:
    """Header (type, key symbols, float vector header) and packer of a dict of floats with these keys."""
    out = _FLOAT_DICTS.get(keys)
    if out is None:
        out = (b"\x63" + _names(keys) + _vector(9, len(keys)), struct.Struct(f"<{len(keys)}d").pack)
        if len(keys) <= _MAX_NAMES and len(_FLOAT_DICTS) < _MAX_NAME_VECTORS:
            _FLOAT_DICTS[keys] = out
    return out


def _dictionary(value: dict, qtypes: dict | None) -> bytes:
    """A symbol-keyed dictionary: float vector values when every value is a float, else a general list."""
    values = tuple(value.values())
    for v in values:
        if type(v) is not float and not isinstance(v, np.floating):
            break
    else:
        if values:
            head, pack = _float_dictionary(tuple(value))
            return head + pack(*values)
    qtypes = qtypes or {}
    return b"\x63" + _names(value) + _vector(0, len(values)) + b"".join(
        _column(v, qtypes.get(k)) if isinstance(v, (np.ndarray, list)) and k in qtypes else encode(v)
        for k, v in value.items())


def encode(value, qtypes: dict | None = None) -> bytes:
    """The serialized kdb+ form of a reply value (see the module docstring)."""
    kind = type(value)                                       # the common reply leaves first
    if kind is float:
        return _FLOAT_ATOM(-9, value)
    if kind is str:
        return b"\xf5" + (_symbol(value) if "\0" in value or not value.isascii() else value.encode()) + b"\0"
    if kind is dict:
        return table(value, qtypes) if is_batch(value) else _dictionary(value, qtypes)
    if value is None:
        return b"\x65\x00"
    if isinstance(value, kx.K):
        return bytes(kx.serialize(value).copy())[8:]
    if is_batch(value) and not isinstance(value, ColumnDict):
        return table(value, qtypes)
    if isinstance(value, KeyedTable):
        return b"\x63" + table(value.keys, qtypes) + table(value.values, qtypes)
    if isinstance(value, TypedVector):
        return _column(value.values, value.qtype)
    if isinstance(value, dict):
        return _dictionary(value, qtypes)
    if isinstance(value, (bool, np.bool_)):
        return struct.pack("<bB", -1, bool(value))
    if isinstance(value, (int, np.integer)):
        if not -2**63 <= value < 2**63:
            raise QTypeError(f"type: {value} does not fit in a long")
        return struct.pack("<bq", -7, int(value))
    if isinstance(value, (float, np.floating)):
        return struct.pack("<bd", -9, float(value))
    if isinstance(value, str):
        return b"\xf5" + _symbol(value) + b"\0"
    if isinstance(value, (bytes, bytearray)):
        return _vector(10, len(value)) + bytes(value)
    if isinstance(value, np.datetime64):
        ns = int(value.astype("datetime64[ns]").view(np.int64))
        return struct.pack("<bq", -12, ns if ns == _NULL_J else ns - _KDB_EPOCH_NS)
    if isinstance(value, np.ndarray):
        return _column(value, None)
    if isinstance(value, (list, tuple)):
        return _column(list(value), None) if value and all(isinstance(v, str) for v in value) \
            else _general(value)
    raise QTypeError(f"type: cannot send a {type(value).__name__}")


def message(body: bytes, msgtype: int = RESPONSE) -> bytes:
    """A whole uncompressed little-endian IPC message around a serialized body."""
    size = len(body) + 8
    return struct.pack("<BBBBI", 1, msgtype, 0, (size >> 32) & 0xFF, size & 0xFFFFFFFF) + body


def error_message(text: str) -> bytes:
    """A kdb+ error response (type -128; q shows it with a leading quote, not sent)."""
    raw = text.removeprefix("'")
    return message(b"\x80" + raw.encode("utf-8", "replace").replace(b"\0", b" ") + b"\0")


def plain(v):
    """Plain Python for a value of a decoded request (`K.py()` output): symbols and strings -> str,
    timestamps -> numpy datetime64[ns], q nulls -> None (float nulls stay NaN), tables -> dict of lists."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, dt.datetime):
        return np.datetime64(v.replace(tzinfo=None), "ns")
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if v is pd.NA or v is pd.NaT:
        return None
    return v
