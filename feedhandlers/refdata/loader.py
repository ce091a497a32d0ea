"""Loads and validates the reference data files (data/ref/*.csv) into columnar batches, all or nothing.

One CSV per table of q/schema.q: instrument.csv, account.csv, position.csv, collateral.csv (intraday
movements), and optionally settle.csv and paramfile.csv (format: feedhandlers/refdata/csvtable.py).
Every problem is reported as `file:line: field: what is wrong`; if there is any, the loader raises
RefDataError with all of them and returns nothing, so nothing is ever half-loaded.

Settlement prices default to the last close of the price history (common/history.py) for every
instrument that has one; settle.csv rows (e.g. for derivatives) are added on top and win.
A position's price left blank is the instrument's settlement price.
"""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np

from common.defaults import REPO_ROOT
from common.history import History, load_history
from common.schema import BatchError, TableSchema, load_schemas
from feedhandlers.refdata.csvtable import Errors, Row, TableFileError, read_table, to_batch

REFDATA_DIR = REPO_ROOT / "data" / "ref"
PUBLISH_ORDER = ("instrument", "account", "settle", "position", "collateral", "paramfile")
OPTIONAL_FILES = {"settle", "paramfile"}
ASSET_CLASSES = {"equity", "etf", "future", "option"}
MARGIN_MODELS = {"var", "span"}
DERIVATIVE_FIELDS = ("underlying", "expiry", "strike", "putcall")
# symbol and string columns that must not be blank, per table (all others may be)
REQUIRED_TEXT = {
    "instrument": {"sym", "assetclass", "ccy", "sector", "ccp", "model"},
    "account": {"sym", "desk", "ccp", "model", "ccy"},
    "position": {"sym", "account"},
    "settle": {"sym"},
    "collateral": {"sym", "kind", "ref"},
    "paramfile": {"sym", "kind", "path"},
}
# non-nullable columns that may be left blank in the file because the loader fills them in
BLANK_ALLOWED = {"position": {"price"}}


class RefDataError(TableFileError):
    """The reference files have errors; .errors lists every `file:line: field: message`."""


def _unique(rows: list[Row], key, field: str, errors: Errors) -> dict:
    seen: dict = {}
    for row in rows:
        k = key(row.values)
        if k in seen:
            errors.add(row.where, field, f"duplicate {k!r} (first at {seen[k].where})")
        else:
            seen[k] = row
    return seen


def _check_instruments(rows: list[Row], errors: Errors):
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


def _check_accounts(rows: list[Row], errors: Errors):
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


def _check_refs(rows: list[Row], field: str, known: dict, what: str, errors: Errors):
    """Each row's `field` names a valid row of {what}.csv (rows and files already reported are not repeated)."""
    source = f"{what}.csv"
    if source in errors.unreadable:
        return
    reported = errors.rejected.get(source, set())
    for row in rows:
        if row.values[field] not in known and row.values[field] not in reported:
            errors.add(row.where, field, f"unknown {what} {row.values[field]!r} (not a valid row of {what}.csv)")


def _settlements(given: list[Row], instruments: dict, history: History, errors: Errors, now_ns: int) -> list[Row]:
    """settle.csv rows plus, for the other instruments with history, the last close of the history."""
    by_sym = _unique(given, lambda v: v["sym"], "sym", errors)
    _check_refs(given, "sym", instruments, "instrument", errors)
    for row in given:
        if not row.values["price"] > 0:
            errors.add(row.where, "price", "must be > 0")
    last, day = history.last_close(), history.dates[-1]
    derived = [Row(f"history:{day}", {"time": np.datetime64(now_ns, "ns"), "sym": sym, "price": last[sym], "date": day})
               for sym in instruments if sym in last and not math.isnan(last[sym]) and sym not in by_sym]
    return derived + given


def _check_positions(rows: list[Row], accounts: dict, instruments: dict, settle: list[Row], errors: Errors):
    """Known account and instrument, one row per pair; a blank price becomes the settlement price."""
    _unique(rows, lambda v: (v["account"], v["sym"]), "account,sym", errors)
    _check_refs(rows, "account", accounts, "account", errors)
    _check_refs(rows, "sym", instruments, "instrument", errors)
    prices = {r.values["sym"]: r.values["price"] for r in settle}
    for row in rows:
        v = row.values
        if math.isnan(v["price"]):
            if v["sym"] in instruments and v["sym"] not in prices:
                errors.add(row.where, "price", f"blank, and {v['sym']} has no settlement price")
            v["price"] = prices.get(v["sym"], math.nan)
        elif not v["price"] > 0:
            errors.add(row.where, "price", "must be > 0")


def _paramfile_digests(rows: list[Row], folder: Path, errors: Errors):
    """Resolves paramfile paths (relative to the CSV's folder) and adds their sha256."""
    for row in rows:
        path = (folder / row.values["path"]).resolve()
        try:
            row.values["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as e:
            errors.add(row.where, "path", f"cannot read {path}: {e.strerror}")
            continue
        row.values["path"] = str(path)


def _read(folder: Path, table: str, schema: TableSchema, errors: Errors, now_ns: int) -> list[Row]:
    path = folder / f"{table}.csv"
    if table in OPTIONAL_FILES and not path.exists():
        return []
    return read_table(path, schema, errors, now_ns, REQUIRED_TEXT[table], BLANK_ALLOWED.get(table, set()),
                      {"sha256"} if table == "paramfile" else set())


def _instruments(folder: Path, schema: TableSchema, errors: Errors, now_ns: int) -> tuple[list[Row], dict]:
    rows = _read(folder, "instrument", schema, errors, now_ns)
    by_sym = _unique(rows, lambda v: v["sym"], "sym", errors)
    _check_instruments(rows, errors)
    return rows, by_sym


def _batches(rows: dict[str, list[Row]], schemas: dict[str, TableSchema]) -> dict[str, dict]:
    batches = {}
    for table, table_rows in rows.items():
        batch = to_batch(table_rows, schemas[table])
        try:
            schemas[table].validate(batch)
        except BatchError as e:
            raise RefDataError([f"{table}: {e}"]) from e
        batches[table] = batch
    return batches


def _now_ns() -> int:
    return time.time_ns()


def load_instruments(folder: str | Path | None = None, schemas: dict[str, TableSchema] | None = None) -> dict:
    """Only instrument.csv of `folder` as a validated batch (for processes that need the universe and sectors)."""
    schemas = schemas or load_schemas()
    errors = Errors()
    rows, _ = _instruments(Path(folder) if folder else REFDATA_DIR, schemas["instrument"], errors, _now_ns())
    if errors:
        raise RefDataError(list(errors))
    return _batches({"instrument": rows}, schemas)["instrument"]


def load_refdata(folder: str | Path | None = None, history: History | None = None,
                 schemas: dict[str, TableSchema] | None = None, now_ns: int | None = None) -> dict[str, dict]:
    """Loads every reference file of `folder` (default data/ref) into {table: batch}, in publish order.

    Raises RefDataError listing every problem found (nothing is returned then).
    """
    folder = Path(folder) if folder else REFDATA_DIR
    schemas = schemas or load_schemas()
    now_ns = now_ns if now_ns is not None else _now_ns()
    errors = Errors()
    instrument_rows, instruments = _instruments(folder, schemas["instrument"], errors, now_ns)
    rows = {"instrument": instrument_rows,
            **{table: _read(folder, table, schemas[table], errors, now_ns) for table in PUBLISH_ORDER[1:]}}
    accounts = _unique(rows["account"], lambda v: v["sym"], "sym", errors)
    _check_accounts(rows["account"], errors)
    rows["settle"] = _settlements(rows["settle"], instruments, history or load_history(), errors, now_ns)
    _check_positions(rows["position"], accounts, instruments, rows["settle"], errors)
    _unique(rows["collateral"], lambda v: v["ref"], "ref", errors)
    _check_refs(rows["collateral"], "sym", accounts, "account", errors)
    for row in rows["collateral"]:
        if row.values["amount"] == 0:
            errors.add(row.where, "amount", "must not be 0 (> 0 posted, < 0 withdrawn)")
    _paramfile_digests(rows["paramfile"], folder, errors)
    if errors:
        raise RefDataError(list(errors))
    return _batches(rows, schemas)
