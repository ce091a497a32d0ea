"""Parses q/schema.q (the single source of truth for table schemas) and validates columnar batches.

Understood q forms: `name:([]col:`type$();...)` table definitions (continuation lines start with
whitespace, as in q), `.mt.nullable.name:`c1`c2` declaring the float / timestamp columns allowed to
hold nulls, and `/` comments. Anything else is an error naming file:line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.codec import text_array
from common.defaults import SCHEMA_PATH

# q type name -> (q type char, numpy dtype). Strings (q char vectors, `()` in a schema) are "string".
QTYPES: dict[str, tuple[str, np.dtype]] = {
    "timestamp": ("p", np.dtype("datetime64[ns]")),
    "symbol": ("s", np.dtype(object)),
    "float": ("f", np.dtype("float64")),
    "long": ("j", np.dtype("int64")),
    "int": ("i", np.dtype("int32")),
    "boolean": ("b", np.dtype("bool")),
    "date": ("d", np.dtype("datetime64[D]")),
    "timespan": ("n", np.dtype("timedelta64[ns]")),
    "string": ("C", np.dtype(object)),
}
NULLABLE_KINDS = "fMm"          # float, datetime64, timedelta64: the kinds with a null worth checking
_NAT = np.iinfo(np.int64).min


class SchemaError(ValueError):
    """q/schema.q is malformed; the message starts with file:line."""


class BatchError(ValueError):
    """A batch does not match its table's schema; the message says which column and why."""


@dataclass(frozen=True)
class Column:
    name: str
    qtype: str              # q type name, a key of QTYPES
    dtype: np.dtype
    nullable: bool

    @property
    def is_text(self) -> bool:
        return self.dtype == object


@dataclass
class TableSchema:
    name: str
    columns: list[Column]
    _index: dict[str, Column] = field(init=False, repr=False)

    def __post_init__(self):
        self._index = {c.name: c for c in self.columns}

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return self._index[name]

    def empty(self) -> dict[str, np.ndarray]:
        return {c.name: np.empty(0, dtype=c.dtype) for c in self.columns}

    def qtypes(self) -> list[list[str]]:
        return [[c.name, c.qtype] for c in self.columns]

    def validate(self, batch: dict, stamp_ns: int | None = None) -> tuple[int, dict]:
        """Checks a decoded batch; returns (rows, batch) with text columns as numpy object arrays.

        A batch without `time` is stamped with `stamp_ns` when one is given. Raises BatchError for an
        unknown / missing / extra / mistyped column, ragged lengths, or nulls where not allowed.
        """
        if not isinstance(batch, dict):
            raise BatchError(f"{self.name}: a batch is a map of column name to column, got {type(batch).__name__}")
        names = batch.keys()
        if "time" not in names and stamp_ns is not None:
            batch = dict(batch)
            first = next(iter(batch.values()), None)
            batch["time"] = np.full(len(first) if first is not None else 0, stamp_ns, dtype="datetime64[ns]")
        if len(batch) != len(self.columns) or any(n not in self._index for n in names):
            missing = [c for c in self.column_names if c not in batch]
            extra = [n for n in batch if n not in self._index]
            raise BatchError(f"{self.name}: columns do not match the schema"
                             + (f"; missing {missing}" if missing else "") + (f"; extra {extra}" if extra else ""))
        rows = -1
        out = {}
        for col in self.columns:
            values = batch[col.name]
            if col.is_text:
                values = _text_column(self.name, col, values)
            elif not isinstance(values, np.ndarray) or values.dtype != col.dtype or values.ndim != 1:
                got = f"{values.dtype}{'' if getattr(values, 'ndim', 1) == 1 else ' (not 1-d)'}" \
                    if isinstance(values, np.ndarray) else type(values).__name__
                raise BatchError(f"{self.name}.{col.name}: expected {col.qtype} ({col.dtype}), got {got}")
            elif not col.nullable and col.dtype.kind in NULLABLE_KINDS and _has_null(values):
                raise BatchError(f"{self.name}.{col.name}: null (NaN/NaT) not allowed in this column")
            if rows < 0:
                rows = len(values)
            elif len(values) != rows:
                raise BatchError(f"{self.name}.{col.name}: length {len(values)}, other columns have {rows} (ragged batch)")
            out[col.name] = values
        return rows, out


def _has_null(values: np.ndarray) -> bool:
    if len(values) <= 16:                       # tiny batches: plain Python beats a numpy ufunc call
        if values.dtype.kind == "f":
            return any(v != v for v in values.tolist())
        return _NAT in values.view(np.int64).tolist()
    if values.dtype.kind == "f":
        return bool(np.isnan(values).any())
    return bool((values.view(np.int64) == _NAT).any())


def _text_column(table: str, col: Column, values) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == object and values.ndim == 1:
        items = values
    elif isinstance(values, (list, tuple)):
        items = values
    else:
        got = f"array of {values.dtype}" if isinstance(values, np.ndarray) else type(values).__name__
        raise BatchError(f"{table}.{col.name}: expected a list of str ({col.qtype}), got {got}")
    for v in items:
        if type(v) is not str:
            raise BatchError(f"{table}.{col.name}: expected str items ({col.qtype}), got {type(v).__name__}")
    return items if isinstance(items, np.ndarray) else text_array(items)


_TABLE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)\s*:\s*\(\s*\[\s*\]\s*(.*)\)\s*$", re.S)
_COL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)\s*:\s*(?:`([a-z]+)\$\(\)|\(\))$")
_NULLABLE_RE = re.compile(r"^\.mt\.nullable\.([A-Za-z][A-Za-z0-9_]*)\s*:\s*((?:`[A-Za-z0-9_]+)+)$")


def _statements(text: str):
    """Yields (first line number, statement) joining q continuation lines and dropping comments."""
    start, buf = 0, []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line or line.lstrip().startswith("/"):
            continue
        line = re.sub(r"\s+/.*$", "", line)          # trailing comment: whitespace then /
        if line[0].isspace() and buf:
            buf.append(line.strip())
            continue
        if buf:
            yield start, "".join(buf)
        start, buf = n, [line.strip()]
    if buf:
        yield start, "".join(buf)


def parse_schema(text: str, path: str = "<schema>") -> dict[str, TableSchema]:
    """Parses schema text; raises SchemaError('path:line: what is wrong')."""
    tables: dict[str, TableSchema] = {}
    nullable: dict[str, tuple[int, list[str]]] = {}
    for line, stmt in _statements(text):
        where = f"{path}:{line}"
        if m := _NULLABLE_RE.match(stmt):
            nullable[m.group(1)] = (line, m.group(2).split("`")[1:])
            continue
        m = _TABLE_RE.match(stmt)
        if not m:
            raise SchemaError(f"{where}: not a table definition `name:([]col:`type$();...)`: {stmt[:60]}")
        name, body = m.group(1), m.group(2)
        if name in tables:
            raise SchemaError(f"{where}: table {name} defined twice")
        columns, seen = [], set()
        for part in (p.strip() for p in body.split(";")):
            cm = _COL_RE.match(part)
            if not cm:
                raise SchemaError(f"{where}: bad column `{part}` in {name} (expected col:`type$() or col:())")
            cname, qtype = cm.group(1), cm.group(2) or "string"
            if qtype not in QTYPES or qtype == "string" and cm.group(2):
                raise SchemaError(f"{where}: unknown type `{qtype}` for {name}.{cname}")
            if cname in seen:
                raise SchemaError(f"{where}: column {cname} twice in {name}")
            seen.add(cname)
            columns.append(Column(cname, qtype, QTYPES[qtype][1], False))
        if [c.name for c in columns[:2]] != ["time", "sym"] or columns[0].qtype != "timestamp" \
                or columns[1].qtype != "symbol":
            raise SchemaError(f"{where}: {name} must start with time:`timestamp$() and sym:`symbol$()")
        tables[name] = TableSchema(name, columns)
    for name, (line, cols) in nullable.items():
        where = f"{path}:{line}"
        if name not in tables:
            raise SchemaError(f"{where}: .mt.nullable names unknown table {name}")
        t = tables[name]
        for c in cols:
            if c not in t._index:
                raise SchemaError(f"{where}: .mt.nullable.{name} names unknown column {c}")
            if c == "time" or t._index[c].dtype.kind not in NULLABLE_KINDS:
                raise SchemaError(f"{where}: {name}.{c} cannot be declared nullable")
        tables[name] = TableSchema(name, [Column(c.name, c.qtype, c.dtype, c.name in cols) for c in t.columns])
    if not tables:
        raise SchemaError(f"{path}:1: no tables defined")
    return tables


def load_schemas(path: str | Path | None = None) -> dict[str, TableSchema]:
    """Reads and parses a schema file (default q/schema.q)."""
    p = Path(path) if path else SCHEMA_PATH
    try:
        text = p.read_text()
    except OSError as e:
        raise SchemaError(f"{p}:0: cannot read schema file: {e.strerror}") from e
    return parse_schema(text, str(p))


def schemas_from_qtypes(spec: dict[str, list[list[str]]]) -> dict[str, TableSchema]:
    """Rebuilds TableSchemas from the {table: [[col, qtype], ...]} form sent in handshakes (nulls allowed)."""
    return {t: TableSchema(t, [Column(c, q, QTYPES[q][1], True) for c, q in cols]) for t, cols in spec.items()}
