"""`python -m tickerplant`: command line of the tickerplant process."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from common.cli import add_log_level, setup_logging
from common.defaults import TP_CONTROL, TP_INGEST, TP_PUB, VAR_DIR
from common.schema import SchemaError, load_schemas
from tickerplant.journal import JournalDamaged
from tickerplant.server import Config, Tickerplant
from tickerplant.tradingday import parse_eod


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tickerplant",
        description="margintick tickerplant: validates, sequences, journals and publishes batches.")
    p.add_argument("--ingest", default=TP_INGEST, help="ingest ROUTER endpoint (default %(default)s)")
    p.add_argument("--pub", default=TP_PUB, help="publish PUB endpoint (default %(default)s)")
    p.add_argument("--control", default=TP_CONTROL,
                   help="control ROUTER endpoint: sub/unsub/progress/status (default %(default)s)")
    p.add_argument("--journal", default=str(VAR_DIR / "journal"),
                   help="journal directory, one tp.YYYY-MM-DD.log per day (default %(default)s)")
    p.add_argument("--schema", default=None, help="schema file (default q/schema.q)")
    p.add_argument("--durability", choices=["fsync", "group"], default="group",
                   help="fsync: fdatasync every journal write before acking it; group: a background "
                        "thread fdatasyncs every --group-ms and acks follow (default %(default)s)")
    p.add_argument("--group-ms", type=float, default=5.0,
                   help="group commit interval in ms (default %(default)s)")
    p.add_argument("-t", "--batch-ms", type=float, default=0.0,
                   help="publish every N ms (batch mode); 0 = zero-latency, publish every message "
                        "(default %(default)s)")
    p.add_argument("--eod", default="00:00",
                   help="end-of-day roll time, UTC HH:MM[:SS] (default %(default)s)")
    p.add_argument("--hwm", type=int, default=10_000,
                   help="per-subscriber send high-water mark in messages; a subscriber further "
                        "behind loses messages, detects the gap and recovers from the journal "
                        "(default %(default)s)")
    p.add_argument("--replay", default=None,
                   help="replay service ROUTER endpoint: journal chunks for subscribers that cannot "
                        "read the journal directory (default: the --control host, a port the "
                        "system chooses; subscribers learn it from the sub handshake)")
    p.add_argument("--truncate-damaged", action="store_true",
                   help="a journal record failing its CRC with good records after it (damage in "
                        "the middle, not a torn tail): cut the file there, keeping the cut bytes "
                        "in <file>.cut-<offset>, instead of refusing to start")
    add_log_level(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        schemas = load_schemas(args.schema)
        eod_ns = parse_eod(args.eod)
    except (SchemaError, ValueError) as exc:
        print(f"tickerplant: {exc}", file=sys.stderr)
        return 2
    cfg = Config(ingest=args.ingest, pub=args.pub, control=args.control,
                 journal_dir=args.journal, durability=args.durability, group_ms=args.group_ms,
                 batch_ms=args.batch_ms, eod_ns=eod_ns, hwm=args.hwm, replay=args.replay,
                 truncate_damaged=args.truncate_damaged)
    try:
        tp = Tickerplant(cfg, schemas)
    except JournalDamaged as exc:
        print(f"tickerplant: {exc}", file=sys.stderr)
        return 2

    def stop(signum, frame):
        tp.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tp.run()
    logging.getLogger("tickerplant").info("stopped at seq %d", tp.seq)
    return 0


if __name__ == "__main__":
    sys.exit(main())
