"""Columnar batches the FIX feedhandler publishes (`fill`, `alert`) and reads back (`fill` replay)."""
from __future__ import annotations

import numpy as np

from common import alerts
from feedhandlers.fix.book import FillRow

ALERT_KIND = "data"


def fill_batch(rows: list[FillRow]) -> dict:
    """A `fill` batch (q/schema.q column order) of booked rows; text columns as lists of str (what the
    codec sends for them anyway)."""
    cols = list(zip(*rows))
    batch = {name: list(col) for name, col in zip(FillRow._fields, cols)}
    batch["time"] = np.array(cols[0], dtype=np.int64).view("datetime64[ns]")
    batch["qty"] = np.array(cols[3], dtype=np.float64)
    batch["price"] = np.array(cols[4], dtype=np.float64)
    return batch


def fill_rows(cols: dict[str, np.ndarray]) -> list[FillRow]:
    """The rows of a `fill` batch (as replayed by a Subscriber), in order."""
    times = np.asarray(cols["time"]).astype("datetime64[ns]").astype(np.int64).tolist()
    return [FillRow(*r) for r in zip(times, *(list(cols[c]) for c in FillRow._fields[1:]))]


def alert_batch(time_ns: int, account: str, text: str) -> dict[str, np.ndarray]:
    """A one-row `alert` of kind `data`, severity warn (a fill the reference data does not know, a
    rejected ExecutionReport); `account` and `text` must be printable ASCII (they are journaled)."""
    return alerts.alert_batch([alerts.alert_row(time_ns, account, ALERT_KIND, alerts.WARN, text)])
