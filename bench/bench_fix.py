"""FIX drop-copy benchmark: fills/s from the FIX wire into the tickerplant, sustained, and latency per fill.

Run: `.venv/bin/python -m bench.bench_fix` (BENCH_QUICK=1 for a short run). Three processes besides
this one: `python -m tickerplant` (group commit), `python -m feedhandlers.fix` (sync or pipelined
acks) and a Subscriber to `fill`; this process is the OMS, sending FIX 4.4 ExecutionReports from
bench/fixwire.py (a raw-socket initiator that frames messages itself and writes up to 100 per system
call, so the sender takes a few microseconds per fill of the cores the acceptor needs). A fill's latency is from its TransactTime (stamped as it is sent) to the
subscriber seeing its row, i.e. journaled and published by the tickerplant; fills/s is the number
of fills over the time from the first send to the last row seen. On a shared machine the sender
and the other processes compete for the same cores, so the feedhandler's own CPU time per fill is
reported too (from /proc): 1e6 / that is what one free core sustains.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.fixwire import WireInitiator, body_of
from bench.harness import TickerplantProcess, cpu_seconds, free_port, listening, wait_for
from feedhandlers.omsim.orders import OrderFlow
from feedhandlers.refdata.loader import load_refdata
from tickerplant.client import Subscriber

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROOT = Path(__file__).resolve().parent.parent


def _fill_subscriber(control: str, expect: int, ready, out) -> None:
    lat: list[np.ndarray] = []
    seen = [0, 0]                                     # rows, ns of the last

    def on_batch(table, cols, seq):
        now = time.time_ns()
        lat.append(now - cols["time"].astype("int64"))
        seen[0] += len(cols["time"])
        seen[1] = now

    sub = Subscriber("bench-fix", control, tables=["fill"], on_batch=on_batch)
    sub.start()
    ready.set()
    deadline = time.monotonic() + 300
    while seen[0] < expect and time.monotonic() < deadline:
        sub.poll(100)
    sub.close()
    out.put((seen[0], seen[1], np.concatenate(lat) if lat else np.empty(0, np.int64)))


class FeedhandlerProcess:
    """`python -m feedhandlers.fix` on a free port against a tickerplant, in a temporary state dir."""

    def __init__(self, tp: TickerplantProcess, ack: str):
        self.dir = tempfile.mkdtemp(prefix="bench_fix_")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "feedhandlers.fix", "--port", str(self.port), "--state-dir", self.dir,
             "--ingest", tp.ingest, "--control", tp.control, "--ack", ack, "--log-level", "WARNING"], cwd=ROOT)
        wait_for(lambda: listening(self.port) or self.proc.poll() is not None, "the FIX feedhandler", timeout=60)
        if self.proc.poll() is not None:
            raise RuntimeError("the FIX feedhandler did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def _send(wire: WireInitiator, bodies: list[str], rate: float, chunk: int = 100) -> None:
    """Writes `bodies` at `rate`/s (0: as fast as possible), in chunks of at most `chunk` per system call."""
    start, sent = time.monotonic(), 0
    while sent < len(bodies):
        due = len(bodies) if rate <= 0 else min(len(bodies), int((time.monotonic() - start) * rate))
        if due <= sent:
            time.sleep(0.0005)
            continue
        n = min(due - sent, chunk)
        wire.send(bodies[sent:sent + n])
        sent += n


def run(ack: str, rate: float, count: int, flow: OrderFlow) -> dict:
    """Sends `count` fills at `rate`/s (0 = as fast as possible) and measures them into the journal."""
    tp = TickerplantProcess("--durability", "group")
    fh = FeedhandlerProcess(tp, ack)
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    sub = ctx.Process(target=_fill_subscriber, args=(tp.control, count, ready, out))
    sub.start()
    bodies = [body_of(flow.next_message()) for _ in range(count)]
    try:
        ready.wait(60)
        wire = WireInitiator("127.0.0.1", fh.port, sender="OMS")
        wire.wait_logon(60)
        cpu0, sender_cpu0 = cpu_seconds(fh.proc.pid), time.process_time()
        t0 = time.time_ns()
        _send(wire, bodies, rate)
        send_s = (time.time_ns() - t0) / 1e9
        sender_cpu = time.process_time() - sender_cpu0
        rows, last_ns, lat = out.get(timeout=300)
        fh_cpu = cpu_seconds(fh.proc.pid) - cpu0
        wire.close()
        sub.join(30)
    finally:
        fh.close()
        tp.close()
    if rows < count:
        raise RuntimeError(f"{ack}: only {rows} of {count} fills reached the journal")
    elapsed = (last_ns - t0) / 1e9
    return {"fh us/fill": fh_cpu / rows * 1e6, "sender us/fill": sender_cpu / count * 1e6, "ack": ack,
            "offered": f"{rate:,.0f}/s" if rate else "max", "fills": rows,
            "sent/s": count / send_s, "fills/s": rows / elapsed if elapsed > 0 else float("nan"),
            "p50 ms": np.percentile(lat, 50) / 1e6, "p99 ms": np.percentile(lat, 99) / 1e6}


def main() -> None:
    ref = load_refdata()
    flow = OrderFlow.from_refdata(ref, cancel_pct=0, correct_pct=0, seed=1)
    n = 3_000 if QUICK else 30_000
    cases = [("sync", 0, n // 10), ("pipelined", 0, n), ("pipelined", 10_000, n), ("pipelined", 4_000, n // 2)]
    print(f"FIX ExecutionReports -> feedhandlers.fix -> tickerplant journal -> subscriber "
          f"({'quick' if QUICK else 'full'} run; shared, loaded 2-core machine: figures are indicative)")
    print(f"{'ack':<10} {'offered':>9} {'fills':>7} {'sent/s':>9} {'fills/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'fh CPU us/fill':>15} {'= fills/s/core':>15} {'sender us/fill':>15}")
    for ack, rate, count in cases:
        r = run(ack, rate, count, flow)
        print(f"{r['ack']:<10} {r['offered']:>9} {r['fills']:>7} {r['sent/s']:>9,.0f} {r['fills/s']:>9,.0f} "
              f"{r['p50 ms']:>8.2f} {r['p99 ms']:>8.2f} {r['fh us/fill']:>15.1f} {1e6 / r['fh us/fill']:>15,.0f} "
              f"{r['sender us/fill']:>15.1f}",
              flush=True)


if __name__ == "__main__":
    main()
