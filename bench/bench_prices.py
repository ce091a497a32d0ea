"""Price feed benchmarks: simulated quotes/s generated in-process, and published in batches through a real
tickerplant (`python -m tickerplant`, journal on, group commit) until every quote is durable.

Run: `.venv/bin/python -m bench.bench_prices` (BENCH_QUICK=1 for a short run). Target: >= 500,000 quotes/s
published. Universe: the 21 demo instruments (data/ref/instrument.csv), calibrated on data/history.
"""
from __future__ import annotations

import os
import time

from bench.harness import TickerplantProcess
from common.codec import pack
from common.history import load_history
from feedhandlers.prices.calibrate import calibrate
from feedhandlers.prices.feed import PriceFeed
from feedhandlers.prices.simulator import PriceSimulator
from feedhandlers.refdata.loader import load_instruments
from tickerplant.client import Publisher

QUICK = os.environ.get("BENCH_QUICK") == "1"
BATCH_ROWS = (1_000, 10_000, 50_000)


def simulator(batch_rows: int) -> PriceSimulator:
    """The demo feed's simulator: every instrument of the reference data that has price history."""
    history = load_history()
    syms = [s for s in load_instruments()["sym"].tolist() if s in history.syms]
    return PriceSimulator(calibrate(history, syms), steps_per_sec=0, max_rows=batch_rows, seed=1)


def generate(batch_rows: int, total_rows: int) -> tuple[float, float]:
    """In-process quotes/s: simulate + build the batch, and the same plus msgpack encoding."""
    sim = simulator(batch_rows)
    batches = max(1, total_rows // batch_rows)
    t = time.perf_counter()
    for _ in range(batches):
        rows = len(sim.poll(0)["sym"])
    built = batches * rows / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(batches):
        pack(sim.poll(0))
    return built, batches * rows / (time.perf_counter() - t)


def publish(batch_rows: int, total_rows: int) -> tuple[float, int]:
    """Quotes/s from the first simulated step to the last durable acknowledgement; returns (rate, rows)."""
    tp = TickerplantProcess("--durability", "group")
    try:
        pub = Publisher("bench-prices", tp.ingest)
        feed = PriceFeed(simulator(batch_rows), pub, sectors={})
        t = time.perf_counter()
        rows = feed.run(stop=lambda: feed.rows >= total_rows)
        pub.flush(timeout=120)
        rate = rows / (time.perf_counter() - t)
        pub.close()
        feed.close()
        return rate, rows
    finally:
        tp.close()


def main() -> None:
    total = 200_000 if QUICK else 2_000_000
    print(f"simulated quotes, 21 syms, {total:,} quotes per run{' (BENCH_QUICK)' if QUICK else ''}")
    print(f"{'batch rows':>10} | {'generate q/s':>13} | {'+ encode q/s':>13} | {'published durable q/s':>21}")
    print("-" * 66)
    for batch_rows in BATCH_ROWS:
        built, encoded = generate(batch_rows, total)
        published, _ = publish(batch_rows, total)
        print(f"{batch_rows:>10,} | {built:>13,.0f} | {encoded:>13,.0f} | {published:>21,.0f}")
    print("target: >= 500,000 quotes/s published (batched)")


if __name__ == "__main__":
    main()
