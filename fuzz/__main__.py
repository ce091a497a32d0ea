"""python -m fuzz (./run.sh fuzz): starts the demo stack on free 127.0.0.1 ports (supervised), runs a
bounded fuzz campaign against it, prints the report table and writes the JSON report."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from fuzz.campaign import SHARES, Campaign, gateway_args, table


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    p.add_argument("--cases", type=int, default=27_100, help="total cases, split across the edges as "
                   "20,000 ipc : 5,000 http : 2,000 fix : 100 storm (default 27,100)")
    p.add_argument("--seed", type=int, default=1, help="random seed; case i of a seed is always the same input")
    p.add_argument("--json", type=Path, default=Path("fuzz-report.json"), help="JSON report path (default %(default)s)")
    p.add_argument("--edges", default=",".join(SHARES), help="comma-separated subset of %(default)s")
    p.add_argument("--hang-timeout", type=float, default=5.0, help="seconds without an answer that make a hang")
    p.add_argument("--canary-every", type=int, default=200, help="cases between canary margin calls")
    p.add_argument("--state-dir", type=Path, help="the stack's state and logs (default: a new temporary folder)")
    args = p.parse_args(argv)
    if args.cases < 1 or args.hang_timeout <= 0:
        p.error("--cases must be >= 1 and --hang-timeout > 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from stack import Stack
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="margintick-fuzz-"))
    print(f"fuzz: starting the stack (state and logs in {state})", flush=True)
    stack = Stack(state, ports="free", supervise=True, log_level="WARNING",
                  extra_args={"gateway": gateway_args(args.hang_timeout)}).start(timeout=180)
    try:
        campaign = Campaign(stack, args.cases, args.seed, args.edges.split(","), args.hang_timeout,
                            args.canary_every, progress=lambda m: print(f"fuzz: {m}", flush=True))
        report = campaign.run()
    except ValueError as e:
        print(f"fuzz: {e}", file=sys.stderr)
        return 2
    finally:
        stack.stop()
    report["state_dir"] = str(state)
    args.json.write_text(json.dumps(report, indent=1, default=str))
    print(table(report))
    print(f"\nJSON report: {args.json}")
    bad = sum(r["crash"] + r["hang"] for r in report["edges"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
