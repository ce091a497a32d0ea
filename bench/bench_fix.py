"""FIX drop-copy benchmark: fills/s from the FIX wire into the tickerplant, sustained, and latency per fill.

Run: `.venv/bin/python -m bench.bench_fix` (BENCH_QUICK=1 for a short run). The system under test is
`python -m feedhandlers.fix` (sync or pipelined acks) and `python -m tickerplant` (group commit). The
load runs in two more processes: the OMS, sending FIX 4.4 ExecutionReports from bench/fixwire.py (a
raw-socket initiator that frames messages itself and writes up to 100 per system call), and a
Subscriber to `fill` that sees each row once it is journaled and published. Both run at nice
LOAD_NICE: on this shared 2-core machine the system under test gets the cores first, as it would
with the OMS on its own machine (the load still takes its CPU time, reported per fill).

A fill's latency is from its TransactTime (stamped as it is sent) to the subscriber seeing its row;
fills/s is the number of fills over the time from the first send to the last row seen. At an
offered rate, the system keeps up when fills/s matches it and the latency of the last tenth of the
fills ("end p50") stays where it started; a backlog shows as an end p50 that grows with the run.
The feedhandler's own CPU time per fill is reported too (from /proc): 1e6 / that is what one free
core sustains.
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
from bench.harness import TickerplantProcess, cpu_seconds, wait_for
from common.net import free_port, listening
from feedhandlers.omsim.orders import OrderFlow
from feedhandlers.refdata.loader import load_refdata
from tickerplant.client import Subscriber

QUICK = os.environ.get("BENCH_QUICK") == "1"
LOAD_NICE = 10                 # the OMS sender and the measuring subscriber yield the cores to the SUT
ROOT = Path(__file__).resolve().parent.parent


def _fill_subscriber(control: str, expect: int, ready, out) -> None:
    lat: list[np.ndarray] = []
    seen = [0, 0]                                     # rows, ns of the last

    def on_batch(table, cols, seq):
        now = time.time_ns()
        lat.append(now - cols["time"].astype("int64"))
        seen[0] += len(cols["time"])
        seen[1] = now

    os.setpriority(os.PRIO_PROCESS, 0, LOAD_NICE)
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


def _oms(port: int, bodies: list[str], rate: float, logged_on, go, done, out, chunk: int = 100) -> None:
    """The load: logs on, then on `go` writes `bodies` at `rate`/s (0: as fast as possible), at most
    `chunk` per system call; puts (first send ns, seconds sending, CPU seconds); logs out on `done`."""
    os.setpriority(os.PRIO_PROCESS, 0, LOAD_NICE)
    wire = WireInitiator("127.0.0.1", port, sender="OMS")
    wire.wait_logon(60)
    logged_on.set()
    go.wait(60)
    cpu0 = time.process_time()
    t0 = time.time_ns()
    start, sent = time.monotonic(), 0
    while sent < len(bodies):
        due = len(bodies) if rate <= 0 else min(len(bodies), int((time.monotonic() - start) * rate))
        if due <= sent:
            time.sleep(0.0005)
            continue
        n = min(due - sent, chunk)
        wire.send(bodies[sent:sent + n])
        sent += n
    out.put((t0, (time.time_ns() - t0) / 1e9, time.process_time() - cpu0))
    done.wait(300)
    wire.close()


def run(ack: str, rate: float, count: int, flow: OrderFlow) -> dict:
    """Sends `count` fills at `rate`/s (0 = as fast as possible) and measures them into the journal."""
    tp = TickerplantProcess("--durability", "group")
    fh = FeedhandlerProcess(tp, ack)
    ctx = mp.get_context("spawn")
    ready, rows_out = ctx.Event(), ctx.Queue()
    logged_on, go, done, sent_out = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    sub = ctx.Process(target=_fill_subscriber, args=(tp.control, count, ready, rows_out))
    sub.start()
    oms = ctx.Process(target=_oms, args=(fh.port, [body_of(flow.next_message()) for _ in range(count)], rate,
                                         logged_on, go, done, sent_out))
    oms.start()
    try:
        if not (ready.wait(60) and logged_on.wait(60)):
            raise RuntimeError("the subscriber or the OMS logon did not come up")
        cpu0 = cpu_seconds(fh.proc.pid)
        go.set()
        t0, send_s, sender_cpu = sent_out.get(timeout=300)
        rows, last_ns, lat = rows_out.get(timeout=300)
        fh_cpu = cpu_seconds(fh.proc.pid) - cpu0
    finally:
        go.set()
        done.set()
        for proc in (oms, sub):
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        fh.close()
        tp.close()
    if rows < count:
        raise RuntimeError(f"{ack}: only {rows} of {count} fills reached the journal")
    elapsed = (last_ns - t0) / 1e9
    return {"fh us/fill": fh_cpu / rows * 1e6, "sender us/fill": sender_cpu / count * 1e6, "ack": ack,
            "offered": f"{rate:,.0f}/s" if rate else "max", "fills": rows,
            "sent/s": count / send_s, "fills/s": rows / elapsed if elapsed > 0 else float("nan"),
            "p50 ms": np.percentile(lat, 50) / 1e6, "p99 ms": np.percentile(lat, 99) / 1e6,
            "end p50 ms": np.percentile(lat[-max(1, len(lat) // 10):], 50) / 1e6}


def main() -> None:
    ref = load_refdata()
    flow = OrderFlow.from_refdata(ref, cancel_pct=0, correct_pct=0, seed=1)
    n = 3_000 if QUICK else 30_000
    secs = 1.0 if QUICK else 6.0
    cases = [("sync", 0, n // 10), ("pipelined", 0, n), ("pipelined", 4_000, int(4_000 * secs)),
             ("pipelined", 10_000, int(10_000 * secs)), ("pipelined", 11_000, int(11_000 * secs))]
    print(f"FIX ExecutionReports -> feedhandlers.fix -> tickerplant journal -> subscriber "
          f"({'quick' if QUICK else 'full'} run; OMS sender and subscriber at nice {LOAD_NICE})")
    print(f"{'ack':<10} {'offered':>9} {'fills':>7} {'sent/s':>9} {'fills/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'end p50 ms':>10} {'fh CPU us/fill':>15} {'= fills/s/core':>15} {'sender us/fill':>15}")
    for ack, rate, count in cases:
        r = run(ack, rate, count, flow)
        print(f"{r['ack']:<10} {r['offered']:>9} {r['fills']:>7} {r['sent/s']:>9,.0f} {r['fills/s']:>9,.0f} "
              f"{r['p50 ms']:>8.2f} {r['p99 ms']:>8.2f} {r['end p50 ms']:>10.2f} {r['fh us/fill']:>15.1f} "
              f"{1e6 / r['fh us/fill']:>15,.0f} {r['sender us/fill']:>15.1f}",
              flush=True)


if __name__ == "__main__":
    main()
