"""Rebuilds a day's HDB partition from a tickerplant journal file, for a day the rdb did not write
(it was down at end of day, or its write failed and it was then stopped).

    python -m rdb.replay var/journal/tp.2026-11-20.log --hdb var/hdb

Reads every data record of the file in sequence order into a fresh Store (the same tables the rdb
would have held) and writes `<hdb>/date=<date of the file>/` with rdb.hdb.write_partition.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from common.cli import setup_logging
from common.codec import as_columns, unpack
from common.defaults import VAR_DIR
from common.schema import SchemaError, load_schemas
from rdb.hdb import write_partition
from rdb.store import Store
from tickerplant.journal import FILE_RE, CorruptRecord, read_records

log = logging.getLogger("rdb.replay")


def load_journal(path: str | Path, schemas: dict) -> tuple[Store, bool]:
    """The tables of one journal file; also whether the file is closed by an end-of-day record."""
    store = Store(schemas)
    closed = False
    for rec in read_records(str(path)):
        if rec.is_control:
            closed = closed or rec.control().get("kind") == "eod"
            continue
        try:
            store.apply(rec.table, as_columns(unpack(rec.payload), schemas[rec.table]))
        except (KeyError, ValueError, TypeError) as e:
            log.error("%s seq %d: record for %s not applied: %s", path, rec.seq, rec.table, e)
    return store, closed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rdb.replay",
                                description="Write a day's HDB partition from a tickerplant journal file.")
    p.add_argument("journal", help="journal file tp.YYYY-MM-DD.log")
    p.add_argument("--hdb", default=str(VAR_DIR / "hdb"), help="HDB root (default %(default)s)")
    p.add_argument("--schema", default=None, help="schema file (default q/schema.q)")
    args = p.parse_args(argv)
    setup_logging()
    m = FILE_RE.match(Path(args.journal).name)
    if not m:
        print(f"rdb.replay: {args.journal}: not a journal file name (tp.YYYY-MM-DD.log)", file=sys.stderr)
        return 2
    try:
        store, closed = load_journal(args.journal, load_schemas(args.schema))
    except (OSError, SchemaError, CorruptRecord) as e:
        print(f"rdb.replay: {e}", file=sys.stderr)
        return 2
    if not closed:
        log.warning("%s has no end-of-day record: the day may be incomplete", args.journal)
    path = write_partition(store.tables, m.group(1), args.hdb)
    print(f"wrote {path}: " + ", ".join(f"{t} {n}" for t, n in store.counts().items() if n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
