"""kdb+ IPC message compression (header byte 2 = 1): pure Numba kernels over uint8 arrays.

The kdb+ scheme is an LZ variant with a 256-entry table of earlier positions, keyed by the XOR of
two consecutive bytes. A compressed message keeps the 8-byte header (flag byte 2 set, bytes 4-7 the
compressed size), then 4 bytes with the uncompressed size (header included), then groups of up to
8 tokens, each group led by a control byte whose bits (LSB first) say literal (0) or match (1).
A literal is one byte; a match is (key byte, extra length n) and copies 2 + n bytes from the
position stored under key. Both sides update the table identically: after each token every pair
start up to the current position minus 2 is recorded, except the bytes inside a match.
"""
import numpy as np
from numba import njit

HEADER = 8
SIZE_FIELD = 4
MIN_COMPRESS_BYTES = 2000  # kdb+ compresses messages over 2,000 bytes (when it halves them)


@njit(cache=True)
def uncompressed_size(msg):
    """The total uncompressed size announced by a compressed message (little-endian)."""
    return (np.int64(msg[8]) | (np.int64(msg[9]) << 8) | (np.int64(msg[10]) << 16)
            | (np.int64(msg[11]) << 24))


@njit(cache=True)
def decompress_into(msg, out):
    """Decompress ``msg`` (a whole compressed message) into ``out`` (sized by uncompressed_size).

    Returns the number of bytes written (== len(out)), or -1 when the input is malformed
    (truncated stream, a match running past the end)."""
    total = out.shape[0]
    end = msg.shape[0]
    if total < HEADER or end < HEADER + SIZE_FIELD:
        return -1
    positions = np.zeros(256, dtype=np.int64)
    for k in range(HEADER):
        out[k] = msg[k]
    out[2] = 0
    for k in range(SIZE_FIELD):
        out[4 + k] = (total >> (8 * k)) & 0xFF
    src = HEADER + SIZE_FIELD
    dst = HEADER
    hashed = HEADER
    control = 0
    bit = 0
    while dst < total:
        if bit == 0:
            if src >= end:
                return -1
            control = msg[src]
            src += 1
            bit = 1
        is_match = (control & bit) != 0
        if is_match:
            if src + 2 > end or dst + 2 > total:
                return -1
            origin = positions[msg[src]]
            extra = np.int64(msg[src + 1])
            src += 2
            if dst + 2 + extra > total:
                return -1
            out[dst] = out[origin]
            out[dst + 1] = out[origin + 1]
            dst += 2
            for m in range(extra):
                out[dst + m] = out[origin + 2 + m]
        else:
            if src >= end:
                return -1
            out[dst] = msg[src]
            src += 1
            dst += 1
        while hashed < dst - 1:
            positions[out[hashed] ^ out[hashed + 1]] = hashed
            hashed += 1
        if is_match:
            dst += extra
            hashed = dst
        bit = (bit << 1) & 0xFF
    return dst


@njit(cache=True)
def compress_into(msg, out):
    """Compress ``msg`` (a whole uncompressed message) into ``out``; returns the compressed size,
    or -1 when the result would not fit in ``out`` (callers size it to half the input, as kdb+
    sends a message compressed only when that halves it)."""
    total = msg.shape[0]
    cap = out.shape[0]
    if total < HEADER or cap < HEADER + SIZE_FIELD + 1:
        return -1
    positions = np.zeros(256, dtype=np.int64)
    for k in range(HEADER):
        out[k] = msg[k]
    out[2] = 1
    for k in range(SIZE_FIELD):
        out[HEADER + k] = (total >> (8 * k)) & 0xFF
    dst = HEADER + SIZE_FIELD
    src = HEADER
    hashed = HEADER
    control_at = dst
    control = 0
    bit = 0
    while src < total:
        if bit == 0:
            if dst >= cap:
                return -1
            out[control_at] = control
            control_at = dst
            dst += 1
            control = 0
            bit = 1
        length = 0
        key = 0
        if src + 2 <= total:
            key = msg[src] ^ msg[src + 1]
            origin = positions[key]
            if origin >= HEADER and msg[origin] == msg[src] and msg[origin + 1] == msg[src + 1]:
                length = 2
                while length < 257 and src + length < total and msg[origin + length] == msg[src + length]:
                    length += 1
        if length >= 2:
            if dst + 2 > cap:
                return -1
            control |= bit
            out[dst] = key
            out[dst + 1] = length - 2
            dst += 2
            src += 2
        else:
            if dst >= cap:
                return -1
            out[dst] = msg[src]
            dst += 1
            src += 1
        while hashed < src - 1:
            positions[msg[hashed] ^ msg[hashed + 1]] = hashed
            hashed += 1
        if length >= 2:
            src += length - 2
            hashed = src
        bit = (bit << 1) & 0xFF
    out[control_at] = control
    for k in range(SIZE_FIELD):
        out[4 + k] = (dst >> (8 * k)) & 0xFF
    return dst


def decompress(message: bytes, limit: int) -> bytes:
    """A compressed kdb+ IPC message as its uncompressed bytes (flag byte cleared).

    Raises ValueError for a malformed stream or one announcing more than `limit` bytes."""
    buf = np.frombuffer(message, dtype=np.uint8)
    if buf.shape[0] < HEADER + SIZE_FIELD:
        raise ValueError("compressed message shorter than its header")
    size = int(uncompressed_size(buf))
    if size < HEADER:
        raise ValueError(f"compressed message announces {size} bytes")
    if size > limit:
        raise ValueError(f"limit: compressed message announces {size} bytes, over the limit of {limit}")
    out = np.empty(size, dtype=np.uint8)
    if decompress_into(buf, out) != size:
        raise ValueError("corrupt compressed message")
    return out.tobytes()


def compress(message: bytes) -> bytes | None:
    """The kdb+-compressed form of an uncompressed IPC message, or None when compressing would not
    at least halve it (kdb+ then sends it as is)."""
    buf = np.frombuffer(message, dtype=np.uint8)
    out = np.empty(max(buf.shape[0] // 2, HEADER + SIZE_FIELD + 1), dtype=np.uint8)
    n = compress_into(buf, out)
    return None if n < 0 else out[:n].tobytes()
