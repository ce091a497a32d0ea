"""Price simulator, calibration and market events: statistics of the generator, shocks, pacing, parsing."""
import numpy as np
import pytest

from common.history import load_history, log_returns
from common.schema import load_schemas
from feedhandlers.prices.calibrate import SESSION_SECONDS, TRADING_DAYS, calibrate
from feedhandlers.prices.events import parse_event, parse_schedule
from feedhandlers.prices.simulator import PriceSimulator
from feedhandlers.refdata.loader import load_instruments

TECH_AND_SPY = ["AAPL", "AMD", "GOOG", "META", "AMZN", "SPY", "XOM"]


@pytest.fixture(scope="module")
def history():
    return load_history()


@pytest.fixture(scope="module")
def sectors():
    instruments = load_instruments()
    return dict(zip(instruments["sym"].tolist(), instruments["sector"].tolist()))


@pytest.fixture(scope="module")
def calibration(history):
    return calibrate(history, TECH_AND_SPY)


def test_history_merges_both_files_and_maps_fb_to_meta(history):
    assert "META" in history.syms and "FB" not in history.syms and "SPY" in history.syms
    assert str(history.dates[-1]) == "2018-04-11" and history.prices.shape == (len(history.dates), 21)
    assert history.last_close()["AMD"] == pytest.approx(9.82)
    spy = history.column("SPY")
    assert np.isnan(spy[history.dates < np.datetime64("1993-01-29")]).all()
    assert not np.isnan(spy[history.dates >= np.datetime64("1993-01-29")]).any()
    with pytest.raises(KeyError, match="no price history for XYZ"):
        history.column("XYZ")


def test_calibration_is_the_covariance_of_recent_daily_log_returns(history, calibration):
    cols = [history.syms.index(s) for s in TECH_AND_SPY]
    returns = log_returns(history.prices[-(TRADING_DAYS + 1):, cols])
    assert np.allclose(calibration.corr, np.corrcoef(returns, rowvar=False))
    assert np.allclose(calibration.daily_vol, returns.std(axis=0, ddof=1))
    assert np.allclose(calibration.chol @ calibration.chol.T, calibration.corr)
    assert np.allclose(calibration.start, history.prices[-1, cols])


def test_calibration_errors_name_the_sym(history):
    with pytest.raises(ValueError, match="no price history for XYZ"):
        calibrate(history, ["AAPL", "XYZ"])
    with pytest.raises(ValueError, match="less than 2000 days of history for BABA"):
        calibrate(history, ["AAPL", "BABA"], lookback=2000)


def test_generator_reproduces_calibrated_correlation_and_volatility(calibration):
    # one step = one trading session, so step returns should have the daily covariance
    sim = PriceSimulator(calibration, steps_per_sec=0, step_seconds=SESSION_SECONDS, seed=7)
    start = np.log(calibration.start)
    paths = np.log(sim.steps(40_000))
    returns = np.diff(np.vstack([start, paths]), axis=0)
    assert np.abs(np.corrcoef(returns, rowvar=False) - calibration.corr).max() < 0.03
    assert np.allclose(returns.std(axis=0), calibration.daily_vol, rtol=0.03)


def test_intraday_steps_scale_volatility_by_the_square_root_of_time(calibration):
    sim = PriceSimulator(calibration, steps_per_sec=0, step_seconds=60.0, seed=11)
    returns = np.diff(np.log(np.vstack([calibration.start, sim.steps(40_000)])), axis=0)
    expected = calibration.daily_vol * np.sqrt(60.0 / SESSION_SECONDS)
    assert np.allclose(returns.std(axis=0), expected, rtol=0.03)


def test_antitrust_event_shocks_prices_and_doubles_sector_volatility(history, sectors):
    syms = [s for s in sectors if s in history.syms]
    sim = PriceSimulator(calibrate(history, syms), steps_per_sec=0, step_seconds=60.0, seed=3)
    before, vol_before = sim.prices(), sim.annual_vol().copy()
    sim.apply_event(parse_event("antitrust AMD", sectors))
    after = sim.prices()
    tech = {s for s, sec in sectors.items() if sec == "tech"}
    for sym in syms:
        expected = -0.15 if sym == "AMD" else -0.05 if sym in tech else 0.0
        assert after[sym] / before[sym] - 1 == pytest.approx(expected, abs=1e-12), sym
    quotes = sim.quotes(sim.steps(2), np.zeros(2, dtype=np.int64))
    vol = dict(zip(quotes["sym"][: len(syms)], quotes["vol"][: len(syms)]))
    for i, sym in enumerate(syms):
        assert vol[sym] == pytest.approx(vol_before[i] * (2.0 if sym in tech else 1.0))
    # the generator itself uses the doubled volatility: realised step volatility doubles for tech only
    amd, spy = syms.index("AMD"), syms.index("SPY")
    returns = np.diff(np.log(sim.steps(40_001)), axis=0)
    step = sim.calibration.daily_vol * np.sqrt(60.0 / SESSION_SECONDS)
    assert returns[:, amd].std() == pytest.approx(2 * step[amd], rel=0.03)
    assert returns[:, spy].std() == pytest.approx(step[spy], rel=0.03)


def test_vol_multipliers_are_levels_and_restorable(calibration, sectors):
    sub = {s: sectors[s] for s in TECH_AND_SPY}
    sim = PriceSimulator(calibration, steps_per_sec=0, seed=1)
    base = sim.annual_vol().copy()
    sim.apply_event(parse_event("vol AMD=2", sub))
    sim.apply_event(parse_event("vol AMD=2", sub))
    assert sim.annual_vol()[1] == pytest.approx(2 * base[1])
    sim.apply_event(parse_event("vol all=1", sub))
    assert np.allclose(sim.annual_vol(), base)


def test_event_text_precedence_sym_over_sector_over_all(sectors):
    event = parse_event("shock all=-0.01 sector:tech=-0.05 AMD=-0.2; vol sector:tech=2 AMD=3", sectors)
    assert event.shocks["AMD"] == -0.2 and event.shocks["AAPL"] == -0.05 and event.shocks["SPY"] == -0.01
    assert event.vol == {s: (3.0 if s == "AMD" else 2.0) for s, sec in sectors.items() if sec == "tech"}
    custom = parse_event("antitrust AAPL drop=0.3 sector_drop=0.1 vol=1.5", sectors)
    assert custom.shocks["AAPL"] == -0.3 and custom.shocks["AMD"] == -0.1 and custom.vol["GOOG"] == 1.5


@pytest.mark.parametrize("spec, message", [
    ("", "empty event"),
    ("crash AMD", "unknown event 'crash'"),
    ("antitrust XYZ", "unknown sym 'XYZ'"),
    ("antitrust AMD size=2", "unknown parameter size"),
    ("shock sector:metals=-0.1", "unknown sector 'metals'"),
    ("shock AMD=-1.2", "would take its price to zero"),
    ("shock AMD=abc", "'abc' is not a number"),
    ("shock AMD", "expected KEY=VALUE"),
    ("vol AMD=0", "must be > 0"),
])
def test_bad_event_text_is_a_clear_error(sectors, spec, message):
    with pytest.raises(ValueError, match=message):
        parse_event(spec, sectors)


def test_schedule_relative_and_absolute(sectors):
    due, event = parse_schedule("+2.5s antitrust AMD", 1_000, sectors)
    assert due == 1_000 + 2_500_000_000 and event.shocks["AMD"] == -0.15
    due, _ = parse_schedule("2026-01-02T09:30:00 vol AMD=2", 0, sectors)
    assert due == np.datetime64("2026-01-02T09:30:00", "ns").astype(np.int64)
    with pytest.raises(ValueError, match="WHEN must be"):
        parse_schedule("soon antitrust AMD", 0, sectors)


def test_unknown_sym_in_event_leaves_the_simulator_unchanged(calibration):
    sim = PriceSimulator(calibration, steps_per_sec=0, seed=1)
    before = sim.prices()
    event = parse_event("shock GE=-0.1", {"GE": "industrials", "AMD": "tech"})
    with pytest.raises(ValueError, match="not simulated: GE"):
        sim.apply_event(event)
    assert sim.prices() == before


def test_quotes_are_valid_quote_batches(calibration):
    sim = PriceSimulator(calibration, steps_per_sec=0, max_rows=700, seed=5)
    rows, batch = load_schemas()["quote"].validate(sim.poll(123))
    assert rows == 700 // len(TECH_AND_SPY) * len(TECH_AND_SPY)
    assert (batch["bid"] < batch["price"]).all() and (batch["price"] < batch["ask"]).all()
    assert np.allclose(np.round(batch["bid"] * 100), batch["bid"] * 100)
    assert (batch["size"] % 100 == 0).all() and set(batch["src"]) == {"sim"}
    assert list(batch["sym"][: len(TECH_AND_SPY)]) == TECH_AND_SPY


def test_paced_steps_are_due_on_schedule_and_stamped_with_their_time(calibration):
    sim = PriceSimulator(calibration, steps_per_sec=10, seed=5)
    sim.start(1_000_000_000)
    n = len(TECH_AND_SPY)
    assert sim.poll(999_999_999) is None
    first = sim.poll(1_000_000_000)
    assert len(first["sym"]) == n and sim.next_due_ns(0) == 1_100_000_000
    later = sim.poll(1_950_000_000)                 # steps due at 1.1 .. 1.9 s
    assert len(later["sym"]) == 9 * n
    assert later["time"][0] == np.datetime64(1_100_000_000, "ns")
    assert later["time"][-1] == np.datetime64(1_900_000_000, "ns")
    assert sim.poll(1_950_000_000) is None
