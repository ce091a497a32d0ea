"""Reading a CCP's CSV files, shared by the offline reconciliation (backtest/reconcile.py, requirement
history files) and the live statements feedhandler (feedhandlers/statements, statement files).

Owns `CcpFileError` (a bad file: the message names the file, the line and the field), the CSV walk
(`records`: header check, field count, blank lines skipped), the field parsers (`parse_date`,
`parse_cutoff`, `positive_amount`) and the statement format (`read_statement`, docs/reconcile.md,
"Statement files").
"""
from __future__ import annotations

import csv
import math
from datetime import date, datetime
from pathlib import Path

import numpy as np

STATEMENT_COLUMNS = ("account", "ccp", "kind", "cutoff", "initial", "maintenance")
STATEMENT_KINDS = ("eod", "intraday")
MAX_ROWS = 100_000            # data rows in one file


class CcpFileError(ValueError):
    """A bad CCP file: the message names the file, the line and the field."""


def parse_date(s: str) -> date:
    s = s.strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(s, fmt).date()
        except ValueError:
            pass
    raise ValueError(f"not a date (YYYYMMDD or YYYY-MM-DD): {s!r}")


def parse_cutoff(s: str) -> int:
    """An ISO-8601 UTC timestamp (2026-12-05T17:00:00, optional fraction, optional trailing Z) -> ns."""
    text = s.strip().removesuffix("Z")
    if "T" not in text:
        raise ValueError(f"not a timestamp (ISO-8601 UTC, e.g. 2026-12-05T17:00:00): {s!r}")
    try:
        ns = np.datetime64(text, "ns")
    except ValueError:
        raise ValueError(f"not a timestamp (ISO-8601 UTC, e.g. 2026-12-05T17:00:00): {s!r}") from None
    return int(ns.view(np.int64))


def positive_amount(path: str, line_no: int, field: str, raw: str) -> float:
    raw = raw.strip()
    try:
        v = float(raw)
    except ValueError:
        raise CcpFileError(f"{path}:{line_no}: field {field!r}: not a number: {raw!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise CcpFileError(f"{path}:{line_no}: field {field!r}: must be a positive number, got {raw!r}")
    return v


def records(path, required: tuple[str, ...], what: str):
    """Yields (line_no, {column: raw text}) of a CSV file whose header has the `required` columns
    (lower-cased, stripped); blank lines are skipped; a wrong field count, a missing column, an empty
    file, more than MAX_ROWS rows are a CcpFileError. `what` describes the expected header."""
    path = str(path)
    try:
        fh = open(path, newline="")
    except OSError as e:
        raise CcpFileError(f"{path}: cannot open: {e.strerror}") from None
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise CcpFileError(f"{path}:1: empty file (expected a header {what})") from None
        except (csv.Error, UnicodeDecodeError) as e:
            raise CcpFileError(f"{path}:1: not a CSV text file: {e}") from None
        cols = [h.strip().lower() for h in header]
        for need in required:
            if need not in cols:
                raise CcpFileError(f"{path}:1: header has no {need!r} column (got {header})")
        line_no = 1
        try:
            for line_no, rec in enumerate(reader, start=2):
                if line_no > MAX_ROWS + 1:
                    raise CcpFileError(f"{path}:{line_no}: more than {MAX_ROWS} rows")
                if not rec or all(not f.strip() for f in rec):
                    continue
                if len(rec) != len(cols):
                    raise CcpFileError(f"{path}:{line_no}: expected {len(cols)} fields, got {len(rec)}: {rec}")
                yield line_no, dict(zip(cols, rec))
        except (csv.Error, UnicodeDecodeError) as e:
            raise CcpFileError(f"{path}:{line_no + 1}: not a CSV text file: {e}") from None


def read_statement(path) -> dict[str, np.ndarray]:
    """A CCP statement file -> a `ccpmargin` batch without `time` (q/schema.q), in file order.

    Columns account, ccp, kind (eod | intraday), cutoff (ISO-8601 UTC), initial, maintenance (> 0);
    the same account, ccp, kind and cutoff twice is an error. Any bad row rejects the whole file
    (CcpFileError naming file:line and field): a partial statement would be misleading."""
    name = Path(path).name
    rows, seen = [], {}
    for line_no, rec in records(path, STATEMENT_COLUMNS, ",".join(STATEMENT_COLUMNS)):
        where = f"{path}:{line_no}"
        account, ccp, kind = rec["account"].strip(), rec["ccp"].strip(), rec["kind"].strip().lower()
        for field, value in (("account", account), ("ccp", ccp)):
            if not value:
                raise CcpFileError(f"{where}: field {field!r}: empty")
        if kind not in STATEMENT_KINDS:
            raise CcpFileError(f"{where}: field 'kind': {rec['kind'].strip()!r} is not one of {', '.join(STATEMENT_KINDS)}")
        try:
            cutoff = parse_cutoff(rec["cutoff"])
        except ValueError as e:
            raise CcpFileError(f"{where}: field 'cutoff': {e}") from None
        initial = positive_amount(str(path), line_no, "initial", rec["initial"])
        maintenance = positive_amount(str(path), line_no, "maintenance", rec["maintenance"])
        key = (account, ccp, kind, cutoff)
        if key in seen:
            raise CcpFileError(f"{where}: field 'account': {account} {ccp} {kind} {rec['cutoff'].strip()} "
                               f"already on line {seen[key]}")
        seen[key] = line_no
        rows.append((account, ccp, kind, cutoff, initial, maintenance, f"{name}:{line_no}"))
    if not rows:
        raise CcpFileError(f"{path}: no data rows")
    account, ccp, kind, cutoff, initial, maintenance, source = zip(*rows)
    obj = lambda v: np.array(v, dtype=object)
    return {"sym": obj(account), "ccp": obj(ccp), "kind": obj(kind),
            "cutoff": np.array(cutoff, dtype=np.int64).view("datetime64[ns]"),
            "initial": np.array(initial), "maintenance": np.array(maintenance), "source": obj(source)}
