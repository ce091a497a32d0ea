"""Scenario sets from the real price history: windows of daily log returns, EWMA volatility,
filtered historical simulation (FHS) and the holding period (overlapping h-day returns or
square-root scaling), turned into the (N, S) matrix of simple returns the kernels run on.

Conventions (docs/models.md states them for users):

- Returns are daily log returns ``r_t = ln(P_t / P_{t-1})``, shape (T, N), oldest first.
- EWMA volatility: ``s2_t = decay * s2_{t-1} + (1 - decay) * r_t^2`` for t = 0..T-1, seeded with
  ``s2_{-1} = mean(r^2)`` over the window; ``vol[t] = sqrt(s2_t)`` includes day t's return, so
  ``vol[T-1]`` is the current volatility.
- FHS: ``r*_t = r_t * vol_now / vol[t]`` (current vol over the vol at the scenario date, as LCH
  PAIRS and Eurex Prisma), vol_now = vol[T-1] unless given (e.g. an observed implied vol).
- Holding period h: "overlap" sums h consecutive daily log returns (T - h + 1 overlapping
  scenarios); "sqrt" multiplies the daily log returns by sqrt(h) (T scenarios).
- Shocks: ``exp(holding-period log return) - 1``, so a position of value v makes v * shock in the
  scenario: exact revaluation of a linear position.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.history import log_returns

HOLDING_METHODS = ("overlap", "sqrt")


class InsufficientHistory(ValueError):
    """Some instruments lack a full window of valid prices; ``.syms`` names them."""

    def __init__(self, problems: dict[str, str]):
        self.syms = sorted(problems)
        super().__init__("insufficient price history: " + "; ".join(f"{s}: {problems[s]}" for s in self.syms))


def returns_window(history, syms, lookback: int) -> tuple[np.ndarray, np.ndarray]:
    """(dates, returns) of the last ``lookback`` daily log returns of ``syms`` from a price history
    (an object with ``.dates``, ``.syms``, ``.prices``, e.g. common.history.History).

    Raises InsufficientHistory naming every instrument that is unknown, not listed for the whole
    window, or has a missing or non-positive price in it.
    """
    if lookback < 2:
        raise ValueError(f"lookback must be at least 2 days, got {lookback}")
    known = {s: j for j, s in enumerate(history.syms)}
    problems = {s: "no price history" for s in syms if s not in known}
    if len(history.dates) < lookback + 1:
        problems.update({s: f"needs {lookback + 1} closes, history has {len(history.dates)}"
                         for s in syms if s not in problems})
        raise InsufficientHistory(problems)
    listed = [s for s in syms if s in known]
    prices = history.prices[-(lookback + 1):, [known[s] for s in listed]]
    dates = history.dates[-(lookback + 1):]
    for c, s in enumerate(listed):
        col = prices[:, c]
        missing = ~np.isfinite(col)
        if missing.any():
            problems[s] = (f"{int(missing.sum())} missing closes in the {lookback + 1}-day window "
                           f"(first {dates[np.argmax(missing)]})")
        elif (col <= 0).any():
            problems[s] = f"non-positive close on {dates[np.argmax(col <= 0)]}"
    if problems:
        raise InsufficientHistory(problems)
    return dates[1:], log_returns(prices)


def check_returns(returns: np.ndarray) -> np.ndarray:
    """A (T, N) float64 array of finite returns with T >= 1, or a ValueError saying what is wrong."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 1:
        raise ValueError(f"returns must be a (days, instruments) matrix, got shape {r.shape}")
    bad = ~np.isfinite(r)
    if bad.any():
        t, i = np.argwhere(bad)[0]
        raise ValueError(f"returns hold {int(bad.sum())} non-finite values (first: day {t}, instrument {i})")
    return r


def ewma_volatility(returns: np.ndarray, decay: float = 0.97) -> np.ndarray:
    """EWMA volatility (T, N) of daily log returns, vol[t] including day t (see the module docstring)."""
    r = check_returns(returns)
    if not 0.0 < decay < 1.0:
        raise ValueError(f"decay must be in (0, 1), got {decay!r}")
    s2 = np.mean(r * r, axis=0)
    var = np.empty_like(r)
    for t in range(r.shape[0]):
        s2 = decay * s2 + (1.0 - decay) * r[t] * r[t]
        var[t] = s2
    return np.sqrt(var)


def filter_returns(returns: np.ndarray, decay: float = 0.97, current_vol: np.ndarray | None = None) -> np.ndarray:
    """FHS: returns rescaled by current vol / EWMA vol at each scenario date (zero-vol columns stay 0)."""
    r = check_returns(returns)
    vol = ewma_volatility(r, decay)
    now = vol[-1] if current_vol is None else np.broadcast_to(np.asarray(current_vol, dtype=np.float64), vol[-1].shape)
    if not np.all(np.isfinite(now)) or np.any(now < 0):
        raise ValueError("current_vol must be finite and non-negative")
    ratio = np.divide(now, vol, out=np.zeros_like(vol), where=vol > 0)
    return r * ratio


def check_horizon_days(horizon_days) -> int:
    """The holding period as a positive int, or a ValueError."""
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, (int, float, np.integer)) \
            or not np.isfinite(horizon_days) or horizon_days != int(horizon_days) or horizon_days < 1:
        raise ValueError(f"horizon_days must be a positive integer, got {horizon_days!r}")
    return int(horizon_days)


def holding_period_returns(returns: np.ndarray, horizon_days: int = 1, holding: str = "overlap") -> np.ndarray:
    """Log returns over ``horizon_days``: overlapping sums of h days, or daily returns * sqrt(h)."""
    r = check_returns(returns)
    h = check_horizon_days(horizon_days)
    if holding not in HOLDING_METHODS:
        raise ValueError(f"holding must be one of {HOLDING_METHODS}, got {holding!r}")
    if h == 1:
        return r
    if holding == "sqrt":
        return r * np.sqrt(h)
    if r.shape[0] < h:
        raise ValueError(f"{r.shape[0]} days of returns cannot make {h}-day overlapping returns")
    c = np.vstack([np.zeros((1, r.shape[1])), np.cumsum(r, axis=0)])
    return c[h:] - c[:-h]


def scenario_shocks(returns: np.ndarray, horizon_days: int = 1, holding: str = "overlap",
                    filtered: bool = False, decay: float = 0.97,
                    current_vol: np.ndarray | None = None) -> np.ndarray:
    """The kernels' (N, S) C-contiguous matrix of simple returns from (T, N) daily log returns."""
    r = filter_returns(returns, decay, current_vol) if filtered else check_returns(returns)
    logret = holding_period_returns(r, horizon_days, holding)
    return np.ascontiguousarray(np.expm1(logret).T)


@dataclass(frozen=True)
class ScenarioSet:
    """Scenario shocks for a universe of instruments, with how they were made."""

    syms: tuple[str, ...]
    dates: np.ndarray        # end date of each scenario's holding period
    shocks: np.ndarray       # (N, S) simple returns over the holding period
    horizon_days: int
    holding: str
    filtered: bool
    decay: float

    def index(self) -> dict[str, int]:
        """sym -> row of ``shocks``."""
        return {s: i for i, s in enumerate(self.syms)}


def build_scenario_set(history, syms, lookback: int = 500, horizon_days: int = 1, holding: str = "overlap",
                       filtered: bool = False, decay: float = 0.97) -> ScenarioSet:
    """ScenarioSet of ``syms`` from the last ``lookback`` daily returns of ``history``."""
    h = check_horizon_days(horizon_days)
    dates, r = returns_window(history, list(syms), lookback)
    shocks = scenario_shocks(r, h, holding, filtered, decay)
    scenario_dates = dates[h - 1:] if holding == "overlap" else dates
    return ScenarioSet(tuple(syms), scenario_dates, shocks, h, holding, bool(filtered), float(decay))
