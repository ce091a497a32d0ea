"""`python -m feedhandlers.omsim`: the demo OMS, a FIX initiator sending drop-copy fills or replaying a file."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from common.cli import add_log_level, setup_logging
from common.defaults import FIX_PORT, REPO_ROOT, VAR_DIR
from feedhandlers.fix.settings import SettingsError
from feedhandlers.omsim.initiator import Initiator
from feedhandlers.omsim.orders import OrderFlow
from feedhandlers.omsim.pacing import paced
from feedhandlers.omsim.rawfix import RawFixError, read_messages
from feedhandlers.refdata.loader import load_refdata

log = logging.getLogger("feedhandlers.omsim")
DEFAULT_CONFIG = REPO_ROOT / "config" / "fix" / "omsim.cfg"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m feedhandlers.omsim",
        description="margintick demo OMS: a QuickFIX initiator sending realistic ExecutionReports "
                    "(fills, busts, corrections) for the demo accounts and instruments, or replaying "
                    "a file of raw FIX messages.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="QuickFIX initiator settings (default %(default)s)")
    p.add_argument("--state-dir", type=Path, default=VAR_DIR / "fix",
                   help="the simulator's FIX message store and logs (default %(default)s)")
    p.add_argument("--port", type=int, default=FIX_PORT, help="acceptor port (default %(default)s)")
    p.add_argument("--rate", type=float, default=5.0, help="messages per second (default %(default)s)")
    p.add_argument("--count", type=int, default=0, help="stop after N messages (default: run until stopped)")
    p.add_argument("--cancel-pct", type=float, default=1.0,
                   help="%% of messages that bust an earlier fill (default %(default)s)")
    p.add_argument("--correct-pct", type=float, default=1.0,
                   help="%% of messages that correct an earlier fill (default %(default)s)")
    p.add_argument("--refdata", type=Path, default=None,
                   help="reference data folder for accounts, instruments and prices (default data/ref)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: none)")
    p.add_argument("--replay", type=Path, default=None,
                   help="send the application messages of this raw FIX file (| or SOH delimited) "
                        "at --rate instead of simulating")
    add_log_level(p)
    return p.parse_args(argv)


def demo_order_flow(args: argparse.Namespace) -> OrderFlow:
    """Every account of the reference data trading its CCP's instruments at settlement prices."""
    return OrderFlow.from_refdata(load_refdata(args.refdata), cancel_pct=args.cancel_pct,
                                  correct_pct=args.correct_pct, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        if args.replay:
            messages = read_messages(args.replay)
            source = lambda n: messages[n]                       # noqa: E731
            count = len(messages) if args.count <= 0 else min(args.count, len(messages))
        else:
            flow = demo_order_flow(args)
            source = lambda n: ("8", flow.next_message())         # noqa: E731
            count = args.count
        initiator = Initiator(args.config, args.state_dir, {"SocketConnectPort": str(args.port)})
    except (SettingsError, RawFixError, OSError, ValueError) as e:
        print(f"feedhandlers.omsim: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    initiator.start(logon_timeout=None)
    sent = 0
    try:
        while not initiator.logged_on.wait(1.0):
            if stop.is_set():
                return 0
            log.info("waiting for the FIX logon to 127.0.0.1:%d", args.port)
        for n in paced(count, args.rate, stop):
            msg_type, fields = source(n)
            initiator.send(fields, msg_type)
            sent += 1
            if sent % 1000 == 0:
                log.info("sent %d messages", sent)
        log.info("sent %d messages; %d rejects received", sent, len(initiator.rejects_seen()))
        if count > 0:     # let the last messages and any rejects arrive before logging out
            stop.wait(1.0)
    finally:
        initiator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
