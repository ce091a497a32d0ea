"""Hostile clients at the gateway's edges (issue 22), on the real stack: tickerplant, reference data,
rdb, calc and gateway are real processes; the clients are raw sockets, the real PyKX client and raw
HTTP. After each case the stack still answers a normal margin, what-if and fill, no process has
died, and every process's memory stays within a bound."""
from __future__ import annotations

import json
import re
import socket
import struct
import urllib.error
import urllib.request

import numpy as np
import pykx as kx
import pytest
from conftest import GatewayStack, Spawner, pykx_connection, wait_until
from test_gateway_unit import raw_login, recv_message

from tickerplant.client import Publisher

MEMORY_BOUND = 400 << 20         # growth of any process's resident memory over the whole module
# what a Python exception's text looks like; no reply may carry one
PYTHON_TEXT = re.compile(r"[A-Z][a-z]+(Error|Exception)|Traceback|cyfunction|Python int|object is not")


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) << 10 for line in f if line.startswith("VmRSS:"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gateway_hostile")
    spawn = Spawner(folder)
    try:
        s = GatewayStack(spawn, folder, "--http-header-timeout", 2, "--http-body-timeout", 2)
        pub = Publisher("test.hostile", endpoint=s.tp.ingest)
        stack = {"port": s.port, "http": s.http_port, "procs": s.procs, "pub": pub, "fills": 0}
        healthy(stack)
        stack["rss"] = [rss(p.pid) for p in s.procs]
        yield stack
        pub.close()
    finally:
        spawn.close()


def fill(sym: str, account: str, qty: float, execid: str) -> dict:
    s = lambda v: np.array([v], dtype=object)
    return {"time": np.array([np.datetime64("now", "ns")]), "sym": s(sym), "account": s(account),
            "qty": np.array([qty]), "price": np.array([100.0]), "execid": s(execid), "orderid": s("O" + execid),
            "exectype": s("F"), "refexecid": s(""), "session": s("TEST"), "status": s("ok")}


def healthy(stack) -> None:
    """A normal margin, what-if and fill through the gateway; every process alive, memory bounded."""
    assert [p.pid for p in stack["procs"] if p.poll() is not None] == []
    with pykx_connection(stack["port"]) as conn:
        assert "FUND1" in conn("margin", "FUND1").py()["sym"]
        assert "delta" in conn("whatif", "FUND1", "SPY", -1000.0, float("nan")).py()
        stack["fills"] += 1
        execid = f"HOSTILE{stack['fills']}"
        stack["pub"].publish_sync("fill", fill("SPY", "FUND1", 10.0, execid), timeout=10)
        wait_until(lambda: conn(f"select from fill where execid=`{execid}").py()["qty"] == [10.0], 30,
                   what="the fill in the rdb")
    status, body = http(stack["http"], "/margin?account=FUND1")
    assert status == 200 and {r["sym"] for r in body} == {"FUND1"}
    if "rss" in stack:
        grown = [rss(p.pid) - before for p, before in zip(stack["procs"], stack["rss"])]
        assert max(grown) < MEMORY_BOUND, grown


def http(port, path, body=None, auth="demo:demo"):
    import base64
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST" if body else "GET",
                                     headers={"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def q_error(reply: bytes) -> str:
    assert reply[8] == 0x80, reply[:64]
    text = reply[9:-1].decode()
    assert not PYTHON_TEXT.search(text), text
    return text


def sync_body(body: bytes) -> bytes:
    return struct.pack("<BBBBI", 1, 1, 0, 0, len(body) + 8) + body


def sync_text(text: bytes) -> bytes:
    return sync_body(b"\x0a\x00" + struct.pack("<i", len(text)) + text)


# ---- kdb+ IPC -------------------------------------------------------------------------------------
def test_deeply_nested_list_is_refused_not_a_crash(stack):
    s, _ = raw_login(stack["port"])
    s.settimeout(30)
    for levels in (103_203, 1_000, 65):       # the 619 KB segfault, the RecursionError, just over the limit
        msg = sync_body(b"\x00\x00\x01\x00\x00\x00" * levels + b"\xf9" + b"\x00" * 8)
        s.sendall(msg)
        assert q_error(recv_message(s)).startswith("limit: nested deeper than 64 levels")
    s.sendall(sync_body(b"\x00\x00\x01\x00\x00\x00" * 64 + b"\xf9" + b"\x2a" + b"\x00" * 7))
    assert q_error(recv_message(s)).startswith("type: expected a string or a list")   # 64 levels: read
    s.close()
    healthy(stack)


def test_huge_account_list_is_deduplicated_and_bounded(stack):
    with pykx_connection(stack["port"]) as conn:
        with pytest.raises(kx.QError, match="limit: a list of 1000000 items"):
            conn("margin", kx.SymbolVector(["FUND1"] * 1_000_000))
        rows = conn("margin", kx.SymbolVector(["FUND1"] * 100_000)).py()       # one account, asked 100,000 times
        assert set(rows["sym"]) == {"FUND1"} and len(rows["sym"]) == len(conn("margin", "FUND1").py()["sym"])
        with pytest.raises(kx.QError, match="limit: 1001 distinct accounts"):
            conn("margin", kx.SymbolVector([f"A{i}" for i in range(1001)]))
        with pytest.raises(kx.QError, match="limit: a basket of 1001 trades"):
            conn("whatif", "FUND1", kx.toq({"sym": kx.SymbolVector(["SPY"] * 1001), "qty": np.ones(1001)}))
    with pykx_connection(stack["port"], "trader1", "trader1") as conn:
        with pytest.raises(kx.QError, match="access: user trader1 is not entitled to account FUND2"):
            conn("margin", kx.SymbolVector(["FUND1"] * 5000 + ["FUND2"]))
    healthy(stack)


def test_error_replies_are_q_style_never_python_text(stack):
    s, _ = raw_login(stack["port"])
    s.settimeout(30)
    margin = b"\xf5margin\x00"
    cases = {
        "symbol atom not UTF-8": sync_body(b"\x00\x00\x02\x00\x00\x00" + margin + b"\xf5\xff\xfe\x00"),
        "symbol vector not UTF-8": sync_body(b"\x00\x00\x02\x00\x00\x00" + margin + b"\x0b\x00\x02\x00\x00\x00a\xff\x00b\x00"),
        "function name not UTF-8": sync_body(b"\x00\x00\x01\x00\x00\x00\xf5\xc3\x28\x00"),
        "float for accounts": sync_body(b"\x00\x00\x02\x00\x00\x00" + margin + b"\xf7" + struct.pack("<d", 1.5)),
        "an enumeration": sync_body(b"\x14\x00\x01\x00\x00\x00\x00\x00\x00\x00"),
        "a lambda": sync_body(b"\x64\x00\x0a\x00\x03\x00\x00\x00{x}"),
        "an error object": sync_body(b"\x80oops\x00"),
        "trailing bytes": sync_body(b"\xf9" + b"\x00" * 8 + b"junk"),
        "long too large": sync_text(b"alerts[;99999999999999999999]"),
        "bad string escape": sync_text(b'alerts[;"\\x"]'),
        "bad timestamp": sync_text(b"alerts[;2026.13.45D00:00]"),
        "infinite qty": bytes(kx.serialize(kx.toq(["whatif", kx.SymbolAtom("FUND1"), kx.SymbolAtom("SPY"),
                                                   kx.FloatAtom(float("inf")), kx.FloatAtom(1.0)]), mode=6, wait=1).copy()),
    }
    texts = {}
    for name, msg in cases.items():
        s.sendall(msg)
        texts[name] = q_error(recv_message(s))
    assert texts["symbol atom not UTF-8"] == texts["symbol vector not UTF-8"] == "type: a symbol is not valid UTF-8"
    assert texts["an enumeration"].startswith("type: the gateway does not accept q type 20h")
    assert texts["a lambda"].startswith("type: the gateway does not accept q type 100h")
    assert texts["trailing bytes"].startswith("badmsg: 4 bytes after the end")
    assert texts["long too large"].startswith("limit: 99999999999999999999 does not fit in a long")
    assert texts["infinite qty"] == "type: qty must be finite"
    s.close()
    healthy(stack)


def test_nul_in_a_journaled_symbol_never_makes_a_reply_undecodable(stack):
    """A fill whose sym holds a NUL (as a FIX 55=AMD<NUL> once booked) is in the journal and the rdb;
    every reply that carries it decodes, with the NUL written as the visible escape \\000."""
    stack["pub"].publish_sync("fill", fill("AMD\x00", "FUND3", 5.0, "NUL1"), timeout=10)
    with pykx_connection(stack["port"]) as conn:
        rows = wait_until(lambda: conn("select from fill where execid=`NUL1").py()["sym"], 30, what="the NUL fill")
        assert rows == ["AMD\\000"]
        everything = conn("select from fill").py()
        assert "AMD\\000" in everything["sym"]
        conn("positions", "FUND3").py()
        conn("alerts", "").py()
    status, body = http(stack["http"], "/positions?account=FUND3")
    assert status == 200
    healthy(stack)


def test_log_lines_are_rate_limited(stack):
    """50 connections closed for bad framing log at most gateway.ratelog.BURST lines per minute
    (twice that if a minute's window ends during the test)."""
    from gateway.ratelog import BURST
    log_path = stack["procs"][3].log_path
    closed_lines = lambda: log_path.read_text(errors="replace").count("; connection closed")
    before = closed_lines()
    for _ in range(50):
        s, _ = raw_login(stack["port"])
        s.sendall(b"\x07\x01\x00\x00\x10\x00\x00\x00" + b"x" * 8)     # unknown byte order: closed
        assert s.recv(1) == b""
        s.close()
    assert 0 < closed_lines() - before <= 2 * BURST
    healthy(stack)


# ---- HTTP -----------------------------------------------------------------------------------------
def raw_http(port: int, data: bytes, wait: float = 30.0) -> bytes:
    """What the gateway answers to raw bytes, read until it closes the connection (or `wait` s)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    s.sendall(data)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except TimeoutError:
        pass
    s.close()
    return out


def json_status(reply: bytes) -> tuple[int, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), reply[:300]
    return int(head.split()[1]), json.loads(body)


AUTH = b"Authorization: Basic ZGVtbzpkZW1v\r\n"


def test_http_hostile_bodies_get_json_answers(stack):
    port = stack["http"]
    deep = b"[" * 1000 + b"]" * 1000
    status, body = http(port, "/whatif", deep)
    assert status == 400 and body["error"] == "json: nested deeper than 16 levels"
    deep_in_object = b'{"account": "FUND1", "trades": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert http(port, "/whatif", deep_in_object) == (400, {"error": "json: nested deeper than 16 levels"})
    huge = raw_http(port, b"POST /whatif HTTP/1.1\r\nHost: x\r\n" + AUTH
                    + b"Content-Length: 9223372036854775808\r\nContent-Type: application/json\r\n\r\n{")
    status, body = json_status(huge)
    assert status in (400, 413) and body["error"]
    chunked = b"POST /whatif HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Transfer-Encoding: chunked\r\n\r\n"
    status, body = json_status(raw_http(port, chunked + b"ffffffffffffffff\r\n{"))
    assert status in (400, 408, 413) and body["error"]
    status, body = json_status(raw_http(port, chunked + b"10\r\n{\"a\"\r\n"))           # a short chunk
    assert status == 408 and body["error"].startswith("timeout: the body did not arrive")
    status, body = json_status(raw_http(port, b"GARBAGE\x01 / HTTP/1.1\r\n\r\n"))      # protocol-level 400
    assert status == 400 and body["error"].startswith("bad request")
    reply = raw_http(port, b"DELETE /margin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + AUTH + b"\r\n")
    assert json_status(reply)[0] == 405 and b"\r\nallow: get" in reply.lower()
    status, body = http(port, "/whatif", json.dumps({"account": "FUND1", "sym": "SPY", "qty": 10**400}).encode())
    assert status == 400 and body == {"error": "type: qty is out of range"}
    healthy(stack)


def test_http_request_smuggling_huge_qty_and_long_names_are_refused(stack):
    """Fuzz findings: a request line without HTTP/1.x (read as HTTP/0.9, the next line a header) got
    200; a what-if of 2^63 shares got 200, one priced `NaN` (not JSON) too; an unknown 2,500-character
    account, or a 10,000-character symbol sent as a whole kdb+ message, came back whole."""
    port = stack["http"]
    status, body = json_status(raw_http(port, b"GET /margin\r\nX-Injected: 1 HTTP/1.1\r\nHost: x\r\n" + AUTH
                                        + b"Connection: close\r\n\r\n"))
    assert status == 400 and "HTTP/1.0 or HTTP/1.1" in body["error"]
    status, body = http(port, "/whatif", json.dumps({"account": "FUND1", "sym": "SPY", "qty": 2**63}).encode())
    assert status == 400 and "at most 2^53" in body["error"]
    status, body = http(port, "/whatif", json.dumps({"account": "FUND1" * 500, "sym": "SPY", "qty": 1}).encode())
    assert status == 400 and body["error"] == "limit: account: a name of 2500 characters, at most 64"
    status, body = http(port, "/margin?account=" + "X" * 3000)
    assert status == 400 and len(body["error"]) < 100
    with pykx_connection(stack["port"]) as conn:
        with pytest.raises(kx.QError, match="at most 64"):
            conn("positions", "FUND1" * 500)
    status, body = http(port, "/whatif", b'{"account": "FUND1", "sym": "SPY", "qty": 1, "price": NaN}')
    assert status == 400 and "NaN and Infinity are not JSON" in body["error"]
    s, _ = raw_login(stack["port"])
    s.settimeout(30)
    s.sendall(sync_body(b"\xf5" + b"FUND1" * 2000 + b"\x00"))      # a 10,000-character symbol as the message
    text = q_error(recv_message(s))
    assert text.startswith("type: send") and len(text) <= 300
    s.close()
    healthy(stack)


def test_slowloris_connections_are_cut(stack):
    socks = [socket.create_connection(("127.0.0.1", stack["http"]), timeout=1) for _ in range(5)]
    head = b"GET /margin?account=FUND1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    open_ = list(socks)
    for i in range(30):                         # one byte a second each; the header timeout is 2 s
        for s in list(open_):
            try:
                s.sendall(head[i:i + 1])
                if s.recv(1) == b"":
                    open_.remove(s)
            except TimeoutError:
                pass
            except OSError:
                open_.remove(s)
        if not open_:
            break
    assert open_ == []
    for s in socks:
        s.close()
    healthy(stack)
