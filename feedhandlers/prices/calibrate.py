"""Calibrates the price simulator on the real history: daily volatilities and the correlation matrix of
the recent daily log returns, and its Cholesky factor."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.history import History, log_returns

TRADING_DAYS = 252
SESSION_SECONDS = 6.5 * 3600        # a daily volatility is spread over one 6.5-hour trading session


@dataclass(frozen=True)
class Calibration:
    syms: list[str]
    start: np.ndarray           # last close per sym: where the simulation starts
    daily_vol: np.ndarray       # standard deviation of daily log returns per sym
    corr: np.ndarray            # correlation matrix of daily log returns
    chol: np.ndarray            # lower Cholesky factor of corr
    last_date: np.datetime64    # the date of the last close


def calibrate(history: History, syms: list[str], lookback: int = TRADING_DAYS) -> Calibration:
    """Calibrates on the last `lookback` daily log returns of `syms` (ValueError naming any sym without them)."""
    unknown = [s for s in syms if s not in history.syms]
    if unknown:
        raise ValueError(f"no price history for {', '.join(unknown)}")
    if lookback < 2 or lookback >= len(history.dates):
        raise ValueError(f"lookback must be between 2 and {len(history.dates) - 1} days, got {lookback}")
    cols = [history.syms.index(s) for s in syms]
    returns = log_returns(history.prices[-(lookback + 1):, cols])
    short = [s for s, bad in zip(syms, np.isnan(returns).any(axis=0)) if bad]
    if short:
        raise ValueError(f"less than {lookback} days of history for {', '.join(short)}")
    cov = np.atleast_2d(np.cov(returns, rowvar=False))
    daily_vol = np.sqrt(np.diag(cov))
    if not (daily_vol > 0).all():
        flat = [s for s, v in zip(syms, daily_vol) if not v > 0]
        raise ValueError(f"zero volatility over {lookback} days for {', '.join(flat)}")
    corr = cov / np.outer(daily_vol, daily_vol)
    try:
        chol = np.linalg.cholesky(corr)
    except np.linalg.LinAlgError:
        raise ValueError(f"the correlation matrix of {len(syms)} syms over {lookback} days is not positive "
                         "definite; use a longer lookback or fewer syms") from None
    return Calibration(list(syms), history.prices[-1, cols].copy(), daily_vol, corr, chol, history.dates[-1])
