"""calc.models (and the scenario, covariance, add-on and attribution helpers it stands on):
textbook parametric examples, historical and filtered historical simulation against plain numpy."""
import math
from statistics import NormalDist

import numpy as np
import pytest

from calc import addons, attribution, models, scenarios
from calc.covariance import NotPositiveSemidefinite, check_covariance, covariance
from common.history import History, load_history

Z99 = NormalDist().inv_cdf(0.99)   # 2.3263478740...; Hull rounds it to 2.33


def test_hull_single_asset_10_day_var_to_the_dollar():
    # Hull, Risk Management and Financial Institutions, model-building approach: $10m in Microsoft,
    # daily vol 2%: daily sd = 10,000,000 * 0.02 = 200,000; 10-day sd = 200,000 * sqrt(10) = 632,456;
    # 99% 10-day VaR = 2.33 * 632,456 = $1,473,621 (with the exact z 2.326348: $1,471,312).
    r = models.parametric_var([10_000_000.0], [[0.02 ** 2]], confidence=0.99, horizon_days=10)
    assert round(r.var) == 1_471_312
    assert round(r.var / Z99 * 2.33) == 1_473_621
    # normal ES = sd * pdf(z) / (1 - c) = 632,456 * 0.0266521 / 0.01 = 1,685,626
    assert round(r.es) == round(632_455.532 * math.exp(-Z99 ** 2 / 2) / math.sqrt(2 * math.pi) / 0.01)
    assert r.contributions.tolist() == pytest.approx([r.var], rel=1e-12)


def test_hull_two_asset_var_and_euler_contributions_to_the_dollar():
    # Hull: $10m Microsoft (daily vol 2%) and $5m AT&T (daily vol 1%), correlation 0.3.
    # sd_P^2 = 200,000^2 + 50,000^2 + 2 * 0.3 * 200,000 * 50,000 = 4.85e10, sd_P = 220,227;
    # 10-day 99% VaR = 2.33 * sqrt(10) * 220,227 = $1,622,657 (exact z: $1,620,114).
    cov = np.array([[0.02 ** 2, 0.3 * 0.02 * 0.01], [0.3 * 0.02 * 0.01, 0.01 ** 2]])
    values = np.array([10_000_000.0, 5_000_000.0])
    r = models.parametric_var(values, cov, 0.99, 10)
    assert round(r.var) == 1_620_114
    assert round(r.var / Z99 * 2.33) == 1_622_657
    # Euler: (C v) = (0.0004 * 1e7 + 0.00006 * 5e6, 0.00006 * 1e7 + 0.0001 * 5e6) = (4,300, 1,100);
    # v_i (C v)_i = 4.3e10 and 5.5e9, shares of 4.85e10: 88.66% and 11.34% of VaR.
    assert r.contributions[0] == pytest.approx(r.var * 4.3e10 / 4.85e10, rel=1e-12)
    assert r.contributions[1] == pytest.approx(r.var * 5.5e9 / 4.85e10, rel=1e-12)
    assert r.contributions.sum() == pytest.approx(r.var, rel=1e-12)
    # diversification: less than the sum of the stand-alone VaRs (1,471,312 + 367,828)
    assert r.var < models.parametric_var([1e7], [[cov[0, 0]]], 0.99, 10).var + \
        models.parametric_var([5e6], [[cov[1, 1]]], 0.99, 10).var


def test_parametric_equals_mission_formula_with_weights():
    rng = np.random.default_rng(11)
    cov = np.cov(rng.normal(0, 0.015, (252, 5)), rowvar=False)
    values = np.array([3e6, 1e6, 2e6, 5e5, 1.5e6])
    total = values.sum()
    w = values / total
    expected = 2.33 * math.sqrt(w @ cov @ w) * total       # VaR = Z * sqrt(w' C w) * V
    assert models.parametric_var(values, cov).var / Z99 * 2.33 == pytest.approx(expected, rel=1e-12)


def test_parametric_rejects_bad_input_clearly():
    bad_cov = np.array([[1.0, 2.0], [2.0, 1.0]]) * 1e-4
    with pytest.raises(NotPositiveSemidefinite, match="positive semi-definite"):
        models.parametric_var([1.0, 1.0], bad_cov)
    with pytest.raises(ValueError, match="NaN"):
        models.parametric_var([np.nan, 1.0], np.eye(2))
    with pytest.raises(ValueError, match="3 position values for 2 instruments"):
        models.parametric_var([1.0, 1.0, 1.0], np.eye(2))
    with pytest.raises(ValueError, match="confidence"):
        models.parametric_var([1.0], [[1.0]], confidence=99)


def test_check_covariance_names_the_instrument_on_a_negative_eigenvector():
    cov = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.2], [0.0, 1.2, 1.0]])
    with pytest.raises(NotPositiveSemidefinite, match="most exposed instrument: (B|C)"):
        check_covariance(cov, ["A", "B", "C"])


def test_historical_var_hand_example():
    # 10 one-day scenarios of one instrument, $1m long; c = 0.8 -> k = ceil(0.2 * 10) = 2:
    # VaR = 2nd largest loss, ES = mean of the 2 largest losses.
    simple = np.array([-0.05, 0.01, -0.02, 0.03, -0.01, 0.02, -0.04, 0.0, 0.01, -0.03])
    r = models.historical_var([1_000_000.0], np.log1p(simple)[:, None], confidence=0.8)
    assert r.var == pytest.approx(40_000.0)
    assert r.es == pytest.approx(45_000.0)
    assert r.contributions.tolist() == pytest.approx([45_000.0])
    assert sorted(r.tail.tolist()) == [0, 6]


def numpy_sorted_var_es(pnl, confidence):
    k = math.ceil(round((1 - confidence) * pnl.size, 9))
    losses = np.sort(-pnl)[::-1]
    return losses[k - 1], losses[:k].mean()


@pytest.fixture(scope="module")
def real_returns():
    history = load_history()
    syms = ["AAPL", "AMD", "GOOG", "META", "AMZN", "SPY"]
    return syms, scenarios.returns_window(history, syms, 1000)[1]


def test_historical_var_and_es_against_a_direct_sort(real_returns):
    syms, r = real_returns
    values = np.array([2e6, 1e6, -5e5, 1.5e6, 7e5, -2e6])
    for h, holding in [(1, "overlap"), (5, "overlap"), (10, "sqrt")]:
        if holding == "overlap":
            logret = np.array([r[t - h + 1:t + 1].sum(axis=0) for t in range(h - 1, len(r))])
        else:
            logret = r * math.sqrt(h)
        pnl = np.expm1(logret) @ values
        for c in (0.99, 0.975):
            res = models.historical_var(values, r, c, h, holding)
            var, es = numpy_sorted_var_es(pnl, c)
            assert res.n_scenarios == len(pnl)
            assert res.var == pytest.approx(var, rel=1e-12)
            assert res.es == pytest.approx(es, rel=1e-12)
            assert res.contributions.sum() == pytest.approx(res.es, rel=1e-12)


def numpy_ewma_vol(r, decay):
    var = np.empty_like(r)
    prev = (r ** 2).mean(axis=0)
    for t in range(len(r)):
        prev = decay * prev + (1 - decay) * r[t] ** 2
        var[t] = prev
    return np.sqrt(var)


def test_filtered_historical_var_against_plain_numpy(real_returns):
    syms, r = real_returns
    values = np.array([2e6, 1e6, -5e5, 1.5e6, 7e5, -2e6])
    vol = numpy_ewma_vol(r, 0.97)
    np.testing.assert_allclose(models.ewma_volatility(r, 0.97), vol, rtol=1e-12)
    filtered = r * vol[-1] / vol
    pnl = np.expm1(filtered) @ values
    res = models.filtered_historical_var(values, r, 0.99, 1, decay=0.97)
    var, es = numpy_sorted_var_es(pnl, 0.99)
    assert res.var == pytest.approx(var, rel=1e-12)
    assert res.es == pytest.approx(es, rel=1e-12)
    assert res.contributions.sum() == pytest.approx(res.es, rel=1e-12)
    # a volatility spike (+35% on every name) scales every filtered scenario by 1.35 in log space
    spiked = models.filtered_historical_var(values, r, 0.99, 1, decay=0.97, current_vol=vol[-1] * 1.35)
    var_spiked, _ = numpy_sorted_var_es(np.expm1(filtered * 1.35) @ values, 0.99)
    assert spiked.var == pytest.approx(var_spiked, rel=1e-12)
    assert spiked.var > res.var


def test_returns_window_names_instruments_without_enough_history():
    history = load_history()
    with pytest.raises(scenarios.InsufficientHistory) as e:
        scenarios.returns_window(history, ["AAPL", "META", "NOPE"], 2000)
    assert e.value.syms == ["META", "NOPE"]
    assert "NOPE: no price history" in str(e.value) and "META: " in str(e.value)


def test_returns_window_rejects_nan_and_non_positive_prices():
    dates = np.arange("2020-01-01", "2020-01-06", dtype="datetime64[D]")
    prices = np.array([[10, 20, 30], [11, np.nan, 31], [12, 21, -1], [13, 22, 32], [14, 23, 33]], dtype=float)
    history = History(dates, ["A", "B", "C"], prices)
    d, r = scenarios.returns_window(history, ["A"], 4)
    np.testing.assert_allclose(r[:, 0], np.diff(np.log(prices[:, 0])))
    assert d[0] == np.datetime64("2020-01-02")
    with pytest.raises(scenarios.InsufficientHistory, match=r"B: 1 missing closes.*C: non-positive close on 2020-01-03"):
        scenarios.returns_window(history, ["A", "B", "C"], 4)
    with pytest.raises(ValueError, match="non-finite"):
        models.historical_var([1.0], np.array([[0.01], [np.nan]]))


def test_scenario_set_from_history_is_instrument_major():
    history = load_history()
    s = scenarios.build_scenario_set(history, ["AAPL", "SPY"], lookback=504, horizon_days=2)
    assert s.shocks.shape == (2, 503) and s.shocks.flags.c_contiguous
    assert s.dates.shape == (503,) and s.dates[-1] == history.dates[-1]
    assert s.index() == {"AAPL": 0, "SPY": 1}
    last_two_days = history.prices[-1, history.syms.index("SPY")] / history.prices[-3, history.syms.index("SPY")] - 1
    assert s.shocks[1, -1] == pytest.approx(last_two_days, rel=1e-12)


def test_covariance_equal_weight_and_ewma(real_returns):
    _, r = real_returns
    np.testing.assert_allclose(covariance(r, 252), np.cov(r[-252:], rowvar=False), rtol=1e-12)
    w = 0.06 * 0.94 ** np.arange(503, -1, -1)
    expected = sum(wt * np.outer(x, x) for wt, x in zip(w / w.sum(), r[-504:]))
    np.testing.assert_allclose(covariance(r, 504, "ewma", 0.94), expected, rtol=1e-10)
    with pytest.raises(ValueError, match="window 5000"):
        covariance(r, 5000)


def test_add_ons():
    assert addons.apc_buffer(1_000_000.0) == 1_250_000.0
    assert addons.apc_buffer(1_000_000.0, released=True) == 1_000_000.0
    assert addons.apc_stress_weighted(100.0, 200.0) == 125.0
    with pytest.raises(ValueError, match="at least 25%"):
        addons.apc_buffer(1.0, rate=0.1)
    # 1,000,000 shares against an ADV of 500,000 at 20% participation: 10 days to liquidate, h = 1:
    # add-on = 50,000 * (sqrt(10) - 1); 10,000 shares liquidate within the day: no add-on; NaN ADV: none
    got = addons.liquidity_addon([1e6, -1e4, 5e5], [5e5, 5e5, np.nan], [50_000.0, 800.0, 9_000.0])
    assert got.tolist() == pytest.approx([50_000.0 * (math.sqrt(10) - 1), 0.0, 0.0])
    with pytest.raises(ValueError, match="average daily volume must be positive"):
        addons.liquidity_addon([1.0], [0.0], [1.0])
    # stand-alone risk: parametric is z |v| sd; scenario is the ES of the position alone
    assert addons.standalone_parametric([-1e6], [[0.0004]]).tolist() == pytest.approx([Z99 * 20_000])
    shocks = np.linspace(-0.05, 0.05, 100)[None, :]
    assert addons.standalone_scenario([1e6], shocks, 0.98)[0] == pytest.approx(1e6 * (0.05 + 0.05 - 0.1 / 99) / 2)


def test_top_drivers_and_text_form():
    drivers = attribution.top_drivers([100.0, -50.0, 300.4, 20.0], ["A", "B", "C", "D"], n=3)
    assert drivers == [("C", 300.4), ("A", 100.0), ("D", 20.0)]
    assert attribution.format_drivers(drivers) == "C:300;A:100;D:20"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", float("inf"), float("nan")])
def test_bad_horizon_is_rejected(bad):
    with pytest.raises(ValueError, match="horizon_days"):
        models.parametric_var([1.0], [[1e-4]], horizon_days=bad)
