"""End of day: writes the day's tables to the HDB as Parquet, `<hdb>/date=YYYY-MM-DD/<table>.parquet`.

Each table is sorted by sym (by name) then time, which the per-sym row index gives without a sort of
the rows: concatenate the row ids of each sym in name order (they are already in time order).
Symbol columns are Parquet strings (dictionary-encoded in the file), timestamps ns without time zone
(UTC), dates date32, timespans duration[ns]. Every table of the store gets a file, empty or not.

Atomicity: the whole partition is written into a hidden temporary directory beside it, fsynced,
then renamed to `date=...` in one step, so a crash mid-write leaves no partial partition (only a
hidden `.date=...` directory, which the next write for that date removes). A partition that
already exists is swapped out (rename aside, rename in, delete the old one).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rdb.table import Table

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ARROW_TYPES = {"timestamp": pa.timestamp("ns"), "float": pa.float64(), "long": pa.int64(),
                "int": pa.int32(), "boolean": pa.bool_(), "date": pa.date32(),
                "timespan": pa.duration("ns"), "symbol": pa.string(), "string": pa.string()}


def sym_time_order(table: Table) -> np.ndarray:
    """Row ids of the table sorted by sym name, then time (ties in row order)."""
    codes = np.fromiter(table.sym_index, dtype=np.int64, count=len(table.sym_index))
    by_name = codes[np.argsort(table.syms.names[codes], kind="stable")]
    parts = [table.sym_rows(c) for c in by_name.tolist()]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int32)


def to_arrow(table: Table) -> pa.Table:
    """The table as a pyarrow Table sorted by sym then time."""
    order = sym_time_order(table)
    arrays = []
    for col in table.schema.columns:
        values = table.column(col.name)[order]
        if col.qtype == "symbol":
            arrays.append(_symbols(values, table.syms.names))
        elif col.qtype == "string":
            arrays.append(pa.array(values.tolist(), type=pa.string()))
        else:
            arrays.append(pa.array(values, type=_ARROW_TYPES[col.qtype]))
    return pa.Table.from_arrays(arrays, names=table.column_names)


def _symbols(codes: np.ndarray, names: np.ndarray) -> pa.Array:
    """int32 sym codes as an Arrow string array, via a dictionary of only the codes present."""
    present = np.zeros(len(names), dtype=bool)
    present[codes] = True
    used = np.flatnonzero(present)
    remap = np.cumsum(present, dtype=np.int32) - 1
    dictionary = pa.array(names[used].tolist(), type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(remap[codes]), dictionary).cast(pa.string())


def write_partition(tables: dict[str, Table], date: str, hdb: str | Path) -> Path:
    """Writes every table into `<hdb>/date=<date>/`, atomically; returns the partition's path."""
    if not isinstance(date, str) or not _DATE.match(date):
        raise ValueError(f"end of day: bad date {date!r} (expected YYYY-MM-DD)")
    hdb = Path(hdb)
    hdb.mkdir(parents=True, exist_ok=True)
    final = hdb / f"date={date}"
    for stale in hdb.glob(f".date={date}.*"):           # left by a write that crashed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = hdb / f".date={date}.tmp-{os.getpid()}"
    tmp.mkdir()
    for name, table in tables.items():
        path = tmp / f"{name}.parquet"
        pq.write_table(to_arrow(table), path)
        _fsync(path)
    _fsync(tmp)
    if final.exists():
        old = hdb / f".date={date}.old-{os.getpid()}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    _fsync(hdb)
    return final


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
