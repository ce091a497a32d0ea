"""rdb process against a real tickerplant: recovery after kill -9 equals the journal exactly, end of day
writes sorted, complete Parquet partitions that DuckDB reads (and rdb.replay rebuilds the same from the
journal), bad queries get clear errors."""
from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import threading
import time

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from common.rpc import RpcClient, RpcError
from common.schema import load_schemas
from conftest import TickerplantProcess, answers, wait_until
from rdb.replay import load_journal
from tickerplant.client import Publisher
from tickerplant.journal import journal_files

SCHEMAS = load_schemas()
SYMS = np.array(["AAPL", "MSFT", "NVDA", "AMD", "SOXX"], dtype=object)


class Stack:
    """A tickerplant (conftest's TickerplantProcess, started by start_tp) and launchers of an rdb on it."""

    def __init__(self, spawn, free_port, tmp_path):
        self.spawn = spawn
        self.tp = TickerplantProcess(spawn, tmp_path)
        self.ingest, self.control, self.journal = self.tp.ingest, self.tp.control, self.tp.journal
        self.query = f"tcp://127.0.0.1:{free_port()}"
        self.hdb = tmp_path / "hdb"
        self.rdb_rpc = RpcClient(self.query, timeout=5.0)

    def start_tp(self, *tp_args):
        self.tp.args = tp_args
        self.tp.start()
        return self

    def start_rdb(self, wait: bool = True):
        proc = self.spawn("rdb", "--control", self.control, "--query", self.query, "--hdb", self.hdb)
        if wait:
            self.wait_rdb_up()
        return proc

    def wait_rdb_up(self):
        wait_until(lambda: answers(lambda: self.rdb_rpc.call("status")), timeout=60, what="rdb up")

    def wait_rdb_caught_up(self):
        seq = self.tp.status()["seq"]
        wait_until(lambda: answers(lambda: self.rdb_rpc.call("status")["seq"] >= seq), timeout=60,
                   what=f"rdb at seq {seq}")
        return seq


def quote_batch(rng, n: int, t_ns: int) -> dict:
    return {"time": np.full(n, t_ns, dtype=np.int64).astype("datetime64[ns]") + np.arange(n).astype("timedelta64[ns]"),
            "sym": SYMS[rng.integers(0, len(SYMS), n)], "bid": rng.random(n), "ask": rng.random(n) + 1,
            "price": rng.random(n) + 0.5, "size": rng.random(n), "vol": np.full(n, np.nan),
            "src": np.array(["test"] * n, dtype=object)}


def fill_batch(rng, n: int, t_ns: int, first_id: int) -> dict:
    def syms(values):
        return np.array(values, dtype=object)
    return {"time": np.full(n, t_ns, dtype="datetime64[ns]"), "sym": SYMS[rng.integers(0, len(SYMS), n)],
            "account": syms(["FUND1"] * n), "qty": rng.integers(-100, 100, n).astype(float),
            "price": rng.random(n) * 100, "execid": syms([f"E{first_id + i}" for i in range(n)]),
            "orderid": syms([f"O{first_id + i}" for i in range(n)]), "exectype": syms(["F"] * n),
            "refexecid": syms([""] * n), "session": syms(["OMS"] * n), "status": syms(["ok"] * n)}


def rdb_table(rpc: RpcClient, table: str) -> dict:
    return rpc.call("select", table=table)["table"]


def assert_equal_tables(got: dict, want: dict, table: str) -> None:
    assert list(got) == list(want), table
    for col in want:
        g, w = np.asarray(got[col]), want[col]
        if w.dtype == object:
            assert g.tolist() == w.tolist(), f"{table}.{col}"
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{table}.{col}")


def test_rdb_killed_mid_stream_recovers_exactly_the_journal(spawn, free_port, tmp_path):
    stack = Stack(spawn, free_port, tmp_path).start_tp()
    rdb = stack.start_rdb()
    sent = {"batches": 0}
    stop = threading.Event()

    def publish():
        rng = np.random.default_rng(11)
        pub = Publisher("test.rdb", endpoint=stack.ingest)
        t = time.time_ns()
        while not stop.is_set() and sent["batches"] < 400:
            i = sent["batches"]
            pub.publish("quote", quote_batch(rng, int(rng.integers(1, 50)), t + i * 1000))
            if i % 4 == 0:
                pub.publish("fill", fill_batch(rng, 3, t + i * 1000, i * 3))
            sent["batches"] += 1
            time.sleep(0.005)
        pub.flush(timeout=30)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    wait_until(lambda: sent["batches"] >= 100, timeout=60, what="100 batches sent")
    wait_until(lambda: (answers(lambda: stack.rdb_rpc.call("count", table="quote")) or {}).get("count", 0) > 0,
               timeout=30, what="rows in the rdb")
    rdb.send_signal(signal.SIGKILL)
    rdb.wait(10)
    time.sleep(0.3)                                  # the stream goes on while the rdb is down
    rdb = stack.start_rdb()
    publisher.join(120)
    assert not publisher.is_alive()
    stack.wait_rdb_caught_up()
    (_, journal), = journal_files(str(stack.journal))
    want, _ = load_journal(journal, SCHEMAS)
    assert len(want.table("quote")) > 0 and len(want.table("fill")) > 0
    for table in SCHEMAS:
        assert_equal_tables(rdb_table(stack.rdb_rpc, table), want.table(table).select(), table)
    assert stack.rdb_rpc.call("count")["counts"] == want.counts()


def test_end_of_day_writes_partitions_duckdb_reads_and_frees_memory(spawn, free_port, tmp_path, repo_root):
    eod = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=15)).strftime("%H:%M:%S")
    stack = Stack(spawn, free_port, tmp_path).start_tp("--eod", eod)
    stack.start_rdb()
    rng = np.random.default_rng(12)
    pub = Publisher("test.eod", endpoint=stack.ingest)
    t = time.time_ns()
    for i in range(20):                             # times out of order across batches
        pub.publish("quote", quote_batch(rng, 25, t - (i % 5) * 10**6))
    pub.publish("fill", fill_batch(rng, 10, t, 0))
    pub.flush(timeout=30)
    stack.wait_rdb_caught_up()
    assert stack.rdb_rpc.call("count", table="quote")["count"] == 500
    partitions = wait_until(lambda: list(stack.hdb.glob("date=*")), timeout=60, what="HDB partition")
    assert len(partitions) == 1
    part = partitions[0]
    con = duckdb.connect()
    rows = con.execute(f"select sym, time, price from '{part}/quote.parquet'").fetchall()
    assert len(rows) == 500
    assert rows == sorted(rows, key=lambda r: (r[0], r[1]))
    day, journal = journal_files(str(stack.journal))[0]
    assert part.name == f"date={day}"
    want = load_journal(journal, SCHEMAS)[0].table("quote").select(columns=["sym", "price"])
    assert sorted(zip(want["sym"].tolist(), want["price"].tolist())) == sorted((r[0], r[2]) for r in rows)
    assert con.execute(f"select count(*) from read_parquet('{stack.hdb}/*/fill.parquet', hive_partitioning=true) "
                       f"where date = '{day}'").fetchone() == (10,)
    replayed = tmp_path / "hdb2"
    subprocess.run([sys.executable, "-m", "rdb.replay", journal, "--hdb", replayed], cwd=repo_root, check=True,
                   timeout=120, capture_output=True)
    for table in SCHEMAS:                           # the journal rebuilds the same partition (NaN == NaN)
        rebuilt, written = (pq.read_table(p / f"{table}.parquet").to_pandas() for p in (replayed / part.name, part))
        assert rebuilt.equals(written), table
    wait_until(lambda: stack.rdb_rpc.call("count")["counts"]["quote"] == 0, timeout=10, what="rdb freed")
    pub.publish_sync("quote", quote_batch(rng, 7, time.time_ns()), timeout=10)
    stack.wait_rdb_caught_up()
    assert stack.rdb_rpc.call("count", table="quote")["count"] == 7


BAD_QUERIES = [
    ({"table": "trade"}, "unknown table 'trade'"),
    ({"table": "quote", "columns": ["time", "qty"]}, "quote: unknown column 'qty'"),
    ({"table": "quote", "start": 1.5}, "'type: start must be a timestamp"),
    ({"table": "quote", "end": True}, "'type: end must be a timestamp"),
    ({"table": "quote", "start": "noon"}, "bad timestamp 'noon'"),
    ({"table": "quote", "syms": [1, 2]}, "'type: syms must be a symbol"),
]


def test_bad_queries_get_clear_errors_and_the_rdb_keeps_serving(spawn, free_port, tmp_path):
    stack = Stack(spawn, free_port, tmp_path)
    stack.start_rdb(wait=False)                     # before the tickerplant: it waits for it
    stack.start_tp()
    stack.wait_rdb_up()
    Publisher("test.q", endpoint=stack.ingest).publish_sync("quote", quote_batch(np.random.default_rng(1), 5, time.time_ns()),
                                                            timeout=10)
    stack.wait_rdb_caught_up()
    for args, error in BAD_QUERIES:
        with pytest.raises(RpcError, match=error):
            stack.rdb_rpc.call("select", **args)
    with pytest.raises(RpcError, match="^type$"):
        stack.rdb_rpc.call("qsql", query="select from quote where sym=1")
    result = stack.rdb_rpc.call("qsql", query="select n:count i by sym from quote")["result"]
    assert result["kind"] == "keyed" and result["data"]["n"].sum() == 5
    with pytest.raises(RpcError, match="unknown op"):
        stack.rdb_rpc.call("drop", table="quote")
    assert stack.rdb_rpc.call("count", table="quote")["count"] == 5
    status = stack.rdb_rpc.call("status")
    assert status["failed_queries"] == len(BAD_QUERIES) + 2 and status["apply_errors"] == 0
