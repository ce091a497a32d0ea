"""The live parallel run through real processes (the demo stack: tickerplant, rdb, calc, prices,
gateway, the statements feedhandler and recon): statement files in, `ccpmargin`, `recon` and `recon`
alerts out, `recon[account]` over PyKX and HTTP, a bad file rejected whole, and a kill -9 of recon."""
from __future__ import annotations

import base64
import json
import math
import os
import signal
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import pykx_connection, wait_until

from common.rpc import rpc_answer
from stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("recon_stack"), ports="free", supervise=True, omsim=False,
              extra_args={"prices": ["--steps-per-sec", "2"]}, backoff_min=0.2)
    s.start(timeout=180)
    yield s
    s.stop()


def select(stack, table, account=None) -> dict:
    args = {"syms": [account]} if account else {}
    reply = rpc_answer(stack.endpoints["rdb_query"], "select", timeout=10, table=table, **args)
    return {c: np.array(v, dtype=object) if isinstance(v, list) else v for c, v in reply["table"].items()}


def drop(stack, name: str, lines: list[str]) -> None:
    """Writes a statement file the way a CCP drop should arrive: complete, then renamed into the folder."""
    folder = stack.state_dir / "statements"
    tmp = folder / f".{name}.part"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, folder / name)


def as_of(margin: dict, model: str, cutoff_ns: int) -> float:
    """The im of the last margin row of `model` with time <= cutoff (the test's own as-of)."""
    t = margin["time"].view(np.int64)
    m = (margin["model"] == model) & (t <= cutoff_ns)
    return float(margin["im"][m][np.argmax(t[m])]) if m.any() else math.nan


def iso(ns: int) -> str:
    return str(np.datetime64(ns, "ns"))


def http(stack, path, auth="demo:demo"):
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
    req = urllib.request.Request(f"http://127.0.0.1:{stack.endpoints['http_port']}{path}", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def recon_keys(stack) -> list[tuple]:
    r = select(stack, "recon")
    return list(zip(r["ccpseq"].tolist(), r["sym"].tolist(), r["kind"].tolist(),
                    r["cutoff"].view(np.int64).tolist(), r["model"].tolist()))


def test_statements_recon_rows_alerts_and_gateway(stack):
    wait_until(lambda: len(select(stack, "margin", "FUND2")["sym"]) >= 2 and len(select(stack, "margin", "FUND1")["sym"]) >= 2,
               90, what="margin rows of FUND1 and FUND2")
    m1, m2 = select(stack, "margin", "FUND1"), select(stack, "margin", "FUND2")
    # cut-offs at a margin row's own time (as-of includes it) and one ns before the next FUND2 row
    cut1 = int(m1["time"].view(np.int64)[-1])
    t2 = np.unique(m2["time"].view(np.int64))
    cut2 = int(t2[-1]) - 1 if len(t2) > 1 else int(t2[-1])
    model1 = str(m1["model"][-1])
    p1, p2 = as_of(m1, model1, cut1), as_of(m2, str(m2["model"][0]), cut2)
    actual1, actual2 = round(p1 * 1.05, 2), round(p2 * 2.0, 2)       # within 20%; 50% under: an alert
    drop(stack, "ccp_eod_1.csv", ["account,ccp,kind,cutoff,initial,maintenance",
                                  f"FUND1,LCH,eod,{iso(cut1)}Z,{actual1},{actual1 * 0.8:.2f}",
                                  f"FUND2,LCH,intraday,{iso(cut2)},{actual2},{actual2 * 0.8:.2f}"])
    wait_until(lambda: len(select(stack, "recon")["sym"]) >= 2, 30, what="recon rows")
    ccp = select(stack, "ccpmargin")
    assert ccp["sym"].tolist() == ["FUND1", "FUND2"] and ccp["kind"].tolist() == ["eod", "intraday"]
    assert ccp["source"].tolist() == ["ccp_eod_1.csv:2", "ccp_eod_1.csv:3"]
    assert ccp["cutoff"].view(np.int64).tolist() == [cut1, cut2]
    assert (stack.state_dir / "statements" / "done" / "ccp_eod_1.csv").exists()

    wait_until(lambda: {"FUND1", "FUND2"} <= set(select(stack, "recon")["sym"].tolist()), 30, what="both accounts")
    recon = select(stack, "recon")
    for account, margin, cutoff, actual in (("FUND1", m1, cut1, actual1), ("FUND2", m2, cut2, actual2)):
        mine = recon["sym"] == account
        assert sorted(recon["model"][mine].tolist()) == sorted(set(margin["model"].tolist()))
        for i in np.flatnonzero(mine):
            model = str(recon["model"][i])
            expected = as_of(margin, model, cutoff)
            assert recon["predicted"][i] == expected, (account, model)
            assert recon["actual"][i] == actual
            assert recon["diff"][i] == pytest.approx(expected - actual)
            assert recon["pct"][i] == pytest.approx(100 * (expected - actual) / actual)
    assert recon["pct"][(recon["sym"] == "FUND1") & (recon["model"] == model1)][0] == pytest.approx(100 * (p1 - actual1) / actual1)

    # FUND2's first model is 50% under the CCP: a recon alert naming the figure
    wait_until(lambda: "FUND2" in select(stack, "alert")["sym"][select(stack, "alert")["kind"] == "recon"].tolist(),
               30, what="the recon alert")
    alerts = select(stack, "alert")
    mine = (alerts["kind"] == "recon") & (alerts["sym"] == "FUND2") & (alerts["model"] == str(m2["model"][0]))
    assert mine.sum() == 1
    assert alerts["value"][mine][0] == pytest.approx(-50.0, abs=0.01) and alerts["threshold"][mine][0] == 20.0
    assert f"LCH intraday {iso(cut2)}" in str(alerts["text"][mine][0])
    ok = (alerts["kind"] == "recon") & (alerts["sym"] == "FUND1") & (alerts["model"] == model1)
    assert ok.sum() == 0

    # the gateway: PyKX and HTTP, entitled per account
    with pykx_connection(stack.endpoints["gateway_port"]) as q:
        result = q("recon", "FUND1").py()
        assert result["rows"]["sym"] == ["FUND1"] * len(result["rows"]["sym"])
        acc = result["accuracy"]
        i = acc["model"].index(model1)
        assert acc["n"][i] == 1 and acc["mape"][i] == pytest.approx(abs(100 * (p1 - actual1) / actual1))
        empty = q("recon", "FUTS1", 3).py()                  # no figure yet: empty rows and accuracy
        assert len(empty["rows"]["sym"]) == 0 and len(empty["accuracy"]["model"]) == 0
    body = http(stack, "/recon?account=FUND2&n=5")
    assert {r["sym"] for r in body["rows"]} == {"FUND2"}
    first = next(a for a in body["accuracy"] if a["model"] == str(m2["model"][0]))
    assert first["bias_pct"] == pytest.approx(-50.0, abs=0.01) and first["mae"] == pytest.approx(actual2 - p2)
    assert http(stack, "/recon?account=FUND1", "trader1:trader1")["rows"]
    assert http(stack, "/recon?account=FUTS1") == {"rows": [], "accuracy": []}
    with pytest.raises(urllib.error.HTTPError) as e:
        http(stack, "/recon?account=FUND2", "trader1:trader1")
    assert e.value.code == 403


def test_a_bad_statement_is_rejected_whole_with_file_line_and_field(stack):
    before = len(select(stack, "ccpmargin")["sym"])
    now = iso(int(np.datetime64("now", "ns").view(np.int64)))
    drop(stack, "ccp_bad.csv", ["account,ccp,kind,cutoff,initial,maintenance",
                                f"FUND1,LCH,eod,{now},1000,800",
                                f"FUND2,LCH,eod,{now},12x,800"])
    rejected = stack.state_dir / "statements" / "rejected"
    wait_until(lambda: (rejected / "ccp_bad.csv.error").exists(), 30, what="the rejection")
    reason = (rejected / "ccp_bad.csv.error").read_text()
    assert "ccp_bad.csv:3: field 'initial': not a number: '12x'" in reason
    assert (rejected / "ccp_bad.csv").exists()
    assert "ccp_bad.csv:3" in stack.log_path("statements").read_text()
    assert rpc_answer(stack.endpoints["statements_control"])["rejected"] == 1
    ccp = select(stack, "ccpmargin")
    assert len(ccp["sym"]) == before and not any(s.startswith("ccp_bad") for s in ccp["source"].tolist())


def test_recon_killed_and_restarted_loses_nothing_and_doubles_nothing(stack):
    wait_until(lambda: len(recon_keys(stack)) >= 2, 60, what="the first statement's recon rows")
    before = recon_keys(stack)
    recon_alerts = lambda: int((select(stack, "alert")["kind"] == "recon").sum())
    alerts_before = recon_alerts()
    pid = stack.kill("recon", signal.SIGKILL)
    cut = int(select(stack, "margin", "FUND3")["time"].view(np.int64)[-1])
    drop(stack, "ccp_eod_2.csv", ["account,ccp,kind,cutoff,initial,maintenance",
                                  f"FUND3,EUREX,eod,{iso(cut)},1.0,0.5"])
    wait_until(lambda: (stack.state_dir / "statements" / "done" / "ccp_eod_2.csv").exists(), 30, what="the drop")
    wait_until(lambda: stack.ready("recon") and stack.pid("recon") != pid, 60, what="recon restarted")
    wait_until(lambda: "FUND3" in {k[1] for k in recon_keys(stack)}, 30, what="FUND3's recon rows")
    after = recon_keys(stack)
    assert len(after) == len(set(after))                      # nothing doubled
    assert set(before) <= set(after)                          # nothing lost
    fund3 = [k for k in after if k[1] == "FUND3"]
    assert len(fund3) == len(set(select(stack, "margin", "FUND3")["model"].tolist()))
    # FUND3 at 1.0 is far off: one alert per model, and none of the earlier alerts again
    wait_until(lambda: recon_alerts() == alerts_before + len(fund3), 30, what="FUND3's alerts")
    status = rpc_answer(stack.endpoints["recon_query"])
    assert status["answered"] == len({k[:4] for k in after})



def test_statements_killed_between_publish_and_move_does_not_publish_again(stack):
    """A published file back in the folder (as after a kill between the publish and the move) is
    recognised from the journal by the restarted feedhandler and not published a second time."""
    folder = stack.state_dir / "statements"
    wait_until(lambda: (folder / "done" / "ccp_eod_1.csv").exists(), 60, what="the first statement done")
    before = select(stack, "ccpmargin")["source"].tolist()
    pid = stack.kill("statements", signal.SIGKILL)
    os.replace(folder / "done" / "ccp_eod_1.csv", folder / "ccp_eod_1.csv")
    wait_until(lambda: stack.ready("statements") and stack.pid("statements") != pid, 60, what="statements restarted")
    wait_until(lambda: (folder / "done" / "ccp_eod_1.csv").exists(), 30, what="the file moved to done/")
    assert rpc_answer(stack.endpoints["statements_control"])["already"] == 1
    assert select(stack, "ccpmargin")["source"].tolist() == before
    assert "already published today" in stack.log_path("statements").read_text()

# ---- the statement reader and the recon settings: bad input named by file:line and field --------------

HEADER = "account,ccp,kind,cutoff,initial,maintenance"


@pytest.mark.parametrize("row, reason", [
    ("FUND1,LCH,eod,2026-12-05T17:00:00,100,80,9", "s.csv:2: expected 6 fields, got 7"),
    (",LCH,eod,2026-12-05T17:00:00,100,80", "s.csv:2: field 'account': empty"),
    ("FUND1,LCH,weekly,2026-12-05T17:00:00,100,80", "s.csv:2: field 'kind': 'weekly' is not one of eod, intraday"),
    ("FUND1,LCH,eod,2026-12-05,100,80", "s.csv:2: field 'cutoff': not a timestamp"),
    ("FUND1,LCH,eod,2026-13-05T17:00:00,100,80", "s.csv:2: field 'cutoff': not a timestamp"),
    ("FUND1,LCH,eod,2026-12-05T17:00:00,-5,80", "s.csv:2: field 'initial': must be a positive number"),
    ("FUND1,LCH,eod,2026-12-05T17:00:00,100,inf", "s.csv:2: field 'maintenance': must be a positive number"),
])
def test_read_statement_names_file_line_and_field(tmp_path, row, reason):
    from common.ccpfile import CcpFileError, read_statement
    path = tmp_path / "s.csv"
    path.write_text(f"{HEADER}\n{row}\n")
    with pytest.raises(CcpFileError, match=reason.replace("(", r"\(")):
        read_statement(path)


def test_read_statement_duplicates_header_and_good_file(tmp_path):
    from common.ccpfile import CcpFileError, read_statement
    path = tmp_path / "s.csv"
    path.write_text(f"{HEADER}\nFUND1,LCH,eod,2026-12-05T17:00:00Z,100,80\n\nFUND1,LCH,eod,2026-12-05T17:00:00,90,70\n")
    with pytest.raises(CcpFileError, match="s.csv:4: field 'account': FUND1 LCH eod 2026-12-05T17:00:00 already on line 2"):
        read_statement(path)
    path.write_text("account,ccp,cutoff,initial,maintenance\n")
    with pytest.raises(CcpFileError, match="s.csv:1: header has no 'kind' column"):
        read_statement(path)
    path.write_text(f"{HEADER}\n")
    with pytest.raises(CcpFileError, match="s.csv: no data rows"):
        read_statement(path)
    path.write_text(f"{HEADER}\nFUND1,LCH,EOD,2026-12-05T17:00:00.5Z,100,80\nFUND2,EUREX,intraday,2026-12-05T11:30:00,5,4\n")
    batch = read_statement(path)
    assert batch["kind"].tolist() == ["eod", "intraday"] and batch["source"].tolist() == ["s.csv:2", "s.csv:3"]
    assert batch["cutoff"][0] == np.datetime64("2026-12-05T17:00:00.5", "ns")


@pytest.mark.parametrize("text, reason", [
    ("tolerance_pct = -1\n", "tolerance_pct must be a number >= 0"),
    ("severity = 'info'\n", "severity must be one of"),
    ("history_rows = 0\n", "history_rows must be an integer"),
    ("tolerance = 5\n", r"unknown key\(s\) \['tolerance'\]"),
])
def test_recon_config_names_the_bad_key(tmp_path, text, reason):
    from recon.engine import ReconConfig
    path = tmp_path / "recon.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=reason):
        ReconConfig.load(path)


def test_history_keeps_the_newest_rows_and_answers_as_of():
    from recon.engine import History
    h = History(limit=3)
    for t, v in ((10, 1.0), (30, 3.0), (20, 2.0), (40, 4.0)):
        h.add(t, v)
    assert list(h.times) == [20, 30, 40]                 # 10 dropped; 20 inserted in order
    assert math.isnan(h.as_of(19)) and h.as_of(20) == 2.0 and h.as_of(39) == 3.0 and h.as_of(99) == 4.0


def test_a_figure_alerted_but_not_answered_is_answered_again_without_a_second_alert():
    """The window recon/engine.py describes: killed after the alert, before the recon rows. The
    journal then holds the alert only; the restarted engine answers the figure, raising no alert."""
    from common.alerts import alert_batch
    from recon.engine import Recon, ReconConfig, recon_batch
    ns = lambda s: np.array([np.datetime64(s, "ns")])
    obj = lambda *v: np.array(v, dtype=object)
    margin = {"time": ns("2026-12-05T10:00:00"), "sym": obj("FUND1"), "model": obj("fhs"), "im": np.array([50.0])}
    figure = {"time": ns("2026-12-05T18:00:00"), "sym": obj("FUND1"), "ccp": obj("LCH"), "kind": obj("eod"),
              "cutoff": ns("2026-12-05T17:00:00"), "initial": np.array([100.0]), "maintenance": np.array([80.0]),
              "source": obj("s.csv:2")}
    first = Recon(ReconConfig())
    first.apply("margin", margin, 1)
    first.apply("ccpmargin", figure, 2)
    rows, alerts = first.answer(0)
    assert [(r["predicted"], r["diff"], r["pct"], r["ccpseq"]) for r in rows] == [(50.0, -50.0, -50.0, 2)]
    assert len(alerts) == 1 and alerts[0]["value"] == -50.0
    again = Recon(ReconConfig())                       # the restart: replay of margin, ccpmargin, the alert
    again.apply("margin", margin, 1)
    again.apply("ccpmargin", figure, 2)
    again.apply("alert", alert_batch(alerts), 3)
    rows2, alerts2 = again.answer(1)
    assert [r["pct"] for r in rows2] == [-50.0] and alerts2 == []
    done = Recon(ReconConfig())                        # and with the recon rows journaled too: nothing
    for table, batch, seq in (("margin", margin, 1), ("ccpmargin", figure, 2), ("alert", alert_batch(alerts), 3),
                              ("recon", recon_batch(rows2), 4)):
        done.apply(table, batch, seq)
    assert done.answer(2) == ([], [])


def test_a_recon_rule_sets_the_tolerance_and_severity_of_an_account_or_its_desk():
    """config/recon.toml's tolerance (20%) until an `alertrule` of kind recon applies: the account's
    over its desk's; a disabled rule leaves the default."""
    from common.alertrules import Rule, rule_batch
    from recon.engine import Recon, ReconConfig
    ns = lambda s: np.array([np.datetime64(s, "ns")])
    obj = lambda *v: np.array(v, dtype=object)

    def alerts_for(rules, actual):
        engine = Recon(ReconConfig())
        engine.apply("account", {"time": ns("2026-12-05T08:00:00"), "sym": obj("FUND1"), "desk": obj("TECH")}, 1)
        if rules:
            engine.apply("alertrule", rule_batch(rules), 2)
        engine.apply("margin", {"time": ns("2026-12-05T10:00:00"), "sym": obj("FUND1"), "model": obj("fhs"),
                                "im": np.array([100.0])}, 3)
        engine.apply("ccpmargin", {"time": ns("2026-12-05T18:00:00"), "sym": obj("FUND1"), "ccp": obj("LCH"),
                                   "kind": obj("eod"), "cutoff": ns("2026-12-05T17:00:00"),
                                   "initial": np.array([actual]), "maintenance": np.array([actual]),
                                   "source": obj("s.csv:2")}, 4)
        return [(a["severity"], a["threshold"]) for a in engine.answer(0)[1]]
    desk = Rule("TECH.recon", "desk", "TECH", "recon", 40.0, severity="high", time=1)
    mine = Rule("FUND1.recon", "account", "FUND1", "recon", 5.0, time=2)
    assert alerts_for([], 125.0) == []                                # -20%: within the default 20%
    assert alerts_for([], 150.0) == [("warn", 20.0)]                  # -33%
    assert alerts_for([desk], 150.0) == []                            # within the desk's 40%
    assert alerts_for([desk], 200.0) == [("high", 40.0)]              # -50%
    assert alerts_for([desk, mine], 110.0) == [("warn", 5.0)]         # -9%: the account's rule wins
    off = Rule("TECH.recon", "desk", "TECH", "recon", 40.0, enabled=False, time=3)
    assert alerts_for([desk, off], 150.0) == [("warn", 20.0)]          # disabled: the default again
