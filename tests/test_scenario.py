"""The MISSION scenario end to end on the demo data, every part a real process: tickerplant, reference
data feed, simulated price feed, calc. The antitrust shock on AMD (price drop, volatility spike in it
and its sector) raises the demo fund's VaR and brings alerts naming the drivers and the stress
result; the tech sector crash stress predicts a call using most of the cash buffer; a what-if short
SPY hedge lowers the forecast call, confirmed by a new run after the hedge trade (the hedge fill is
published straight into the tickerplant, as the FIX handler would); the SPY hedge sizing's minimum
lowers the requirement, the call and the stress call."""
import numpy as np
import pytest
from conftest import wait_until
from test_calc_recovery import Stack, calc_config_file, fill

from common.rpc import RpcClient
from tickerplant.client import Subscriber

HEDGE = -200_000          # SPY shares sold short


def fund1(client):
    rows = client.call("margin", accounts=["FUND1"])["margin"]
    return {m: {k: rows[k][i] for k in ("im", "var", "es", "call", "requirement")} for i, m in enumerate(rows["model"])}


def amd_mark(client):
    pos = client.call("positions", account="FUND1")["positions"]
    return pos["mark"][pos["sym"].index("AMD")]


def test_mission_scenario(spawn, free_port, tmp_path, repo_root):
    stack = Stack(spawn, free_port, tmp_path / "stack", calc_config_file(tmp_path, repo_root))
    refdata = spawn("feedhandlers.refdata", "--ingest", stack.ingest)
    assert refdata.wait(60) == 0
    prices_control = f"tcp://127.0.0.1:{free_port()}"
    spawn("feedhandlers.prices", "--ingest", stack.ingest, "--control", prices_control, "--steps-per-sec", "4",
          "--seed", "11")
    stack.start_calc()
    client = RpcClient(stack.query, timeout=10.0)
    wait_until(lambda: client.call("status")["counters"].get("quote", 0) > 100, 60, what="quotes reaching calc")
    before = fund1(client)
    stress_before = client.call("stress", account="FUND1", scenario="tech_crash")
    mark_before = amd_mark(client)

    send = spawn("feedhandlers.prices", "--send", "antitrust AMD", "--control", prices_control)
    assert send.wait(30) == 0
    wait_until(lambda: amd_mark(client) < 0.9 * mark_before, 30, what="the AMD drop reaching calc")
    after = fund1(client)
    for model in ("fhs", "param"):
        assert after[model]["var"] > 1.2 * before[model]["var"]              # the vol spike dominates the drop

    stress = client.call("stress", account="FUND1", scenario="tech_crash")
    assert stress["call"] > stress_before["call"]
    assert stress["buffer_used"] > 0.6                                         # most of the cash buffer
    assert stress["drivers"][0][0] == "AMD"

    alerts = []
    sub = Subscriber("test.alerts", control=stack.control, tables=["alert"],
                     on_batch=lambda t, cols, seq: alerts.extend(zip(cols["sym"].tolist(), cols["kind"].tolist(),
                                                                     cols["drivers"].tolist(), cols["stress"].tolist(),
                                                                     cols["text"].tolist())))
    sub.start()
    wait_until(lambda: sub.poll(100) >= 0 and any(a[0] == "FUND1" and a[1] == "stresscall" for a in alerts), 30,
               what="a stress call alert for FUND1")
    sub.close()
    fund1_alerts = [a for a in alerts if a[0] == "FUND1"]
    assert all(a[2].startswith("AMD:") for a in fund1_alerts)                  # AMD drives the requirement
    assert all(np.isfinite(a[3]) and a[3] > 0 for a in fund1_alerts)           # with the stress loss

    whatif = client.call("whatif", account="FUND1", trades={"sym": ["SPY"], "qty": [HEDGE], "price": [np.nan]})
    assert whatif["stress"]["after"] < 0.9 * whatif["stress"]["before"]      # the stress call falls >10%
    assert whatif["after"]["call"] < whatif["before"]["call"] and whatif["after"]["im"] < whatif["before"]["im"]

    sized = client.call("hedge", account="FUND1", sym="SPY")                   # hedge sizing (calc.hedge)
    assert sized["minimum"]["qty"] < 0 and sized["minimum"]["requirement"] < sized["now"]["requirement"]
    assert sized["minimum"]["call"] < sized["now"]["call"]
    assert sized["minimum"]["stress_call"] < sized["now"]["stress_call"]

    unhedged = fund1(client)["fhs"]["im"]
    spy = client.call("positions", account="FUND3")["positions"]
    stack.send("fill", fill("SPY", "FUND1", float(HEDGE), spy["mark"][spy["sym"].index("SPY")], "HEDGE1"))
    confirmed = client.call("stress", account="FUND1", scenario="tech_crash")   # prices kept moving meanwhile
    assert confirmed["call"] == pytest.approx(whatif["stress"]["after"], rel=0.05)
    assert fund1(client)["fhs"]["im"] < unhedged
    client.close()
