"""The tickerplant's fast path (tickerplant/fastcheck.py) against the full validation it stands in for:
it accepts plainly valid batches with the right row count, and never accepts one the full check
rejects, whatever the bytes (valid, invalid, and randomly corrupted payloads)."""
from __future__ import annotations

import numpy as np
import pytest

from common.codec import pack, unpack
from common.schema import BatchError, load_schemas
from tickerplant.fastcheck import FastCheck

SCHEMAS = load_schemas()


def make_batch(schema, n: int, rng, text_len=(0, 40), order=None) -> dict:
    batch = {}
    for col in schema.columns:
        if col.is_text:
            lengths = rng.integers(text_len[0], text_len[1] + 1, n)
            batch[col.name] = ["".join(chr(c) for c in rng.integers(32, 127, k)) for k in lengths]
        elif col.dtype.kind == "f":
            values = rng.standard_normal(n)
            if col.nullable and n:
                values[rng.random(n) < 0.3] = np.nan
            batch[col.name] = values
        elif col.dtype.kind == "M":
            batch[col.name] = (rng.integers(0, 2**40, n)).astype(col.dtype)
        elif col.dtype.kind == "m":
            batch[col.name] = rng.integers(0, 2**40, n).astype(col.dtype)
        elif col.dtype.kind == "b":
            batch[col.name] = rng.random(n) < 0.5
        else:
            batch[col.name] = rng.integers(-1000, 1000, n).astype(col.dtype)
    names = list(batch)
    if order == "shuffle":
        rng.shuffle(names)
    return {k: batch[k] for k in names}


def full_rows(schema, payload: bytes):
    """Rows per the full validation, or None when it rejects the payload."""
    try:
        rows, _ = schema.validate(unpack(payload))
        return rows
    except (BatchError, ValueError):
        return None


@pytest.mark.parametrize("table", sorted(SCHEMAS))
def test_valid_batches_are_accepted_with_their_row_count(table):
    schema, fast, rng = SCHEMAS[table], FastCheck(SCHEMAS[table]), np.random.default_rng(len(table))
    for n in (0, 1, 2, 5, 15, 16, 17, 40):
        for order in (None, "shuffle"):
            payload = pack(make_batch(schema, n, rng, order=order))
            assert fast.rows(payload) == n == full_rows(schema, payload)


def test_long_strings_and_large_batches_use_the_wider_msgpack_forms():
    schema, fast, rng = SCHEMAS["alert"], FastCheck(SCHEMAS["alert"]), np.random.default_rng(1)
    payload = pack(make_batch(schema, 3, rng, text_len=(300, 70_000)))      # str16 and str32
    assert fast.rows(payload) == 3 == full_rows(schema, payload)
    quote = SCHEMAS["quote"]
    payload = pack(make_batch(quote, 70_000, rng, text_len=(1, 4)))         # array32 of str
    assert FastCheck(quote).rows(payload) == 70_000 == full_rows(quote, payload)


@pytest.mark.parametrize("change", [
    lambda b: b["price"].__setitem__(0, np.nan),                                          # null not allowed
    lambda b: b["price"].__setitem__(1, np.frombuffer(b"\x01\x00\x00\x00\x00\x00\xf0\xff", "<f8")[0]),
    lambda b: b["time"].__setitem__(2, np.datetime64("NaT")),
    lambda b: b.pop("bid"),
    lambda b: b.update(extra=np.ones(3)),
    lambda b: b.update(price=np.arange(3)),                                               # int, not float
    lambda b: b.update(price=np.ones(4)),                                                 # ragged
    lambda b: b.update(sym=["AMD", "AMD"]),                                               # ragged text
    lambda b: b.update(sym=["AMD", 1, "X"]),
    lambda b: b.update(price=np.ones((3, 1))),                                            # 2-d
    lambda b: b.update(time=b["time"].astype("datetime64[us]")),
])
def test_invalid_batches_are_never_accepted(change):
    schema, fast = SCHEMAS["quote"], FastCheck(SCHEMAS["quote"])
    batch = make_batch(schema, 3, np.random.default_rng(2))
    batch = {k: (v.copy() if isinstance(v, np.ndarray) else list(v)) for k, v in batch.items()}
    change(batch)
    payload = pack(batch)
    assert fast.rows(payload) is None
    assert full_rows(schema, payload) is None


def test_non_ascii_text_goes_to_the_full_check():
    schema = SCHEMAS["alert"]
    batch = make_batch(schema, 2, np.random.default_rng(3))
    batch["text"] = ["marge appelée", "ok"]
    payload = pack(batch)
    assert FastCheck(schema).rows(payload) is None and full_rows(schema, payload) == 2


def test_corrupted_payloads_are_never_accepted_when_invalid():
    rng = np.random.default_rng(4)
    for table in ("quote", "fill", "alert"):
        schema, fast = SCHEMAS[table], FastCheck(SCHEMAS[table])
        for _ in range(1500):
            payload = bytearray(pack(make_batch(schema, int(rng.integers(0, 6)), rng)))
            for _ in range(int(rng.integers(1, 4))):
                if rng.random() < 0.2:
                    del payload[int(rng.integers(0, len(payload))):]
                elif payload:
                    payload[int(rng.integers(0, len(payload)))] = int(rng.integers(0, 256))
            n = fast.rows(bytes(payload))
            if n is not None:
                assert full_rows(schema, bytes(payload)) == n
