"""`python -m calc`: the live margin engine process (subscribes to the tickerplant, publishes margin and
alert rows back into it, answers margin / what-if / positions / drivers / stress queries)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys

import zmq

from calc.config import CONFIG_PATH, ConfigError, load_config
from common.cli import add_log_level, setup_logging
from common.defaults import CALC_QUERY, TP_CONTROL, TP_INGEST


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m calc", description=__doc__)
    p.add_argument("--config", default=str(CONFIG_PATH), help="engine configuration (default %(default)s)")
    p.add_argument("--history", default=None,
                   help="folder of the daily price history (default: engine.history of the config, else data/history)")
    p.add_argument("--control", default=TP_CONTROL, help="tickerplant control endpoint (default %(default)s)")
    p.add_argument("--ingest", default=TP_INGEST, help="tickerplant ingest endpoint (default %(default)s)")
    p.add_argument("--query", default=CALC_QUERY, help="RPC endpoint this process binds (default %(default)s)")
    p.add_argument("--name", default="calc",
                   help="subscriber and publisher name; keep it stable across restarts (default %(default)s)")
    add_log_level(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"calc: {e}", file=sys.stderr)
        return 2
    from calc.engine import MarginEngine
    from calc.server import CalcServer
    from common.history import load_history
    try:
        history = load_history(args.history or config.history or None)
        engine = MarginEngine(config, history)
    except (OSError, ValueError) as e:
        print(f"calc: cannot build the risk models: {e}", file=sys.stderr)
        return 2
    from tickerplant.client import TickerplantError
    try:
        server = CalcServer(engine, control=args.control, ingest=args.ingest, query=args.query, name=args.name)
    except zmq.ZMQError as e:
        print(f"calc: cannot bind {args.query}: {e}", file=sys.stderr)
        return 1
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    try:
        server.start()
        logging.getLogger("calc").info("calc: serving queries on %s", server.rpc.endpoint)
        server.serve(stop=lambda: bool(stopping))
    except TickerplantError as e:
        print(f"calc: {e}", file=sys.stderr)
        return 1
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
