"""`python -m rdb`: command line of the real-time database process."""
from __future__ import annotations

import argparse
import signal
import sys

from common.cli import add_log_level, setup_logging
from common.defaults import RDB_QUERY, TP_CONTROL, VAR_DIR


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m rdb",
        description="margintick rdb: subscribes to every tickerplant table, holds the day in memory, "
                    "answers queries (tables/select/last/count) and writes the HDB at end of day.")
    p.add_argument("--control", default=TP_CONTROL, help="tickerplant control endpoint (default %(default)s)")
    p.add_argument("--query", default=RDB_QUERY, help="query ROUTER endpoint to bind (default %(default)s)")
    p.add_argument("--hdb", default=str(VAR_DIR / "hdb"),
                   help="HDB root: end of day writes <hdb>/date=YYYY-MM-DD/<table>.parquet (default %(default)s)")
    p.add_argument("--name", default="rdb", help="subscriber name at the tickerplant (default %(default)s)")
    add_log_level(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    from rdb.server import Rdb

    rdb = Rdb(control=args.control, query=args.query, hdb=args.hdb, name=args.name)

    def stop(signum, frame):
        rdb.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if rdb.start():
        rdb.run()
    else:
        rdb.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
