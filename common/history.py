"""The real daily price history (data/history): loads both CSVs into one dates x syms price matrix.

`stock_prices.csv` (20 US stocks) and `spy_prices.csv` (the SPY ETF) are merged on the stock file's
dates (1989-12-29 .. 2018-04-11); SPY rows after the last stock date are dropped. The stock file's
column `FB` is the sym `META` here. Prices are NaN before a name was listed.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.defaults import REPO_ROOT

HISTORY_DIR = REPO_ROOT / "data" / "history"
HISTORY_FILES = ("stock_prices.csv", "spy_prices.csv")
RENAMED_COLUMNS = {"FB": "META"}


@dataclass(frozen=True)
class History:
    dates: np.ndarray           # datetime64[D], ascending
    syms: list[str]
    prices: np.ndarray          # float64, len(dates) x len(syms), NaN before listing

    def column(self, sym: str) -> np.ndarray:
        """The close prices of one sym (KeyError naming it when it has no history)."""
        try:
            return self.prices[:, self.syms.index(sym)]
        except ValueError:
            raise KeyError(f"no price history for {sym}") from None

    def last_close(self) -> dict[str, float]:
        """The last close of every sym: the settlement prices the simulator starts from."""
        return dict(zip(self.syms, self.prices[-1].tolist()))


def _read_csv(path: Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][0] != "date":
        raise ValueError(f"{path}:1: expected a header starting with 'date'")
    syms = [RENAMED_COLUMNS.get(s, s) for s in rows[0][1:]]
    body = rows[1:]
    try:
        dates = np.array([r[0] for r in body], dtype="datetime64[D]")
        prices = np.array([[float(v) if v else np.nan for v in r[1:]] for r in body], dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: unreadable row: {e}") from e
    if prices.shape != (len(body), len(syms)):
        raise ValueError(f"{path}: rows do not all have {len(syms) + 1} fields")
    return dates, syms, prices


def load_history(path: str | Path | None = None) -> History:
    """Loads and merges the history CSVs from the directory `path` (default data/history)."""
    folder = Path(path) if path else HISTORY_DIR
    (dates, syms, prices), (spy_dates, spy_syms, spy_prices) = (_read_csv(folder / f) for f in HISTORY_FILES)
    merged = np.full((len(dates), len(syms) + len(spy_syms)), np.nan)
    merged[:, : len(syms)] = prices
    rows = np.searchsorted(dates, spy_dates)
    found = (rows < len(dates)) & (dates[np.minimum(rows, len(dates) - 1)] == spy_dates)
    merged[rows[found], len(syms):] = spy_prices[found]
    return History(dates, syms + spy_syms, merged)


def log_returns(prices: np.ndarray) -> np.ndarray:
    """Daily log returns along axis 0 (one row fewer than prices; NaN where either close is NaN)."""
    return np.diff(np.log(prices), axis=0)
