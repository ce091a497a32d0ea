"""Tickerplant benchmarks: ingest rows/s by batch size (journal on, group commit) and publish
latency (publisher send to subscriber callback) in zero-latency mode at a paced message rate.

Run: `.venv/bin/python -m bench.bench_tickerplant` (BENCH_QUICK=1 for a short run). The tickerplant
runs as its own process (`python -m tickerplant`), the subscriber of the latency test in another.
The latency table has a floor row: the same publisher and messages through a bare ZeroMQ relay
process (PULL -> PUB, nothing journaled, checked or acknowledged) to a raw SUB socket that decodes
them; what Python and ZeroMQ cost on this machine before the tickerplant does any work.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import zmq

from bench.harness import TickerplantProcess, cpu_seconds, free_endpoint
from common.codec import pack, unpack
from tickerplant.client import Publisher, Subscriber

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROOT = Path(__file__).resolve().parent.parent




def quote_batch(n: int, t0: int = 0) -> dict:
    rng = np.random.default_rng(n)
    price = 100 + rng.standard_normal(n).cumsum()
    return {"time": np.full(n, t0 or time.time_ns(), dtype="datetime64[ns]"),
            "sym": [f"SYM{i % 500}" for i in range(n)], "bid": price - 0.01, "ask": price + 0.01,
            "price": price, "size": np.full(n, 100.0), "vol": np.full(n, np.nan),
            "src": ["bench"] * n}


def ingest(batch_rows: int, total_rows: int) -> tuple[float, float]:
    """Rows/s and msgs/s from first send to the last acknowledgement (everything durable)."""
    tp = TickerplantProcess("--durability", "group")
    try:
        pub = Publisher("bench", tp.ingest)
        payload = pack(quote_batch(batch_rows))
        msgs = max(1, total_rows // batch_rows)
        pub.publish_sync("quote", payload)
        t = time.perf_counter()
        for _ in range(msgs):
            pub.publish("quote", payload)
        pub.flush(timeout=120)
        dt = time.perf_counter() - t
        pub.close()
        return msgs * batch_rows / dt, msgs / dt
    finally:
        tp.close()


def _latency_subscriber(control: str, expect: int, ready, out) -> None:
    lat = []

    def on_batch(table, cols, seq):
        lat.append(time.time_ns() - int(cols["time"][0].astype("int64")))

    sub = Subscriber("bench-lat", control, tables=["quote"], on_batch=on_batch)
    sub.start()
    ready.set()
    deadline = time.monotonic() + 120
    while len(lat) < expect and time.monotonic() < deadline:
        sub.poll(100)
    out.put(lat)
    sub.close()


def _relay(ingest: str, pub: str) -> None:
    """The floor: forwards every message, nothing else."""
    ctx = zmq.Context()
    src, dst = ctx.socket(zmq.PULL), ctx.socket(zmq.PUB)
    src.bind(ingest)
    dst.bind(pub)
    while True:
        dst.send(src.recv())


def _relay_subscriber(pub: str, expect: int, ready, out) -> None:
    sock = zmq.Context().socket(zmq.SUB)
    sock.connect(pub)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    time.sleep(0.5)                   # the subscription reaches the relay
    ready.set()
    lat = []
    deadline = time.monotonic() + 120
    while len(lat) < expect and time.monotonic() < deadline:
        if sock.poll(100):
            cols = unpack(sock.recv())
            lat.append(time.time_ns() - int(cols["time"][0].astype("int64")))
    out.put(lat)


def _paced(send, rate: int, n: int) -> None:
    """send(batch) n times at rate/s, each one-row quote stamped as it is sent."""
    batch = quote_batch(1)
    stamp = batch["time"]
    period = 1.0 / rate
    start = time.perf_counter()
    for i in range(n):
        ahead = start + i * period - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)            # no spinning: the box has 2 cores for 3 processes
        stamp[0] = np.datetime64(time.time_ns(), "ns")
        send(batch)


def _stats(lat: list, cpu_us: float) -> tuple[float, float, float, int, float]:
    us = np.array(lat, dtype=np.float64) / 1000.0
    return float(np.percentile(us, 50)), float(np.percentile(us, 99)), float(us.max()), len(us), cpu_us


def latency(rate: int, seconds: float) -> tuple[float, float, float, int, float]:
    """p50, p99, max in microseconds, the count, and the tickerplant's CPU us per message,
    single-row messages at rate msgs/s."""
    tp = TickerplantProcess("--durability", "group")
    try:
        n = int(rate * seconds)
        ctx = mp.get_context("spawn")
        ready, out = ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=_latency_subscriber, args=(tp.control, n, ready, out))
        proc.start()
        ready.wait(60)
        time.sleep(0.5)
        pub = Publisher("bench-lat", tp.ingest)
        cpu0 = cpu_seconds(tp.proc.pid)
        _paced(lambda batch: pub.publish("quote", batch), rate, n)
        pub.flush(timeout=60)
        cpu = cpu_seconds(tp.proc.pid) - cpu0
        lat = out.get(timeout=120)
        proc.join(30)
        pub.close()
        return _stats(lat, cpu / n * 1e6)
    finally:
        tp.close()


def relay_latency(rate: int, seconds: float) -> tuple[float, float, float, int, float]:
    """latency() through the bare relay instead of the tickerplant (CPU: the relay's)."""
    n = int(rate * seconds)
    ingest, pub = free_endpoint(), free_endpoint()
    ctx = mp.get_context("spawn")
    relay = ctx.Process(target=_relay, args=(ingest, pub), daemon=True)
    relay.start()
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_relay_subscriber, args=(pub, n, ready, out))
    proc.start()
    sock = zmq.Context.instance().socket(zmq.PUSH)
    try:
        ready.wait(60)
        sock.connect(ingest)
        time.sleep(0.2)
        cpu0 = cpu_seconds(relay.pid)
        _paced(lambda batch: sock.send(pack(batch)), rate, n)
        lat = out.get(timeout=120)
        cpu = cpu_seconds(relay.pid) - cpu0
        proc.join(30)
        return _stats(lat, cpu / n * 1e6)
    finally:
        sock.close(0)
        relay.terminate()


def main() -> None:
    total = 200_000 if QUICK else 2_000_000
    print("Tickerplant ingest, journal on (group commit 5 ms), one publisher, quote table "
          "(8 columns); rows/s from first send to last durable ack")
    print(f"{'rows/batch':>10} {'messages':>10} {'rows/s':>12} {'msgs/s':>10}")
    for rows in (1, 10, 100, 1000, 10000):
        n = min(total, 100_000 if QUICK else 300_000) if rows == 1 else total
        rps, mps = ingest(rows, n)
        print(f"{rows:>10} {n // rows:>10} {rps:>12,.0f} {mps:>10,.0f}", flush=True)
    secs = 2.0 if QUICK else 10.0
    print(f"\nPublish latency, zero-latency mode, single-row messages for {secs:g} s each "
          f"(publisher send -> subscriber callback, separate processes)")
    print(f"{'path':<12} {'msgs/s':>8} {'messages':>10} {'p50 us':>10} {'p99 us':>10} {'max us':>10} "
          f"{'hop CPU us/msg':>15}")
    for rate in (1_000, 10_000):
        for path, run in (("tickerplant", latency), ("bare relay", relay_latency)):
            p50, p99, worst, count, cpu = run(rate, secs)
            print(f"{path:<12} {rate:>8,} {count:>10} {p50:>10.0f} {p99:>10.0f} {worst:>10.0f} {cpu:>15.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
