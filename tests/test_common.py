"""common/: the q schema parser, batch validation, the msgpack codec and RPC."""
import asyncio
import threading
import time

import numpy as np
import pytest
import zmq

from common.codec import pack, unpack, as_columns
from common.rpc import AsyncRpcClient, RpcClient, RpcError, RpcServer, RpcTimeout
from common.schema import BatchError, SchemaError, load_schemas, parse_schema


def quote_batch(n=2):
    return {"time": np.arange(n).astype("datetime64[ns]"), "sym": ["AAPL", "AMD"][:n] * (n // 2 or 1),
            "bid": np.ones(n), "ask": np.ones(n), "price": np.ones(n), "size": np.ones(n),
            "vol": np.full(n, np.nan), "src": ["sim"] * n}


def test_repo_schema_parses_with_time_and_sym_first():
    schemas = load_schemas()
    assert {"fill", "quote", "margin", "alert", "instrument", "account"} <= set(schemas)
    for t in schemas.values():
        assert t.column_names[:2] == ["time", "sym"]
    assert schemas["quote"].column("vol").nullable and not schemas["quote"].column("price").nullable
    assert schemas["alert"].column("text").qtype == "string"


@pytest.mark.parametrize("text, where, what", [
    ("t:([]time:`timestamp$();sym:`symbol$();x:`floot$())", ":1:", "unknown type"),
    ("/ c\n\nt:([]sym:`symbol$();time:`timestamp$())", ":3:", "must start with time"),
    ("t:([]time:`timestamp$();sym:`symbol$();x:1)", ":1:", "bad column"),
    ("t:([]time:`timestamp$();\n  sym:`symbol$())\nt:([]time:`timestamp$();sym:`symbol$())", ":3:", "defined twice"),
    ("t:([]time:`timestamp$();sym:`symbol$())\n.mt.nullable.t:`nope", ":2:", "unknown column"),
    ("t:([]time:`timestamp$();sym:`symbol$())\n.mt.nullable.t:`sym", ":2:", "cannot be declared nullable"),
    ("select from t", ":1:", "not a table definition"),
])
def test_bad_schema_names_file_line_and_problem(text, where, what):
    with pytest.raises(SchemaError) as e:
        parse_schema(text, "s.q")
    assert str(e.value).startswith("s.q" + where) and what in str(e.value)


def test_continuation_lines_and_comments():
    s = parse_schema("/ header\nt:([]time:`timestamp$();  / note\n  sym:`symbol$();v:`long$())\n", "x.q")
    assert s["t"].column_names == ["time", "sym", "v"]


def test_validate_round_trip_and_stamp():
    quote = load_schemas()["quote"]
    rows, cols = quote.validate(unpack(pack(quote_batch())))
    assert rows == 2 and cols["sym"].dtype == object and list(cols["sym"]) == ["AAPL", "AMD"]
    b = quote_batch()
    del b["time"]
    _, stamped = quote.validate(b, stamp_ns=7)
    assert (stamped["time"].view("i8") == 7).all()


@pytest.mark.parametrize("change, message", [
    (lambda b: b.pop("ask"), "missing ['ask']"),
    (lambda b: b.update(extra=[1, 2]), "extra ['extra']"),
    (lambda b: b.update(ask=np.array([1, 2])), "quote.ask: expected float"),
    (lambda b: b.update(sym=["A"]), "ragged"),
    (lambda b: b.update(sym=[1, 2]), "expected str items"),
    (lambda b: b.update(price=np.array([1.0, np.nan])), "quote.price: null"),
    (lambda b: b.update(time=np.array(["NaT", "NaT"], dtype="datetime64[ns]")), "quote.time: null"),
    (lambda b: b.update(src="sim"), "expected a list of str"),
])
def test_validate_rejects_bad_batches(change, message):
    b = quote_batch()
    change(b)
    with pytest.raises(BatchError) as e:
        load_schemas()["quote"].validate(b)
    assert message in str(e.value)


def test_codec_nested_arrays_scalars_and_garbage():
    obj = {"m": np.arange(6.0).reshape(2, 3), "d": np.datetime64("2018-04-11"), "i": np.int64(3), "s": ["a"]}
    out = unpack(pack(obj))
    assert out["m"].shape == (2, 3) and out["m"][1, 2] == 5.0
    assert out["d"] == np.datetime64("2018-04-11") and out["i"] == 3
    assert list(as_columns(unpack(pack(quote_batch())), load_schemas()["quote"])["src"]) == ["sim", "sim"]
    with pytest.raises(ValueError):
        unpack(b"\xc1\xc1garbage")


def test_codec_one_dimensional_columns_round_trip_exactly():
    cols = {"f": np.arange(5.0), "strided": np.arange(10)[::3], "t": np.array([1, 2], "datetime64[ns]"),
            "b": np.array([True, False]), "be": np.arange(3, dtype=">i4"), "empty": np.empty(0, np.float32),
            "o": np.array(["x", "y"], dtype=object), "u": np.array(["ab", "c"]), "b2": np.eye(2, dtype=bool)}
    out = unpack(pack(cols))
    for name in ("f", "strided", "t", "b", "be", "empty", "b2"):
        assert out[name].dtype == cols[name].dtype and np.array_equal(out[name], cols[name]), name
    assert out["o"] == ["x", "y"] and out["u"] == ["ab", "c"]


def test_rpc_round_trip_errors_and_timeout():
    def boom(req):
        raise KeyError("no such account: X")
    server = RpcServer("tcp://127.0.0.1:0", {"echo": lambda r: {"x": r["x"] * 2}, "boom": boom})
    stop = threading.Event()
    t = threading.Thread(target=server.serve_forever, args=(stop.is_set, 20), daemon=True)
    t.start()
    client = RpcClient(server.endpoint, timeout=5)
    try:
        assert client.call("echo", x=np.arange(3))["x"].tolist() == [0, 2, 4]
        with pytest.raises(RpcError, match="no such account"):
            client.call("boom")
        with pytest.raises(RpcError, match="unknown op"):
            client.call("nope")
    finally:
        stop.set()
        t.join(5)
        server.close()
    with pytest.raises(RpcTimeout):
        client.call("echo", timeout=0.2, x=1)
    client.close()


def test_rpc_server_answers_a_message_of_several_requests_in_one_and_drops_malformed_ones():
    server = RpcServer("tcp://127.0.0.1:0", {"echo": lambda r: {"x": r["x"] * 2}})
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(server.endpoint)
    try:
        sock.send_multipart([b"1", pack({"op": "echo", "x": 1}), b"a request id without a body"])
        sock.send_multipart([b"1", pack({"op": "echo", "x": 1}), b"2", b"not msgpack", b"3",
                             pack({"op": "echo", "x": 3})])
        deadline = time.monotonic() + 5
        answered = 0
        while answered < 3 and time.monotonic() < deadline:
            server.socket.poll(100)
            answered += server.drain()
        assert answered == 3 and server.failed == 2    # the malformed message, and request 2
        assert sock.poll(5000)
        frames = sock.recv_multipart()
        assert frames[0::2] == [b"1", b"2", b"3"]
        replies = [unpack(f) for f in frames[1::2]]
        assert replies[0]["x"] == 2 and replies[2]["x"] == 6 and not replies[1]["ok"]
        assert not sock.poll(100)                      # nothing for the malformed message
    finally:
        sock.close(0)
        server.close()


def test_async_rpc_many_in_flight_errors_and_a_late_reply_discarded():
    release = threading.Event()

    def hold(req):
        release.wait(10)                   # answers only once the test has seen the timeout
        return {"held": True}
    server = RpcServer("tcp://127.0.0.1:0", {"echo": lambda r: {"x": r["x"] * 2}, "hold": hold,
                                             "boom": lambda r: 1 / 0})
    stop = threading.Event()
    t = threading.Thread(target=server.serve_forever, args=(stop.is_set, 20), daemon=True)
    t.start()
    client = AsyncRpcClient(server.endpoint, timeout=10)

    async def scenario():
        release.clear()
        sent = client.messages
        replies = await asyncio.gather(*(client.call("echo", x=i) for i in range(200)))
        assert [r["x"] for r in replies] == [2 * i for i in range(200)]
        assert client.messages - sent < 200        # calls of one loop turn share a message
        mixed = await asyncio.gather(client.call("echo", x=1), client.call("boom"), client.call("echo", x=2),
                                     return_exceptions=True)
        assert mixed[0]["x"] == 2 and mixed[2]["x"] == 4 and isinstance(mixed[1], RpcError)
        with pytest.raises(RpcError, match="division by zero"):
            await client.call("boom")
        with pytest.raises(RpcTimeout, match="hold"):
            await client.call("hold", timeout=0.2)
        release.set()                      # the held reply now arrives late and must be dropped
        assert (await client.call("echo", x=21))["x"] == 42
        assert not client._pending

    try:
        asyncio.run(scenario())
        asyncio.run(scenario())            # a second event loop: the client follows it
    finally:
        release.set()
        stop.set()
        t.join(5)
        client.close()
        server.close()


def test_wire_frames_round_trip():
    from common import wire
    head = wire.ingest_head(7, b"fixfh", b"fill")
    assert head[:1] == wire.UPDATE and wire.parse_ingest_head(head) == (7, b"fixfh", b"fill")
    for bad in (b"", b"X" + head[1:], head[:10], head[:9] + b"\xff" + head[10:]):
        with pytest.raises(ValueError):
            wire.parse_ingest_head(bad)
    assert [wire.ingest_reply(b)[0] for b in (wire.ack(1, 2, "a"), wire.reject(1, "e", "a"), wire.resend(3, "a"),
                                              wire.hello_reply(0, 0, 0, 1, "a"), wire.failure("x"))] == \
        ["ack", "reject", "resend", "hello", "error"]
    assert wire.read_publish_header(wire.publish_header(5, 3, [[5, 2]])) == (5, 3, [[5, 2]])
    assert wire.table_topic("fill") == b"fill\x00"
    assert wire.group_topic("fill", frozenset({"A", "B"})) == wire.group_topic("fill", frozenset({"B", "A"}))
    assert wire.reply_error(wire.ok_reply({"x": 1})) is None and wire.reply_error(wire.error_reply("no")) == "no"
