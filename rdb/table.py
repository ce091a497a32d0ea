"""Table: one in-memory table of the day, columnar, time-ordered, with a per-sym row index (kdb+ `g#`).

Storage: one GrowableArray per column in the schema's dtype, except symbol columns, which hold int32
codes into the store's SymList. `sym_index[code]` is the ascending row ids of that sym. The index is
brought up to date lazily, on the first read after appends, in one grouped pass over the rows
appended since: a stream of small batches pays the per-sym work once per read, not once per batch.

Invariant: rows are sorted by `time` (non-decreasing, ties in arrival order), so a time range is two
binary searches on the time column, and rows of one sym in a time range are two more binary searches
on that sym's row ids. Appends in time order (the normal case) are plain appends. An out-of-order
batch takes the sorted-insert path: the batch is merged with the table's tail from the first row
later than the batch's earliest time, that tail is rewritten in place, and the row ids of that tail
are re-indexed; its cost is proportional to how far back in time the batch reaches, not to the table.

Row ids are int32: a table holds at most 2**31 - 1 rows (a day in memory in one process).
"""
from __future__ import annotations

import numpy as np

from rdb.growable import GrowableArray
from rdb.symlist import SymList

MAX_ROWS = np.iinfo(np.int32).max
ROW_DTYPE = np.int32


class UnknownName(LookupError):
    """A query named a table or column that does not exist; the message lists the valid names."""


class Table:
    def __init__(self, schema, syms: SymList):
        """`schema`: a common.schema.TableSchema (columns with .name, .qtype, .dtype)."""
        self.schema = schema
        self.name = schema.name
        self.syms = syms
        self.symbol_columns = frozenset(c.name for c in schema.columns if c.qtype == "symbol")
        self._data = {c.name: GrowableArray(np.int32 if c.name in self.symbol_columns else c.dtype)
                      for c in schema.columns}
        self._index: dict[int, GrowableArray] = {}
        self._indexed = 0                   # rows [0, _indexed) are in _index

    # ---- reading: the public API the query layer builds on -------------------------------------------
    def __len__(self) -> int:
        return len(self._data["time"])

    @property
    def column_names(self) -> list[str]:
        return self.schema.column_names

    def column(self, name: str) -> np.ndarray:
        """The stored column (int32 codes for symbol columns), a live view valid until the next append."""
        try:
            return self._data[name].view()
        except KeyError:
            raise UnknownName(f"{self.name}: unknown column '{name}' (columns: {', '.join(self.column_names)})") from None

    @property
    def sym_index(self) -> dict[int, GrowableArray]:
        """sym code -> GrowableArray of that sym's ascending row ids (kdb+ `g#`), up to date."""
        self.update_index()
        return self._index

    def update_index(self) -> None:
        """Indexes the rows appended since the last read (reads do this themselves)."""
        if self._indexed < len(self):
            self._index_rows(self._indexed)
            self._indexed = len(self)

    def sym_rows(self, code: int) -> np.ndarray:
        """Ascending row ids of one sym code (empty if the sym has no row), a live view."""
        rows = self.sym_index.get(int(code))
        return rows.view() if rows is not None else np.empty(0, dtype=ROW_DTYPE)

    def time_bounds(self, start=None, end=None) -> tuple[int, int]:
        """Row range [lo, hi) of rows with start <= time <= end (None: unbounded), by binary search."""
        time = self.column("time")
        lo = 0 if start is None else int(np.searchsorted(time, start, side="left"))
        hi = len(time) if end is None else int(np.searchsorted(time, end, side="right"))
        return lo, max(lo, hi)

    def rows_for(self, codes, lo: int, hi: int) -> np.ndarray:
        """Ascending row ids in [lo, hi) of the given sym codes (codes < 0 match nothing)."""
        parts = []
        for code in set(int(c) for c in codes):
            rows = self.sym_rows(code)
            a, b = np.searchsorted(rows, (lo, hi))
            if b > a:
                parts.append(rows[a:b])
        if not parts:
            return np.empty(0, dtype=ROW_DTYPE)
        if len(parts) == 1:
            return parts[0]
        out = np.concatenate(parts)
        out.sort()
        return out

    def gather(self, columns, rows) -> dict[str, np.ndarray]:
        """The given columns at `rows` (a slice or row ids), as new arrays; symbols decoded to str."""
        out = {}
        for name in columns:
            values = self.column(name)[rows]
            if name in self.symbol_columns:
                values = self.syms.decode(values)
            elif isinstance(rows, slice):
                values = values.copy()
            out[name] = values
        return out

    def select(self, syms=None, start=None, end=None, columns=None) -> dict[str, np.ndarray]:
        """Rows with sym in `syms` (None: all) and start <= time <= end, in time order."""
        columns = self._checked_columns(columns)
        lo, hi = self.time_bounds(start, end)
        if syms is None:
            return self.gather(columns, slice(lo, hi))
        return self.gather(columns, self.rows_for(self.syms.lookup(list(syms)), lo, hi))

    def last(self, syms=None, columns=None) -> dict[str, np.ndarray]:
        """The last row of each sym (the given syms in that order, else every sym in first-seen order)."""
        columns = self._checked_columns(columns)
        index = self.sym_index
        codes = self.syms.lookup(list(syms)) if syms is not None else list(index)
        rows = [int(index[c].view()[-1]) for c in (int(c) for c in codes) if c in index]
        return self.gather(columns, np.array(rows, dtype=ROW_DTYPE))

    def _checked_columns(self, columns) -> list[str]:
        if columns is None:
            return self.column_names
        names = list(columns)
        for name in names:
            self.column(name)
        return names

    # ---- writing ------------------------------------------------------------------------------------
    def append(self, batch: dict) -> int:
        """Appends a columnar batch (every schema column; symbols as str); returns the rows added.

        All columns are converted before anything is written, so a bad batch changes nothing.
        """
        stored = self._stored(batch)
        k = len(stored["time"])
        n = len(self)
        if k == 0:
            return 0
        if n + k > MAX_ROWS:
            raise OverflowError(f"{self.name}: {n + k} rows exceed the {MAX_ROWS} rows of one table")
        time = stored["time"]
        if k > 1 and (time[1:] < time[:-1]).any():
            order = np.argsort(time, kind="stable")
            stored = {name: values[order] for name, values in stored.items()}
            time = stored["time"]
        if n == 0 or time[0] >= self._data["time"].view()[n - 1]:
            start = n
        else:
            start = int(np.searchsorted(self.column("time"), time[0], side="right"))
        if start == n:
            for name, values in stored.items():
                self._data[name].extend(values)
        else:
            self._merge_tail(start, stored)
        return k

    def _stored(self, batch: dict) -> dict[str, np.ndarray]:
        if not isinstance(batch, dict):
            raise TypeError(f"{self.name}: a batch is a dict of columns, got {type(batch).__name__}")
        missing = [c for c in self.column_names if c not in batch]
        extra = [c for c in batch if c not in self._data]
        if missing or extra:
            raise ValueError(f"{self.name}: batch columns do not match the schema"
                             + (f"; missing {missing}" if missing else "") + (f"; extra {extra}" if extra else ""))
        out, rows = {}, None
        for col in self.schema.columns:
            values = batch[col.name]
            if col.name in self.symbol_columns:
                values = self.syms.encode(values)
            elif col.dtype == object:
                values = np.asarray(values, dtype=object)
            else:
                values = np.asarray(values)
                if values.dtype != col.dtype:
                    raise TypeError(f"{self.name}.{col.name}: expected {col.qtype} ({col.dtype}), got {values.dtype}")
            if values.ndim != 1 or (rows is not None and len(values) != rows):
                raise ValueError(f"{self.name}.{col.name}: ragged batch ({len(values)} rows, expected {rows})")
            rows = len(values)
            out[col.name] = values
        return out

    def _merge_tail(self, start: int, stored: dict[str, np.ndarray]) -> None:
        """Sorted insert: merges rows [start, n) with the (time-sorted) batch and rewrites them."""
        n = len(self)
        if start < self._indexed:           # un-index the tail's indexed rows, before they are rewritten
            for code in np.unique(self.column("sym")[start:self._indexed]).tolist():
                rows = self._index[code]
                rows.truncate(int(np.searchsorted(rows.view(), start)))
            self._indexed = start
        merged_time = np.concatenate([self.column("time")[start:n], stored["time"]])
        order = np.argsort(merged_time, kind="stable")          # the tail first on equal times
        for name, col in self._data.items():
            merged = np.concatenate([col.view()[start:n], stored[name]])[order]
            col.truncate(start)
            col.extend(merged)

    def _index_rows(self, start: int) -> None:
        """Adds rows [start, n) to the sym index (grouped by sym, ascending within each)."""
        codes = self.column("sym")[start:]
        if len(codes) == 1:
            self._sym_rows_for(int(codes[0])).extend(np.array([start], dtype=ROW_DTYPE))
            return
        order = np.argsort(codes, kind="stable").astype(ROW_DTYPE)
        sorted_codes = codes[order]
        bounds = np.flatnonzero(sorted_codes[1:] != sorted_codes[:-1]) + 1
        order += start
        for a, b in zip([0, *bounds.tolist()], [*bounds.tolist(), len(codes)]):
            self._sym_rows_for(int(sorted_codes[a])).extend(order[a:b])

    def _sym_rows_for(self, code: int) -> GrowableArray:
        rows = self._index.get(code)
        if rows is None:
            rows = self._index[code] = GrowableArray(ROW_DTYPE)
        return rows
