"""Recovery benchmark: how long a subscriber takes to recover a trading day from the tickerplant's
journal, reading the file itself vs over the network (the tickerplant's replay service), side by
side in one run, with the raw read speed of the journal as the floor.

Run: `./run.sh bench recovery` or `.venv/bin/python -m bench.bench_recovery` (BENCH_QUICK=1: 1/100
of the size). The day: 1,000,000 fills in 10-row batches (the FIX acceptor's pipelined batches) and
10,000,000 quotes in 1,000-row batches, published durably through a real tickerplant process. Then,
each in a fresh process, one after the other (the journal is in the page cache, as it is when a
subscriber restarts on the tickerplant's host):
- floor: the journal file read in 8 MB reads, nothing else; then read with every record framed and
  its CRC checked (journal.read_records);
- a Subscriber for each table set (every table: rdb and calc; fill: the FIX acceptor's exec-id
  rebuild; margin + alert: the gateway, which skips every record of the day), replay "file" and
  "network": from its construction to start() returning, its callback counting rows; CPU of the
  subscriber and, over the network, of the tickerplant;
- the real rdb process (`python -m rdb`), MARGINTICK_REPLAY=file / network: from spawn to its status
  answering at the day's last seq (interpreter start-up and the rdb's own tables included).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench.harness import REPO, TickerplantProcess, cpu_seconds, free_endpoint, wait_for
from common.rpc import rpc_answer
from common.codec import pack
from tickerplant import journal
from tickerplant.client import Publisher, Subscriber

QUICK = os.environ.get("BENCH_QUICK") == "1"
SCALE = 100 if QUICK else 1
FILLS, FILL_ROWS = 1_000_000 // SCALE, 10
QUOTES, QUOTE_ROWS = 10_000_000 // SCALE, 1_000
PROFILES = [("every table (rdb, calc)", None), ("fill (FIX acceptor)", ["fill"]),
            ("margin + alert (gateway)", ["margin", "alert"])]


def quote_batch(n: int) -> dict:
    rng = np.random.default_rng(n)
    price = 100 + rng.standard_normal(n).cumsum()
    return {"time": np.full(n, time.time_ns(), dtype="datetime64[ns]"),
            "sym": [f"SYM{i % 500}" for i in range(n)], "bid": price - 0.01, "ask": price + 0.01,
            "price": price, "size": np.full(n, 100.0), "vol": np.full(n, np.nan), "src": ["sim"] * n}


def fill_batch(n: int) -> dict:
    rng = np.random.default_rng(n)
    return {"time": np.full(n, time.time_ns(), dtype="datetime64[ns]"),
            "sym": [f"SYM{i % 500}" for i in range(n)], "account": ["FUND1"] * n,
            "qty": rng.integers(-100, 100, n).astype(float), "price": rng.random(n) * 100,
            "execid": [f"E{i}" for i in range(n)], "orderid": [f"O{i}" for i in range(n)],
            "exectype": ["F"] * n, "refexecid": [""] * n, "session": ["OMS"] * n,
            "status": ["ok"] * n}


def publish_day(tp: TickerplantProcess) -> int:
    """Publishes the day (fills and quotes interleaved as they would be); returns the last seq."""
    pub = Publisher("bench.recovery", tp.ingest, timeout=120)
    fills, quotes = pack(fill_batch(FILL_ROWS)), pack(quote_batch(QUOTE_ROWS))
    nfills, nquotes = FILLS // FILL_ROWS, QUOTES // QUOTE_ROWS
    per_quote = nfills // nquotes
    for q in range(nquotes):
        pub.publish("quote", quotes)
        for _ in range(per_quote):
            pub.publish("fill", fills)
        if q % 100 == 99:
            pub.flush(timeout=300)
    pub.flush(timeout=300)
    pub.close()
    return nquotes * (1 + per_quote)


def _subscriber(control: str, tables, replay: str, out) -> None:
    rows = [0]

    def on_batch(table, cols, seq):
        rows[0] += len(cols["sym"])

    cpu, t = time.process_time(), time.perf_counter()
    sub = Subscriber("bench-recovery", control, tables=tables, on_batch=on_batch, replay=replay,
                     timeout=60)
    sub.start()
    out.put((time.perf_counter() - t, time.process_time() - cpu, rows[0], sub.seq,
             sub.replayed_via, sub.replay_bytes))
    sub.close()


def _floor(path: str, check: bool, out) -> None:
    t = time.perf_counter()
    n = 0
    if check:
        n = sum(1 for _ in journal.read_records(path))
    else:
        with open(path, "rb", buffering=0) as f:
            while f.read(journal.READ_CHUNK):
                n += 1
    out.put((time.perf_counter() - t, n))


def in_process(target, *args):
    """Runs target(*args, queue) in a fresh process; returns what it put on the queue."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, out))
    proc.start()
    result = out.get(timeout=1800)
    proc.join(60)
    return result


def rdb_recovery(control: str, replay: str, seq: int) -> float:
    """Seconds from spawning `python -m rdb` to its status answering at seq."""
    query, hdb = free_endpoint(), tempfile.mkdtemp(prefix="bench_hdb_")
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rdb", "--control", control, "--query", query,
                             "--hdb", hdb, "--name", f"bench-rdb-{replay}", "--log-level",
                             "WARNING"], cwd=REPO, env={**os.environ, "MARGINTICK_REPLAY": replay})
    try:
        wait_for(lambda: (rpc_answer(query) or {}).get("seq") == seq, f"the rdb ({replay})",
                 timeout=1800)
        return time.perf_counter() - t
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(hdb, ignore_errors=True)


def main() -> None:
    tp = TickerplantProcess("--durability", "group")
    try:
        t = time.perf_counter()
        seq = publish_day(tp)
        status = rpc_answer(tp.control)
        assert status["seq"] == seq, (status["seq"], seq)
        path, size = status["journal"], status["journal_bytes"]
        mb = size / 1e6
        print(f"Recovery of a day: {FILLS:,} fills in {FILL_ROWS}-row batches, {QUOTES:,} quotes "
              f"in {QUOTE_ROWS:,}-row batches: {seq:,} journal records, {mb:,.0f} MB "
              f"(published in {time.perf_counter() - t:.1f} s). Page cache warm.\n")
        print(f"{'what':<28} {'path':<8} {'seconds':>8} {'MB/s':>8} {'rows':>12} "
              f"{'sub CPU s':>10} {'tp CPU s':>9}")
        for check, what in ((False, "floor: read the file"), (True, "floor: read + CRC check")):
            secs, _ = in_process(_floor, path, check)
            print(f"{what:<28} {'file':<8} {secs:>8.2f} {mb / secs:>8,.0f}", flush=True)
        for label, tables in PROFILES:
            for replay in ("file", "network"):
                tp_cpu = cpu_seconds(tp.proc.pid)
                secs, cpu, rows, got, via, nbytes = in_process(_subscriber, tp.control, tables,
                                                                replay)
                assert got == seq and via == replay, (got, seq, via)
                tp_cpu = cpu_seconds(tp.proc.pid) - tp_cpu
                print(f"{label:<28} {replay:<8} {secs:>8.2f} {mb / secs:>8,.0f} {rows:>12,} "
                      f"{cpu:>10.2f} {tp_cpu if replay == 'network' else 0:>9.2f}", flush=True)
        for replay in ("file", "network"):
            secs = rdb_recovery(tp.control, replay, seq)
            print(f"{'python -m rdb, to status':<28} {replay:<8} {secs:>8.2f} {mb / secs:>8,.0f}",
                  flush=True)
    finally:
        tp.close()


if __name__ == "__main__":
    main()
