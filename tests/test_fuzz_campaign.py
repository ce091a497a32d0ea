"""A short fuzz campaign (fuzz.campaign) against the whole demo stack, every process real and
supervised (stack.Stack on free 127.0.0.1 ports): a few hundred hostile kdb+ IPC, HTTP and FIX cases
and a connection storm must crash nothing and hang nothing, and afterwards margin and a what-if
(PyKX) and a FIX fill still work."""
import pytest
from conftest import pykx_connection, wait_until

from fuzz.campaign import Campaign, gateway_args, table
from fuzz.fix_edge import FixSession
from stack import Stack

CASES = 400
HANG_S = 3.0


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path / "stack", ports="free", supervise=True, log_level="WARNING", omsim=False,
              extra_args={"gateway": gateway_args(HANG_S)})
    s.start(timeout=180)
    yield s
    s.stop()


def test_short_campaign_crashes_and_hangs_nothing(stack):
    report = Campaign(stack, cases=CASES, seed=2026, hang_timeout=HANG_S, canary_every=100).run()
    summary = table(report)
    assert sum(r["cases"] for r in report["edges"].values()) == CASES, summary
    assert all(report["edges"][e]["cases"] > 0 for e in ("ipc", "http", "fix", "storm")), summary
    assert sum(r["internal"] for r in report["edges"].values()) == 0, summary
    assert sum(r["crash"] for r in report["edges"].values()) == 0, summary
    assert sum(r["hang"] for r in report["edges"].values()) == 0, summary
    assert report["canary_failures"] == [], summary

    with pykx_connection(stack.endpoints["gateway_port"]) as q:
        margin = q("margin", "FUND1").py()
        assert set(margin["sym"]) == {"FUND1"} and all(im > 0 for im in margin["im"])
        whatif = q("whatif", "FUND1", "SPY", -1000.0, float("nan")).py()
        assert whatif["after"]["im"] == pytest.approx(whatif["before"]["im"] + whatif["delta"]["im"])

        fix = FixSession(stack.endpoints["fix_port"])
        try:
            assert fix.fill("FUZZCHECK1", "FUND1", "SPY", 100, 500.0, timeout=10).outcome == "ok"
        finally:
            fix.drop()
        booked = wait_until(lambda: q('select from fill where execid=`FUZZCHECK1').py()["qty"], 30,
                            what="the fill in the rdb")
        assert list(booked) == [100.0]
