"""calc alert rules: edge-triggered threshold / call-vs-buffer / stress call / im jump, their
clearing, the im window, state rebuilt from replayed rows; the command line."""
import math
import subprocess
import sys

from calc.alerts import NS_PER_MIN, AlertMonitor
from calc.config import AlertConfig
from calc.state import Account

ACCOUNT = Account("ACC", threshold=1000.0, buffer=2000.0, callpct=0.5, imjump=0.25, imjumpmins=15.0)


def row(time_min, im, requirement=None, call=0.0):
    return {"sym": "ACC", "model": "fhs", "time": int(time_min * NS_PER_MIN), "im": im,
            "requirement": im if requirement is None else requirement, "call": call}


def kinds(events):
    return [(e.kind, e.severity) for e in events]


def test_threshold_and_call_alerts_fire_once_and_clear():
    m = AlertMonitor(AlertConfig())
    assert kinds(m.observe(row(0, 900), ACCOUNT)) == []
    up = m.observe(row(1, 950, requirement=1100, call=1200), ACCOUNT)       # call 1200 > 50% of 2000
    assert kinds(up) == [("threshold", "warn"), ("callbuffer", "high")]
    assert up[0].value == 1100 and up[0].threshold == 1000 and "above the threshold 1,000" in up[0].text
    assert "60% of the cash buffer" in up[1].text
    assert kinds(m.observe(row(2, 950, requirement=1200, call=1300), ACCOUNT)) == []   # still above: quiet
    assert kinds(m.observe(row(3, 950, requirement=900, call=0), ACCOUNT)) == [("threshold", "info"),
                                                                                 ("callbuffer", "info")]


def test_im_jump_within_the_window_only():
    m = AlertMonitor(AlertConfig())
    m.observe(row(0, 100), ACCOUNT)
    assert kinds(m.observe(row(10, 124), ACCOUNT)) == []                  # +24%
    jump = m.observe(row(14, 130), ACCOUNT)                               # +30% on the low of 100
    assert kinds(jump) == [("imjump", "warn")] and jump[0].threshold == 125.0
    assert kinds(m.observe(row(16, 131), ACCOUNT)) == [("imjump", "info")]   # 100 left the window: low 124
    m2 = AlertMonitor(AlertConfig())
    m2.observe(row(0, 100), ACCOUNT)
    assert kinds(m2.observe(row(20, 140), ACCOUNT)) == []                 # 20 minutes apart: no jump


def test_state_rebuilt_from_replayed_rows_and_stress_call():
    m = AlertMonitor(AlertConfig())
    m.replay_margin(row(0, 100), ACCOUNT)
    m.replay_alert("ACC", "threshold", "warn")
    assert kinds(m.observe(row(5, 130, requirement=1100), ACCOUNT)) == [("imjump", "warn")]   # threshold held
    stress = {"scenario": "tech_crash", "call": 1500.0}
    (event,) = m.observe_stress(ACCOUNT, "fhs", stress)
    assert (event.kind, event.severity, event.value, event.threshold) == ("stresscall", "high", 1500.0, 1000.0)
    assert "75% of the cash buffer 2,000" in event.text
    assert m.observe_stress(ACCOUNT, "fhs", stress) == []


def test_command_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "calc", "--help"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0 and "--config" in out.stdout and "--query" in out.stdout
    bad = tmp_path / "calc.toml"
    bad.write_text('[models.m]\nkind = "magic"\n')
    out = subprocess.run([sys.executable, "-m", "calc", "--config", str(bad)], capture_output=True, text=True, check=False,
                         timeout=120)
    assert out.returncode == 2 and "models.m.kind" in out.stderr


def test_one_alert_row_builder_and_severity_vocabulary():
    import math

    import pytest

    from calc.config import ConfigError, parse_config
    from common.alerts import SEVERITIES, alert_batch, alert_row
    from feedhandlers.fix.batches import alert_batch as fix_alert_batch

    row = alert_row(5, "ACC", "threshold", "warn", "above", model="fhs", value=2.0, threshold=1.0)
    assert list(row) == ["time", "sym", "kind", "severity", "model", "value", "threshold", "text", "drivers", "stress"]
    assert math.isnan(row["stress"]) and row["drivers"] == ""
    with pytest.raises(ValueError, match="severity"):
        alert_row(5, "ACC", "threshold", "critical", "x")
    fix = fix_alert_batch(7, "FUND1", "unknown instrument")
    same = alert_batch([alert_row(7, "FUND1", "data", "warn", "unknown instrument")])
    assert list(fix) == list(same) and fix["severity"].tolist() == ["warn"] and fix["time"].dtype == "datetime64[ns]"
    assert {e[1] for e in kinds(AlertMonitor(AlertConfig()).observe(row_(0), ACCOUNT))} <= set(SEVERITIES)
    with pytest.raises(ConfigError, match="alerts.severity_call"):
        parse_config({"models": {"m": {"kind": "parametric"}}, "alerts": {"severity_call": "critical"}})


def row_(time_min):
    return row(time_min, 2000, requirement=2000, call=1500)


def test_rules_as_data_override_the_start_of_day_thresholds():
    from common.alertrules import Rule, RuleBook
    book = RuleBook()
    m = AlertMonitor(AlertConfig(), book)
    tech = Account("ACC", desk="TECH", threshold=1000.0, buffer=2000.0, callpct=0.5)
    assert kinds(m.observe(row(0, 900), tech)) == []
    # a desk rule lowers the threshold: the account's own start-of-day rule is more specific and wins
    assert book.apply([Rule("d1", "desk", "TECH", "threshold", 500.0, severity="high", time=1)], {"ACC": "TECH"}) == []
    assert kinds(m.observe(row(1, 900), tech)) == []
    # replacing the start-of-day rule ACC.threshold by a disabled one lets the desk rule apply
    book.apply([Rule("ACC.threshold", "account", "ACC", "threshold", 1000.0, enabled=False, time=2)])
    (event,) = m.observe(row(2, 900), tech)
    assert (event.kind, event.severity, event.threshold) == ("threshold", "high", 500.0) and "(rule d1)" in event.text
    # switching the desk rule off ends the episode
    book.apply([Rule("d1", "desk", "TECH", "threshold", 500.0, enabled=False, time=3)])
    assert kinds(m.observe(row(3, 900), tech)) == [("threshold", "info")]
    # excess under a level, and a call rule replaced live: the next row uses it
    book.apply([Rule("x", "all", "", "excess", -100.0, time=4), Rule("ACC.callbuffer", "account", "ACC", "callbuffer",
                                                                     0.1, time=4)])
    r = {**row(4, 900, call=300.0), "excess": -300.0}
    assert kinds(m.observe(r, tech)) == [("callbuffer", "warn"), ("excess", "warn")]


def test_a_bad_rule_gets_a_clear_error_and_changes_nothing():
    from common.alertrules import Rule, RuleBook, check_rule
    accounts = {"ACC": "TECH"}
    cases = {Rule("r", "account", "FUND9", "threshold", 1.0): "unknown account 'FUND9'",
             Rule("r", "desk", "RATES", "threshold", 1.0): "unknown desk 'RATES'",
             Rule("r", "all", "", "vibes", 1.0): "kind 'vibes' is not one of",
             Rule("r", "account", "", "threshold", 1.0): "needs a target",
             Rule("r", "all", "", "callbuffer", -0.5): "is a share (> 0)",
             Rule("r", "all", "", "imjump", 0.2): "needs a window",
             Rule("r", "all", "", "threshold", math.nan): "finite",
             Rule("r", "all", "", "threshold", 1.0, severity="info"): "severity 'info'",
             Rule("", "all", "", "threshold", 1.0): "id is empty"}
    for rule, message in cases.items():
        assert message in check_rule(rule, accounts), rule
    book = RuleBook()
    (bad,) = book.apply(list(cases)[:1], accounts)
    assert bad[0].target == "FUND9" and book.rules == {}


def test_an_episode_notifies_again_only_when_its_severity_rises():
    from common.alertrules import Rule, RuleBook
    book = RuleBook()
    m = AlertMonitor(AlertConfig(), book)
    book.apply([Rule("ACC.threshold", "account", "ACC", "threshold", 500.0, severity="warn", time=1)])
    assert kinds(m.observe(row(0, 900), ACCOUNT)) == [("threshold", "warn")]
    book.apply([Rule("ACC.threshold", "account", "ACC", "threshold", 500.0, severity="high", time=2)])
    (up,) = m.observe(row(1, 900), ACCOUNT)
    assert (up.kind, up.severity) == ("threshold", "high") and "severity raised from warn" in up.text
    book.apply([Rule("ACC.threshold", "account", "ACC", "threshold", 500.0, severity="warn", time=3)])
    assert kinds(m.observe(row(2, 900), ACCOUNT)) == []                   # lower: the episode goes on quietly
    assert kinds(m.observe(row(3, 400), ACCOUNT)) == [("threshold", "info")]
    m2 = AlertMonitor(AlertConfig(), book)                                 # rebuilt from the replayed rows
    m2.replay_alert("ACC", "threshold", "warn")
    m2.replay_alert("ACC", "threshold", "high")
    assert m2.active == {("ACC", "threshold"): "high"}
