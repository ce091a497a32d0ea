"""`python -m feedhandlers.fix`: the FIX drop-copy acceptor (QuickFIX) publishing `fill` rows."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from common.cli import add_log_level, setup_logging
from common.defaults import REPO_ROOT, TP_CONTROL, TP_INGEST, VAR_DIR
from feedhandlers.fix.channel import PIPELINED, SYNC
from feedhandlers.fix.limits import LIMITS_PATH, LimitsError
from feedhandlers.fix.service import DropCopyService, Options
from feedhandlers.fix.settings import SettingsError

DEFAULT_CONFIG = REPO_ROOT / "config" / "fix" / "acceptor.cfg"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m feedhandlers.fix",
        description="margintick FIX drop-copy acceptor: books ExecutionReports (trades, cancels, "
                    "corrections) as `fill` rows in the tickerplant, exactly once.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="QuickFIX session settings file (default %(default)s)")
    p.add_argument("--state-dir", type=Path, default=VAR_DIR / "fix",
                   help="FIX message stores, FIX logs and durable watermarks (default %(default)s)")
    p.add_argument("--port", type=int, default=None,
                   help="listening port, overriding SocketAcceptPort of the config (default: the config's)")
    p.add_argument("--limits", type=Path, default=LIMITS_PATH,
                   help="fat-finger bounds per fill: max quantity and notional, per instrument or asset "
                        "class (default %(default)s)")
    p.add_argument("--ingest", default=TP_INGEST, help="tickerplant ingest endpoint (default %(default)s)")
    p.add_argument("--control", default=TP_CONTROL, help="tickerplant control endpoint (default %(default)s)")
    p.add_argument("--ack", choices=[SYNC, PIPELINED], default=SYNC,
                   help="sync: a FIX message is acknowledged (its seq consumed) only once its fill is "
                        "durable; pipelined: up to --window fills in flight, a restart rewinds to the "
                        "durable watermark (default %(default)s)")
    p.add_argument("--window", type=int, default=100,
                   help="pipelined mode: most unacknowledged batches per session (default %(default)s)")
    p.add_argument("--max-batch", type=int, default=1000,
                   help="pipelined mode: most fill rows per published batch; a batch also goes out "
                        "every millisecond (default %(default)s)")
    p.add_argument("--ack-timeout", type=float, default=5.0,
                   help="seconds to wait for the tickerplant before logging a stall and waiting on "
                        "(default %(default)s)")
    p.add_argument("--stats-every", type=float, default=10.0,
                   help="log per-session counters every N seconds when they change (default %(default)s)")
    p.add_argument("--name", default="fixfh", help="subscriber name prefix (default %(default)s)")
    add_log_level(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    if args.window < 1 or args.max_batch < 1 or args.ack_timeout <= 0:
        print("feedhandlers.fix: --window and --max-batch must be >= 1, --ack-timeout > 0", file=sys.stderr)
        return 2
    service = DropCopyService(Options(config=args.config, state_dir=args.state_dir, ingest=args.ingest,
                                      control=args.control, port=args.port, ack=args.ack,
                                      window=args.window, max_batch=args.max_batch,
                                      ack_timeout=args.ack_timeout,
                                      stats_every=args.stats_every, name=args.name, limits=args.limits))
    signal.signal(signal.SIGTERM, lambda *_: service.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: service.stopping.set())
    try:
        service.start()
    except (SettingsError, LimitsError) as e:
        print(f"feedhandlers.fix: {e}", file=sys.stderr)
        return 2
    except TimeoutError:
        print("feedhandlers.fix: stopped while waiting for the tickerplant", file=sys.stderr)
        return 1
    try:
        while not service.stopping.wait(0.5):
            pass
    finally:
        service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
