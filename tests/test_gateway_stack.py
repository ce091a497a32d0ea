"""The gateway on the real stack: tickerplant, reference data, simulated prices, rdb, calc, gateway,
every one a real process; clients are the real PyKX client (default settings), raw HTTP and SSE."""
from __future__ import annotations

import asyncio
import base64
import json
import signal
import time
import urllib.request

import pandas as pd
import pykx as kx
import pytest
from conftest import gateway_stack, pykx_connection


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with gateway_stack(tmp_path_factory, "gateway_stack", prices=True) as s:
        yield s


def test_pykx_named_api_on_the_stack(stack):
    port = stack.port
    with pykx_connection(port) as conn:
        margin = conn("margin", "FUND1")
        assert isinstance(margin, kx.Table)
        rows = margin.py()
        assert set(rows["sym"]) == {"FUND1"} and len(rows["model"]) >= 1
        assert all(im > 0 for im in rows["im"]) and isinstance(rows["seq"][0], int)
        accounts = conn("accounts").py()
        assert {"FUND1", "FUND2", "FUND3"} <= set(accounts)
        assert sorted(set(conn("margin").py()["sym"])) == sorted(accounts)

        hedge = conn("whatif", "FUND1", "SPY", -200_000.0, float("nan")).py()
        assert hedge["delta"]["requirement"] < 0                     # the sector hedge lowers the requirement
        assert hedge["after"]["im"] == pytest.approx(hedge["before"]["im"] + hedge["delta"]["im"])
        trades = kx.toq(pd.DataFrame({"sym": ["SPY", "AMD"], "qty": [-100_000.0, -500_000.0],
                                      "price": [float("nan"), float("nan")]}))
        basket = conn("whatif", "FUND1", trades).py()
        assert basket["delta"]["requirement"] < 0

        positions = conn("positions[`FUND1]")
        assert isinstance(positions, kx.Table) and "AMD" in positions.py()["sym"]
        drivers = conn("drivers", "FUND1").py()
        assert drivers["sym"][0] == "AMD"                            # the large semiconductor position
        stress = conn("stress", "FUND1", "tech_crash").py()
        assert stress["call"] >= 0 and stress["loss"] > 0
        assert isinstance(conn("alerts", "FUND1"), kx.Table)
        result = conn("select from margin where sym=`FUND1")        # q-sql, evaluated by the rdb
        assert isinstance(result, kx.Table) and set(result.py()["sym"]) == {"FUND1"}
        by_sym = conn("select count i by sym from quote where sym in `AMD`SPY")
        assert isinstance(by_sym, kx.KeyedTable) and len(by_sym) == 2
        assert isinstance(conn("exec im from margin"), kx.FloatVector)
        joined = conn("aj[`sym`time; select time, sym, account from position; select time, sym, price from quote]")
        assert isinstance(joined, kx.Table) and "price" in joined.py()
        bars = conn("select hi:max price by 1 xbar time.minute, sym from quote where sym=`AMD")
        assert isinstance(bars, kx.KeyedTable) and bars.py()  # minute buckets as q minutes
        with pytest.raises(kx.QError, match="parse"):
            conn("select frm margin")

    with pykx_connection(port, "trader1", "trader1") as conn:
        assert set(conn("margin").py()["sym"]) == {"FUND1"}
        with pytest.raises(kx.QError, match="access"):
            conn("whatif", "FUND2", "SPY", -10.0, float("nan"))


def test_pykx_subscription_receives_live_margin(stack):
    port = stack.port

    async def first_upd():
        conn = await kx.RawQConnection("127.0.0.1", port, username="trader1", password="trader1")
        try:
            conn(".u.sub", "margin", "")
            conn.poll_send()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                msg = conn.poll_recv()
                if isinstance(msg, kx.List):
                    return msg.py()
                await asyncio.sleep(0.05)
            return None
        finally:
            await conn.close()
    upd = asyncio.run(first_upd())
    assert upd is not None, "no upd pushed within 60 s"
    fn, table_name, rows = upd
    assert (fn, table_name) == ("upd", "margin")
    assert set(rows["sym"]) == {"FUND1"} and all(v > 0 for v in rows["requirement"])


def http(port, path, body=None, auth="demo:demo"):
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
    data = None if body is None else json.dumps(body).encode()
    if data:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_http_and_sse_on_the_stack(stack):
    port = stack.http_port
    rows = http(port, "/margin?account=FUND1")
    assert {r["sym"] for r in rows} == {"FUND1"} and rows[0]["time"].endswith("Z")
    result = http(port, "/whatif", {"account": "FUND1", "trades": [{"sym": "SPY", "qty": -200000}]})
    assert result["delta"]["requirement"] < 0
    assert any(p["sym"] == "AMD" for p in http(port, "/positions?account=FUND1"))
    assert isinstance(http(port, "/alerts?account=FUND1"), list)

    request = urllib.request.Request(f"http://127.0.0.1:{port}/stream?tables=margin&account=FUND2",
                                     headers={"Authorization": "Bearer demo-token"})
    with urllib.request.urlopen(request, timeout=60) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        event = None
        for _ in range(10_000):
            line = stream.readline().decode().strip()
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "margin":
                data = json.loads(line[5:])
                break
        assert {r["sym"] for r in data} == {"FUND2"} and data[0]["requirement"] > 0


def test_the_gateway_stops_on_sigterm_with_a_stream_open(stack):
    """A client holding /stream open does not keep the gateway from stopping: after SIGTERM the
    requests in progress get a short grace, then the stream is cut and the process exits 0.
    (Runs last in this module: it stops the module's gateway.)"""
    gateway = stack.procs[-1]
    request = urllib.request.Request(f"http://127.0.0.1:{stack.http_port}/stream?tables=margin",
                                     headers={"Authorization": "Bearer demo-token"})
    with urllib.request.urlopen(request, timeout=60) as stream:
        assert stream.readline().decode().startswith(": subscribed")
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(30) == 0
        for _ in range(10_000):                     # the stream ends (cut), it does not hang
            if not stream.readline():
                break
