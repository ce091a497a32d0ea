"""Replays a CSV of ticks at the original speed, accelerated, or as fast as possible.

The file has the quote table's columns (q/schema.q) by header name: `time,sym,bid,ask,price,size,vol,src`;
time (UTC, `YYYY-MM-DDTHH:MM:SS[.fff...]`), sym and price are required, bid / ask / size / vol may be
blank, src blank becomes `replay`. Rows must be in time order. The whole file is checked when loaded:
every problem is reported as `file:line: field: message` and nothing is replayed.

A row at original time t is due at start (`start(now_ns)`) + (t - t_first) / speed (speed 0: everything at once).
Rows keep their original time unless `restamp`, which stamps each with the wall-clock time it was due.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.schema import TableSchema, load_schemas
from feedhandlers.prices.source import QuoteSource
from feedhandlers.refdata.csvtable import Errors, TableFileError, read_table, to_batch


class CsvReplay(QuoteSource):
    name = "replay"

    def __init__(self, path: str | Path, speed: float = 1.0, restamp: bool = False, max_rows: int = 10_000,
                 schema: TableSchema | None = None):
        if speed < 0 or max_rows < 1:
            raise ValueError("speed >= 0 and max_rows >= 1 are required")
        self.batch = load_ticks(Path(path), schema or load_schemas()["quote"])
        offsets = (self.batch["time"] - self.batch["time"][:1]).astype(np.int64)
        self.offsets_ns = np.round(offsets / speed).astype(np.int64) if speed else np.zeros_like(offsets)
        self.due_ns = self.offsets_ns
        self.restamp = restamp
        self.max_rows = max_rows
        self.sent = 0

    def start(self, now_ns: int) -> None:
        self.due_ns = now_ns + self.offsets_ns

    def next_due_ns(self, now_ns: int) -> int | None:
        return int(self.due_ns[self.sent]) if self.sent < len(self.due_ns) else None

    def poll(self, now_ns: int) -> dict[str, np.ndarray] | None:
        end = min(int(np.searchsorted(self.due_ns, now_ns, side="right")), self.sent + self.max_rows)
        if end <= self.sent:
            return None
        rows = slice(self.sent, end)
        self.sent = end
        batch = {col: values[rows] for col, values in self.batch.items()}
        if self.restamp:
            batch["time"] = self.due_ns[rows].astype("datetime64[ns]")
        return batch

    def status(self) -> dict:
        return {"source": self.name, "rows": len(self.due_ns), "sent": self.sent}


def load_ticks(path: Path, schema: TableSchema) -> dict[str, np.ndarray]:
    """The ticks of a replay file as one `quote` batch; raises TableFileError listing every problem."""
    errors = Errors()
    rows = read_table(path, schema, errors, None, required={"sym"})
    previous = None
    for row in rows:
        v = row.values
        v["src"] = v["src"] or CsvReplay.name
        if not v["price"] > 0:
            errors.add(row.where, "price", "must be > 0")
        if previous is not None and v["time"] < previous:
            errors.add(row.where, "time", f"{v['time']} is earlier than the row before (rows must be in time order)")
        previous = v["time"]
    if errors:
        raise TableFileError(list(errors))
    return to_batch(rows, schema)
