"""`python -m chaos`: runs the whole-stack fault injection (chaos.run), prints the table of kills,
restarts, fills and checks (and the JSON summary with --json) and exits 1 on any loss, double,
mismatch or process that did not come back."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from chaos.run import ChaosRun, Options
from common.cli import add_log_level, setup_logging
from common.defaults import VAR_DIR
from stack import StackError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    p.add_argument("--fills", type=int, default=100_000, help="fills the FIX sender sends (default %(default)s)")
    p.add_argument("--rate", type=float, default=1000.0, help="fills per second offered (default %(default)s)")
    p.add_argument("--kill-every", type=float, default=5.0,
                   help="seconds between two kills (after the previous victim answers again) (default %(default)s)")
    p.add_argument("--max-kills", type=int, default=0, help="stop killing after N kills; 0 = no limit (default)")
    p.add_argument("--seed", type=int, default=1, help="seed of the victims, the fills and the prices (default %(default)s)")
    p.add_argument("--ticks-per-sec", type=float, default=4.0,
                   help="price simulator steps per second, each quoting every instrument (default %(default)s)")
    p.add_argument("--ack", choices=["sync", "pipelined"], default="pipelined",
                   help="the FIX acceptor's --ack mode (default %(default)s)")
    p.add_argument("--settle-timeout", type=float, default=180.0,
                   help="seconds for the stack to book the last fill and go quiet (default %(default)s)")
    p.add_argument("--state-dir", type=Path, default=None,
                   help="journal, stores and logs of the run (default var/chaos/<UTC time>)")
    p.add_argument("--json", action="store_true", help="print the JSON summary on stdout (the table goes to stderr)")
    add_log_level(p)
    return p.parse_args(argv)


def table(s: dict) -> str:
    lines = [f"{'process':<12} {'kills':>5} {'deaths':>6} {'restarts':>8} {'longest recovery':>17}"]
    for name, r in s["processes"].items():
        lines.append(f"{name:<12} {r['kills']:>5} {r['deaths']:>6} {r['restarts']:>8} {r['longest_recovery_s']:>15.2f} s")
    f, rf = s["journal"], s["rdb_fills"]
    lines += ["", f"fills sent {f['sent']:,}; booked once: journal {f['booked']:,}, rdb {rf['booked']:,}; "
                  f"lost {f['lost']} / {rf['lost']}; doubled {f['doubled']} / {rf['doubled']}; "
                  f"booked but never sent {f['not_sent']} / {rf['not_sent']} (journal / rdb)", ""]
    for key, what in (("journal", "every fill booked once in the journal"),
                      ("rdb_fills", "every fill booked once in the rdb"),
                      ("calc_positions", f"calc's positions = start of day + fills ({s['calc_positions']['positions']} positions)"),
                      ("rdb_tables", f"rdb tables = journal ({s['rdb_tables']['tables']} tables, {s['rdb_tables']['rows']:,} rows)"),
                      ("subscriber", f"treasury subscriber: {s['subscriber']['batches']:,} margin batches of the journal's "
                                     f"{s['subscriber']['journal_batches']:,}, gaps {s['subscriber']['gaps']}, "
                                     f"repeats {s['subscriber']['repeats']}, recoveries {s['subscriber']['recoveries']}"),
                      ("fresh_calc", f"fresh calc's margin = journal's last rows, bit for bit ({s['fresh_calc']['rows']} rows)")):
        c = s[key]
        lines.append(f"  {'ok  ' if c['ok'] else 'FAIL'} {what}")
        lines += [f"         {x}" for x in c.get("examples", [])]
    if not s["settled"]:
        lines.append("  FAIL the stack did not settle (see the log above)")
    if s["unrecovered"]:
        lines.append(f"  FAIL did not come back after a kill: {', '.join(s['unrecovered'])}")
    lines.append(f"\n{s['kills']} kills in {s['sending_seconds']} s of sending, {s['seconds']} s in all; "
                 f"state and logs in {s['options']['state_dir']}")
    lines.append("CHAOS PASSED" if s["ok"] else "CHAOS FAILED")
    return "\n".join(lines)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    if args.fills < 1 or args.rate <= 0 or args.kill_every <= 0 or args.max_kills < 0:
        print("chaos: --fills >= 1, --rate > 0, --kill-every > 0 and --max-kills >= 0 please", file=sys.stderr)
        return 2
    state_dir = args.state_dir or VAR_DIR / "chaos" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    opts = Options(state_dir=state_dir.resolve(), fills=args.fills, rate=args.rate, kill_every=args.kill_every,
                   max_kills=args.max_kills, seed=args.seed, ticks_per_sec=args.ticks_per_sec, ack=args.ack,
                   settle_timeout=args.settle_timeout)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)      # unwinds through the stack's stop()
    try:
        summary = ChaosRun(opts).run()
    except (StackError, RuntimeError) as e:
        print(f"chaos: {e}", file=sys.stderr)
        return 1
    print(table(summary), file=sys.stderr if args.json else sys.stdout, flush=True)
    if args.json:
        print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
