"""The tickerplant as a real process: validation, replay, sym filters, batch mode, end of day,
crash and corruption recovery (python -m tickerplant, real ZeroMQ sockets on free ports)."""

from __future__ import annotations

import os
import time

import msgpack
import numpy as np
import pytest
import zmq

from conftest import Collector, start_tickerplant
from tickerplant import journal
from tickerplant.client import Publisher, RejectedBatch


def quotes(ids, syms=("AAA", "BBB", "CCC")) -> dict:
    """One row per id; price = the id, so tests can check every row exactly once."""
    ids = np.asarray(ids, dtype=float)
    n = len(ids)
    return {"time": np.full(n, time.time_ns(), dtype="datetime64[ns]"),
            "sym": [syms[int(i) % len(syms)] for i in ids], "bid": ids - 0.5, "ask": ids + 0.5,
            "price": ids, "size": np.ones(n), "vol": np.full(n, np.nan), "src": ["t"] * n}


def journal_rows(tp) -> list[tuple[str, int]]:
    """(publisher, msgid) of every data record in the tickerplant's journal files."""
    out = []
    for path in tp.journal_files():
        out += [(r.publisher, r.msgid) for r in journal.read_records(path) if not r.is_control]
    return out


def test_replay_live_and_sym_filters(spawn, tmp_path):
    tp = start_tickerplant(spawn, tmp_path)
    pub = Publisher("fh.test", tp.ingest)
    assert pub.publish_sync("quote", quotes(range(0, 10))) == 1
    for k in range(1, 5):
        pub.publish("quote", quotes(range(10 * k, 10 * k + 10)))
    pub.flush(timeout=20)

    everything = Collector("all", tp.control)
    only_b = Collector("only_b", tp.control, tables=["quote"], syms=["BBB"])
    everything.sub.start()
    only_b.sub.start()
    assert everything.column("quote", "price").tolist() == list(range(50))
    assert set(only_b.column("quote", "sym")) == {"BBB"}
    assert only_b.column("quote", "price").tolist() == [i for i in range(50) if i % 3 == 1]

    pub.publish("quote", quotes(range(50, 60)))
    pub.flush(timeout=20)
    everything.poll_until(lambda: len(everything.column("quote", "price")) == 60)
    only_b.poll_until(lambda: only_b.column("quote", "price")[-1] == 58)
    assert everything.column("quote", "price").tolist() == list(range(60))
    assert only_b.column("quote", "price").tolist() == [i for i in range(60) if i % 3 == 1]
    assert everything.sub.seq == 6

    status = tp.status()
    assert status["seq"] == 6 and status["rows"] == 60
    assert {s["name"] for s in status["subscribers"]} == {"all", "only_b"}

    def lag_of_all():
        return {s["name"]: s["lag"] for s in tp.status()["subscribers"]}["all"]
    everything.poll_until(lambda: lag_of_all() == 0, what="progress reported to the tickerplant")
    everything.sub.close()
    only_b.sub.close()


BAD = [
    ("nosuch", quotes([1]), "unknown table 'nosuch'"),
    ("quote", {k: v for k, v in quotes([1]).items() if k != "bid"}, "missing ['bid']"),
    ("quote", {**quotes([1]), "extra": np.ones(1)}, "extra ['extra']"),
    ("quote", {**quotes([1]), "bid": np.ones(1, dtype=np.float32)}, "quote.bid: expected float"),
    ("quote", {**quotes([1]), "size": np.ones(1, dtype=np.int64)}, "quote.size: expected float"),
    ("quote", {**quotes([1]), "sym": [7]}, "quote.sym: expected str"),
    ("quote", {**quotes([1, 2]), "ask": np.ones(3)}, "ragged"),
    ("quote", {**quotes([1]), "price": np.array([np.nan])}, "quote.price: null"),
    ("quote", {**quotes([1]), "time": np.array(["NaT"], dtype="datetime64[ns]")},
     "quote.time: null"),
    ("quote", b"\xc1not msgpack", "undecodable"),
    ("quote", msgpack.packb([1, 2, 3]), "a batch is a map"),
    ("quote", msgpack.packb({"sym": 5, "bid": None}), "quote"),
]


def test_malformed_batches_are_rejected_and_good_ones_land(spawn, tmp_path):
    tp = start_tickerplant(spawn, tmp_path, "--durability", "fsync")
    pub = Publisher("fh.bad", tp.ingest)
    good = 0
    for table, batch, message in BAD:
        pub.publish_sync("quote", quotes([good]))
        good += 1
        with pytest.raises(RejectedBatch, match=message.replace("[", r"\[").replace("(", r"\(")):
            pub.publish_sync(table, batch)
    # a batch without time is stamped with the receive time
    stamped = {k: v for k, v in quotes([good]).items() if k != "time"}
    before = time.time_ns()
    pub.publish_sync("quote", stamped)
    good += 1
    # frames that are not the protocol at all get an error reply and change nothing
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(tp.ingest)
    raw.send_multipart([b"upd", b"x", b"y"])
    assert raw.poll(10_000) and b"malformed" in raw.recv()
    raw.close()

    status = tp.status()
    assert status["rejects"] == len(BAD) and status["seq"] == good and status["bad_frames"] == 1
    assert status["durability"] == "fsync" and status["pending_acks"] == 0
    sub = Collector("check", tp.control, tables=["quote"])
    sub.sub.start()
    assert sub.column("quote", "price").tolist() == list(range(good))
    assert sub.column("quote", "time")[-1].astype("int64") >= before
    # rejected msgids are consumed: the publisher's next msgid is accepted in order
    assert pub.publish_sync("quote", quotes([good])) == good + 1
    assert [m for _, m in journal_rows(tp)] == sorted(set(m for _, m in journal_rows(tp)))
    sub.sub.close()


def test_kill9_while_publishing_loses_no_acknowledged_batch(spawn, tmp_path):
    tp = start_tickerplant(spawn, tmp_path, "--group-ms", "2")
    pubs = [Publisher(f"fh.{i}", tp.ingest, timeout=20.0, resend_after=0.5) for i in range(2)]
    sub = Collector("rdb-like", tp.control, tables=["quote"])
    sub.sub.start()
    next_id = 0
    acked_before_kill = None
    for step in range(600):
        for pub in pubs:
            pub.publish("quote", quotes(range(next_id, next_id + 5)))
            next_id += 5
            pub.poll(0)
        sub.sub.poll(0)
        if step == 250:
            acked_before_kill = [(p.name, p.acked) for p in pubs]
            tp.kill9()
            tp.start()
    for pub in pubs:
        pub.flush(timeout=60)
    assert all(acked > 0 for _, acked in acked_before_kill)

    records = journal_rows(tp)
    assert len(records) == len(set(records)), "a batch was journaled twice"
    for pub in pubs:
        assert sorted(m for p, m in records if p == pub.name) == list(range(1, 601))
    new_epoch = tp.status()["epoch"]
    sub.poll_until(lambda: sub.sub.epoch == new_epoch
                   and len(sub.column("quote", "price")) >= next_id, timeout=60,
                   what="the restart seen and every row received")
    prices = sub.column("quote", "price")
    assert len(prices) == next_id and sorted(prices.tolist()) == list(range(next_id))
    assert sub.sub.recoveries >= 2
    sub.sub.close()


def test_subscriber_recovers_what_died_with_the_tickerplant(spawn, tmp_path):
    tp = start_tickerplant(spawn, tmp_path)
    sub = Collector("survivor", tp.control, tables=["quote"], rcvhwm=2)
    sub.sub.start()
    pub = Publisher("fh.lost", tp.ingest)
    rows = 2000
    for k in range(100):                             # ~14 MB the subscriber does not read yet
        pub.publish("quote", quotes(range(k * rows, (k + 1) * rows)))
    pub.flush(timeout=60)
    tp.kill9()                                       # what sat in its send queue is gone
    tp.start()
    time.sleep(0.3)              # the subscriber reconnects; data arrives before the next heartbeat
    again = Publisher("fh.lost", tp.ingest)
    again.publish_sync("quote", quotes(range(100 * rows, 101 * rows)))
    sub.poll_until(lambda: len(sub.column("quote", "price")) >= 101 * rows, timeout=60)
    assert sub.column("quote", "price").tolist() == list(range(101 * rows))
    sub.sub.close()


@pytest.mark.parametrize("damage", ["truncate mid-record", "flip bytes in the last record"])
def test_corrupt_journal_tail_is_cut_reported_and_seq_resumes(spawn, tmp_path, damage):
    tp = start_tickerplant(spawn, tmp_path)
    pub = Publisher("fh.c", tp.ingest)
    for i in range(10):
        pub.publish_sync("quote", quotes([i]))
    tp.stop()
    path = tp.journal_files()[-1]
    last = [r for r in journal.read_records(path)][-1]
    with open(path, "r+b") as f:
        if damage == "truncate mid-record":
            f.truncate(last.offset + (last.end - last.offset) // 2)
        else:
            f.seek(last.end - 4)
            f.write(bytes(b ^ 0xFF for b in open(path, "rb").read()[last.end - 4:last.end]))
    tp.start()
    status = tp.status()
    assert status["seq"] == 9 and status["startup_dropped"]["records"] == 1
    assert "1 record(s) dropped" in tp.log()
    again = Publisher("fh.c", tp.ingest)
    assert again.next_msgid == 10
    assert again.publish_sync("quote", quotes([9])) == 10
    sub = Collector("after", tp.control, tables=["quote"])
    sub.sub.start()
    assert sub.column("quote", "price").tolist() == list(range(10))
    sub.sub.close()


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_slow_subscriber_cannot_block_others_or_grow_memory(spawn, tmp_path):
    tp = start_tickerplant(spawn, tmp_path, "--hwm", "20")
    slow = Collector("slow", tp.control, tables=["quote"], rcvhwm=10)
    fast = Collector("fast", tp.control, tables=["quote"])
    slow.sub.start()
    fast.sub.start()
    pub = Publisher("fh.big", tp.ingest)
    rows, batches = 2000, 600                        # ~140 kB per message, ~85 MB in all
    pub.publish_sync("quote", quotes(range(rows)))
    base = _rss_kb(tp.proc.pid)
    for k in range(1, batches):
        pub.publish("quote", quotes(range(k * rows, (k + 1) * rows)))
        fast.sub.poll(0)
    pub.flush(timeout=120)
    total = batches * rows
    fast.poll_until(lambda: len(fast.column("quote", "price")) == total, timeout=60)
    growth_mb = (_rss_kb(tp.proc.pid) - base) / 1024
    assert growth_mb < 30, f"tickerplant grew {growth_mb:.0f} MB while a subscriber stalled"
    # the slow one wakes up: it lost messages at the high-water mark and recovers them
    slow.poll_until(lambda: len(slow.column("quote", "price")) == total, timeout=60)
    assert slow.column("quote", "price").tolist() == list(range(total))
    assert slow.sub.recoveries >= 2
    status = tp.status()
    assert {s["name"] for s in status["subscribers"]} == {"slow", "fast"}
    slow.sub.close()
    fast.sub.close()


def test_batch_mode_publishes_several_records_per_message(spawn, tmp_path):
    tp = start_tickerplant(spawn, tmp_path, "-t", "300")
    sub = Collector("batched", tp.control, tables=["quote"])
    sub.sub.start()
    pub = Publisher("fh.batch", tp.ingest)
    for i in range(40):
        pub.publish("quote", quotes([i]))
    pub.flush(timeout=20)
    sub.poll_until(lambda: len(sub.column("quote", "price")) == 40)
    assert sub.column("quote", "price").tolist() == list(range(40))
    assert len(sub.seqs) < 40
    late = Collector("late", tp.control, tables=["quote"], syms=["AAA"])
    late.sub.start()
    pub.publish_sync("quote", quotes([40, 41, 42]))
    late.poll_until(lambda: len(late.column("quote", "price")) == 15)
    assert late.column("quote", "price").tolist() == [i for i in range(43) if i % 3 == 0]
    sub.sub.close()
    late.sub.close()


def test_end_of_day_rolls_the_journal_and_tells_subscribers(spawn, tmp_path):
    now = time.time()
    if now % 86400 > 86400 - 30:
        time.sleep(31)                               # keep the test's day roll off midnight
        now = time.time()
    eod = time.strftime("%H:%M:%S", time.gmtime(now + 10))   # after a slow start-up too
    tp = start_tickerplant(spawn, tmp_path, "--eod", eod)
    sub = Collector("eod", tp.control)
    sub.sub.start()
    pub = Publisher("fh.eod", tp.ingest)
    pub.publish_sync("quote", quotes([0, 1]))
    day1 = tp.status()["date"]
    sub.poll_until(lambda: sub.eods, timeout=45, what="the end-of-day event")
    assert sub.eods == [(day1, 1)]
    pub.publish_sync("quote", quotes([2]))
    sub.poll_until(lambda: len(sub.column("quote", "price")) == 3)
    files = tp.journal_files()
    assert len(files) == 2
    closed = journal.scan(files[0])
    assert closed.closed and closed.seq == 1
    assert tp.status()["date"] > day1
    late = Collector("next-day", tp.control)
    late.sub.start()
    assert late.column("quote", "price").tolist() == [2.0]
    sub.sub.close()
    late.sub.close()


def test_restarted_subscriber_gets_identical_data(spawn, tmp_path):
    tp = start_tickerplant(spawn, tmp_path)
    pub = Publisher("fh.same", tp.ingest)
    reference = Collector("reference", tp.control, tables=["quote"])
    reference.sub.start()
    first = Collector("worker", tp.control, tables=["quote"])
    first.sub.start()
    for k in range(20):
        pub.publish("quote", quotes(range(k * 7, k * 7 + 7)))
        if k == 10:
            pub.flush(timeout=20)
            first.poll_until(lambda: len(first.column("quote", "price")) == 77)
            first.sub.socket.close(0)                # dies without saying goodbye
    pub.flush(timeout=20)
    reference.poll_until(lambda: len(reference.column("quote", "price")) == 140)
    again = Collector("worker", tp.control, tables=["quote"])
    again.sub.start()
    for col in ("time", "sym", "price", "bid", "vol"):
        a, b = reference.column("quote", col), again.column("quote", col)
        assert a.dtype == b.dtype and len(a) == len(b) == 140
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    assert [s for _, s in reference.seqs] == list(range(1, 21))
    assert [s for _, s in again.seqs] == list(range(1, 21))
    assert os.path.exists(again.sub.path)
    reference.sub.close()
    again.sub.close()
