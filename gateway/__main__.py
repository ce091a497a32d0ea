"""`python -m gateway`: the kdb+ IPC and HTTP JSON front end of margintick."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from common.cli import add_log_level, setup_logging
from common.defaults import (
    CALC_QUERY,
    GATEWAY_HTTP_PORT,
    GATEWAY_IPC_PORT,
    HOST,
    RDB_QUERY,
    TP_CONTROL,
    TP_INGEST,
)


def parse_args(argv=None) -> argparse.Namespace:
    from gateway.http import BODY_TIMEOUT_S, HEADER_TIMEOUT_S
    from gateway.qscan import Limits
    from gateway.users import DEFAULT_USERS
    p = argparse.ArgumentParser(prog="python -m gateway",
                                description="margintick gateway: kdb+ IPC server for q / PyKX clients and an HTTP "
                                            "JSON API, over the rdb and calc, with users and entitlements.")
    p.add_argument("--host", default=HOST, help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=GATEWAY_IPC_PORT, help="kdb+ IPC port (default %(default)s)")
    p.add_argument("--http-port", type=int, default=GATEWAY_HTTP_PORT,
                   help="HTTP JSON port, 0 = any free port, -1 = no HTTP (default %(default)s)")
    p.add_argument("--users", default=str(DEFAULT_USERS), help="users file (default %(default)s)")
    p.add_argument("--rdb", default=RDB_QUERY, help="rdb query endpoint (default %(default)s)")
    p.add_argument("--calc", default=CALC_QUERY, help="calc query endpoint (default %(default)s)")
    p.add_argument("--ingest", default="",
                   help=f"tickerplant ingest endpoint that setrule publishes to (e.g. {TP_INGEST}; default: none, "
                        "setrule answers 'fail)")
    p.add_argument("--control", default=TP_CONTROL,
                   help="tickerplant control endpoint for subscriptions, '' = none (default %(default)s)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request backend timeout, s (default %(default)s)")
    p.add_argument("--max-message-mb", type=float, default=16.0,
                   help="largest kdb+ message accepted (also once decompressed), MB (default %(default)s)")
    p.add_argument("--max-depth", type=int, default=Limits.depth,
                   help="deepest nesting of lists / dictionaries / tables in a kdb+ request (default %(default)s)")
    p.add_argument("--max-items", type=int, default=Limits.items,
                   help="longest list in a kdb+ request; char and byte vectors: the message size (default %(default)s)")
    p.add_argument("--http-header-timeout", type=float, default=HEADER_TIMEOUT_S,
                   help="seconds for an HTTP request head, and idle between requests (default %(default)s)")
    p.add_argument("--http-body-timeout", type=float, default=BODY_TIMEOUT_S,
                   help="seconds for an HTTP request body (default %(default)s)")
    p.add_argument("--session-idle-minutes", type=float, default=480.0,
                   help="a dashboard session ends after this long unused (default %(default)s)")
    p.add_argument("--compress", choices=("remote", "always", "never"), default="remote",
                   help="compress replies over 2000 bytes: to clients on other hosts (kdb+ behaviour), "
                        "always, or never (default %(default)s)")
    add_log_level(p)
    return p.parse_args(argv)


async def serve(args) -> None:
    from common.rpc import AsyncRpcClient
    from gateway.api import Api
    from gateway.feed import Feed
    from gateway.http import HttpApi
    from gateway.hub import Hub
    from gateway.ipc import IpcServer
    from gateway.qscan import Limits
    from gateway.sessions import Sessions
    from gateway.users import Users

    log = logging.getLogger("gateway")
    loop = asyncio.get_running_loop()
    users = Users.load(args.users)
    api = Api(AsyncRpcClient(args.rdb, args.timeout), AsyncRpcClient(args.calc, args.timeout), args.timeout,
              args.ingest)
    hub = Hub(live=bool(args.control))
    ipc = IpcServer(api, users, hub, int(args.max_message_mb * (1 << 20)), args.compress,
                    limits=Limits(depth=args.max_depth, items=args.max_items))
    port = await ipc.start(args.host, args.port)
    http = None
    if args.http_port >= 0:
        http = HttpApi(api, users, hub, args.http_header_timeout, args.http_body_timeout,
                       Sessions(args.session_idle_minutes * 60.0))
        http_port = await http.start(args.host, args.http_port)
        log.info("dashboard on http://%s:%d/ and the HTTP JSON API (OpenAPI at /openapi.json)", args.host, http_port)
    feed = None
    if args.control:
        feed = Feed(hub, args.control, loop)
        feed.start()
    log.info("kdb+ IPC on %s:%d (users %s)", args.host, port, args.users)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await ipc.close()
    if http is not None:
        await http.close()
    if feed is not None:
        feed.stop()


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    from gateway.ratelog import install
    install()
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
