"""Columnar batches the FIX feedhandler publishes (`fill`, `alert`) and reads back (`fill` replay)."""
from __future__ import annotations

import numpy as np

from common.codec import text_array
from feedhandlers.fix.book import FillRow

ALERT_KIND = "data"
ALERT_SEVERITY = "warning"


def fill_batch(rows: list[FillRow]) -> dict[str, np.ndarray]:
    """A `fill` batch (q/schema.q column order) of booked rows."""
    cols = list(zip(*rows))
    return {
        "time": np.array(cols[0], dtype=np.int64).view("datetime64[ns]"),
        "sym": text_array(cols[1]),
        "account": text_array(cols[2]),
        "qty": np.array(cols[3], dtype=np.float64),
        "price": np.array(cols[4], dtype=np.float64),
        "execid": text_array(cols[5]),
        "orderid": text_array(cols[6]),
        "exectype": text_array(cols[7]),
        "refexecid": text_array(cols[8]),
        "session": text_array(cols[9]),
        "status": text_array(cols[10]),
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
        "sym": text_array([account]),
        "kind": text_array([ALERT_KIND]),
        "severity": text_array([ALERT_SEVERITY]),
        "model": text_array([""]),
        "value": nan,
        "threshold": nan.copy(),
        "text": text_array([text]),
        "drivers": text_array([""]),
        "stress": nan.copy(),
    }
