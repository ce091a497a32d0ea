"""Hedge sizing (calc.hedge): on a real MarginEngine (the demo reference data, the real history, the
antitrust AMD event applied as ticks) the minimum is checked against a brute-force scan of what-ifs,
the target quantities against what-ifs at them and one unit less, the live state is unchanged and
bad input is refused with a clear text; then through real processes (tickerplant, reference data,
rdb, calc, gateway): PyKX and HTTP give the same numbers, entitlements hold."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pykx as kx
import pytest
from conftest import gateway_stack, http_json, pykx_connection
from test_calc_engine import assert_same, quotes, refdata_rows, snapshot

from calc.config import load_config
from calc.engine import MarginEngine
from calc.hedge import hedge
from calc.whatif import what_if
from common.history import load_history
from feedhandlers.prices.calibrate import TRADING_DAYS, calibrate
from feedhandlers.prices.events import antitrust, event_ticks
from feedhandlers.refdata.loader import load_refdata

BRUTE_FORCE_POINTS = 401


@pytest.fixture(scope="module")
def history():
    return load_history()


@pytest.fixture(scope="module")
def refdata(history):
    return load_refdata(history=history)


def build_engine(history, refdata, config=None) -> MarginEngine:
    engine = MarginEngine(config or load_config(), history)
    for seq, (table, batch) in enumerate(refdata.items(), 1):
        engine.apply(table, batch, seq)
    return engine


def apply_antitrust(engine: MarginEngine, history, refdata, seq: int = 100) -> None:
    """The price feed's `antitrust AMD` as one quote batch: AMD -15%, the rest of tech -5%, the
    sector's volatility twice its calibrated level (the annualised vol the feed would quote)."""
    inst = refdata["instrument"]
    sectors = {s: sec for s, sec, cls in zip(inst["sym"], inst["sector"], inst["assetclass"]) if cls == "equity"}
    syms = [s for s in sectors if s in history.syms]
    annual_vol = dict(zip(syms, (calibrate(history, syms).daily_vol * math.sqrt(TRADING_DAYS)).tolist()))
    ticks = event_ticks(antitrust("AMD", sectors), {s: engine.book.mark(s) for s in syms}, annual_vol)
    engine.apply("quote", quotes(list(ticks), [p for p, _ in ticks.values()], [v for _, v in ticks.values()]), seq)


@pytest.fixture(scope="module")
def shocked(history, refdata):
    """The demo book after the antitrust event (FUND1 has a predicted call); tests must not change it."""
    engine = build_engine(history, refdata)
    apply_antitrust(engine, history, refdata)
    return engine


def after(engine, account, sym, qty) -> dict:
    """The what-if of one hedge trade: the primary model's requirement and call, the stress call."""
    if qty == 0:
        rows = engine.margin(account)
        stress = engine.stress(account, engine.config.alerts.stress_scenario)["call"] if engine.runs_stress(account) \
            else math.nan
        return {"requirement": rows[0]["requirement"], "call": rows[0]["call"], "stress_call": stress}
    w = what_if(engine, account, {"sym": [sym], "qty": [float(qty)]}, top=0)
    return {"requirement": w["after"]["requirement"], "call": w["after"]["call"],
            "stress_call": w["stress"]["after"] if "stress" in w else math.nan}


def assert_minimum_matches_brute_force(engine, account, sym, result):
    qtys = np.asarray(result["curve"]["qty"])
    grid = np.unique(np.rint(np.linspace(qtys[0], qtys[-1], BRUTE_FORCE_POINTS)))
    scan = [after(engine, account, sym, q)["requirement"] for q in grid]
    spacing = float(grid[1] - grid[0])
    best = int(np.argmin(scan))
    minimum = result["minimum"]
    assert minimum["requirement"] <= scan[best] * (1 + 1e-12)                  # never worse than the scan
    assert abs(minimum["qty"] - grid[best]) <= spacing                           # and where the scan puts it
    exact = after(engine, account, sym, minimum["qty"])                          # the very what-if numbers
    assert (exact["requirement"], exact["call"]) == (minimum["requirement"], minimum["call"])
    for neighbour in {max(qtys[0], minimum["qty"] - 1), min(qtys[-1], minimum["qty"] + 1)}:   # a whole-number minimum
        assert after(engine, account, sym, neighbour)["requirement"] >= minimum["requirement"]


def test_minimum_matches_a_brute_force_scan_of_whatifs(shocked):
    result = hedge(shocked, "FUND1", "SPY")
    assert result["model"] == "fhs" and result["scenario"] == "tech_crash" and result["held"] == 0.0
    assert result["minimum"]["qty"] < 0 < result["now"]["call"]                 # short the index against long tech
    assert result["minimum"]["requirement"] < result["now"]["requirement"]
    assert_minimum_matches_brute_force(shocked, "FUND1", "SPY", result)
    curve = result["curve"]
    assert len(curve["qty"]) == 41 and 0.0 in curve["qty"] and curve["qty"] == sorted(curve["qty"])
    assert all(len(curve[k]) == len(curve["qty"]) for k in ("requirement", "call", "stress_call"))
    assert result["evaluations"] < 100


def test_minimum_of_a_historical_var_requirement(history, refdata):
    """VaR (the k-th worst scenario) is not convex in the quantity: the refinement around the best
    coarse point still matches the brute-force scan on the demo book."""
    config = load_config()
    config = replace(config, ccp_models={**config.ccp_models, "NSCC": ["hist"]})
    engine = build_engine(history, refdata, config)
    apply_antitrust(engine, history, refdata)
    result = hedge(engine, "FUND1", "SPY", points=81)
    assert result["model"] == "hist"
    assert_minimum_matches_brute_force(engine, "FUND1", "SPY", result)


def test_target_quantities_bring_the_call_and_the_stress_call_under_the_target(shocked):
    now = after(shocked, "FUND1", "SPY", 0)
    assert now["call"] > 0 and now["stress_call"] > 0
    first = hedge(shocked, "FUND1", "SPY")
    lowest_call, lowest_stress = first["minimum"]["call"], min(first["curve"]["stress_call"])
    assert lowest_call > 0 and first["target"]["call"] is None            # the vm owed cannot be hedged away
    assert "stays above 0" in first["target"]["reason"]["call"]
    reached = set()
    for target in (0.0, (now["call"] + lowest_call) / 2, (now["stress_call"] + lowest_stress) / 2):
        result = hedge(shocked, "FUND1", "SPY", target)
        assert result["target"]["value"] == target
        for key, what in (("call", "call"), ("stress", "stress_call")):
            point = result["target"][key]
            if point is None:
                assert result["target"]["reason"][key] and min(result["curve"][what]) > target
                continue
            qty = point["qty"]
            if now[what] <= target:
                assert qty == 0.0                                                 # already under
                continue
            assert qty < 0 and point[what] <= target
            assert after(shocked, "FUND1", "SPY", qty)[what] == point[what] <= target
            assert after(shocked, "FUND1", "SPY", qty + 1)[what] > target        # one unit less in size: not enough
            reached.add(key)
    assert reached == {"call", "stress"}
    assert hedge(shocked, "FUND1", "SPY", now["call"])["target"]["call"]["qty"] == 0.0


def test_the_live_state_is_unchanged(shocked):
    margins_before = [dict(r) for a in sorted(shocked.book.accounts) for r in shocked.margin(a)]
    shocked.take_dirty()
    before = snapshot(shocked)
    hedge(shocked, "FUND1", "SPY", 1_000_000.0)
    hedge(shocked, "FUND2", "AMD")
    assert_same(before, snapshot(shocked))
    assert [dict(r) for a in sorted(shocked.book.accounts) for r in shocked.margin(a)] == margins_before


def test_a_span_account_has_no_stress_and_a_held_future(shocked):
    result = hedge(shocked, "FUTS1", "ESZ26")
    assert result["model"] == "span" and result["scenario"] == "" and result["held"] == 40.0
    assert math.isnan(result["now"]["stress_call"]) and result["target"]["stress"] is None
    assert "span" in result["target"]["reason"]["stress"]
    assert_minimum_matches_brute_force(shocked, "FUTS1", "ESZ26", result)


def test_bad_input_is_refused_with_a_clear_text(history, refdata, shocked):
    with pytest.raises(ValueError, match="unknown account NOBODY"):
        hedge(shocked, "NOBODY", "SPY")
    with pytest.raises(ValueError, match="unknown instrument NOPE"):
        hedge(shocked, "FUND1", "NOPE")
    for target in (-1.0, math.nan, math.inf, "0", True):
        with pytest.raises(ValueError, match="target must be a finite number >= 0"):
            hedge(shocked, "FUND1", "SPY", target)
    for points in (2, 1002, 4.0):
        with pytest.raises(ValueError, match="points must be a whole number"):
            hedge(shocked, "FUND1", "SPY", points=points)
    with pytest.raises(ValueError, match="unknown stress scenario nope"):
        hedge(shocked, "FUND1", "SPY", scenario="nope")
    with pytest.raises(ValueError, match="SPY cannot hedge FUTS1: SPY is not in the SPAN parameters"):
        hedge(shocked, "FUTS1", "SPY")
    with pytest.raises(ValueError, match="ESZ26C5500 cannot hedge FUND1: no usable price history"):
        hedge(shocked, "FUND1", "ESZ26C5500")
    engine = build_engine(history, refdata)
    engine.apply("instrument", refdata_rows(history, "instrument", {"NEWCO": {}}), 50)     # never priced
    with pytest.raises(ValueError, match="no price for NEWCO"):
        hedge(engine, "FUND1", "NEWCO")


# ---- through real processes -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with gateway_stack(tmp_path_factory, "hedge_stack") as s:   # no price feed: the book stays as the reference data left it
        yield s


def test_hedge_through_pykx_and_http_gives_the_same_numbers(stack):
    with pykx_connection(stack.port) as conn:
        by_call = conn("hedge[`FUND1;`SPY]").py()
        by_list = conn("hedge", "FUND1", "SPY", 0.0).py()
        with pytest.raises(kx.QError, match="type: target must be >= 0"):
            conn("hedge", "FUND1", "SPY", -1.0)
        with pytest.raises(kx.QError, match="rank: hedge takes 2..3 arguments"):
            conn("hedge", "FUND1")
        with pytest.raises(kx.QError, match="unknown instrument NOPE"):
            conn("hedge", "FUND1", "NOPE")
    assert by_call == by_list
    assert by_call["model"] == "fhs" and by_call["minimum"]["qty"] < 0 and by_call["scenario"] == "tech_crash"
    assert list(by_call["curve"]) == ["qty", "requirement", "call", "stress_call"]    # a q table

    status, by_get = http_json(stack.http_port, "/hedge?account=FUND1&sym=SPY&target=0")
    assert status == 200
    status, by_post = http_json(stack.http_port, "/hedge", {"account": "FUND1", "sym": "SPY"})
    assert status == 200 and by_post == by_get
    for key in ("model", "price", "held", "now", "minimum", "scenario", "evaluations"):
        assert by_get[key] == by_call[key], key
    columns = by_call["curve"]                  # HTTP gives a table as rows, as for every table it serves
    assert by_get["curve"] == [dict(zip(columns, row)) for row in zip(*columns.values())]
    assert by_get["target"]["call"] == by_call["target"]["call"]
    assert by_get["target"]["reason"] == by_call["target"]["reason"]
    assert http_json(stack.http_port, "/hedge?account=FUND1&sym=SPY&target=-5")[0] == 400
    assert http_json(stack.http_port, "/hedge?account=FUND1&sym=SPY&target=nan")[0] == 400
    assert http_json(stack.http_port, "/hedge", {"account": "FUND1", "sym": "SPY", "qty": 1})[0] == 400


def test_hedge_is_entitled_like_whatif(stack):
    with pykx_connection(stack.port, "trader1", "trader1") as conn:
        assert conn("hedge", "FUND1", "SPY").py()["minimum"]["qty"] < 0             # desk TECH
        with pytest.raises(kx.QError, match="access"):
            conn("hedge", "FUND2", "SPY")
    status, body = http_json(stack.http_port, "/hedge?account=FUND2&sym=SPY", auth="trader1:trader1")
    assert status == 403 and body["error"].startswith("access")
    assert http_json(stack.http_port, "/hedge?account=FUND1&sym=SPY", auth="trader1:trader1")[0] == 200
