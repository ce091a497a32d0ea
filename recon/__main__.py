"""`python -m recon`: the live parallel run process. Subscribes to `margin`, `ccpmargin`, `recon` and
`alert`, replays today's journal (rebuilding the margin history and what was already answered), then
publishes a `recon` row per official CCP figure and model, and a `recon` alert over the tolerance of
config/recon.toml (recon/engine.py). `--query` answers `status`."""
from __future__ import annotations

import argparse
import logging
import signal
import time

import zmq

from common.alerts import alert_batch
from common.defaults import RECON_QUERY, TP_CONTROL, TP_INGEST
from common.rpc import RpcServer
from recon.engine import CONFIG_PATH, Recon, ReconConfig, recon_batch
from tickerplant.client import Publisher, Subscriber

log = logging.getLogger("recon")
TABLES = ["margin", "ccpmargin", "recon", "alert", "alertrule", "account"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m recon", description=__doc__)
    p.add_argument("--control", default=TP_CONTROL, help="tickerplant control endpoint (default %(default)s)")
    p.add_argument("--ingest", default=TP_INGEST, help="tickerplant ingest endpoint (default %(default)s)")
    p.add_argument("--query", default=RECON_QUERY, help="status RPC endpoint (default %(default)s)")
    p.add_argument("--config", default=str(CONFIG_PATH), help="settings (default %(default)s)")
    p.add_argument("--name", default="recon", help="publisher / subscriber name (default %(default)s)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def publish(engine: Recon, pub: Publisher) -> int:
    """Answers the pending figures: alerts first, then the recon rows (see recon/engine.py)."""
    rows, alerts = engine.answer(time.time_ns())
    if alerts:
        pub.publish_sync("alert", alert_batch(alerts))
    if rows:
        pub.publish_sync("recon", recon_batch(rows))
        log.info("published %d recon rows, %d alerts", len(rows), len(alerts))
    return len(rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    engine = Recon(ReconConfig.load(args.config))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    pub = Publisher(args.name, endpoint=args.ingest, timeout=10.0)
    sub = Subscriber(args.name, args.control, tables=TABLES, on_batch=engine.apply, timeout=30.0)
    sub.start()
    published = publish(engine, pub)
    server = RpcServer(args.query, {"status": lambda _req: {
        "seq": sub.seq, "answered": len(engine.answered), "published": published,
        "accounts": len(engine.history), "tolerance_pct": engine.config.tolerance_pct}})
    poller = zmq.Poller()
    poller.register(sub.socket, zmq.POLLIN)
    poller.register(server.socket, zmq.POLLIN)
    log.info("replayed to seq %d: %d figures answered, margin history of %d accounts",
             sub.seq, len(engine.answered), len(engine.history))
    try:
        while not stopping:
            events = dict(poller.poll(100))
            if sub.socket in events:
                sub.drain()                 # live rows, heartbeats, missed-message recovery
            if engine.pending:
                published += publish(engine, pub)
            if server.socket in events:
                server.drain()
            pub.poll(0)
    finally:
        server.close()
        sub.close()
        pub.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
