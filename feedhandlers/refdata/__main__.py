"""`python -m feedhandlers.refdata`: validates the reference files and publishes them into the tickerplant.

Every file is validated before anything is sent; with any error, each is printed as
`file:line: field: message` and nothing is published (exit status 1). `--check` validates only.
`--collateral ACCOUNT AMOUNT` publishes one intraday collateral movement instead.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from common.defaults import TP_INGEST
from common.history import HISTORY_DIR, load_history
from feedhandlers.refdata.loader import REFDATA_DIR, RefDataError, load_refdata
from tickerplant.client import Publisher, TickerplantError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m feedhandlers.refdata", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=str(REFDATA_DIR), help="folder of the reference CSV files (default %(default)s)")
    p.add_argument("--history", default=str(HISTORY_DIR),
                   help="price history folder, for settlement prices (default %(default)s)")
    p.add_argument("--ingest", default=TP_INGEST, help="tickerplant ingest endpoint (default %(default)s)")
    p.add_argument("--name", default="refdata", help="publisher name (default %(default)s)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the tickerplant's answer to each batch (default %(default)s)")
    p.add_argument("--check", action="store_true", help="validate the files and print a summary; publish nothing")
    p.add_argument("--collateral", nargs=2, metavar=("ACCOUNT", "AMOUNT"),
                   help="publish one collateral movement (amount > 0 posted to the CCP, < 0 withdrawn)")
    p.add_argument("--kind", default="cash", help="kind of the --collateral movement (default %(default)s)")
    p.add_argument("--ref", help="reference of the --collateral movement (default CLI-<timestamp>)")
    return p.parse_args(argv)


def collateral_batch(account: str, amount: str, kind: str, ref: str | None, accounts) -> dict:
    """One `collateral` row, checked against the known accounts; raises RefDataError naming the field."""
    errors = []
    if account not in accounts:
        errors.append(f"--collateral: account: unknown account {account!r} (known: {', '.join(accounts)})")
    try:
        value = float(amount)
        if not np.isfinite(value) or value == 0:
            raise ValueError
    except ValueError:
        errors.append(f"--collateral: amount: {amount!r} is not a finite non-zero number")
    if errors:
        raise RefDataError(errors)
    now = np.datetime64(time.time_ns(), "ns")
    return {"time": np.array([now]), "sym": np.array([account], dtype=object), "amount": np.array([value]),
            "kind": np.array([kind], dtype=object),
            "ref": np.array([ref or f"CLI-{now.astype('datetime64[ms]')}"], dtype=object)}


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        batches = load_refdata(args.dir, history=load_history(args.history))
        if args.collateral:
            batches = {"collateral": collateral_batch(*args.collateral, args.kind, args.ref,
                                                      batches["account"]["sym"].tolist())}
    except RefDataError as e:
        print("\n".join(e.errors), file=sys.stderr)
        print(f"refdata: {len(e.errors)} error(s); nothing published", file=sys.stderr)
        return 1
    summary = ", ".join(f"{table} {len(b['sym'])}" for table, b in batches.items())
    if args.check:
        print(f"refdata: files valid: {summary}")
        return 0
    published = []
    try:
        pub = Publisher(args.name, endpoint=args.ingest, timeout=args.timeout)
        try:
            for table, batch in batches.items():
                if len(batch["sym"]):
                    pub.publish_sync(table, batch)
                    published.append(table)
        finally:
            pub.close()
    except TickerplantError as e:
        print(f"refdata: {e}; published before the failure: {', '.join(published) or 'nothing'}", file=sys.stderr)
        return 1
    print(f"refdata: published {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
