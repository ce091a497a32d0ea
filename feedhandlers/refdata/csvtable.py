"""Reads a CSV file against a table schema of q/schema.q into rows, collecting `file:line: field: message` errors.

Columns are matched by header name (any order); `time` may be left out (rows are stamped with the
load time) unless the caller asks for times. Blank lines and lines starting with `#` are skipped.
Shared by the reference data loader and the quote replay.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.codec import text_array
from common.schema import TableSchema


class TableFileError(ValueError):
    """Files had errors; .errors lists every `file:line: field: message`."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__(f"{len(errors)} error(s):\n" + "\n".join(errors))


@dataclass
class Row:
    where: str                  # "file:line"
    values: dict


class Errors(list):
    """The problems found so far, each `file:line: field: message`.

    Also what checks against other files should not repeat: `unreadable` files (no usable rows: cannot
    be read, or a bad header) and `rejected` {file: sym values of rows that had errors}.
    """

    def __init__(self):
        super().__init__()
        self.unreadable: set[str] = set()
        self.rejected: dict[str, set[str]] = {}

    def add(self, where: str, field: str, message: str):
        self.append(f"{where}: {field}: {message}")


def _parse_value(text: str, qtype: str, blank_ok: bool, now_ns: int | None):
    """One CSV field as the column's q type (a blank timestamp is now_ns if given); raises ValueError."""
    text = text.strip()
    if not text:
        if qtype in ("symbol", "string") and blank_ok:
            return ""
        if qtype == "timestamp" and now_ns is not None:
            return np.datetime64(now_ns, "ns")
        if qtype == "float" and blank_ok:
            return math.nan
        if qtype == "date" and blank_ok:
            return np.datetime64("NaT", "D")
        raise ValueError("must not be blank")
    if qtype in ("symbol", "string"):
        return text
    try:
        if qtype == "float":
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        if qtype in ("long", "int"):
            return int(text)
        if qtype == "boolean":
            return {"0": False, "1": True, "false": False, "true": True}[text]
        if qtype == "date":
            return np.datetime64(text, "D")
        if qtype == "timestamp":
            return np.datetime64(text.removesuffix("Z"), "ns")
    except (ValueError, KeyError):
        raise ValueError(f"{text!r} is not a {'finite ' if qtype == 'float' else ''}{qtype}") from None
    raise ValueError(f"unsupported column type {qtype}")


def read_table(path: Path, schema: TableSchema, errors: Errors, now_ns: int | None,
               required: set[str] = frozenset(), blank_allowed: set[str] = frozenset(),
               derived: set[str] = frozenset()) -> list[Row]:
    """Parses one CSV against its table schema; problems go to `errors`.

    `now_ns`: the time of rows whose `time` is absent or blank; None makes `time` required.
    `required`: symbol / string columns that must not be blank. `blank_allowed`: non-nullable float /
    date columns the caller fills in itself (blank reads as NaN / NaT). `derived`: columns computed by
    the caller, not read from the file.
    """
    name = path.name
    try:
        f = open(path, newline="")
    except OSError as e:
        errors.add(f"{name}:0", "file", f"cannot read: {e.strerror}")
        errors.unreadable.add(name)
        return []
    with f:
        reader = csv.reader(f)
        header = next((r for r in reader if r and not r[0].lstrip().startswith("#")), None)
        if header is None:
            errors.add(f"{name}:1", "header", "empty file, expected a header line")
            errors.unreadable.add(name)
            return []
        header = [h.strip() for h in header]
        hline = reader.line_num
        wanted = [c for c in schema.column_names if c not in derived]
        unknown = [h for h in header if h not in wanted]
        missing = [c for c in wanted if c not in header and (c != "time" or now_ns is None)]
        dupes = {h for h in header if header.count(h) > 1}
        for h in unknown:
            errors.add(f"{name}:{hline}", h, f"unknown column (table {schema.name} has {', '.join(wanted)})")
        for c in missing:
            errors.add(f"{name}:{hline}", c, "missing column")
        for h in dupes:
            errors.add(f"{name}:{hline}", h, "column named twice")
        if unknown or missing or dupes:
            errors.unreadable.add(name)
            return []
        rows = []
        for record in reader:
            where = f"{name}:{reader.line_num}"
            if not any(v.strip() for v in record) or record[0].lstrip().startswith("#"):
                continue
            if len(record) != len(header):
                errors.add(where, "row", f"{len(record)} fields, the header has {len(header)}")
                _reject(errors, name, header, record)
                continue
            values, ok = {}, True
            for field, text in zip(header, record):
                col = schema.column(field)
                blank_ok = field in blank_allowed or (
                    col.nullable if col.qtype in ("float", "date") else field not in required)
                try:
                    values[field] = _parse_value(text, col.qtype, blank_ok, now_ns)
                except ValueError as e:
                    errors.add(where, field, str(e))
                    ok = False
            if ok:
                values.setdefault("time", np.datetime64(now_ns, "ns"))
                rows.append(Row(where, values))
            else:
                _reject(errors, name, header, record)
        return rows


def _reject(errors: Errors, name: str, header: list[str], record: list[str]) -> None:
    where = header.index("sym") if "sym" in header else len(record)
    if where < len(record):
        errors.rejected.setdefault(name, set()).add(record[where].strip())


def to_batch(rows: list[Row], schema: TableSchema) -> dict[str, np.ndarray]:
    """The rows as a columnar batch in schema order."""
    batch = {}
    for col in schema.columns:
        data = [r.values[col.name] for r in rows]
        if col.is_text:
            arr = text_array(data)
        else:
            arr = np.array(data, dtype=col.dtype) if data else np.empty(0, dtype=col.dtype)
        batch[col.name] = arr
    return batch
