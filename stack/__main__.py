"""`python -m stack` (what `./run.sh` runs): starts the whole demo stack on 127.0.0.1 with each process's
log in <state-dir>/log/NAME.log, supervises it (a process that exits is logged and restarted with
backoff, the others keep running) and stops everything on SIGINT / SIGTERM."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from common.cli import add_log_level, setup_logging
from common.defaults import VAR_DIR
from stack import Stack, StackError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    p.add_argument("--state-dir", default=os.environ.get("MARGINTICK_VAR") or str(VAR_DIR),
                   help="journal, HDB, FIX stores and logs (default $MARGINTICK_VAR or %(default)s)")
    p.add_argument("--ports", choices=["default", "free"], default="default",
                   help="default: the ports of common/defaults.py; free: any free ports (default %(default)s)")
    p.add_argument("--no-supervise", action="store_true",
                   help="log a process that exits but do not restart it")
    p.add_argument("--no-omsim", action="store_true", help="do not start the demo OMS simulator")
    p.add_argument("--process-log-level", default="INFO",
                   help="--log-level of the processes (default %(default)s)")
    p.add_argument("--backoff-max", type=float, default=30.0,
                   help="longest wait before a restart, s; waits double from 0.5 s (default %(default)s)")
    p.add_argument("--stable-after", type=float, default=30.0,
                   help="a process up this long restarts after 0.5 s again when it dies (default %(default)s)")
    add_log_level(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    s = Stack(args.state_dir, ports=args.ports, supervise=not args.no_supervise, log_level=args.process_log_level,
              omsim=not args.no_omsim, backoff_max=args.backoff_max, stable_after=args.stable_after)
    print(f"stack: starting margintick (state and logs in {s.state_dir})", flush=True)
    try:
        s.start()
    except StackError as e:
        print(f"stack: {e}", file=sys.stderr)
        return 1
    e = s.endpoints
    print(f"""
margintick is up:
  dashboard: http://127.0.0.1:{e['http_port']}/   (sign in as demo / demo, or trader1 / trader1 for desk TECH)
  q / PyKX:  h:hopen `:127.0.0.1:{e['gateway_port']}:demo:demo   |  pykx.SyncQConnection('127.0.0.1', {e['gateway_port']}, username='demo', password='demo')
  HTTP:      curl -u demo:demo http://127.0.0.1:{e['http_port']}/margin   (OpenAPI: http://127.0.0.1:{e['http_port']}/openapi.json)
  FIX:       drop copy acceptor on 127.0.0.1:{e['fix_port']}, TargetCompID MARGINTICK, SenderCompID CLIENT free for your engine
  CCP statements: drop files in {s.state_dir / 'statements'}; the parallel run: curl -u demo:demo http://127.0.0.1:{e['http_port']}/recon?account=FUND1
  alerts:    delivered by notify (config/notify.toml); every notification also in {s.log_dir / 'notices.jsonl'}
  tickerplant control {e['tp_control']}, ingest {e['tp_ingest']}; logs in {s.log_dir}
A process that exits is restarted with backoff (logged here); Ctrl-C stops everything.""", flush=True)
    while not stop.wait(1.0):
        pass
    print("stack: stopping", flush=True)
    s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
