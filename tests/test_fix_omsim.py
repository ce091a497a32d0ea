"""The OMS simulator process (`python -m feedhandlers.omsim`) against the FIX feedhandler and a tickerplant."""
from __future__ import annotations

from collections import Counter

from conftest import wait_until
from test_fix_acceptor import Stack, make_stack  # noqa: F401 (make_stack is a fixture)


def run_omsim(stack: Stack, *args) -> str:
    proc = stack.spawn("feedhandlers.omsim", "--port", stack.fix_port, "--state-dir", stack.tmp / "omsim",
                       "--rate", "200", *args, name="omsim")
    assert proc.wait(120) == 0
    return proc.log_path.read_text()


def test_simulated_order_flow_is_booked_consistently(make_stack):
    stack = make_stack()
    log = run_omsim(stack, "--count", "60", "--cancel-pct", "10", "--correct-pct", "10", "--seed", "3")
    assert "sent 60 messages; 0 rejects received" in log
    rows = wait_until(lambda: (lambda r: r if len({x["execid"] for x in r}) == 60 else None)(stack.table("fill")),
                      timeout=60, what="60 executions booked")
    kinds = Counter(r["exectype"] for r in rows)
    assert kinds["F"] > 30 and kinds["H"] > 0 and kinds["G"] > 0 and kinds["G"] % 2 == 0
    assert {r["status"] for r in rows} == {"ok"} and {r["session"] for r in rows} == {"OMS"}
    # every bust / correction reverses exactly what stands for the execution it names
    standing: dict[str, tuple[float, float]] = {}       # execid -> (qty, price) of a standing trade
    replaced: dict[str, str] = {}
    for r in rows:
        if r["exectype"] == "F" or (r["exectype"] == "G" and r["execid"] in replaced.values()):
            standing[r["execid"]] = (r["qty"], r["price"])
            continue
        target = r["refexecid"]
        while target in replaced:
            target = replaced[target]
        assert standing.pop(target) == (-r["qty"], r["price"])
        if r["exectype"] == "G":
            replaced[target] = r["execid"]


def test_replay_of_a_raw_fix_file(make_stack, tmp_path):
    stack = make_stack()
    capture = tmp_path / "dropcopy.fix"
    capture.write_text(
        "# a drop copy captured elsewhere: | delimited, with its own session header\n"
        "8=FIX.4.4|9=0|35=8|34=7|49=OLDOMS|56=X|52=20261121-09:00:00|37=O1|17=R1|150=F|39=2|1=FUND2|55=SPY|"
        "54=1|32=10|31=500.5|151=0|14=10|6=500.5|60=20261121-09:00:00|10=000|\n"
        "8=FIX.4.4|9=0|35=0|34=8|49=OLDOMS|56=X|52=20261121-09:00:01|10=000|\n"
        "8=FIX.4.4\x019=0\x0135=8\x0134=9\x0149=OLDOMS\x0156=X\x0152=20261121-09:00:02\x0137=O1\x0117=R2\x01"
        "150=H\x0139=4\x0119=R1\x011=FUND2\x0155=SPY\x0154=1\x01151=0\x0114=0\x016=0\x0160=20261121-09:00:02\x0110=000\x01\n")
    log = run_omsim(stack, "--replay", capture)
    assert "sent 2 messages; 0 rejects received" in log
    rows = wait_until(lambda: (lambda r: r if len(r) == 2 else None)(stack.table("fill")), timeout=60,
                      what="2 replayed rows")
    assert [(r["execid"], r["exectype"], r["account"], r["sym"], r["qty"], r["refexecid"]) for r in rows] == [
        ("R1", "F", "FUND2", "SPY", 10.0, ""), ("R2", "H", "FUND2", "SPY", -10.0, "R1")]
    assert rows[0]["session"] == "OMS"
