"""rdb store: appends and growth, the sym index, time ranges, out-of-order batches, memory, bad input,
the query ops' argument checks, and the end-of-day Parquet writer (read back with pyarrow and DuckDB)."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench.harness import raw_bytes
from common.schema import load_schemas
from rdb.hdb import write_partition
from rdb.queries import QueryHandlers
from rdb.store import Store
from rdb.table import UnknownName

SCHEMAS = load_schemas()
SYMS = np.array(["AAPL", "MSFT", "NVDA", "AMD", "INTC", ""], dtype=object)
T0 = np.datetime64("2026-11-20T09:00:00", "ns")


def quotes(rng, n: int, t_lo: int, t_hi: int, sort: bool = True) -> dict:
    """A quote batch of n rows with times T0 + [t_lo, t_hi) microseconds."""
    t = rng.integers(t_lo, t_hi, n)
    if sort:
        t.sort()
    return {"time": T0 + t.astype("timedelta64[us]").astype("timedelta64[ns]"),
            "sym": SYMS[rng.integers(0, len(SYMS), n)], "bid": rng.random(n), "ask": rng.random(n),
            "price": np.arange(n, dtype=float) + t_lo, "size": rng.random(n), "vol": np.full(n, np.nan),
            "src": np.array(["feed"] * n, dtype=object)}


def concat(batches: list[dict]) -> dict:
    return {c: np.concatenate([b[c] for b in batches]) for c in batches[0]}


def expected_sorted(batches: list[dict]) -> dict:
    """All rows in arrival order, stably sorted by time: what the table must hold."""
    rows = concat(batches)
    order = np.argsort(rows["time"], kind="stable")
    return {c: v[order] for c, v in rows.items()}


def assert_batches_equal(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for c in want:
        np.testing.assert_array_equal(got[c], want[c], err_msg=c)


def assert_index_consistent(table) -> None:
    sym = table.column("sym")
    for code in np.unique(sym).tolist():
        np.testing.assert_array_equal(table.sym_rows(code), np.flatnonzero(sym == code))
    assert sum(len(r) for r in table.sym_index.values()) == len(table)
    assert (np.diff(table.column("time").view(np.int64)) >= 0).all()


def test_append_grows_past_capacity_and_keeps_every_row():
    rng = np.random.default_rng(1)
    table = Store(SCHEMAS).table("quote")
    batches = [quotes(rng, n, i * 1000, (i + 1) * 1000) for i, n in enumerate([1, 7, 64, 1, 500, 3000, 2])]
    for b in batches:
        assert table.append(b) == len(b["time"])
    assert len(table) == sum(len(b["time"]) for b in batches)
    assert table._data["price"].capacity >= len(table)
    assert_batches_equal(table.select(), expected_sorted(batches))
    assert_index_consistent(table)


def test_sym_filter_and_time_range_match_a_brute_force_filter():
    rng = np.random.default_rng(2)
    table = Store(SCHEMAS).table("quote")
    batches = [quotes(rng, 400, i * 10_000, (i + 1) * 10_000) for i in range(10)]
    for b in batches:
        table.append(b)
    every = expected_sorted(batches)
    cases = [(None, None, None), (["NVDA"], None, None), (["AMD", "AAPL"], None, None),
             (None, T0 + np.timedelta64(25_000, "us"), T0 + np.timedelta64(61_000, "us")),
             (["MSFT", "NOSUCH"], T0 + np.timedelta64(5_000, "us"), None),
             ([""], None, T0 + np.timedelta64(30_000, "us")),
             (["INTC"], T0 + np.timedelta64(90_000, "us"), T0 + np.timedelta64(10_000, "us"))]
    every_time = every["time"][::97]
    cases += [(["AAPL"], every_time[3], every_time[3]), (None, every_time[5], every_time[9])]
    for syms, start, end in cases:
        keep = np.ones(len(every["time"]), dtype=bool)
        if syms is not None:
            keep &= np.isin(every["sym"], syms)
        if start is not None:
            keep &= every["time"] >= start
        if end is not None:
            keep &= every["time"] <= end
        got = table.select(syms=syms, start=start, end=end, columns=["time", "sym", "price"])
        assert_batches_equal(got, {c: every[c][keep] for c in ["time", "sym", "price"]})


def test_out_of_order_batches_are_merged_in_time_order():
    rng = np.random.default_rng(3)
    table = Store(SCHEMAS).table("quote")
    batches = [quotes(rng, 300, 0, 1_000_000)]
    for i in range(30):                     # late batches reaching back, unsorted batches, exact ties
        lo = int(rng.integers(0, 900_000))
        batches.append(quotes(rng, int(rng.integers(1, 200)), lo, lo + 100_000, sort=bool(i % 3)))
    batches.append({**batches[5], "price": batches[5]["price"] + 0.5})
    late_new_sym = quotes(rng, 40, 0, 500_000)                        # a late batch bringing new syms
    late_new_sym["sym"] = np.array(["LATE1", "LATE2"] * 20, dtype=object)
    batches.append(late_new_sym)
    unread = Store(SCHEMAS).table("quote")         # the lazy index: many appends, then one read
    for i, b in enumerate(batches):
        table.append(b)
        assert_index_consistent(table)
        unread.append(b)
        if i == 10:
            assert_index_consistent(unread)
    want = expected_sorted(batches)
    keep = want["sym"] == "NVDA"
    for t in (table, unread):
        assert_batches_equal(t.select(), want)
        assert_batches_equal(t.select(syms=["NVDA"]), {c: v[keep] for c, v in want.items()})
    assert_index_consistent(unread)


def test_last_row_per_sym():
    rng = np.random.default_rng(4)
    table = Store(SCHEMAS).table("quote")
    batches = [quotes(rng, 200, i * 1000, (i + 1) * 1000) for i in range(5)]
    for b in batches:
        table.append(b)
    every = expected_sorted(batches)
    got = table.last(syms=["NVDA", "NOSUCH", "AAPL"], columns=["sym", "price"])
    want_rows = [np.flatnonzero(every["sym"] == s)[-1] for s in ["NVDA", "AAPL"]]
    assert_batches_equal(got, {"sym": every["sym"][want_rows], "price": every["price"][want_rows]})
    assert sorted(table.last()["sym"].tolist()) == sorted(SYMS.tolist())


def test_bad_batches_are_rejected_and_change_nothing():
    rng = np.random.default_rng(5)
    table = Store(SCHEMAS).table("quote")
    good = quotes(rng, 10, 0, 1000)
    table.append(good)
    missing = {c: v for c, v in good.items() if c != "ask"}
    with pytest.raises(ValueError, match=r"missing \['ask'\]"):
        table.append(missing)
    with pytest.raises(ValueError, match=r"extra \['oops'\]"):
        table.append({**good, "oops": good["bid"]})
    with pytest.raises(TypeError, match="quote.bid: expected float"):
        table.append({**good, "bid": good["bid"].astype(np.float32)})
    with pytest.raises(ValueError, match="ragged"):
        table.append({**good, "price": good["price"][:3]})
    with pytest.raises(TypeError, match="symbol must be str"):
        table.append({**good, "src": np.array([1] * 10, dtype=object)})
    assert_batches_equal(table.select(), expected_sorted([good]))
    assert_index_consistent(table)


def test_memory_per_million_rows_is_within_1_3x_raw_column_bytes():
    """Resident memory added by 1M quote rows (kept columns + sym index) against raw column bytes."""
    rng = np.random.default_rng(6)
    table = Store(SCHEMAS).table("quote")
    batch = quotes(rng, 20_000, 0, 1)
    table.append(batch)
    table.update_index()
    before = _rss_bytes()
    for i in range(1, 51):
        table.append({**batch, "time": batch["time"] + np.timedelta64(i, "s")})
    table.update_index()
    added_rows = len(table) - 20_000
    raw = raw_bytes(table) * added_rows // len(table)
    assert added_rows == 1_000_000
    assert _rss_bytes() - before <= 1.3 * raw


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_query_ops_give_clear_errors():
    store = Store(SCHEMAS)
    store.apply("quote", quotes(np.random.default_rng(7), 50, 0, 1000))
    ops = QueryHandlers(store)
    with pytest.raises(UnknownName, match="unknown table 'trade'"):
        ops.select({"table": "trade"})
    with pytest.raises(UnknownName, match="quote: unknown column 'qty'"):
        ops.select({"table": "quote", "columns": ["time", "qty"]})
    with pytest.raises(TypeError, match="'type: start must be a timestamp"):
        ops.select({"table": "quote", "start": 1.5})
    with pytest.raises(TypeError, match="'type: end must be a timestamp"):
        ops.select({"table": "quote", "end": [1, 2]})
    with pytest.raises(ValueError, match="bad timestamp 'yesterday'"):
        ops.select({"table": "quote", "start": "yesterday"})
    with pytest.raises(TypeError, match="'type: syms must be a symbol"):
        ops.last({"table": "quote", "syms": 5})
    with pytest.raises(ValueError, match="^nosuch$"):
        ops.qsql({"query": "select from nosuch"})
    with pytest.raises(TypeError, match="'type: query must be a string"):
        ops.qsql({"query": 5})
    assert ops.qsql({"query": "select n:count i by sym from quote"})["result"]["kind"] == "keyed"
    start = ops.select({"table": "quote", "start": "2026.11.20D09:00:00.000500", "columns": "time"})
    assert (start["table"]["time"] >= T0 + np.timedelta64(500, "us")).all()
    assert start["types"] == {"time": "timestamp"}
    assert ops.count({}) ["counts"]["quote"] == 50
    assert ops.count({"table": "quote"}) == {"count": 50}


def test_end_of_day_partition_is_sorted_complete_and_read_by_duckdb(tmp_path):
    import duckdb
    rng = np.random.default_rng(8)
    store = Store(SCHEMAS)
    batches = [quotes(rng, 500, 0, 1_000_000, sort=False) for _ in range(4)]
    for b in batches:
        store.apply("quote", b)
    (tmp_path / ".date=2026-11-20.tmp-999").mkdir(parents=True)          # a crashed earlier write
    part = write_partition(store.tables, "2026-11-20", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["date=2026-11-20"]
    assert sorted(p.name for p in part.iterdir()) == sorted(f"{t}.parquet" for t in SCHEMAS)
    got = pq.read_table(part / "quote.parquet").to_pydict()
    rows = concat(batches)
    want = sorted(zip(rows["sym"].tolist(), rows["time"].astype(np.int64).tolist(), rows["price"].tolist()))
    got_rows = list(zip(got["sym"], [int(np.datetime64(t, "ns").astype(np.int64)) for t in got["time"]], got["price"]))
    assert got_rows == want            # every row, sorted by sym then time (price tells ties apart)
    con = duckdb.connect()
    n, = con.execute(f"select count(*) from read_parquet('{tmp_path}/*/quote.parquet', hive_partitioning=true) "
                     "where date = '2026-11-20'").fetchone()
    assert n == 2000
    assert con.execute(f"select count(*) from '{part}/fill.parquet'").fetchone() == (0,)
    store.clear()
    store.apply("quote", batches[0])
    write_partition(store.tables, "2026-11-20", tmp_path)               # a rewrite replaces it whole
    assert pq.read_table(part / "quote.parquet").num_rows == 500
    with pytest.raises(ValueError, match="bad date"):
        write_partition(store.tables, "../etc", tmp_path)
