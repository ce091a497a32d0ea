"""calc.stress and the PSD repair of calc.covariance: hand-computed tech sector crash, correlation
stress capped at 1, repair to a PSD unit-diagonal matrix, configuration errors."""
import math
from statistics import NormalDist

import numpy as np
import pytest

from calc import scenarios, stress
from calc.covariance import check_covariance, correlation_from_covariance, covariance, nearest_correlation
from common.history import load_history

Z99 = NormalDist().inv_cdf(0.99)
TECH = stress.StressScenario.from_config(stress.TECH_SECTOR_CRASH)


def two_asset_cov(rho, vol=0.02):
    return np.array([[vol ** 2, rho * vol ** 2], [rho * vol ** 2, vol ** 2]])


def test_tech_sector_crash_by_hand():
    # Two tech stocks, $1m each, daily vol 2%, correlation 0.6 -> stressed 0.9 (1.5 x 0.6).
    # Shock loss = 20% of $2m = 400,000. Shocked values $800k each, sd = 16,000 each:
    # stressed sd^2 = 16,000^2 * (1 + 1 + 2 * 0.9) = 16,000^2 * 3.8 -> sd = 31,190.38,
    # stressed VaR = 2.326348 * 31,190.38 = 72,559.67; loss = 472,559.67.
    res = stress.run_stress([1e6, 1e6], two_asset_cov(0.6), TECH, ["AMD", "NVDA"], ["tech", "tech"])
    assert res.shock_loss == pytest.approx(400_000.0)
    assert res.stressed_var == pytest.approx(Z99 * 16_000 * math.sqrt(3.8), rel=1e-9)
    assert round(res.loss) == round(400_000 + Z99 * 16_000 * math.sqrt(3.8))
    assert res.shocked_values.tolist() == [800_000.0, 800_000.0]
    assert res.contributions.sum() == pytest.approx(res.loss, rel=1e-12)


def test_correlation_stress_is_capped_at_one():
    # 0.8 * 1.5 = 1.2 -> 1: the two stocks move as one, sd = 2 * 16,000.
    res = stress.run_stress([1e6, 1e6], two_asset_cov(0.8), TECH, ["A", "B"], ["tech", "tech"])
    assert res.stressed_var == pytest.approx(Z99 * 32_000, rel=1e-9)
    # a negative correlation grows in magnitude too and is floored at -1: -0.8 -> -1, a perfect hedge
    hedged = stress.run_stress([1e6, 1e6], two_asset_cov(-0.8), TECH, ["A", "B"], ["tech", "tech"])
    assert hedged.stressed_var == pytest.approx(0.0, abs=1e-3)


def test_sym_shocks_override_sector_and_hedge_lowers_the_loss():
    scenario = stress.StressScenario.from_config({
        "name": "tech crash with etf", "sector_shocks": {"tech": -0.2}, "sym_shocks": {"QQQ": -0.15, "AAPL": -0.1},
        "sym_vol_multipliers": {"AAPL": 3.0}, "sector_vol_multipliers": {"tech": 2.0}, "vol_multiplier": 1.5})
    syms, sectors = ["AAPL", "AMD", "QQQ", "XOM"], ["tech", "tech", "etf", "energy"]
    assert scenario.shock_vector(syms, sectors).tolist() == [-0.1, -0.2, -0.15, 0.0]
    assert scenario.vol_multipliers(syms, sectors).tolist() == [3.0, 2.0, 1.5, 1.5]
    rng = np.random.default_rng(3)
    cov = np.cov(rng.normal(0, 0.02, (300, 4)) + rng.normal(0, 0.02, (300, 1)), rowvar=False)
    book = np.array([2e6, 1e6, 0.0, 5e5])
    hedged = book + np.array([0.0, 0.0, -1.5e6, 0.0])
    before = stress.run_stress(book, cov, scenario, syms, sectors)
    after = stress.run_stress(hedged, cov, scenario, syms, sectors)
    assert before.shock_loss == pytest.approx(0.1 * 2e6 + 0.2 * 1e6)
    assert after.shock_loss == pytest.approx(before.shock_loss - 0.15 * 1.5e6)
    assert after.loss < before.loss
    assert after.contributions[2] < 0          # the hedge is a negative driver


def test_correlation_scope_shocked_leaves_other_pairs_alone():
    scenario = stress.StressScenario.from_config({**stress.TECH_SECTOR_CRASH, "name": "scoped",
                                                  "correlation_scope": "shocked"})
    corr = np.array([[1.0, 0.4, 0.4], [0.4, 1.0, 0.4], [0.4, 0.4, 1.0]])
    cov = corr * 0.01 ** 2
    stressed = stress.stressed_covariance(cov, scenario, ["A", "B", "X"], ["tech", "tech", "energy"])
    _, got = correlation_from_covariance(stressed)
    assert got[0, 1] == pytest.approx(0.6, abs=1e-9)
    assert got[0, 2] == pytest.approx(0.4, abs=1e-9) and got[1, 2] == pytest.approx(0.4, abs=1e-9)
    assert np.diag(stressed).tolist() == pytest.approx([1e-4] * 3)


def assert_psd_unit_diagonal(c):
    assert np.allclose(c, c.T, atol=0)
    assert np.abs(np.diag(c) - 1.0).max() <= 1e-12
    assert np.linalg.eigvalsh(c).min() >= -1e-12


@pytest.mark.parametrize("method", ["clip", "higham"])
def test_psd_repair_gives_psd_unit_diagonal(method):
    broken = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]])
    assert np.linalg.eigvalsh(broken).min() < -0.5
    fixed = nearest_correlation(broken, method)
    assert_psd_unit_diagonal(fixed)
    rng = np.random.default_rng(8)
    _, ok = correlation_from_covariance(np.cov(rng.normal(size=(200, 6)), rowvar=False))
    np.testing.assert_allclose(nearest_correlation(ok, method), ok, atol=1e-12)


def test_higham_is_at_least_as_near_as_clipping():
    rng = np.random.default_rng(9)
    _, corr = correlation_from_covariance(np.cov(rng.normal(size=(30, 12)) + rng.normal(size=(30, 1)), rowvar=False))
    broken = np.clip(corr * 1.5, -1, 1)
    np.fill_diagonal(broken, 1.0)
    higham = nearest_correlation(broken, "higham")
    clipped = nearest_correlation(broken, "clip")
    assert_psd_unit_diagonal(higham)
    assert np.linalg.norm(higham - broken) <= np.linalg.norm(clipped - broken) + 1e-9


def test_tech_crash_on_real_history_is_psd_and_raises_risk():
    history = load_history()
    syms = ["AAPL", "AMD", "GOOG", "META", "AMZN", "BABA", "SPY", "XOM"]
    sectors = ["tech"] * 6 + ["etf", "energy"]
    _, r = scenarios.returns_window(history, syms, 504)
    cov = covariance(r, 252)
    for repair in ("clip", "higham"):
        scenario = stress.StressScenario.from_config({**stress.TECH_SECTOR_CRASH, "psd_repair": repair})
        stressed = stress.stressed_covariance(cov, scenario, syms, sectors)
        check_covariance(stressed, syms)
        values = np.array([3e6, 4e6, 1e6, 1e6, 1e6, 5e5, -2e6, 1e6])
        res = stress.run_stress(values, cov, scenario, syms, sectors)
        assert res.shock_loss == pytest.approx(0.2 * 10.5e6)
        assert res.contributions.sum() == pytest.approx(res.loss, rel=1e-12)
        assert res.stressed_var > 0


@pytest.mark.parametrize("config,message", [
    ({"name": "x", "shock": {}}, "unknown keys"),
    ({"sector_shocks": {"tech": -0.2}}, "'name' must be"),
    ({"name": "x", "sector_shocks": {"tech": -1.5}}, r"sector_shocks\['tech'\] must be a number > -1"),
    ({"name": "x", "sym_shocks": {"A": "big"}}, r"sym_shocks\['A'\]"),
    ({"name": "x", "correlation_multiplier": -1}, "correlation_multiplier"),
    ({"name": "x", "correlation_scope": "some"}, "correlation_scope"),
    ({"name": "x", "psd_repair": "magic"}, "psd_repair"),
])
def test_bad_scenario_configuration_is_rejected_clearly(config, message):
    with pytest.raises(ValueError, match=message):
        stress.StressScenario.from_config(config)


def test_load_scenarios_by_name_rejects_duplicates():
    loaded = stress.load_scenarios([stress.TECH_SECTOR_CRASH, {"name": "rates", "sym_shocks": {"TLT": -0.05}}])
    assert sorted(loaded) == ["rates", "tech sector crash"]
    with pytest.raises(ValueError, match="defined twice"):
        stress.load_scenarios([stress.TECH_SECTOR_CRASH, stress.TECH_SECTOR_CRASH])


def test_run_stress_rejects_misaligned_or_bad_input():
    with pytest.raises(ValueError, match="2 syms and 1 sectors"):
        stress.run_stress([1.0, 1.0], np.eye(2), TECH, ["A", "B"], ["tech"])
    with pytest.raises(ValueError, match="NaN"):
        stress.run_stress([np.nan, 1.0], np.eye(2), TECH, ["A", "B"], ["tech", "tech"])
    with pytest.raises(ValueError, match="horizon_days"):
        stress.run_stress([1.0, 1.0], np.eye(2), TECH, ["A", "B"], ["tech", "tech"], horizon_days=0)
