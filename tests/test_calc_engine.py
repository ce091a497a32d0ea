"""The live engine on the real history and the demo reference data, in process: incremental state
equals a full recompute after 10,000 random fills and ticks, what-if changes nothing, bad input
raises alerts naming account and cause and never gives a NaN margin, drift is caught and reset."""
import math

import numpy as np
import pytest

from calc.config import load_config
from calc.engine import MarginEngine
from calc.registry import SPAN
from calc.span_model import SpanExposure
from calc.state import AccountRisk
from calc.whatif import BeforeCache, what_if
from common.history import load_history
from feedhandlers.refdata.loader import load_refdata

T0 = np.datetime64("2026-01-05T14:00:00", "ns")


@pytest.fixture(scope="module")
def history():
    return load_history()


@pytest.fixture
def engine(history):
    e = MarginEngine(load_config(), history)
    for seq, (table, b) in enumerate(load_refdata(history=history).items(), 1):
        e.apply(table, b, seq)
    return e


def fills(syms, accounts, qtys, prices, execids=None):
    n = len(syms)
    s = lambda v: np.array(v, dtype=object)
    return {"time": np.array([T0] * n), "sym": s(syms), "account": s(accounts), "qty": np.array(qtys, float),
            "price": np.array(prices, float), "execid": s(execids or [f"E{i}" for i in range(n)]),
            "orderid": s(["O"] * n), "exectype": s(["F"] * n), "refexecid": s([""] * n), "session": s(["S"] * n),
            "status": s(["ok"] * n)}


def quotes(syms, prices, vols=None):
    n = len(syms)
    nan = np.full(n, math.nan)
    return {"time": np.array([T0] * n), "sym": np.array(syms, dtype=object), "bid": nan, "ask": nan,
            "price": np.array(prices, float), "size": nan, "vol": np.array(vols, float) if vols is not None else nan,
            "src": np.array(["t"] * n, dtype=object)}


def margins(e):
    return {(r["sym"], r["model"]): r for a in sorted(e.book.accounts) for r in e.margin(a)}


def test_incremental_equals_full_recompute_after_10000_fills_and_ticks(engine):
    rng = np.random.default_rng(7)
    # VaR accounts and instruments with price history (SPAN accounts and history-less options are
    # charged in full by design, which raises data alerts; their own tests are test_calc_span.py)
    accounts = sorted(a for a in engine.book.accounts if engine.model_names(a) != [SPAN])
    model = engine.models[engine.model_names(accounts[0])[0]]
    syms = sorted(s for s in engine.book.instruments if engine.universe.risk_sym.get(s) in model.index)
    seq = 100
    for _ in range(10_000):
        seq += 1
        sym = syms[rng.integers(len(syms))]
        mark = engine.book.mark(sym)
        if rng.random() < 0.5:
            engine.apply("fill", fills([sym], [accounts[rng.integers(len(accounts))]],
                                       [float(rng.integers(-5000, 5000) or 1)], [mark * (1 + 0.01 * rng.standard_normal())]), seq)
        else:
            vol = [0.6 * rng.random() + 0.1] if rng.random() < 0.2 else None
            engine.apply("quote", quotes([sym], [mark * math.exp(0.005 * rng.standard_normal())], vol), seq)
    incremental = margins(engine)
    assert engine.check_drift() == 0.0                          # exact (calc.exact): no difference at all
    assert not engine.take_issues()
    for account in accounts:                                     # a full revaluation from the holdings
        engine.risk[account] = engine.build_risk(account)[0]
    full = margins(engine)
    compared = {key: row for key, row in full.items() if key[0] in accounts}
    assert incremental.keys() == full.keys() and len(compared) == 6
    for key, row in compared.items():
        assert incremental[key] == row, key                      # bit for bit


def refdata_rows(history, table: str, rows: dict[str, dict]) -> dict:
    """Rows of a reference data table: the demo's first row of it with each sym's changed fields."""
    first = load_refdata(history=history)[table]
    out = {k: np.repeat(v[:1], len(rows)) for k, v in first.items()}
    for i, (sym, changed) in enumerate(rows.items()):
        out["sym"][i] = sym
        for k, v in changed.items():
            out[k][i] = v
    return out


def test_full_revaluation_equals_revaluing_holding_by_holding(engine, history):
    """build_risk (arrays for the whole book) against the incremental path run one holding at a time
    from an empty state: the same numbers, dicts and alerts, on a book with a column shared by two
    instruments, liquidity add-ons, a position without a price and one the reference data lacks."""
    engine.apply("instrument", refdata_rows(history, "instrument", {
        "AAPL.X": {"underlying": "AAPL"},                 # shares the AAPL column with FUND1's AAPL
        "WMT": {"adv": 20_000.0},                         # thin: a liquidity add-on under fhs
        "NOPX": {"underlying": "XOM"}}), 50)              # modelled, but never priced
    engine.apply("position", {"time": np.array([T0] * 4), "account": np.array(["FUND1"] * 4, dtype=object),
                              "sym": np.array(["AAPL.X", "WMT", "NOPX", "ZZZ"], dtype=object),
                              "qty": np.array([-30_000.0, 250_000.0, 500.0, 1_000.0]),
                              "price": np.array([170.0, 45.0, math.nan, 12.5])}, 51)
    full, found = engine.build_risk("FUND1")
    full_issues = sorted(i.text for i in found)
    stepwise = AccountRisk({n: engine.models[n].new_state("FUND1") for n in engine.model_names("FUND1")})
    stepwise_issues = [i for sym, h in engine.book.holdings["FUND1"].items()
                       for i in engine.revalue_holding("FUND1", sym, h, stepwise)]
    assert sorted(i.text for i in stepwise_issues) == full_issues
    assert any("no price for NOPX" in t for t in full_issues) and any("ZZZ is not in the reference" in t
                                                                      for t in full_issues)
    assert "AAPL" in engine.universe.shared and full.models["fhs"].addons and full.models["param"].unmodelled
    assert full.vm == stepwise.vm and full.vm_parts == stepwise.vm_parts          # bit for bit (calc.exact)
    for name, e in full.models.items():
        s = stepwise.models[name]
        assert e.parts == s.parts and e.unmodelled == s.unmodelled and e.addons == s.addons
        assert e.addon_total == s.addon_total and e.unmodelled_total == s.unmodelled_total
        np.testing.assert_array_equal(e.values, s.values)
        for a, b in ((e.pnl, s.pnl), (e.cv, s.cv), (e.hi, s.hi), (e.lo, s.lo)):
            if a is not None:
                np.testing.assert_array_equal(a, b)
        assert e.sigma2 == s.sigma2
    engine.apply("account", refdata_rows(history, "account", {"EMPTY": {}}), 52)     # no holdings yet
    for e in engine.build_risk("EMPTY")[0].models.values():
        assert e.values.dtype == np.float64 and not e.values.any() and not e.parts


def model_state(x) -> tuple:
    if isinstance(x, SpanExposure):
        return (x.account.state.value.copy(), dict(x.account.qty), dict(x.unmodelled), x.unmodelled_sum.value)
    return (x.values.copy(), None if x.pnl is None else x.pnl.copy(), None if x.cv is None else x.cv.copy(),
            x.sigma2, dict(x.parts))


def snapshot(e):
    risk = {a: (r.vm, {n: model_state(x) for n, x in r.models.items()}) for a, r in e.risk.items()}
    holdings = {a: {s: (h.settled_qty, h.settled_price, h.fill_qty, h.fill_cost) for s, h in hs.items()}
                for a, hs in e.book.holdings.items()}
    return risk, holdings, dict(e.book.last), set(e.dirty), list(e.issues), set(e._open)


def assert_same(a, b):
    (ra, ha, la, da, ia, oa), (rb, hb, lb, db, ib, ob) = a, b
    assert ha == hb and la == lb and da == db and ia == ib and oa == ob
    assert ra.keys() == rb.keys()
    for acc in ra:
        assert ra[acc][0] == rb[acc][0]
        for n in ra[acc][1]:
            for x, y in zip(ra[acc][1][n], rb[acc][1][n]):
                if isinstance(x, np.ndarray):
                    assert np.array_equal(x, y)
                else:
                    assert x == y


def test_whatif_leaves_the_state_unchanged_and_matches_the_real_trade(engine):
    margins(engine)
    engine.take_dirty()
    engine._open.add(("FUND1", "nan", "fhs"))      # an open issue (a withheld margin): a what-if keeps it open
    before = snapshot(engine)
    trades = {"sym": ["SPY", "AMD"], "qty": [-50_000.0, 100_000.0], "price": [math.nan, 9.5]}
    result = what_if(engine, "FUND1", trades, top=100)
    assert_same(before, snapshot(engine))
    top5 = what_if(engine, "FUND1", trades)["drivers"]                  # the default: the top 5 only
    assert list(zip(top5["sym"], top5["contribution"])) == list(zip(result["drivers"]["sym"],
                                                                    result["drivers"]["contribution"]))[:5]
    assert result["delta"]["im"] == pytest.approx(result["after"]["im"] - result["before"]["im"])
    assert sum(result["drivers"]["contribution"]) == pytest.approx(result["after"]["im"], rel=1e-9)
    assert "SPY" in result["drivers"]["sym"] and result["stress"]["scenario"] == "tech_crash"
    # the same trades booked for real give the what-if's "after"
    engine.apply("fill", fills(["SPY", "AMD"], ["FUND1", "FUND1"], [-50_000.0, 100_000.0],
                               [engine.book.mark("SPY"), 9.5]), 500)
    real = {r["model"]: r for r in engine.margin("FUND1")}
    for model, m in result["models"].items():
        for f in ("im", "vm", "requirement", "call", "var", "es"):
            assert m["after"][f] == pytest.approx(real[model][f], rel=1e-9, abs=1e-6)
    with pytest.raises(ValueError, match="unknown instrument NOPE"):
        what_if(engine, "FUND1", {"sym": ["NOPE"], "qty": [1.0]})
    with pytest.raises(ValueError, match="qty of AMD"):
        what_if(engine, "FUND1", {"sym": ["AMD"], "qty": [math.nan]})
    with pytest.raises(LookupError, match="unknown account NOBODY"):
        what_if(engine, "NOBODY", {"sym": ["AMD"], "qty": [1.0]})


def test_whatif_before_cache_is_reused_only_while_the_state_is_unchanged(engine):
    cache = BeforeCache()
    trades = {"sym": ["SPY"], "qty": [-50_000.0]}
    first = what_if(engine, "FUND1", trades, cache=cache)
    assert what_if(engine, "FUND1", trades, cache=cache) == first == what_if(engine, "FUND1", trades)
    engine.apply("quote", quotes(["AMD"], [engine.book.mark("AMD") * 0.8]), 600)        # an input: new state
    moved = what_if(engine, "FUND1", trades, cache=cache)
    assert moved == what_if(engine, "FUND1", trades)
    assert moved["before"]["im"] != first["before"]["im"] and moved["stress"]["before"] != first["stress"]["before"]
    engine.risk["FUND1"] = engine.build_risk("FUND1")[0]           # a reset (drift check) at the same seq
    engine.risk["FUND1"].vm_sum.add(1.0)                           # ... that the cached before must not hide
    assert what_if(engine, "FUND1", trades, cache=cache)["before"]["vm"] == pytest.approx(moved["before"]["vm"] + 1)


def test_bad_input_raises_alerts_and_never_a_nan_margin(engine, history):
    margins(engine)
    engine.take_issues()
    before = margins(engine)
    engine.apply("quote", quotes(["AMD", "AAPL"], [-3.0, math.nan]), 200)              # bad prices: ignored
    after = margins(engine)
    assert all(after[k]["im"] == before[k]["im"] for k in before)
    texts = [(i.account, i.text) for i in engine.take_issues()]
    assert ("FUND1", "quote for AMD has an invalid price -3.0: ignored, AMD stays marked at 9.82") in texts
    assert any(a == "FUND3" and "quote for AAPL has an invalid price nan" in t for a, t in texts)
    engine.apply("quote", quotes(["AMD"], [-4.0]), 201)                                  # no repeat while it lasts
    assert not engine.take_issues()
    # a fill for an instrument not in the reference data: booked, charged at its full value
    engine.apply("fill", fills(["ZZZ"], ["FUND2"], [1000.0], [20.0], ["X1"]), 202)
    (issue, issue2) = engine.take_issues()
    assert issue.account == "FUND2" and "instrument ZZZ is not in the reference data" in issue.text
    assert "20,000" in issue.text and issue2.model == "param"
    fund2 = {r["model"]: r for r in engine.margin("FUND2")}
    assert fund2["param"]["im"] == pytest.approx(before[("FUND2", "param")]["im"] + 20_000.0)
    # an instrument without price history (no underlying either)
    engine.apply("instrument", refdata_rows(history, "instrument", {"NEWCO": {}}), 203)
    engine.apply("fill", fills(["NEWCO"], ["FUND3"], [-100.0], [50.0], ["X2"]), 204)
    texts = [i.text for i in engine.take_issues() if i.account == "FUND3"]
    assert any("no usable price history for NEWCO" in t and "5,000" in t for t in texts)
    # a fill for an unknown account, and a fill at an invalid price
    engine.apply("fill", fills(["AMD"], ["GHOST"], [10.0], [9.8], ["X3"]), 205)
    engine.apply("fill", fills(["AMD"], ["FUND1"], [10.0], [-1.0], ["X4"]), 206)
    texts = {(i.account, i.text) for i in engine.take_issues()}
    assert ("GHOST", ("fill X3 for unknown account GHOST: booked; no margin until the account's reference data "
                      "arrives")) in texts
    assert ("FUND1", "fill X4 in AMD has an invalid price -1.0: booked at the mark 9.82") in texts
    rows = margins(engine)
    assert all(math.isfinite(r[f]) for r in rows.values() for f in ("im", "vm", "requirement", "call"))
    assert all(math.isfinite(r["var"]) and math.isfinite(r["es"]) for r in rows.values() if r["model"] != SPAN)
    assert engine.margin("GHOST") == []


def test_drift_is_detected_and_reset(engine):
    margins(engine)
    engine.take_issues()
    good = {r["model"]: r["var"] for r in engine.margin("FUND1")}
    engine.risk["FUND1"].models["fhs"].pnl[:] += 1e3                   # corrupt the incremental state
    assert engine.check_drift() > 1e-9
    (issue,) = engine.take_issues()
    assert issue.kind == "drift" and issue.account == "FUND1" and "reset" in issue.text
    assert {r["model"]: r["var"] for r in engine.margin("FUND1")} == good
    assert engine.check_drift() == 0.0


def test_a_fill_and_its_cancel_leave_every_margin_exactly_where_it_was(engine):
    """Issue 22 case 6: fills of absurd size, price 0 or below, booked and then cancelled (reversal
    rows), on VaR accounts (parametric and FHS) and the SPAN account: positions, vm and every model's
    margin return to the last bit, and the drift check (a full recompute from the positions) agrees."""
    engine.apply("quote", quotes(["AMD", "SPY", "ESZ26"], [9.37, 265.1, 6011.25], [0.61, None, None]), 100)
    before, positions = margins(engine), {a: engine.positions(a) for a in engine.book.accounts}
    cases = [("FUND3", "SPY", 9_007_199_254_740_992.0, 10.0),     # 2^53 shares at 10: a 9e16 notional
             ("FUND3", "AMD", 123_456_789.0, -5.0),                # a negative price: booked at the mark
             ("FUND1", "AMD", 0.1, 0.0),                           # price 0 and a fractional quantity
             ("FUTS1", "ESZ26", 1e9, 6011.25),                     # a billion futures on the SPAN account
             ("FUND2", "JPM", -3e15, 1e-9)]
    seq = 101
    for account, sym, qty, price in cases:
        engine.apply("fill", fills([sym], [account], [qty], [price], [f"X{seq}"]), seq)
        assert margins(engine)[(account, engine.model_names(account)[0])] != before[(account,
                                                                              engine.model_names(account)[0])]
        engine.apply("quote", quotes([sym], [engine.book.mark(sym) * 1.01]), seq + 1)   # the market moves meanwhile
        engine.apply("quote", quotes([sym], [engine.book.mark(sym) / 1.01]), seq + 2)
        seq += 3
    for account, sym, qty, price in reversed(cases):
        engine.apply("fill", fills([sym], [account], [-qty], [price], [f"X{seq}-cancel"]), seq)
        seq += 1
    restore = quotes(["AMD", "SPY", "ESZ26", "JPM"], [9.37, 265.1, 6011.25, engine.book.last.get("JPM", 100.0)])
    engine.apply("quote", restore, seq)
    assert {a: engine.positions(a) for a in engine.book.accounts} == positions | {a: engine.positions(a) for a in ()}
    after = margins(engine)
    for key, row in before.items():
        assert after[key] == row, key                            # every field, to the last bit
    assert engine.check_drift() == 0.0


def test_vol_spike_raises_var_and_stress_is_additive(engine):
    base = {r["model"]: r["var"] for r in engine.margin("FUND1")}
    engine.apply("quote", quotes(["AMD"], [9.82], [2.0]), 300)            # AMD vol 200%: far above the model's
    spiked = {r["model"]: r["var"] for r in engine.margin("FUND1")}
    assert spiked["fhs"] > base["fhs"] and spiked["param"] > base["param"]
    s = engine.stress("FUND1", "tech_crash")
    assert s["loss"] == pytest.approx(s["shock_loss"] + s["stressed_var"])
    assert s["shock_loss"] == pytest.approx(0.2 * sum(engine.positions("FUND1")["value"]))   # all FUND1 is tech
    with pytest.raises(LookupError, match="unknown stress scenario"):
        engine.stress("FUND1", "nope")


def paramfile(kind, path):
    return {"time": np.array([T0]), "sym": np.array(["NSCC"], dtype=object), "kind": np.array([kind], dtype=object),
            "path": np.array([str(path)], dtype=object), "sha256": np.array([""], dtype=object)}


def test_var_parameter_file_revalues_the_accounts_using_it(engine, tmp_path):
    before = margins(engine)
    engine.take_issues()
    new = tmp_path / "nscc_var.toml"
    new.write_text('[models.fhs]\nkind = "filtered_historical"\nconfidence = 0.975\nhorizon_days = 2\n'
                   'lookback_days = 504\nmeasure = "es"\napc_buffer = 0.25\n')
    engine.apply("paramfile", paramfile("var", new), 400)
    after = margins(engine)
    assert after[("FUND1", "fhs")]["es"] < before[("FUND1", "fhs")]["es"]        # 97.5% instead of 99%
    assert after[("FUND1", "param")] == before[("FUND1", "param")]              # other models untouched
    assert engine.config.models["fhs"].confidence == 0.975 and engine.check_drift() < 1e-9
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.fhs]\nkind = "filtered_historical"\nconfidence = 2.0\n')
    engine.apply("paramfile", paramfile("var", bad), 401)
    issues = engine.take_issues()
    assert {i.account for i in issues} == {"FUND1", "FUND2", "FUND3"}
    assert "could not be used" in issues[0].text and "previous parameters" in issues[0].text
    assert margins(engine) == after


def test_stress_reuses_its_stressed_correlation_and_matches_a_fresh_evaluation(engine):
    cache = engine.models[engine.model_names("FUND1")[0]].stress_cache
    first = engine.stress("FUND1", "tech_crash")
    assert len(cache) == 1
    (corr, *_), = cache.values()
    engine.apply("quote", quotes(["AMD"], [engine.book.mark("AMD")], [0.9]), 500)   # vol spike: scales, same corr
    cached = engine.stress("FUND1", "tech_crash")
    assert len(cache) == 1 and next(iter(cache.values()))[0] is corr and cached["loss"] > first["loss"]
    cache.clear()
    fresh = engine.stress("FUND1", "tech_crash")
    assert cached["loss"] == pytest.approx(fresh["loss"], rel=1e-12)
    assert cached["drivers"] == fresh["drivers"]


def test_drivers_of_a_book_without_shared_columns_rank_the_columns_directly():
    """One instrument per history column and no add-ons (the benchmark's book): the drivers are the
    ES contributions of the positions, largest first, computed here with numpy from the tail."""
    from bench.bench_calc import engine_for, synthetic_history
    rng = np.random.default_rng(3)
    engine = engine_for(synthetic_history(rng), ["ACC"], rng)
    assert not engine.universe.shared
    evaluation = engine.evaluate("ACC", top=5)
    rows, top5 = evaluation.rows, evaluation.drivers
    every = engine.drivers("ACC")
    assert top5 == every[:5] == engine.drivers("ACC", top=5)
    assert sum(c for _, c in every) == pytest.approx(rows[0]["im"], rel=1e-9)
    e, m = engine.account_risk("ACC").models["hs"], engine.models["hs"]
    tail = np.argsort(e.pnl, kind="stable")[:m.k]
    contributions = -e.values * m.shocks[:, tail].mean(axis=1)
    contributions *= rows[0]["im"] / contributions.sum()          # to the model's measure
    order = np.argsort(-contributions, kind="stable")
    assert [s for s, _ in every] == [m.syms[i] for i in order if contributions[i]]
    np.testing.assert_allclose([c for _, c in every], contributions[order][contributions[order] != 0], rtol=1e-9)
