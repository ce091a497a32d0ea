"""`python -m feedhandlers.prices`: publishes simulated (default) or replayed quotes into the tickerplant.

Simulator: the instruments of instrument.csv that have price history, starting from the last close,
calibrated on the last --lookback daily returns. Events (feedhandlers/prices/events.py) come from
--event (at start), --at (scheduled), the control socket, or `--send SPEC` from another shell:

  python -m feedhandlers.prices --steps-per-sec 10 --at "+60 antitrust AMD"
  python -m feedhandlers.prices --send "antitrust AMD"          # to the running feed
  python -m feedhandlers.prices --replay ticks.csv --speed 10   # replay 10x faster than recorded
  python -m feedhandlers.prices --source vendorpkg.feed:VendorQuotes   # a vendor adapter (a QuoteSource)
"""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import time

import zmq

from common.cli import setup_logging
from common.defaults import PRICES_CONTROL, TP_INGEST
from common.history import HISTORY_DIR, load_history
from common.rpc import RpcClient, RpcError
from feedhandlers.prices.calibrate import TRADING_DAYS, calibrate
from feedhandlers.prices.events import parse_schedule
from feedhandlers.prices.feed import PriceFeed
from feedhandlers.prices.replay import CsvReplay
from feedhandlers.prices.simulator import PriceSimulator
from feedhandlers.prices.source import QuoteSource
from feedhandlers.refdata.csvtable import TableFileError
from feedhandlers.refdata.loader import REFDATA_DIR, load_instruments
from tickerplant.client import Publisher, TickerplantError

log = logging.getLogger("feedhandlers.prices")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m feedhandlers.prices", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ingest", default=TP_INGEST, help="tickerplant ingest endpoint (default %(default)s)")
    p.add_argument("--control", default=PRICES_CONTROL, help="control socket to bind (default %(default)s)")
    p.add_argument("--name", default="prices", help="publisher name (default %(default)s)")
    p.add_argument("--refdata", default=str(REFDATA_DIR), help="folder with instrument.csv (default %(default)s)")
    p.add_argument("--history", default=str(HISTORY_DIR), help="price history folder (default %(default)s)")
    p.add_argument("--syms", help="comma-separated syms to simulate (default: every instrument with history)")
    p.add_argument("--lookback", type=int, default=TRADING_DAYS,
                   help="days of returns to calibrate on (default %(default)s)")
    p.add_argument("--steps-per-sec", type=float, default=10.0,
                   help="simulator steps per second, each quoting every sym; 0 = as fast as possible "
                        "(default %(default)s)")
    p.add_argument("--step-seconds", type=float,
                   help="market seconds per step (default 1/steps-per-sec: real time; 1 when as fast as possible)")
    p.add_argument("--spread-bps", type=float, default=2.0, help="half spread in basis points (default %(default)s)")
    p.add_argument("--seed", type=int, help="random seed (default: fresh)")
    p.add_argument("--batch-rows", type=int, default=10_000,
                   help="most rows in one published batch (default %(default)s)")
    p.add_argument("--event", action="append", default=[], metavar="SPEC", help="apply an event at start (repeatable)")
    p.add_argument("--at", action="append", default=[], metavar="'WHEN SPEC'",
                   help="schedule an event: '+SECONDS SPEC' or 'YYYY-MM-DDTHH:MM:SS SPEC' UTC (repeatable)")
    p.add_argument("--replay", metavar="CSV", help="replay this tick file instead of simulating")
    p.add_argument("--source", metavar="MODULE:CLASS",
                   help="publish from a vendor adapter: a feedhandlers.prices.source.QuoteSource subclass, "
                        "constructed without arguments")
    p.add_argument("--speed", type=float, default=1.0,
                   help="replay speed: 1 = recorded, 10 = 10x, 0 = at once (default %(default)s)")
    p.add_argument("--restamp", action="store_true", help="replay: stamp rows with the time they are sent")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: run until stopped)")
    p.add_argument("--send", metavar="SPEC", help="send an event to the running feed at --control and exit")
    return p.parse_args(argv)


def send_event(control: str, spec: str) -> int:
    client = RpcClient(control, timeout=5.0)
    try:
        reply = client.call("event", spec=spec)
    except RpcError as e:
        print(f"prices: event not applied: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"prices: applied {reply['event']}")
    return 0


def load_adapter(spec: str) -> QuoteSource:
    """Imports MODULE:CLASS and constructs it (ValueError when it is not a QuoteSource)."""
    module, _, name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"--source {spec}: cannot load {name or '(no class)'} from {module}: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, QuoteSource)):
        raise ValueError(f"--source {spec}: not a QuoteSource subclass")
    return cls()


def build_source(args, sectors: dict[str, str]) -> QuoteSource:
    if args.source:
        return load_adapter(args.source)
    if args.replay:
        return CsvReplay(args.replay, speed=args.speed, restamp=args.restamp, max_rows=args.batch_rows)
    history = load_history(args.history)
    syms = [s for s in sectors if s in history.syms]
    skipped = [s for s in sectors if s not in history.syms]
    if skipped:
        log.info("no price history, not simulated: %s", ", ".join(skipped))
    calibration = calibrate(history, syms, args.lookback)
    return PriceSimulator(calibration, steps_per_sec=args.steps_per_sec, step_seconds=args.step_seconds,
                          max_rows=args.batch_rows, half_spread_bps=args.spread_bps, seed=args.seed)


def prepare(args):
    """The source, the sectors and the schedule; raises ValueError / TableFileError on bad input."""
    instruments = load_instruments(args.refdata)
    sectors = dict(zip(instruments["sym"].tolist(), instruments["sector"].tolist()))
    if args.syms:
        wanted = args.syms.split(",")
        unknown = [s for s in wanted if s not in sectors]
        if unknown:
            raise ValueError(f"--syms: not in instrument.csv: {', '.join(unknown)}")
        sectors = {s: sectors[s] for s in wanted}
    source = build_source(args, sectors)
    start_ns = time.time_ns()                  # after the slow part: schedules count from here
    schedule = [parse_schedule(f"+0 {spec}", start_ns, sectors) for spec in args.event]
    schedule += [parse_schedule(item, start_ns, sectors) for item in args.at]
    return source, sectors, schedule, start_ns


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.send:
        return send_event(args.control, args.send)
    try:
        source, sectors, schedule, start_ns = prepare(args)
    except TableFileError as e:
        print("\n".join(e.errors), file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"prices: {e}", file=sys.stderr)
        return 1
    try:
        publisher = Publisher(args.name, endpoint=args.ingest)
    except TickerplantError as e:
        print(f"prices: {e}", file=sys.stderr)
        return 1
    try:
        feed = PriceFeed(source, publisher, sectors, args.control, start_ns)
    except zmq.ZMQError as e:
        print(f"prices: cannot bind the control socket {args.control}: {e}", file=sys.stderr)
        publisher.close()
        return 1
    for due, event in schedule:
        feed.add_event(due, event)
    signal.signal(signal.SIGTERM, lambda *_: setattr(feed, "stopping", True))
    deadline = start_ns + args.duration * 1e9 if args.duration else None
    log.info("publishing %s quotes to %s, control %s", source.name, args.ingest, args.control)
    try:
        feed.run(stop=lambda: deadline is not None and time.time_ns() >= deadline)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            publisher.flush(timeout=10.0)
        except TickerplantError as e:
            log.error("exiting with %d quote batches unacknowledged: %s", publisher.pending, e)
        feed.close()
        publisher.close()
    log.info("published %d quotes in %d batches", feed.rows, feed.batches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
