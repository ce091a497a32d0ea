"""Tickerplant benchmarks: ingest rows/s by batch size (journal on, group commit) and publish
latency (publisher send to subscriber callback) in zero-latency mode at a paced message rate.

Run: `.venv/bin/python -m bench.bench_tickerplant` (BENCH_QUICK=1 for a short run). The tickerplant
runs as its own process (`python -m tickerplant`), the subscriber of the latency test in another.
The latency table has two floor rows: the same paced publisher and messages through a bare ZeroMQ
relay process (PULL -> PUB, nothing journaled, checked or acknowledged) to a raw SUB socket that
decodes them, and straight from the publisher's PUB socket to that SUB socket (one hop, no process in
between): what ZeroMQ between processes costs on this machine before a tickerplant does any work.
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
    cpu = time.process_time()
    deadline = time.monotonic() + 120
    while len(lat) < expect and time.monotonic() < deadline:
        sub.poll(100)
    out.put((lat, time.process_time() - cpu))
    sub.close()


def _relay(ingest: str, pub: str) -> None:
    """The floor: forwards every message, nothing else."""
    ctx = zmq.Context()
    src, dst = ctx.socket(zmq.PULL), ctx.socket(zmq.PUB)
    src.bind(ingest)
    dst.bind(pub)
    while True:
        dst.send(src.recv())


def _raw_subscriber(pub: str, expect: int, ready, out) -> None:
    """A SUB socket that decodes each message: the floor rows' subscriber."""
    sock = zmq.Context().socket(zmq.SUB)
    sock.connect(pub)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    time.sleep(0.5)                   # the subscription reaches the publisher
    ready.set()
    lat = []
    cpu = time.process_time()
    deadline = time.monotonic() + 120
    while len(lat) < expect and time.monotonic() < deadline:
        if sock.poll(100):
            cols = unpack(sock.recv())
            lat.append(time.time_ns() - int(cols["time"][0].astype("int64")))
    out.put((lat, time.process_time() - cpu))


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


def _stats(lat: list, cpu_s: dict[str, float]) -> dict:
    """p50, p99, max (us) and the count of the latencies; CPU us per message of each process."""
    us = np.array(lat, dtype=np.float64) / 1000.0
    n = max(len(us), 1)
    return {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)), "max": float(us.max()),
            "n": len(us), **{k: v / n * 1e6 for k, v in cpu_s.items()}}


def _start_subscriber(target, address: str, n: int):
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=target, args=(address, n, ready, out))
    proc.start()
    ready.wait(60)
    return proc, out


def latency(rate: int, seconds: float) -> dict:
    """Single-row messages at rate msgs/s through the tickerplant (its Publisher and Subscriber)."""
    tp = TickerplantProcess("--durability", "group")
    try:
        n = int(rate * seconds)
        proc, out = _start_subscriber(_latency_subscriber, tp.control, n)
        time.sleep(0.5)
        pub = Publisher("bench-lat", tp.ingest)
        cpu0, pub0 = cpu_seconds(tp.proc.pid), time.process_time()
        _paced(lambda batch: pub.publish("quote", batch), rate, n)
        pub.flush(timeout=60)
        cpu, pub_cpu = cpu_seconds(tp.proc.pid) - cpu0, time.process_time() - pub0
        lat, sub_cpu = out.get(timeout=120)
        proc.join(30)
        pub.close()
        return _stats(lat, {"pub": pub_cpu, "mid": cpu, "sub": sub_cpu})
    finally:
        tp.close()


def relay_latency(rate: int, seconds: float) -> dict:
    """latency() through the bare relay process instead of the tickerplant."""
    n = int(rate * seconds)
    ingest, pub = free_endpoint(), free_endpoint()
    ctx = mp.get_context("spawn")
    relay = ctx.Process(target=_relay, args=(ingest, pub), daemon=True)
    relay.start()
    proc, out = _start_subscriber(_raw_subscriber, pub, n)
    sock = zmq.Context.instance().socket(zmq.PUSH)
    try:
        sock.connect(ingest)
        time.sleep(0.2)
        cpu0, pub0 = cpu_seconds(relay.pid), time.process_time()
        _paced(lambda batch: sock.send(pack(batch)), rate, n)
        lat, sub_cpu = out.get(timeout=120)
        cpu, pub_cpu = cpu_seconds(relay.pid) - cpu0, time.process_time() - pub0
        proc.join(30)
        return _stats(lat, {"pub": pub_cpu, "mid": cpu, "sub": sub_cpu})
    finally:
        sock.close(0)
        relay.terminate()


def direct_latency(rate: int, seconds: float) -> dict:
    """The same messages from the publisher's PUB socket straight to the subscriber: one hop, no
    process in between."""
    n = int(rate * seconds)
    sock = zmq.Context.instance().socket(zmq.PUB)
    try:
        sock.bind("tcp://127.0.0.1:0")
        proc, out = _start_subscriber(_raw_subscriber, sock.getsockopt_string(zmq.LAST_ENDPOINT), n)
        time.sleep(0.2)
        pub0 = time.process_time()
        _paced(lambda batch: sock.send(pack(batch)), rate, n)
        lat, sub_cpu = out.get(timeout=120)
        pub_cpu = time.process_time() - pub0
        proc.join(30)
        return _stats(lat, {"pub": pub_cpu, "sub": sub_cpu})
    finally:
        sock.close(0)


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
          f"(publisher send -> subscriber callback, separate processes); CPU us per message of the "
          f"publisher, the process in the middle and the subscriber")
    print(f"{'path':<12} {'msgs/s':>8} {'messages':>10} {'p50 us':>10} {'p99 us':>10} {'max us':>10} "
          f"{'pub CPU':>8} {'mid CPU':>8} {'sub CPU':>8}")
    for rate in (1_000, 10_000):
        for path, run in (("tickerplant", latency), ("bare relay", relay_latency), ("direct hop", direct_latency)):
            r = run(rate, secs)
            print(f"{path:<12} {rate:>8,} {r['n']:>10} {r['p50']:>10.0f} {r['p99']:>10.0f} {r['max']:>10.0f} "
                  f"{r['pub']:>8.1f} {r.get('mid', 0.0):>8.1f} {r['sub']:>8.1f}", flush=True)

if __name__ == "__main__":
    main()
