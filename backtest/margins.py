"""Each day's margin for a fixed portfolio, computed by the live calc's own model code
(calc.registry.build_model) and config/calc.toml parameters, using only the history up to that day."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from calc.config import load_config
from calc.margin_model import Positions
from calc.registry import build_model
from calc.state import Instrument
from calc.universe import Universe
from common.history import History, load_history


class BacktestError(ValueError):
    """Bad back-test input (unknown sym or model, empty or inverted date range, ...): a one-line message."""


def _date(s) -> np.datetime64:
    try:
        return np.datetime64(str(s), "D")
    except ValueError:
        raise BacktestError(f"bad date {s!r} (want YYYY-MM-DD)") from None


def date_range(history: History, start: str, end: str) -> np.ndarray:
    """Indices of the history's dates in [start, end]; BacktestError when the range is inverted or empty."""
    s, e = _date(start), _date(end)
    if s > e:
        raise BacktestError(f"start {start} is after end {end}")
    idx = np.flatnonzero((history.dates >= s) & (history.dates <= e))
    if not len(idx):
        raise BacktestError(f"no trading dates in [{start}, {end}] (history covers "
                            f"{history.dates[0]} to {history.dates[-1]})")
    return idx


def model_config(config, model_name: str, overrides: dict | None = None):
    if model_name not in config.models:
        raise BacktestError(f"unknown model {model_name!r} (configured: {', '.join(sorted(config.models))})")
    mc = config.models[model_name]
    return dataclasses.replace(mc, **overrides) if overrides else mc


def check_syms(history: History, syms) -> None:
    missing = [s for s in syms if s not in history.syms]
    if missing:
        raise BacktestError(f"no price history for {', '.join(missing)}")


def daily_margins(model_name: str, positions: dict[str, float], start: str, end: str, *, config=None,
                  history=None, overrides: dict | None = None, rebalance: int = 1) -> pd.DataFrame:
    """One row per trading date d in [start, end]: date, im, var, es, value (the portfolio's value at
    d's close). The model (`[models.model_name]` of config/calc.toml, with `overrides` applied by
    dataclasses.replace, e.g. {"apc_buffer": 0.0}) is built by calc.registry.build_model from the history
    sliced to dates <= d, and measures the fixed positions (sym -> qty) valued at d's close.

    rebalance: the model (its covariance / scenario set) is rebuilt every `rebalance` trading dates
    (default 1: every day, exact). With rebalance=k, a day between rebuilds uses the model built at the
    most recent rebuild date (<= d, so never any future data) with the positions valued at d's close."""
    config = config or load_config()
    history = history or load_history()
    mc = model_config(config, model_name, overrides)
    if not positions:
        raise BacktestError("no positions")
    syms = list(positions)
    check_syms(history, syms)
    idx = date_range(history, start, end)
    qty = np.tile(np.array([float(positions[s]) for s in syms]), (len(idx), 1))
    return margin_rows(mc, config, history, syms, idx, qty, rebalance)


def margin_rows(mc, config, history: History, syms: list[str], idx: np.ndarray, qty: np.ndarray,
                rebalance: int = 1, k0: int = 0) -> pd.DataFrame:
    """The core of daily_margins for history rows `idx` (ascending) with quantities qty[i] (one row per
    date, columns in `syms`) under ModelConfig `mc`. k0: the position of idx[0] in the whole back-test,
    so that a chunk rebuilds on the same dates (k % rebalance == 0) as the whole run does; a chunk also
    builds at its first date, so chunks should start on a multiple of `rebalance` for identical results."""
    if rebalance < 1:
        raise BacktestError("rebalance must be >= 1")
    cols = [history.syms.index(s) for s in syms]
    insts = [Instrument(s) for s in syms]
    universe = Universe(history.syms)
    for s in history.syms:
        universe.map(s, s)
    rows, model = [], None
    for k, t in enumerate(np.asarray(idx).tolist()):
        if model is None or (k0 + k) % rebalance == 0:
            sliced = History(history.dates[:t + 1], history.syms, history.prices[:t + 1])
            model = build_model(mc, sliced, universe, config)
        px = history.prices[t, cols]
        q = np.asarray(qty[k], dtype=np.float64)
        held = q != 0
        if not np.all(np.isfinite(px[held])):
            bad = [s for s, p, h in zip(syms, px, held) if h and not np.isfinite(p)]
            raise BacktestError(f"no close for {', '.join(bad)} on {history.dates[t]}")
        value = np.where(held, q * np.nan_to_num(px), 0.0)
        state, _ = model.build("backtest", Positions(syms, q, value, insts))
        m = model.measure(state)
        rows.append((pd.Timestamp(history.dates[t]), m.im, m.var, m.es, float(value.sum())))
    return pd.DataFrame(rows, columns=["date", "im", "var", "es", "value"])
