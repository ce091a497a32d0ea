"""Gateway codec tests: the reply encoder against PyKX's own serializer, byte for byte, and the kdb+
IPC compression against PyKX (kdb+'s own decompressor) on real messages."""
import numpy as np
import pykx as kx
import pytest

from gateway.compression import compress, decompress
from gateway.qcodec import encode, error_message, message


def serialized(k) -> bytes:
    return bytes(kx.serialize(k).copy())[8:]


@pytest.mark.parametrize("value, k", [
    (np.array([1.5, -2.0]), kx.toq(np.array([1.5, -2.0]))),
    (np.array([1, 2], dtype=np.int64), kx.toq(np.array([1, 2]))),
    (np.array([1, 2], dtype=np.int32), kx.toq(np.array([1, 2], dtype=np.int32))),
    (np.array([True, False]), kx.toq(np.array([True, False]))),
    (np.array(["FUND1", "AMD"], dtype=object), kx.toq(np.array(["FUND1", "AMD"], dtype=object), ktype=kx.SymbolVector)),
    (np.array(["2026-11-21T05:00:00.123456789"], dtype="datetime64[ns]"),
     kx.toq(np.array(["2026-11-21T05:00:00.123456789"], dtype="datetime64[ns]"))),
    (np.array([5, 7], dtype="timedelta64[ns]"), kx.toq(np.array([5, 7], dtype="timedelta64[ns]"))),
    (1.5, kx.FloatAtom(1.5)), (7, kx.LongAtom(7)), (True, kx.BooleanAtom(True)), ("FUND1", kx.SymbolAtom("FUND1")),
    (b"text", kx.CharVector("text")), (None, kx.toq(None)),
    (np.datetime64("2026-11-21T05:00:00", "ns"), kx.TimestampAtom(np.datetime64("2026-11-21T05:00:00", "ns"))),
])
def test_encoder_matches_pykx(value, k):
    assert encode(value) == serialized(k)


def test_tables_dicts_and_nulls_decode_in_pykx():
    batch = {"time": np.array(["2026-11-21T05:00:00", "NaT"], dtype="datetime64[ns]"),
             "sym": np.array(["FUND1", "FUND2"], dtype=object), "im": np.array([1.0, np.nan]),
             "seq": np.array([1, 2]), "text": np.array(["a;b", ""], dtype=object)}
    table = kx.deserialize(message(encode(batch, {"text": "string"})))
    assert isinstance(table, kx.Table)
    cols = table.py()
    assert cols["sym"] == ["FUND1", "FUND2"] and cols["seq"] == [1, 2] and cols["text"] == [b"a;b", b""]
    assert cols["im"][0] == 1.0 and np.isnan(cols["im"][1])
    reply = kx.deserialize(message(encode({"before": {"im": 1.0, "call": 2.0}, "drivers": batch, "n": 3, "who": "x"})))
    assert isinstance(reply, kx.Dictionary)
    assert reply.py()["before"] == {"im": 1.0, "call": 2.0} and reply.py()["n"] == 3
    err = error_message("'access: no")
    assert err[:4] == b"\x01\x02\x00\x00" and int.from_bytes(err[4:8], "little") == len(err)
    assert err[8:] == b"\x80access: no\x00"


def test_float_dicts_decode_in_pykx_also_when_their_keys_repeat():
    expected = encode({"im": 1.0, "call": -2.5})                               # `im`call!1 -2.5 (a float vector)
    assert kx.deserialize(message(expected)).py() == {"im": 1.0, "call": -2.5}
    assert expected[-22] == 9 and expected[-16:] == np.array([1.0, -2.5]).tobytes()   # values: float vector
    assert encode({"im": np.float64(1.0), "call": -2.5}) == expected          # memoized layout, numpy float
    assert kx.deserialize(message(encode({"call": -2.5, "im": 1.0}))).py() == {"call": -2.5, "im": 1.0}
    mixed = {"im": 1.0, "call": 3}                                             # not all floats: a general list
    assert kx.deserialize(message(encode(mixed))).py() == {"im": 1.0, "call": 3}


def test_compression_round_trip_and_pykx_reads_it():
    rng = np.random.default_rng(3)
    objects = [kx.toq(np.zeros(5000)), kx.toq(np.arange(20_000) % 7),
               kx.toq(np.array(["FUND1", "FUND2", "AMD"] * 2000, dtype=object), ktype=kx.SymbolVector),
               kx.toq(rng.integers(0, 3, 40_000))]
    for obj in objects:
        raw = bytes(kx.serialize(obj).copy())
        packed = compress(raw)
        assert packed is not None and packed[2] == 1 and len(packed) <= len(raw) // 2
        assert decompress(packed, 1 << 30) == raw
        assert bytes(kx.serialize(kx.deserialize(packed)).copy()) == raw     # kdb+'s decompressor agrees
    incompressible = bytes(kx.serialize(kx.toq(rng.random(1000))).copy())
    assert compress(incompressible) is None


def test_corrupt_compressed_input_raises_not_crashes():
    raw = bytes(kx.serialize(kx.toq(np.arange(20_000) % 11)).copy())
    packed = bytearray(compress(raw))
    rng = np.random.default_rng(5)
    for _ in range(300):
        bad = bytearray(packed)
        for i in rng.integers(12, len(bad), 3):
            bad[i] = int(rng.integers(0, 256))
        bad = bad[: int(rng.integers(12, len(bad) + 1))]
        try:
            out = decompress(bytes(bad), 1 << 30)
            assert len(out) == len(raw)                  # a corrupt but complete stream still has the announced size
        except ValueError:
            pass
    with pytest.raises(ValueError, match="limit"):                 # announces 2 GB from 12 bytes
        decompress(b"\x01\x01\x01\x00\x0c\x00\x00\x00\xff\xff\xff\x7f", limit=1 << 20)


def test_symbols_with_nul_or_no_utf8_form_are_escaped_and_decode_in_pykx():
    """The rule of gateway/qcodec.py: in a symbol NUL -> `\\000`, an unencodable character -> its
    backslash escape; strings keep their NULs. Every such reply decodes in PyKX."""
    nul, lone = "AMD\x00X", "a\udcffb"
    assert kx.deserialize(message(encode(nul))).py() == "AMD\\000X"
    assert kx.deserialize(message(encode(lone))).py() == "a\\udcffb"
    assert kx.deserialize(message(encode([nul, "SPY", lone]))).py() == ["AMD\\000X", "SPY", "a\\udcffb"]
    batch = {"sym": np.array([nul, "SPY"], dtype=object), "text": [nul, lone], "qty": np.array([1.0, 2.0])}
    decoded = kx.deserialize(message(encode(batch, {"text": "string"}))).py()
    assert decoded["sym"] == ["AMD\\000X", "SPY"] and decoded["text"] == [b"AMD\x00X", b"a\\udcffb"]
    assert kx.deserialize(message(encode({nul: 1.0, "b": 2.0}))).py() == {"AMD\\000X": 1.0, "b": 2.0}
    assert encode(["FUND1", "SPY"]) == serialized(kx.SymbolVector(["FUND1", "SPY"]))   # the fast path is unchanged
    with pytest.raises(kx.QError, match="^a b$"):                     # error text: a NUL becomes a space
        kx.deserialize(error_message("a\x00b"))
