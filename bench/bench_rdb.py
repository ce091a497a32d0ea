"""rdb benchmark: memory per million rows against raw column bytes, append throughput, and
`sym = X` / `sym = X, time within (a;b)` on a 10-million-row trade table, side by side with DuckDB
(a native DuckDB table) and pandas (sym as category) on the same data in the same run.

Run: `.venv/bin/python -m bench.bench_rdb` (BENCH_QUICK=1: 1 million rows, fewer repeats).
"""
from __future__ import annotations

import os
import statistics
import time

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from bench.harness import raw_bytes
from common.schema import parse_schema
from rdb.store import Store

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROWS = 1_000_000 if QUICK else 10_000_000
NSYMS = 1000
BATCH = 10_000
REPEATS = 5 if QUICK else 21
DAY_NS = 8 * 3600 * 10**9
T0 = np.datetime64("2026-11-20T08:00:00", "ns")
TRADE = parse_schema("trade:([]time:`timestamp$();sym:`symbol$();price:`float$();size:`float$();"
                     "side:`symbol$();venue:`symbol$())", "<bench trade>")


def make_trades(rows: int, seed: int = 7) -> dict:
    """A day of trades in time order: NSYMS syms, uniform; sym/side/venue as (codes, names)."""
    rng = np.random.default_rng(seed)
    return {"time": T0 + np.sort(rng.integers(0, DAY_NS, rows)).astype("timedelta64[ns]"),
            "sym": (rng.integers(0, NSYMS, rows).astype(np.int32), np.array([f"S{i:04d}" for i in range(NSYMS)], dtype=object)),
            "price": rng.uniform(10, 500, rows).round(2), "size": rng.integers(1, 1000, rows).astype(float),
            "side": (rng.integers(0, 2, rows).astype(np.int32), np.array(["B", "S"], dtype=object)),
            "venue": (rng.integers(0, 4, rows).astype(np.int32), np.array(["XNAS", "XNYS", "BATS", "ARCX"], dtype=object))}


def batch_at(data: dict, a: int, b: int) -> dict:
    return {c: (v[1][v[0][a:b]] if isinstance(v, tuple) else v[a:b]) for c, v in data.items()}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def load_store(data: dict, rows: int, checkpoints=()) -> tuple[Store, list[tuple[int, float, int]]]:
    """Appends `rows` trades in BATCH-row batches; returns the store and (rows, seconds, RSS growth)
    at each checkpoint row count."""
    store = Store(TRADE)
    table = store.table("trade")
    marks = []
    before = rss_bytes()
    t0 = time.perf_counter()
    for a in range(0, rows, BATCH):
        b = min(rows, a + BATCH)
        table.append(batch_at(data, a, b))
        table.update_index()                # as a live rdb queried between batches does
        if b in checkpoints:
            marks.append((b, time.perf_counter() - t0, rss_bytes() - before))
    return store, marks


def timed(fn, repeats: int, args_list: list) -> float:
    """Median wall milliseconds of fn(*args) over repeats, cycling through args_list (after a warm-up)."""
    fn(*args_list[0])
    samples = []
    for i in range(repeats):
        args = args_list[i % len(args_list)]
        t0 = time.perf_counter()
        fn(*args)
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(str(x).rjust(w) for x, w in zip(r, widths)))


def memory_table(data: dict) -> Store:
    """Loads the whole table, reporting memory at checkpoints; returns the loaded store."""
    checkpoints = [ROWS // 10, ROWS // 2, ROWS]
    store, marks = load_store(data, ROWS, checkpoints)
    table = store.table("trade")
    per_row_raw = raw_bytes(table) / len(table)
    index_bytes = sum(len(r) * r.dtype.itemsize for r in table.sym_index.values()) / len(table)
    out, prev_rows, prev_rss = [], 0, 0
    for rows, seconds, rss in marks:
        raw = per_row_raw * (rows - prev_rows)
        out.append([f"{prev_rows:,}-{rows:,}", f"{per_row_raw * 1e6 / 2**20:.1f}", f"{index_bytes * 1e6 / 2**20:.1f}",
                    f"{(rss - prev_rss) / (rows - prev_rows) * 1e6 / 2**20:.1f}", f"{(rss - prev_rss) / raw:.2f}x",
                    f"{rss / (per_row_raw * rows):.2f}x", f"{rows / seconds / 1e6:.2f}"])
        prev_rows, prev_rss = rows, rss
    print_table(f"rdb memory per million rows ({BATCH:,}-row appends, sym index updated after each; {NSYMS} syms; "
                "trade: time sym price size side venue)",
                ["rows", "raw column MiB", "sym index MiB", "resident MiB", "resident/raw", "since 0", "append Mrows/s (cumul.)"],
                out)
    return store


def append_table(data: dict) -> None:
    """Append throughput by batch size (in time order), as the rdb applies live batches."""
    out = []
    for size in (1, 10, 100, 1000, 10_000):
        rows = min(ROWS, 20_000 * size if size < 100 else 2_000_000 // (5 if QUICK else 1))
        batches = [batch_at(data, a, a + size) for a in range(0, rows - size + 1, size)]
        table = Store(TRADE).table("trade")
        t0 = time.perf_counter()
        for b in batches:
            table.append(b)
        table.update_index()
        seconds = time.perf_counter() - t0
        out.append([f"{size:,}", f"{len(batches):,}", f"{len(batches) / seconds:,.0f}", f"{len(table) / seconds:,.0f}"])
    print_table("rdb append by batch size, in time order (Table.append: sym encoding, columns; then the sym index update)",
                ["rows/batch", "batches", "batches/s", "rows/s"], out)


def query_table(data: dict, store: Store) -> None:
    table = store.table("trade")
    names = data["sym"][1]
    arrow = pa.table({c: (pa.DictionaryArray.from_arrays(v[0], pa.array(v[1].tolist())).cast(pa.string())
                          if isinstance(v, tuple) else v) for c, v in data.items()})
    con = duckdb.connect()
    con.register("trade_arrow", arrow)
    con.execute("create table trade as select * from trade_arrow")
    con.unregister("trade_arrow")
    frame = pd.DataFrame({c: (pd.Categorical.from_codes(v[0], v[1]) if isinstance(v, tuple) else v)
                          for c, v in data.items()})
    del arrow
    rng = np.random.default_rng(1)
    syms = [str(s) for s in names[rng.integers(0, NSYMS, 16)]]
    windows = []
    for s in syms:
        a = T0 + np.timedelta64(int(rng.integers(0, DAY_NS - 3600 * 10**9)), "ns")
        windows.append((s, a, a + np.timedelta64(3600, "s")))          # one hour of the eight
    py = [(s, a.astype("datetime64[us]").item(), b.astype("datetime64[us]").item()) for s, a, b in windows]

    counts = {"sym": table.select(syms=[syms[0]])["time"].size,
              "window": table.select(syms=[windows[0][0]], start=windows[0][1], end=windows[0][2])["time"].size}
    checks = {"sym": con.sql("select count(*) from trade where sym = ?", params=[syms[0]]).fetchall()[0][0],
              "window": con.sql("select count(*) from trade where sym = ? and time between ? and ?",
                                params=list(py[0])).fetchall()[0][0]}
    assert counts == checks, (counts, checks)

    results = [
        ["sym = X", f"{counts['sym']:,}",
         timed(lambda s: table.select(syms=[s]), REPEATS, [(s,) for s in syms]),
         timed(lambda s: con.sql("select * from trade where sym = ?", params=[s]).to_arrow_table(), REPEATS, [(s,) for s in syms]),
         timed(lambda s: frame[frame["sym"] == s], REPEATS, [(s,) for s in syms])],
        ["sym = X, time within (a;b)", f"{counts['window']:,}",
         timed(lambda s, a, b: table.select(syms=[s], start=a, end=b), REPEATS, windows),
         timed(lambda s, a, b: con.sql("select * from trade where sym = ? and time between ? and ?", params=[s, a, b]).to_arrow_table(),
               REPEATS, py),
         timed(lambda s, a, b: frame[(frame["sym"] == s) & frame["time"].between(a, b)], REPEATS, windows)],
    ]
    print_table(f"query latency, median ms over {REPEATS} runs, {ROWS:,}-row trade table, all 6 columns returned "
                f"(rdb: Store.select in process; DuckDB {duckdb.__version__} native table -> Arrow; pandas {pd.__version__})",
                ["query", "rows out", "rdb ms", "duckdb ms", "pandas ms", "duckdb/rdb"],
                [[q, n, f"{r:.3f}", f"{d:.3f}", f"{p:.3f}", f"{d / r:.1f}x"] for q, n, r, d, p in results])


def main() -> None:
    data = make_trades(ROWS)
    store = memory_table(data)            # first, so freed memory of other runs does not hide growth
    append_table(data)
    query_table(data, store)


if __name__ == "__main__":
    main()
