"""q-sql on the rdb store vs DuckDB SQL vs pandas, same generated trade / quote data, same run.

Queries: a sym-filtered select, a sym + time-range select, time-bucketed VWAP by sym over the whole
table, a count / sum by sym over the whole table, and an as-of join of trades to quotes.
Rows: 10,000,000 per table (BENCH_QUICK=1: 1,000,000). Prints median milliseconds of several runs.
"""
from __future__ import annotations

import os
import statistics
import time

import duckdb
import numpy as np
import pandas as pd

from common.schema import parse_schema
from rdb.qsql.engine import execute
from rdb.store import Store

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROWS = 1_000_000 if QUICK else 10_000_000
NSYMS = 100
T0 = np.datetime64("2018-04-11T09:30", "ns")
SPAN_NS = 6 * 3600 * 10**9
SCHEMA = """
trade:([]time:`timestamp$();sym:`symbol$();price:`float$();size:`long$())
quote:([]time:`timestamp$();sym:`symbol$();bid:`float$();ask:`float$())
"""


def generate(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    names = np.array([f"S{i:02d}" for i in range(NSYMS)], dtype=object)
    time = T0 + np.sort(rng.integers(0, SPAN_NS, rows)).astype("timedelta64[ns]")
    return time, names[rng.integers(0, NSYMS, rows)], rng


def build():
    t_time, t_sym, rng = generate(ROWS, 1)
    trade = {"time": t_time, "sym": t_sym, "price": rng.uniform(10, 20, ROWS), "size": rng.integers(1, 1000, ROWS)}
    q_time, q_sym, rng = generate(ROWS, 2)
    bid = rng.uniform(10, 20, ROWS)
    quote = {"time": q_time, "sym": q_sym, "bid": bid, "ask": bid + 0.01}
    store = Store(parse_schema(SCHEMA))
    chunk = 1_000_000
    for name, cols in (("trade", trade), ("quote", quote)):
        for a in range(0, ROWS, chunk):
            store.apply(name, {c: v[a:a + chunk] for c, v in cols.items()})
    frames = {"trade": pd.DataFrame(trade), "quote": pd.DataFrame(quote)}
    db = duckdb.connect()
    db.execute("SET threads TO 2")
    for name, df in frames.items():
        db.register(f"{name}_df", df)
        db.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_df ORDER BY time")
    return store, frames, db


def timed(fn, repeat: int) -> float:
    fn()                                    # warm-up (Numba compilation, caches)
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs) * 1e3


def main() -> None:
    t = time.perf_counter()
    store, frames, db = build()
    print(f"built {ROWS:,} trades and {ROWS:,} quotes, {NSYMS} syms, in {time.perf_counter() - t:.1f}s")
    tr, qu = frames["trade"], frames["quote"]
    a, b = T0 + np.timedelta64(3600 * 10**9, "ns"), T0 + np.timedelta64(2 * 3600 * 10**9, "ns")
    ta, tb = pd.Timestamp(a), pd.Timestamp(b)
    qa, qb = "2018.04.11D10:30", "2018.04.11D11:30"
    cases = [
        ("sym = X", "select from trade where sym=`S42",
         "SELECT * FROM trade WHERE sym = 'S42'",
         lambda: tr[tr.sym == "S42"], 7),
        ("sym = X, time within (a;b)", f"select from trade where sym=`S42, time within ({qa};{qb})",
         f"SELECT * FROM trade WHERE sym = 'S42' AND time BETWEEN '{ta}' AND '{tb}'",
         lambda: tr[(tr.sym == "S42") & tr.time.between(ta, tb)], 7),
        ("vwap by 5 xbar time.minute, sym", "select vwap:size wavg price by 5 xbar time.minute, sym from trade",
         "SELECT time_bucket(INTERVAL 5 MINUTE, time) AS minute, sym, sum(size * price) / sum(size) AS vwap "
         "FROM trade GROUP BY ALL ORDER BY ALL",
         lambda: tr.assign(minute=tr.time.dt.floor("5min"), _p=tr.price * tr["size"])
         .groupby(["minute", "sym"]).agg(p=("_p", "sum"), s=("size", "sum")).pipe(lambda g: g.p / g.s), 3),
        ("count, sum size by sym", "select n:count i, total:sum size by sym from trade",
         "SELECT sym, count(*) AS n, sum(size) AS total FROM trade GROUP BY sym ORDER BY sym",
         lambda: tr.groupby("sym").agg(n=("price", "size"), total=("size", "sum")), 3),
        ("aj[`sym`time; trade; quote]", "aj[`sym`time; trade; quote]",
         "SELECT t.*, q.bid, q.ask FROM trade t ASOF LEFT JOIN quote q ON t.sym = q.sym AND t.time >= q.time",
         lambda: pd.merge_asof(tr, qu, on="time", by="sym"), 3),
    ]
    print(f"\n{'query':<36}{'q-sql ms':>12}{'DuckDB ms':>12}{'pandas ms':>12}{'q-sql/DuckDB':>14}")
    for label, q, sql, pdfn, repeat in cases:
        ours = timed(lambda: execute(store, q), repeat)
        duck = timed(lambda: db.execute(sql).fetchnumpy(), repeat)
        pand = timed(pdfn, max(1, repeat // 2))
        print(f"{label:<36}{ours:>12.2f}{duck:>12.2f}{pand:>12.2f}{ours / duck:>14.2f}")


if __name__ == "__main__":
    main()
