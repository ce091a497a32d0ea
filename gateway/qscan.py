"""The gateway's check of a kdb+ IPC request before anything deserialises it.

`check(msg, limits)` walks the serialized bytes of a whole (uncompressed) message iteratively, with
an explicit stack and no recursion, and raises `ScanError` (q-style text: 'limit / 'type /
'badmsg) unless the message is one the gateway will read:

- only data types: atoms and vectors of the basic types (boolean .. time, symbols, strings), general
  lists, dictionaries, tables and the generic null (::); enumerations, functions, errors and
  anything else are a 'type error;
- nesting (a list, dictionary or table inside another) at most `limits.depth` levels;
- every list at most `limits.items` items (char and byte vectors are bounded by the message size),
  and at most `limits.objects` objects in the whole message;
- every count fits in the bytes that remain, symbols are NUL terminated valid UTF-8, and the
  body is consumed exactly (no trailing bytes).

PyKX's deserializer recurses on the C stack (a list nested ~65,600 levels deep overflows it) and its
`.py()` raises Python exceptions for invalid UTF-8 symbols; after this check neither can happen.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

_ATOM = {-1: 1, -2: 16, -4: 1, -5: 2, -6: 4, -7: 8, -8: 4, -9: 8, -10: 1,
         -12: 8, -13: 4, -14: 4, -15: 8, -16: 8, -17: 4, -18: 4, -19: 4}
_VECTOR = {-t: size for t, size in _ATOM.items()}
_BYTES_BOUNDED = (4, 10)                # byte and char vectors: bounded by the message size only
_GENERAL, _SYMBOLS, _TABLE, _DICT, _SORTED_DICT, _UNARY = 0, 11, 98, 99, 127, 101
_HEADER = struct.Struct("<bBi")        # vector: type, attribute, count


class ScanError(ValueError):
    """A request the gateway refuses before deserialising it; `text` is q-style (no leading quote)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class Limits:
    depth: int = 64                  # nesting levels of lists / dictionaries / tables
    items: int = 100_000             # items of one list (char and byte vectors: the message size)
    objects: int = 100_000           # objects (atoms, lists, ...) in one message, vector items not counted


def _symbols_end(msg, pos: int, end: int, n: int) -> int:
    """The position after the n-th NUL from pos (symbol vector items), checking they are UTF-8."""
    start, found = pos, 0
    while found < n:
        nul = msg.find(b"\0", pos, end)
        if nul < 0:
            raise ScanError("badmsg: symbol vector runs past the end of the message")
        found += 1
        pos = nul + 1
    try:
        bytes(msg[start:pos]).decode("utf-8")
    except UnicodeDecodeError:
        raise ScanError("type: a symbol is not valid UTF-8") from None
    return pos


def check(msg: bytes, limits: Limits = Limits()) -> None:
    """Raise ScanError unless `msg` (8-byte header + body, uncompressed) is a request to read."""
    end, pos = len(msg), 8
    pending = [1]                    # per open list: objects still to read
    objects = 0
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        objects += 1
        if objects > limits.objects:
            raise ScanError(f"limit: more than {limits.objects} objects in one message")
        if pos >= end:
            raise ScanError("badmsg: message ends inside an object")
        t = msg[pos] - 256 if msg[pos] > 127 else msg[pos]
        pos += 1
        if t < 0:
            if t == -11:
                pos = _symbols_end(msg, pos, end, 1)
                continue
            size = _ATOM.get(t)
            if size is None:
                raise ScanError(f"type: the gateway does not accept q type {t}h")
            pos += size
        elif t in _VECTOR or t in (_GENERAL, _SYMBOLS):
            if pos + 5 > end:
                raise ScanError("badmsg: message ends inside a list header")
            _, attr, n = _HEADER.unpack_from(msg, pos - 1)
            pos += 5
            if attr > 4 or n < 0:
                raise ScanError(f"badmsg: bad list header (attribute {attr}, count {n})")
            # the least an item takes: 2 bytes in a general list, 1 (its NUL) in a symbol vector
            if n * (2 if t == _GENERAL else _VECTOR.get(t, 1)) > end - pos:
                raise ScanError(f"badmsg: a list of {n} items cannot fit in the message")
            if n > limits.items and t not in _BYTES_BOUNDED:
                raise ScanError(f"limit: a list of {n} items is over the gateway's limit of {limits.items}")
            if t == _GENERAL:
                if n:
                    if len(pending) > limits.depth:      # pending[0] is the message itself
                        raise ScanError(f"limit: nested deeper than {limits.depth} levels")
                    pending.append(n)
            elif t == _SYMBOLS:
                pos = _symbols_end(msg, pos, end, n)
            else:
                pos += n * _VECTOR[t]
        elif t in (_DICT, _SORTED_DICT, _TABLE):
            if len(pending) > limits.depth:      # pending[0] is the message itself
                raise ScanError(f"limit: nested deeper than {limits.depth} levels")
            if t == _TABLE:                    # attribute byte, then a dictionary
                if pos + 1 >= end or msg[pos + 1] != _DICT:
                    raise ScanError("badmsg: a table must hold a dictionary")
                pos += 1
                pending.append(1)
            else:
                pending.append(2)
        elif t == _UNARY:                      # (::) and the other unary primitives: one byte
            pos += 1
        else:
            raise ScanError(f"type: the gateway does not accept q type {t}h")
        if pos > end:
            raise ScanError("badmsg: message ends inside an object")
    if pos != end:
        raise ScanError(f"badmsg: {end - pos} bytes after the end of the message's value")
