"""`python -m notify`: delivers every `alert` row to its account's channels (email, Slack / Teams /
JSON webhooks, a log file) and records each attempt as a `notice` row; config/notify.toml plus
command-line channels (--smtp HOST:PORT with --to, --webhook, --slack, --teams, --log-file)."""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys

import zmq

from common.cli import add_log_level, setup_logging
from common.defaults import NOTIFY_CONTROL, TP_CONTROL, TP_INGEST
from notify.config import CONFIG_PATH, ChannelSpec, ConfigError, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m notify", description=__doc__)
    p.add_argument("--config", default=str(CONFIG_PATH), help="channels, routes, retries (default %(default)s; "
                   "'none' for none)")
    p.add_argument("--control", default=TP_CONTROL, help="tickerplant control endpoint (default %(default)s)")
    p.add_argument("--ingest", default=TP_INGEST, help="tickerplant ingest endpoint (default %(default)s)")
    p.add_argument("--status", default=NOTIFY_CONTROL, help="status RPC endpoint to bind (default %(default)s)")
    p.add_argument("--name", default="notify", help="subscriber and publisher name; keep it stable (default %(default)s)")
    p.add_argument("--smtp", metavar="HOST:PORT", help="the SMTP server (overrides smtp.host / smtp.port)")
    p.add_argument("--to", action="append", default=[], metavar="ADDRESS",
                   help="email every alert to ADDRESS (repeatable; needs an SMTP server)")
    p.add_argument("--webhook", action="append", default=[], metavar="URL", help="a generic JSON webhook (repeatable)")
    p.add_argument("--slack", action="append", default=[], metavar="URL", help="a Slack incoming webhook (repeatable)")
    p.add_argument("--teams", action="append", default=[], metavar="URL", help="a Teams incoming webhook (repeatable)")
    p.add_argument("--log-file", metavar="PATH",
                   help="also write every notification to PATH (JSON lines); ./run.sh uses var/log/notices.jsonl")
    p.add_argument("--dashboard", help="base URL of the dashboard (overrides dashboard)")
    add_log_level(p)
    return p.parse_args(argv)


def build_config(args: argparse.Namespace):
    """The file's configuration with the command line's endpoints and channels added."""
    config = load_config(None if args.config == "none" else args.config)
    if args.smtp:
        host, _, port = args.smtp.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--smtp {args.smtp!r}: expected HOST:PORT")
        s = config.smtp
        config.smtp = dataclasses.replace(s, host=host, port=int(port))
    if args.to:
        if not config.smtp.host:
            raise ConfigError("--to needs an SMTP server (--smtp HOST:PORT or smtp.host)")
        config.add_channel(ChannelSpec("email", "smtp", tuple(args.to)))
    for kind, urls in (("webhook", args.webhook), ("slack", args.slack), ("teams", args.teams)):
        for i, url in enumerate(urls):
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"--{kind} {url!r}: an http(s) URL is needed")
            config.add_channel(ChannelSpec(f"{kind}{i + 1}" if len(urls) > 1 else kind, kind, url=url))
    if args.log_file:
        config.add_channel(ChannelSpec("log", "log", path=args.log_file))
    if args.dashboard:
        config.dashboard = args.dashboard
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = build_config(args)
    except ConfigError as e:
        print(f"notify: {e}", file=sys.stderr)
        return 2
    if not config.channels:
        logging.getLogger("notify").warning("notify: no channel configured: alerts are only recorded as notices")
    from notify.server import Notifier
    from tickerplant.client import TickerplantError
    try:
        notifier = Notifier(config, args.control, args.ingest, args.status, args.name)
    except zmq.ZMQError as e:
        print(f"notify: cannot bind {args.status}: {e}", file=sys.stderr)
        return 1
    except TickerplantError as e:
        print(f"notify: {e}", file=sys.stderr)
        return 1

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await notifier.run(stop)

    try:
        asyncio.run(run())
    except TickerplantError as e:
        print(f"notify: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
