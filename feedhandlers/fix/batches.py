"""Columnar batches the FIX feedhandler publishes (`fill`, `alert`) and reads back (`fill` replay)."""
from __future__ import annotations

import numpy as np

from feedhandlers.fix.book import FillRow

ALERT_KIND = "data"
ALERT_SEVERITY = "warning"


def _symbols(values) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def fill_batch(rows: list[FillRow]) -> dict[str, np.ndarray]:
    """A `fill` batch (q/schema.q column order) of booked rows."""
    cols = list(zip(*rows))
    return {
        "time": np.array(cols[0], dtype=np.int64).view("datetime64[ns]"),
        "sym": _symbols(cols[1]),
        "account": _symbols(cols[2]),
        "qty": np.array(cols[3], dtype=np.float64),
        "price": np.array(cols[4], dtype=np.float64),
        "execid": _symbols(cols[5]),
        "orderid": _symbols(cols[6]),
        "exectype": _symbols(cols[7]),
        "refexecid": _symbols(cols[8]),
        "session": _symbols(cols[9]),
        "status": _symbols(cols[10]),
    }


def fill_rows(cols: dict[str, np.ndarray]) -> list[FillRow]:
    """The rows of a `fill` batch (as replayed by a Subscriber), in order."""
    times = np.asarray(cols["time"]).astype("datetime64[ns]").astype(np.int64).tolist()
    return [FillRow(*r) for r in zip(times, *(list(cols[c]) for c in FillRow._fields[1:]))]


def alert_batch(time_ns: int, account: str, text: str) -> dict[str, np.ndarray]:
    """A one-row `alert` of kind `data` (a fill the reference data does not know, a bad reference)."""
    nan = np.array([np.nan])
    return {
        "time": np.array([time_ns], dtype=np.int64).view("datetime64[ns]"),
        "sym": _symbols([account]),
        "kind": _symbols([ALERT_KIND]),
        "severity": _symbols([ALERT_SEVERITY]),
        "model": _symbols([""]),
        "value": nan,
        "threshold": nan.copy(),
        "text": _symbols([text]),
        "drivers": _symbols([""]),
        "stress": nan.copy(),
    }
