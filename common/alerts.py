"""The `alert` row (q/schema.q `alert`), built in one place, and the one severity vocabulary: every
process that raises an alert (the calc's rules and data issues, the FIX feedhandler's data alerts)
makes its rows with `alert_row` and its batches with `alert_batch`.

Severities: `high` and `warn` for an alert that fires, `info` for one that clears (or only informs).
"""
from __future__ import annotations

import math

import numpy as np

from common.codec import text_array

INFO, WARN, HIGH = "info", "warn", "high"
SEVERITIES = (INFO, WARN, HIGH)
FIRING = (WARN, HIGH)                  # what a firing alert may be (config: alerts.severity_*)
TEXT_COLUMNS = ("sym", "kind", "severity", "model", "text", "drivers")


def alert_row(time_ns: int, sym: str, kind: str, severity: str, text: str, *, model: str = "",
              value: float = math.nan, threshold: float = math.nan, drivers: str = "",
              stress: float = math.nan) -> dict:
    """One `alert` row (columns in schema order); ValueError for a severity not in SEVERITIES."""
    if severity not in SEVERITIES:
        raise ValueError(f"alert severity {severity!r} is not one of {SEVERITIES}")
    return {"time": time_ns, "sym": sym, "kind": kind, "severity": severity, "model": model,
            "value": value, "threshold": threshold, "text": text, "drivers": drivers, "stress": stress}


def alert_batch(rows: list[dict]) -> dict[str, np.ndarray]:
    """The `alert` batch of rows made by `alert_row`, in their order."""
    out = {}
    for name in rows[0]:
        values = [r[name] for r in rows]
        if name == "time":
            out[name] = np.array(values, dtype=np.int64).view("datetime64[ns]")
        elif name in TEXT_COLUMNS:
            out[name] = text_array(values)
        else:
            out[name] = np.array(values, dtype=np.float64)
    return out
