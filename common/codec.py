"""The wire codec: msgpack with numpy arrays as raw buffers (ExtType 1) and numpy scalars (ExtType 2).

A columnar batch `{column: array}` of 10,000 rows is one message: each numeric / time column is one
buffer copy, symbol and string columns are msgpack lists of str. Arrays come back from `unpack` as
read-only views of the received bytes (no copy); copy before writing into them.
"""
from __future__ import annotations

import msgpack
import numpy as np

EXT_NDARRAY = 1
EXT_SCALAR = 2


_ext_heads: dict[np.dtype, bytes] = {}     # dtype -> the ExtType 1 head of its 1-d arrays
_new_ext = tuple.__new__                   # msgpack.ExtType(...) re-checks its arguments; ours are right


def _ext_head(dtype: np.dtype) -> bytes:
    head = _ext_heads.get(dtype)
    if head is None:
        head = _ext_heads[dtype] = dtype.str.encode() + b"\0"
    return head


def _encode(obj):
    if type(obj) is np.ndarray and obj.ndim == 1 and obj.dtype.kind not in "OUS":  # the columnar fast path
        return _new_ext(msgpack.ExtType, (EXT_NDARRAY, _ext_head(obj.dtype) + obj.tobytes()))
    if isinstance(obj, np.ndarray):
        if obj.dtype == object or obj.dtype.kind in "US":
            return obj.tolist()
        a = np.ascontiguousarray(obj)
        shape = b"" if a.ndim == 1 else b"|" + ",".join(map(str, a.shape)).encode()
        return msgpack.ExtType(EXT_NDARRAY, a.dtype.str.encode() + shape + b"\0" + a.tobytes())
    if isinstance(obj, (np.datetime64, np.timedelta64)):
        return msgpack.ExtType(EXT_SCALAR, obj.dtype.str.encode() + b"\0" + obj.tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


_dtypes: dict[bytes, np.dtype] = {}


def _dtype(name: bytes) -> np.dtype:
    dt = _dtypes.get(name)
    if dt is None:
        dt = _dtypes[name] = np.dtype(name.decode())
    return dt


def _decode_ext(code: int, data: bytes):
    head, _, body = data.partition(b"\0")
    if code == EXT_NDARRAY:
        cut = head.find(b"|", 1)          # a shape suffix; not the "|" that starts e.g. bool's "|b1"
        if cut < 0:
            return np.frombuffer(body, dtype=_dtype(head))
        arr = np.frombuffer(body, dtype=_dtype(head[:cut]))
        return arr.reshape(tuple(int(s) for s in head[cut + 1:].split(b",")))
    if code == EXT_SCALAR:
        return np.frombuffer(body, dtype=_dtype(head))[0]
    return msgpack.ExtType(code, data)


def pack(obj) -> bytes:
    """Encodes dicts / lists / scalars / numpy arrays (any nesting) to msgpack bytes (thread-safe)."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpack(data: bytes):
    """Decodes `pack` output; raises ValueError on bytes that are not a valid message."""
    try:
        return msgpack.unpackb(data, ext_hook=_decode_ext, raw=False, strict_map_key=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as e:
        raise ValueError(f"undecodable message: {e}") from e


def text_array(values) -> np.ndarray:
    """A 1-d numpy object array of the given str (symbols, strings), never reshaped by numpy."""
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def as_columns(batch: dict, schema) -> dict[str, np.ndarray]:
    """A decoded batch with its text columns (lists of str) as numpy object arrays, in schema order."""
    out = {}
    for col in schema.columns:
        values = batch[col.name]
        out[col.name] = text_array(values) if col.is_text and not isinstance(values, np.ndarray) else values
    return out
