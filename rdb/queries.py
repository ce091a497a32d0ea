"""The rdb's RPC ops (docs/protocol.md): `tables`, `select`, `last`, `count`, `qsql` (rdb.qsql).

Each handler checks its arguments and raises ValueError / TypeError / KeyError with a q-style message
(the RpcServer turns it into an error reply). Times are accepted as int nanoseconds since the epoch,
numpy datetime64, or text: ISO `2026-11-21T05:00:00` or q `2026.11.21D05:00:00.000`.
"""
from __future__ import annotations

import re

import numpy as np

from rdb.qsql.engine import execute
from rdb.qsql.errors import QError
from rdb.store import Store

_Q_TIMESTAMP = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})(?:D(.*))?$")


def parse_timestamp(value, what: str):
    """None, or a datetime64[ns] for an int (ns), datetime64 or timestamp text; TypeError/ValueError else."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return np.datetime64(int(value), "ns")
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[ns]")
    if isinstance(value, str):
        text = value.strip()
        if m := _Q_TIMESTAMP.match(text):
            text = f"{m[1]}-{m[2]}-{m[3]}" + (f"T{m[4]}" if m[4] else "")
        try:
            return np.datetime64(text, "ns")
        except ValueError:
            raise ValueError(f"'{what}: bad timestamp '{value}' (ISO 2026-11-21T05:00:00 or q 2026.11.21D05:00:00)") from None
    raise TypeError(f"'type: {what} must be a timestamp (int ns, datetime64 or text), got {type(value).__name__}")


def parse_names(value, what: str) -> list[str] | None:
    """None, or a list of str from one str or a list of str; TypeError else."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, np.ndarray)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"'type: {what} must be a symbol or a list of symbols, got {value!r:.80}")


class QueryHandlers:
    """RPC handlers over a Store; `handlers()` is the op table for common.rpc.RpcServer."""

    def __init__(self, store: Store):
        self.store = store

    def handlers(self) -> dict:
        return {"tables": self.tables, "select": self.select, "last": self.last,
                "count": self.count, "qsql": self.qsql}

    def tables(self, req: dict) -> dict:
        return {"tables": {name: t.schema.qtypes() for name, t in self.store.tables.items()}}

    def select(self, req: dict) -> dict:
        table = self.store.table(req.get("table"))
        start = parse_timestamp(req.get("start"), "start")
        end = parse_timestamp(req.get("end"), "end")
        result = table.select(syms=parse_names(req.get("syms"), "syms"), start=start, end=end,
                              columns=parse_names(req.get("columns"), "columns"))
        return self._result(table, result)

    def last(self, req: dict) -> dict:
        table = self.store.table(req.get("table"))
        result = table.last(syms=parse_names(req.get("syms"), "syms"),
                            columns=parse_names(req.get("columns"), "columns"))
        return self._result(table, result)

    def count(self, req: dict) -> dict:
        name = req.get("table")
        if name is None:
            return {"counts": self.store.counts()}
        return {"count": len(self.store.table(name))}

    def qsql(self, req: dict) -> dict:
        """A q-sql query string (rdb.qsql) -> {"result": its wire form}; errors are q's ('type ...)."""
        query = req.get("query")
        if not isinstance(query, str):
            raise TypeError(f"'type: query must be a string, got {type(query).__name__}")
        try:
            return {"result": execute(self.store, query).to_wire()}
        except QError as e:
            raise ValueError(str(e)) from None

    @staticmethod
    def _result(table, result: dict) -> dict:
        return {"table": result, "types": {c: table.schema.column(c).qtype for c in result}}
