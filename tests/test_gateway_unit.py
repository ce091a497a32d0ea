"""Gateway unit tests: the real gateway process and real PyKX / raw-socket / HTTP clients, with a
small RpcServer in the test standing in for the rdb and calc backends (the full-stack tests with
the real rdb and calc are in test_gateway_stack.py)."""
from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pykx as kx
import pytest
from common.net import listening
from conftest import http_json, pykx_connection, wait_until

from common.alerts import alert_batch, alert_row
from common.rpc import RpcServer
from gateway.api import MAX_RUNNING, MAX_WAITING
from gateway.compression import compress
from tickerplant.client import Publisher

ACCOUNTS = {"FUND1": "TECH", "FUND2": "VALUE", "FUND3": "ARB"}
T0 = np.datetime64("2026-11-21T05:00:00", "ns")


def _rows(syms):
    n = len(syms)
    return {"table": {"time": np.repeat(T0, n), "sym": np.array(syms, dtype=object),
                      "im": np.arange(n, dtype=np.float64) + 1.0, "seq": np.arange(n, dtype=np.int64)},
            "types": {"time": "timestamp", "sym": "symbol", "im": "float", "seq": "long"}}


class StandIn:
    """An rdb and a calc (two RpcServers, one thread each) answering from fixed data; a q-sql query
    containing `slow` and a what-if for account SLOW wait until the test sets `release` (30 s at most)."""

    def __init__(self, free_port):
        self.requests: list[dict] = []
        self.release = threading.Event()
        self._stop = False
        self.rdb = RpcServer(f"tcp://127.0.0.1:{free_port()}", {
            "last": self.last, "select": self.select, "qsql": self.qsql})
        self.calc = RpcServer(f"tcp://127.0.0.1:{free_port()}", {
            "whatif": self.whatif, "margin": lambda r: {"margin": _rows(r.get("accounts") or list(ACCOUNTS))["table"]},
            "positions": lambda r: {"account": r["account"],
                                    "positions": {"sym": np.array(["AMD"], dtype=object), "qty": np.array([4e6])}}})
        self.threads = [threading.Thread(target=s.serve_forever, args=(lambda: self._stop, 20), daemon=True)
                        for s in (self.rdb, self.calc)]
        for t in self.threads:
            t.start()

    def last(self, req):
        self.requests.append(req)
        if req["table"] == "account":
            return {"table": {"sym": np.array(list(ACCOUNTS), dtype=object),
                              "desk": np.array(list(ACCOUNTS.values()), dtype=object)}}
        return _rows(req.get("syms") or list(ACCOUNTS))

    def select(self, req):
        self.requests.append(req)
        return _rows(req.get("syms") or list(ACCOUNTS))

    def whatif(self, req):
        self.requests.append(req)
        if req["account"] == "SLOW":
            self.release.wait(30)
        d = {"im": 100.0, "vm": 0.0, "requirement": 100.0, "call": 0.0}
        return {"before": d, "after": {**d, "im": 90.0}, "delta": {**d, "im": -10.0},
                "drivers": {"sym": np.array(req["trades"]["sym"], dtype=object),
                            "contribution": np.asarray(req["trades"]["qty"], dtype=np.float64)}}

    def qsql(self, req):
        self.requests.append(req)
        if "slow" in req["query"]:
            self.release.wait(30)
        raise NotImplementedError("nyi: q-sql")

    def close(self):
        self._stop = True
        self.release.set()
        for t in self.threads:
            t.join(5)
        self.rdb.close()
        self.calc.close()


@pytest.fixture
def standin(free_port):
    s = StandIn(free_port)
    yield s
    s.close()


def start_gateway(spawn, free_port, standin, *extra):
    port, http_port = free_port(), free_port()
    spawn("gateway", "--port", port, "--http-port", http_port, "--rdb", standin.rdb.endpoint,
          "--calc", standin.calc.endpoint, *extra)
    wait_until(lambda: listening(http_port), timeout=60, what="gateway listening")
    return port, http_port


@pytest.fixture
def gateway(spawn, free_port, standin):
    return start_gateway(spawn, free_port, standin, "--control", "")


# ---- kdb+ IPC with the real PyKX client ------------------------------------------------------------
def test_pykx_default_connection_named_api(gateway):
    port, _ = gateway
    with pykx_connection(port) as conn:
        margin = conn("margin", "FUND1")
        assert isinstance(margin, kx.Table)
        cols = margin.py()
        assert cols["sym"] == ["FUND1"] and cols["im"] == [1.0] and cols["seq"] == [0]
        assert cols["time"][0].isoformat() == "2026-11-21T05:00:00"
        assert conn("margin[`FUND2`FUND3]").py()["sym"] == ["FUND2", "FUND3"]
        assert conn.margin("FUND3").py()["sym"] == ["FUND3"]           # PyKX's context interface
        assert sorted(conn("margin").py()["sym"]) == sorted(ACCOUNTS)
        result = conn("whatif", "FUND1", "AMD", -1000, float("nan")).py()
        assert result["delta"]["im"] == -10.0 and result["drivers"]["sym"] == ["AMD"]
        basket = conn("whatif[`FUND1;`AMD;250.5;12.5]").py()
        assert basket["drivers"]["contribution"] == [250.5]
        assert conn("positions", "FUND1").py() == {"sym": ["AMD"], "qty": [4e6]}
        with pytest.raises(kx.QError, match="nyi: q-sql"):
            conn("select from margin where sym=`FUND1")
        with pytest.raises(kx.QError, match="nosuch"):
            conn("nosuch", 1)
        with pytest.raises(kx.QError, match="type"):
            conn("margin", 1.5)
        with pytest.raises(kx.QError, match="rank"):
            conn("whatif", "FUND1")
        with pytest.raises(kx.QError, match="type: qty"):
            conn("whatif", "FUND1", "AMD", "lots", 1.0)
        assert conn("key", "").py() == sorted(["accounts", "ack", "alerts", "breakdown", "drivers", "hedge", "margin",
                                               "positions", "qsql", "recon", "rules", "scenarios", "setrule",
                                               "stress", "whatif"])


def test_auth_and_entitlements(gateway):
    port, _ = gateway
    with pytest.raises(Exception, match="(?i)auth|access"):
        pykx_connection(port, "demo", "wrong")
    with pytest.raises(Exception, match="(?i)auth|access"):
        pykx_connection(port, "nobody", "demo")
    with pykx_connection(port, "trader1", "trader1") as conn:          # desk TECH: FUND1 only
        assert conn("margin").py()["sym"] == ["FUND1"]
        with pytest.raises(kx.QError, match="access: user trader1 is not entitled to account FUND2"):
            conn("margin", "FUND2")
        with pytest.raises(kx.QError, match="access"):
            conn("whatif", "FUND3", "AMD", 10, 1.0)
        with pytest.raises(kx.QError, match="access"):
            conn("select from margin")                   # q-sql sees every account: not for a desk user
    with pykx_connection(port, "trader2", "trader2") as conn:          # explicit account list
        assert conn("alerts").py()["sym"] == ["FUND2"]
        with pytest.raises(kx.QError, match="access"):
            conn("positions", "FUND1")


def test_slow_query_does_not_block_whatif(gateway, standin):
    port, _ = gateway
    outcome = {}

    def slow():
        with pykx_connection(port) as c:
            try:
                c("select from slow")
            except kx.QError as e:
                outcome["slow"] = str(e)
    thread = threading.Thread(target=slow)
    thread.start()
    with pykx_connection(port) as conn:
        wait_until(lambda: any("slow" in r.get("query", "") for r in standin.requests), timeout=30,
                   what="slow query at the rdb")
        result = conn("whatif", "FUND1", "AMD", 5, 1.0).py()
        assert result["delta"]["im"] == -10.0
        answered_while_slow_pending = thread.is_alive() and "slow" not in outcome
    standin.release.set()
    thread.join(30)
    assert answered_while_slow_pending
    assert "nyi" in outcome["slow"]


def test_request_timeout_is_an_error(spawn, free_port, standin):
    port, _ = start_gateway(spawn, free_port, standin, "--control", "",
                            "--timeout", "1")
    with pykx_connection(port) as conn:
        with pytest.raises(kx.QError, match="timeout: whatif"):
            conn("whatif", "SLOW", "AMD", 1, 1.0)
        standin.release.set()                            # the stand-in calc finishes the slow one, then this
        assert conn("whatif", "FUND1", "AMD", 1, 1.0).py()["delta"]["im"] == -10.0


# ---- raw sockets: handshake, framing, malformed input -----------------------------------------------
def raw_login(port, credentials=b"demo:demo", capability=3):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(credentials + bytes([capability]) + b"\0")
    reply = s.recv(1)
    return s, reply


def recv_message(s) -> bytes:
    header = b""
    while len(header) < 8:
        chunk = s.recv(8 - len(header))
        if not chunk:
            raise ConnectionError("closed")
        header += chunk
    size = struct.unpack("<I", header[4:8])[0] | (header[3] << 32)
    body = b""
    while len(body) < size - 8:
        chunk = s.recv(size - 8 - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return header + body


def closed(s) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionError:
        return True


def sync(obj) -> bytes:
    return bytes(kx.serialize(kx.toq(obj), mode=6, wait=1).copy())


def test_handshake_capability_and_rejected_login(gateway):
    port, _ = gateway
    s, reply = raw_login(port, capability=3)
    assert reply == b"\x03"
    s.close()
    s, reply = raw_login(port, capability=6)
    assert reply == b"\x06"
    s.close()
    s, reply = raw_login(port, b"demo:nope")
    assert reply == b""                                  # q closes on a rejected login
    s.close()


def test_malformed_messages_get_errors_or_closed_connection(gateway):
    port, _ = gateway
    cases_closing = [
        b"\x07\x01\x00\x00\x10\x00\x00\x00" + b"x" * 8,              # unknown byte order
        b"\x01\x01\x00\x00\x04\x00\x00\x00",                          # length shorter than a header
        b"\x01\x09\x00\x00\x10\x00\x00\x00" + b"x" * 8,              # unknown message type
        b"\x01\x01\x00\x00\xff\xff\xff\x7f",                          # 2 GB: over the gateway limit
    ]
    for raw in cases_closing:
        s, _ = raw_login(port)
        s.sendall(raw)
        try:
            reply = recv_message(s)
            assert reply[8] == 0x80                      # an error first ('limit), then closed
        except ConnectionError:
            pass
        assert closed(s)
        s.close()
    s, _ = raw_login(port, capability=6)                 # > 4 GB announced with the large-message capability
    s.sendall(b"\x01\x01\x00\x01\x10\x00\x00\x00")
    assert b"limit" in recv_message(s) and closed(s)
    s.close()
    s, _ = raw_login(port, capability=3)                 # ... and without it
    s.sendall(b"\x01\x01\x00\x01\x10\x00\x00\x00")
    assert closed(s)
    s.close()
    # garbage before a handshake, and a truncated message: the client goes away, nothing else happens
    g = socket.create_connection(("127.0.0.1", port), timeout=10)
    g.sendall(b"\xde\xad\xbe\xef" * 300)
    assert closed(g)
    g.close()
    s, _ = raw_login(port)
    s.sendall(sync(["margin", "FUND1"])[:12])
    s.close()
    # errors that keep the connection: bad body, unknown function, wrong types / counts
    s, _ = raw_login(port)
    bad_body = b"\x01\x01\x00\x00\x14\x00\x00\x00" + b"\x63\x0b\x00\xff\xff\xff\x7f\x00\x00\x00\x00\x00"
    for raw, expected in [(bad_body, b"badmsg"),
                          (sync([kx.SymbolAtom("nosuch"), kx.SymbolAtom("FUND1")]), b"nosuch"),
                          (sync([kx.SymbolAtom("margin"), kx.FloatAtom(2.0)]), b"type"),
                          (sync([kx.SymbolAtom("stress"), kx.SymbolAtom("a"), kx.SymbolAtom("b"),
                                 kx.SymbolAtom("c")]), b"rank"),
                          (sync(kx.LongAtom(42)), b"type"),
                          (b"\x01\x01\x01\x00\x20\x00\x00\x00" + b"\x00" * 24, b"badmsg")]:   # corrupt compressed
        s.sendall(raw)
        reply = recv_message(s)
        assert reply[8] == 0x80 and expected in reply, (raw, reply)
    s.sendall(bytes(kx.serialize(kx.toq([kx.SymbolAtom("nosuch")]), mode=6, wait=0).copy()))   # async: no reply
    s.sendall(sync([kx.SymbolAtom("margin"), kx.SymbolAtom("FUND2")]))
    assert kx.deserialize(recv_message(s)).py()["sym"] == ["FUND2"]
    s.sendall(sync([kx.SymbolAtom(".u.sub"), kx.SymbolAtom("margin"), kx.SymbolAtom("")]))
    assert b"nyi: subscriptions need" in recv_message(s)            # this gateway runs without a tickerplant
    s.close()
    with pykx_connection(port) as conn:                                # still serving everyone else
        assert conn("margin", "FUND3").py()["sym"] == ["FUND3"]


def test_compressed_messages_both_ways(spawn, free_port, standin):
    port, _ = start_gateway(spawn, free_port, standin, "--control", "",
                            "--compress", "always")
    many = [f"ACC{i:04d}" for i in range(600)]
    request = sync([kx.SymbolAtom("margin"), kx.toq(np.array(many, dtype=object), ktype=kx.SymbolVector)])
    packed = compress(request)
    assert packed is not None and packed[2] == 1 and len(packed) < len(request) // 2
    s, _ = raw_login(port)
    s.sendall(packed)
    reply = recv_message(s)
    assert reply[2] == 1                                 # the large reply came back compressed too
    assert kx.deserialize(reply).py()["sym"] == many     # PyKX (kdb+'s own decoder) reads it
    s.close()
    with pykx_connection(port) as conn:                                # the PyKX client decompresses replies itself
        assert conn("margin", kx.toq(np.array(many, dtype=object), ktype=kx.SymbolVector)).py()["sym"] == many


# ---- subscriptions: .u.sub + async upd pushes from the real tickerplant -----------------------------------
def margin_batch(syms, im):
    n = len(syms)
    f = lambda v: np.full(n, v, dtype=np.float64)
    return {"time": np.full(n, np.datetime64("now", "ns")), "sym": np.array(syms, dtype=object),
            "model": np.array(["var"] * n, dtype=object), "ccy": np.array(["USD"] * n, dtype=object),
            "im": f(im), "vm": f(0.0), "requirement": f(im), "collateral": f(1.0), "excess": f(1.0 - im),
            "call": f(im - 1.0), "var": f(im), "es": f(im), "seq": np.arange(n, dtype=np.int64)}


def test_u_sub_pushes_upd_like_a_tickerplant(spawn, free_port, standin, tickerplant):
    port, _ = start_gateway(spawn, free_port, standin,
                            "--control", tickerplant.control)
    pub = Publisher("test.calc", endpoint=tickerplant.ingest)
    s, _ = raw_login(port, b"trader1:trader1")
    s.sendall(sync([kx.SymbolAtom(".u.sub"), kx.SymbolAtom("margin"), kx.SymbolAtom("")]))
    name, empty = kx.deserialize(recv_message(s)).py()
    assert name == "margin" and empty["sym"] == [] and "requirement" in empty

    def pushed():
        pub.publish_sync("margin", margin_batch(["FUND2", "FUND1"], 5.0), timeout=10)
        s.settimeout(1.0)
        try:
            return recv_message(s)
        except TimeoutError:
            return None
    rq = socket.create_connection(("127.0.0.1", port), timeout=10)    # the way kdb+tick's r.q subscribes
    rq.sendall(b"demo:demo\x03\x00")
    assert rq.recv(1) == b"\x03"
    rq.sendall(sync(b"(.u.sub[`;`];`.u `i`L)"))
    (margin_pair, alert_pair), (log_count, log_file) = kx.deserialize(recv_message(rq)).py()
    assert margin_pair[0] == "margin" and alert_pair[0] == "alert" and pd.isna(log_count) and log_file == ""
    rq.close()
    msg = wait_until(pushed, timeout=60, what="an upd push")       # the gateway's feed may still be connecting
    assert msg[1] == 0                                              # async, as a tickerplant publishes
    fn, table_name, rows = kx.deserialize(msg).py()
    assert (fn, table_name) == ("upd", "margin")
    assert rows["sym"] == ["FUND1"] and rows["im"] == [5.0]         # entitled rows only
    s.close()
    pub.close()


def test_sse_stream_conflates_margin_rows_but_never_alerts(spawn, free_port, standin, tickerplant):
    """With conflate=MS one margin event per period carries the newest row per (account, model);
    alerts pass as they come."""
    _, http_port = start_gateway(spawn, free_port, standin, "--control", tickerplant.control)
    token = base64.b64encode(b"demo:demo").decode()
    pub = Publisher("test.calc", endpoint=tickerplant.ingest)
    stream = urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{http_port}/stream?conflate=400", headers={"Authorization": f"Basic {token}"}), timeout=30)
    assert stream.readline().startswith(b": subscribed")
    events = []

    def read():
        event = None
        for _ in range(10_000):
            line = stream.readline()
            if not line:
                return
            if line.startswith(b"event: "):
                event = line[7:].strip().decode()
            elif line.startswith(b"data: "):
                events.append((event, json.loads(line[6:]), time.monotonic()))
                if event == "margin" and {r["sym"]: r["im"] for r in events[-1][1]}.get("FUND2") == 40.0:
                    return                                   # the last rows published
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_until(lambda: pub.publish_sync("margin", margin_batch(["FUND1"], 0.5), timeout=10) and events, 60,
               what="the gateway's feed connected")
    start = time.monotonic()
    for k in range(1, 41):                                   # 40 rows each for FUND1 and FUND2 over ~1 s
        pub.publish("margin", margin_batch(["FUND1", "FUND2"], float(k)))
        if k == 20:
            pub.publish("alert", alert_batch([alert_row(time.time_ns(), "FUND2", "threshold", "warn", "over")]))
        time.sleep(0.025)
    pub.flush(10)
    reader.join(10)
    assert not reader.is_alive(), "the last rows did not arrive"
    stream.close()
    margin = [(rows, t) for e, rows, t in events if e == "margin" and t >= start]
    assert len(margin) <= 6                                  # ~1 s of rows at one event per 0.4 s
    assert all(len(rows) == len({(r["sym"], r["model"]) for r in rows}) for rows, _ in margin)
    assert margin[-1][0] and {r["sym"]: r["im"] for r in margin[-1][0]} == {"FUND1": 40.0, "FUND2": 40.0}
    assert [rows[0]["text"] for e, rows, _ in events if e == "alert"] == ["over"]
    for bad in ("abc", "20000", "-1"):
        status, reply = http_json(http_port, f"/stream?conflate={bad}")
        assert status == 400 and "conflate" in reply["error"]
    pub.close()


# ---- HTTP JSON API ----------------------------------------------------------------------------------
def test_concurrent_first_requests_of_a_desk_user_all_see_the_desk(gateway):
    """The desk map is read once, by the first request; the others wait for it (they once saw no desk
    at all while it was being read)."""
    _, port = gateway
    answers = [None] * 8

    def margin(i):
        answers[i] = http_json(port, "/margin", auth="trader1:trader1")

    threads = [threading.Thread(target=margin, args=(i,)) for i in range(len(answers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [(status, sorted({r["sym"] for r in rows})) for status, rows in answers] == [(200, ["FUND1"])] * 8


def test_http_api(gateway):
    _, port = gateway
    status, doc = http_json(port, "/openapi.json", auth=None)
    assert status == 200 and {"/margin", "/whatif", "/positions", "/alerts", "/stream"} <= set(doc["paths"])
    status, rows = http_json(port, "/margin?account=FUND1")
    assert status == 200 and rows == [{"time": "2026-11-21T05:00:00.000000000Z", "sym": "FUND1", "im": 1.0, "seq": 0}]
    status, rows = http_json(port, "/margin", token="trader1-token")
    assert status == 200 and [r["sym"] for r in rows] == ["FUND1"]
    status, result = http_json(port, "/whatif", body={"account": "FUND1", "sym": "AMD", "qty": -100})
    assert status == 200 and result["delta"]["im"] == -10.0 and result["drivers"] == [{"sym": "AMD", "contribution": -100.0}]
    status, result = http_json(port, "/whatif", body={"account": "FUND1", "trades": [{"sym": "AMD", "qty": 1},
                                                                              {"sym": "NVDA", "qty": 2, "price": 10}]})
    assert status == 200 and [d["sym"] for d in result["drivers"]] == ["AMD", "NVDA"]
    status, rows = http_json(port, "/positions?account=FUND1")
    assert status == 200 and rows == [{"sym": "AMD", "qty": 4e6}]
    status, rows = http_json(port, "/alerts?account=FUND2&since=2026-11-21T00:00:00")
    assert status == 200 and rows[0]["sym"] == "FUND2"
    for path, kwargs, code, reason in [
        ("/margin", {"auth": "demo:bad"}, 401, "access"),
        ("/margin", {"auth": None}, 401, "access"),
        ("/margin?account=FUND2", {"token": "trader1-token"}, 403, "not entitled"),
        ("/positions", {}, 400, "account"),
        ("/whatif", {"body": b"{not json"}, 400, "json"),
        ("/whatif", {"body": {"account": "FUND1", "sym": "AMD", "qty": "ten"}}, 400, "qty"),
        ("/whatif", {"body": {"account": "FUND1", "sym": "AMD", "qty": 1, "extra": 1}}, 400, "unknown"),
        ("/whatif", {"body": {"account": "FUND2", "sym": "AMD", "qty": 1}, "token": "trader1-token"}, 403, "access"),
        ("/hedge?account=FUND1", {}, 400, "sym"),
        ("/hedge?account=FUND1&sym=AMD&target=-1", {}, 400, "target"),
        ("/hedge?account=FUND1&sym=AMD&target=inf", {}, 400, "target"),
        ("/hedge?account=FUND1&sym=" + "A" * 65, {}, 400, "limit"),
        ("/hedge", {"body": {"account": "FUND1", "sym": "AMD", "qty": 1}}, 400, "unknown"),
        ("/hedge", {"body": {"account": "FUND1", "sym": "AMD", "target": "none"}}, 400, "target"),
        ("/hedge?account=FUND2&sym=AMD", {"token": "trader1-token"}, 403, "access"),
        ("/stream?tables=fill", {}, 400, "table"),
        ("/stream", {}, 400, "nyi"),
        ("/nosuch", {}, 404, "Not Found"),
        ("/margin", {"body": {"account": "FUND1"}}, 405, "Not Allowed"),
    ]:
        status, reply = http_json(port, path, **kwargs)
        assert status == code and reason in reply["error"], (path, kwargs, status, reply)


def test_one_user_cannot_take_every_request_slot(gateway, standin):
    """Per user, api.MAX_RUNNING requests in progress and api.MAX_WAITING queued behind them; the
    rest are refused at once (HTTP 429, kdb+ 'limit); once the slow ones finish all were answered."""
    import aiohttp
    port, http_port = gateway
    extra = 12

    async def burst():
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer demo-token"},
                                         connector=aiohttp.TCPConnector(limit=0)) as session:
            async def one():
                async with session.post(f"http://127.0.0.1:{http_port}/whatif",
                                        json={"account": "SLOW", "sym": "AMD", "qty": 1}) as r:
                    return r.status, await r.json()
            tasks = [asyncio.create_task(one()) for _ in range(MAX_RUNNING + MAX_WAITING + extra)]
            for _ in range(300):                                   # the refusals come back first
                if sum(t.done() for t in tasks) >= extra:
                    break
                await asyncio.sleep(0.1)
            refused = [t.result() for t in tasks if t.done()]
            with pykx_connection(port) as conn:                    # the same user over kdb+ IPC
                with pytest.raises(kx.QError, match="limit: user demo has"):
                    conn("margin", "FUND1")
            standin.release.set()
            return refused, await asyncio.gather(*tasks)

    refused, replies = asyncio.run(burst())
    assert len(refused) == extra and all(status == 429 and "limit: user demo has" in body["error"]
                                         for status, body in refused)
    assert sorted(status for status, _ in replies) == [200] * (MAX_RUNNING + MAX_WAITING) + [429] * extra
    with pykx_connection(port) as conn:
        assert conn("margin", "FUND1").py()["sym"] == ["FUND1"]
