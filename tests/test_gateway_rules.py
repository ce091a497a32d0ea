"""setrule / rules through the gateway (kdb+ IPC with PyKX, HTTP) on a real stack: a rule set at run
time is journaled, read back, and used by calc on the next margin row; entitlements (a trader sets
rules of his own accounts and desk only, and cannot take over another's rule); a bad rule gets a clear
error and changes nothing."""
from __future__ import annotations

import pytest
from conftest import gateway_stack, http_json, pykx_connection, wait_until


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with gateway_stack(tmp_path_factory, "gateway_rules", prices=True) as s:
        yield s


def test_setrule_from_q_is_used_by_calc_and_listed(stack):
    with pykx_connection(stack.port) as q:
        out = q("setrule", {"id": "tight", "scope": "account", "target": "FUND1", "kind": "threshold",
                            "level": 1.0, "severity": "high", "channels": "desk_chat"}).py()
        assert out["rule"] == "tight" and out["user"] == "demo" and out["seq"] > 0
        rules = q("rules").pd()
        row = rules[rules["sym"] == "tight"].iloc[0]
        assert (row["scope"], row["target"], row["kind"], row["level"], bytes(row["channels"])) == \
               ("account", "FUND1", "threshold", 1.0, b"desk_chat")              # a q string

        def fired():
            return [t for t in q("alerts", "FUND1").pd()["text"] if b"(rule tight)" in bytes(t)]
        wait_until(fired, 60, what="calc raising the rule's alert on a new margin row")
        with pytest.raises(Exception, match="unknown account 'FUND9'"):
            q("setrule", {"id": "x", "scope": "account", "target": "FUND9", "kind": "threshold", "level": 1.0})


def test_entitlements_and_bad_rules_over_http(stack):
    port = stack.http_port
    desk = {"id": "tech_calls", "scope": "desk", "target": "TECH", "kind": "callbuffer", "level": 0.4}
    status, out = http_json(port, "/setrule", desk, auth="trader1:trader1")
    assert status == 200 and out["user"] == "trader1"
    assert http_json(port, "/setrule", {**desk, "id": "f2", "scope": "account", "target": "FUND2"},
                auth="trader1:trader1")[0] == 403
    assert http_json(port, "/setrule", {**desk, "id": "firm", "scope": "all", "target": ""}, auth="trader1:trader1")[0] == 403
    # trader2 may set rules of FUND2, but not take over the TECH desk's rule by its id
    status, out = http_json(port, "/setrule", {**desk, "scope": "account", "target": "FUND2"}, auth="trader2:trader2")
    assert status == 403 and "access" in out["error"]
    for bad, message in [({**desk, "kind": "vibes"}, "kind 'vibes'"), ({**desk, "level": -1}, "share (> 0)"),
                         ({**desk, "colour": "red"}, "unknown rule fields"), ({**desk, "level": "high"}, "number"),
                         ({**desk, "kind": "imjump"}, "window")]:
        status, out = http_json(port, "/setrule", bad, auth="trader1:trader1")
        assert status == 400 and message in out["error"], (bad, out)
    status, rules = http_json(port, "/rules", auth="trader2:trader2")
    assert status == 200 and "tech_calls" not in [r["sym"] for r in rules]
    status, rules = http_json(port, "/rules", auth="trader1:trader1")
    mine = [r for r in rules if r["sym"] == "tech_calls"]
    assert len(mine) == 1 and mine[0]["level"] == 0.4                         # the bad ones changed nothing
    # disabling is a change like any other
    status, out = http_json(port, "/setrule", {**desk, "enabled": False}, auth="trader1:trader1")
    assert status == 200 and out["enabled"] is False
    wait_until(lambda: [r for r in http_json(port, "/rules", auth="trader1:trader1")[1]
                        if r["sym"] == "tech_calls" and r["enabled"] is False], 30, what="the rule disabled")


def test_ack_is_recorded_with_who_and_entitled(stack):
    port = stack.http_port
    status, out = http_json(port, "/ack", {"account": "FUND1", "kind": "stresscall", "note": "hedging"},
                       auth="trader1:trader1")
    assert status == 200 and out["user"] == "trader1" and out["seq"] > 0
    assert http_json(port, "/ack", {"account": "FUND1"}, auth="trader2:trader2")[0] == 403
    assert http_json(port, "/ack", {"account": "FUND1", "colour": "red"})[0] == 400
    with pykx_connection(stack.port, "risk", "risk") as q:
        assert q("ack", "FUND2").py()["user"] == "risk"
        acks = q("select from ack").pd()
        assert [(r.sym, r.kind, r.user) for r in acks.itertuples()] == [("FUND1", "stresscall", "trader1"),
                                                                        ("FUND2", "", "risk")]
