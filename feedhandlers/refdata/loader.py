"""Loads and validates the reference data files (data/ref/*.csv) into columnar batches, all or nothing.

One CSV per table of q/schema.q: instrument.csv, account.csv, position.csv, collateral.csv (intraday
movements), and optionally settle.csv and paramfile.csv. Columns are matched by header name (any
order); `time` may be left out (rows are stamped when published). Blank lines and lines starting with
`#` are skipped. Every problem is reported as `file:line: field: what is wrong`; if there is any, the
loader raises RefDataError with all of them and returns nothing, so nothing is ever half-loaded.

Settlement prices default to the last close of the price history (common/history.py) for every
instrument that has one; settle.csv rows (e.g. for derivatives) are added on top and win.
A position's price left blank is the instrument's settlement price.
"""
from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.defaults import REPO_ROOT
from common.history import History, load_history
from common.schema import BatchError, TableSchema, load_schemas

REFDATA_DIR = REPO_ROOT / "data" / "ref"
PUBLISH_ORDER = ("instrument", "account", "settle", "position", "collateral", "paramfile")
OPTIONAL_FILES = {"settle", "paramfile"}
ASSET_CLASSES = {"equity", "etf", "future", "option"}
MARGIN_MODELS = {"var", "span"}
DERIVATIVE_FIELDS = ("underlying", "expiry", "strike", "putcall")
# symbol columns that must not be blank, per table (all others may be)
REQUIRED_SYMBOLS = {
    "instrument": {"sym", "assetclass", "ccy", "sector", "ccp", "model"},
    "account": {"sym", "desk", "ccp", "model", "ccy"},
    "position": {"sym", "account"},
    "settle": {"sym"},
    "collateral": {"sym", "kind", "ref"},
    "paramfile": {"sym", "kind"},
}
# non-nullable columns that may be left blank in the file because the loader fills them in
BLANK_ALLOWED = {"position": {"price"}}


class RefDataError(ValueError):
    """The reference files have errors; .errors lists every `file:line: field: message`."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__(f"{len(errors)} reference data error(s):\n" + "\n".join(errors))


@dataclass
class Row:
    where: str                  # "file:line"
    values: dict


class _Errors(list):
    def add(self, where: str, field: str, message: str):
        self.append(f"{where}: {field}: {message}")


def _parse_value(text: str, qtype: str, blank_ok: bool, now_ns: int):
    """One CSV field as the column's q type; raises ValueError with the reason."""
    text = text.strip()
    if not text:
        if qtype in ("symbol", "string") and blank_ok:
            return ""
        if qtype == "timestamp":
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


def read_table(path: Path, schema: TableSchema, errors: _Errors, now_ns: int,
               derived: set[str] = frozenset()) -> list[Row]:
    """Parses one CSV against its table schema; problems go to `errors`. `derived` columns are computed, not read."""
    name = path.name
    try:
        f = open(path, newline="")
    except OSError as e:
        errors.add(f"{name}:0", "file", f"cannot read: {e.strerror}")
        return []
    with f:
        reader = csv.reader(f)
        header = next((r for r in reader if r and not r[0].lstrip().startswith("#")), None)
        if header is None:
            errors.add(f"{name}:1", "header", "empty file, expected a header line")
            return []
        header = [h.strip() for h in header]
        hline = reader.line_num
        wanted = [c for c in schema.column_names if c not in derived]
        unknown = [h for h in header if h not in wanted]
        missing = [c for c in wanted if c not in header and c != "time"]
        dupes = {h for h in header if header.count(h) > 1}
        for h in unknown:
            errors.add(f"{name}:{hline}", h, f"unknown column (table {schema.name} has {', '.join(wanted)})")
        for c in missing:
            errors.add(f"{name}:{hline}", c, "missing column")
        for h in dupes:
            errors.add(f"{name}:{hline}", h, "column named twice")
        if unknown or missing or dupes:
            return []
        rows = []
        required = REQUIRED_SYMBOLS.get(schema.name, set())
        blank_allowed = BLANK_ALLOWED.get(schema.name, set())
        for record in reader:
            where = f"{name}:{reader.line_num}"
            if not any(v.strip() for v in record) or record[0].lstrip().startswith("#"):
                continue
            if len(record) != len(header):
                errors.add(where, "row", f"{len(record)} fields, the header has {len(header)}")
                continue
            values, ok = {}, True
            for field, text in zip(header, record):
                col = schema.column(field)
                blank_ok = field in blank_allowed or (col.nullable if col.qtype in ("float", "date") else field not in required)
                try:
                    values[field] = _parse_value(text, col.qtype, blank_ok, now_ns)
                except ValueError as e:
                    errors.add(where, field, str(e))
                    ok = False
            if ok:
                values.setdefault("time", np.datetime64(now_ns, "ns"))
                rows.append(Row(where, values))
        return rows


def _unique(rows: list[Row], key, field: str, errors: _Errors) -> dict:
    seen: dict = {}
    for row in rows:
        k = key(row.values)
        if k in seen:
            errors.add(row.where, field, f"duplicate {k!r} (first at {seen[k].where})")
        else:
            seen[k] = row
    return seen


def _check_instruments(rows: list[Row], errors: _Errors):
    for row in rows:
        v = row.values
        if v["assetclass"] not in ASSET_CLASSES:
            errors.add(row.where, "assetclass", f"{v['assetclass']!r} is not one of {sorted(ASSET_CLASSES)}")
            continue
        if v["model"] not in MARGIN_MODELS:
            errors.add(row.where, "model", f"{v['model']!r} is not one of {sorted(MARGIN_MODELS)}")
        if not v["multiplier"] > 0:
            errors.add(row.where, "multiplier", "must be > 0")
        if not (math.isnan(v["adv"]) or v["adv"] >= 0):
            errors.add(row.where, "adv", "must be >= 0 or blank")
        given = {f for f in DERIVATIVE_FIELDS if not _blank(v[f])}
        needed = {"future": {"underlying", "expiry"}, "option": set(DERIVATIVE_FIELDS)}.get(v["assetclass"], set())
        for f in sorted(needed - given):
            errors.add(row.where, f, f"required for a {v['assetclass']}")
        for f in sorted(given - needed):
            errors.add(row.where, f, f"must be blank for a {v['assetclass']}")
        if "putcall" in given and v["putcall"] not in ("C", "P"):
            errors.add(row.where, "putcall", f"{v['putcall']!r} is not C or P")
        if "strike" in given and not v["strike"] > 0:
            errors.add(row.where, "strike", "must be > 0")


def _blank(value) -> bool:
    if isinstance(value, str):
        return not value
    if isinstance(value, float):
        return math.isnan(value)
    return np.isnat(value)


def _check_accounts(rows: list[Row], errors: _Errors):
    for row in rows:
        v = row.values
        if v["model"] not in MARGIN_MODELS:
            errors.add(row.where, "model", f"{v['model']!r} is not one of {sorted(MARGIN_MODELS)}")
        for f in ("collateral", "buffer", "threshold"):
            if v[f] < 0:
                errors.add(row.where, f, "must be >= 0")
        if not 0 < v["callpct"] <= 1:
            errors.add(row.where, "callpct", "must be in (0, 1] (a share of the buffer)")
        for f in ("imjump", "imjumpmins"):
            if not v[f] > 0:
                errors.add(row.where, f, "must be > 0")


def _check_refs(rows: list[Row], field: str, known: dict, what: str, errors: _Errors):
    for row in rows:
        if row.values[field] not in known:
            errors.add(row.where, field, f"unknown {what} {row.values[field]!r}")


def _settle_rows(instruments: dict, history: History, now_ns: int) -> list[Row]:
    """Settlement prices from the last close of the history, for the instruments that have one."""
    last = history.last_close()
    day = history.dates[-1]
    return [Row(f"history:{day}", {"time": np.datetime64(now_ns, "ns"), "sym": sym, "price": last[sym], "date": day})
            for sym in instruments if sym in last and not math.isnan(last[sym])]


def _paramfile_digests(rows: list[Row], folder: Path, errors: _Errors):
    """Resolves paramfile paths (relative to the CSV's folder) and adds their sha256."""
    for row in rows:
        path = (folder / row.values["path"]).resolve()
        try:
            row.values["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as e:
            errors.add(row.where, "path", f"cannot read {path}: {e.strerror}")
            continue
        row.values["path"] = str(path)


def _to_batch(rows: list[Row], schema: TableSchema) -> dict[str, np.ndarray]:
    batch = {}
    for col in schema.columns:
        data = [r.values[col.name] for r in rows]
        if col.is_text:
            arr = np.empty(len(data), dtype=object)
            arr[:] = data
        else:
            arr = np.array(data, dtype=col.dtype) if data else np.empty(0, dtype=col.dtype)
        batch[col.name] = arr
    return batch


def load_refdata(folder: str | Path | None = None, history: History | None = None,
                 schemas: dict[str, TableSchema] | None = None, now_ns: int | None = None) -> dict[str, dict]:
    """Loads every reference file of `folder` (default data/ref) into {table: batch}, in publish order.

    Raises RefDataError listing every problem found (nothing is returned then).
    """
    folder = Path(folder) if folder else REFDATA_DIR
    schemas = schemas or load_schemas()
    now_ns = now_ns if now_ns is not None else np.datetime64("now", "ns").astype(np.int64).item()
    errors = _Errors()
    rows: dict[str, list[Row]] = {}
    for table in PUBLISH_ORDER:
        path = folder / f"{table}.csv"
        if table in OPTIONAL_FILES and not path.exists():
            rows[table] = []
            continue
        rows[table] = read_table(path, schemas[table], errors, now_ns,
                                 derived={"sha256"} if table == "paramfile" else set())
    instruments = _unique(rows["instrument"], lambda v: v["sym"], "sym", errors)
    accounts = _unique(rows["account"], lambda v: v["sym"], "sym", errors)
    _check_instruments(rows["instrument"], errors)
    _check_accounts(rows["account"], errors)

    given_settle = _unique(rows["settle"], lambda v: v["sym"], "sym", errors)
    _check_refs(rows["settle"], "sym", instruments, "instrument", errors)
    for row in rows["settle"]:
        if not row.values["price"] > 0:
            errors.add(row.where, "price", "must be > 0")
    history = history or load_history()
    derived = [r for r in _settle_rows(instruments, history, now_ns) if r.values["sym"] not in given_settle]
    rows["settle"] = derived + rows["settle"]
    settle = {r.values["sym"]: r.values["price"] for r in rows["settle"]}

    _unique(rows["position"], lambda v: (v["account"], v["sym"]), "account,sym", errors)
    _check_refs(rows["position"], "account", accounts, "account", errors)
    _check_refs(rows["position"], "sym", instruments, "instrument", errors)
    for row in rows["position"]:
        v = row.values
        if math.isnan(v["price"]):
            if v["sym"] in instruments and v["sym"] not in settle:
                errors.add(row.where, "price", f"blank, and {v['sym']} has no settlement price")
            v["price"] = settle.get(v["sym"], math.nan)
        elif not v["price"] > 0:
            errors.add(row.where, "price", "must be > 0")

    _unique(rows["collateral"], lambda v: v["ref"], "ref", errors)
    _check_refs(rows["collateral"], "sym", accounts, "account", errors)
    for row in rows["collateral"]:
        if row.values["amount"] == 0:
            errors.add(row.where, "amount", "must not be 0 (> 0 posted, < 0 withdrawn)")
    _paramfile_digests(rows["paramfile"], folder, errors)

    if errors:
        raise RefDataError(list(errors))
    batches = {}
    for table in PUBLISH_ORDER:
        batch = _to_batch(rows[table], schemas[table])
        try:
            schemas[table].validate(batch)
        except BatchError as e:
            raise RefDataError([f"{table}: {e}"]) from e
        batches[table] = batch
    return batches
