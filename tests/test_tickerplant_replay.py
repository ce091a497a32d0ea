"""Journal replay over the network (tickerplant/replay.py and the Subscriber's network path) and the
journal faults: a subscriber that cannot read the journal directory recovers exactly what the
file path gives; a subscriber vanishing mid-replay, the tickerplant killed during a replay and a
record failing its CRC in the middle of the journal give clear errors, apply nothing, and the next
attempt completes. Real tickerplant processes, real ZeroMQ sockets on free 127.0.0.1 ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import zmq

from common.codec import pack, unpack
from conftest import REPO_ROOT, Collector, TickerplantProcess, start_tickerplant, wait_until
from test_tickerplant import quotes
from tickerplant import journal
from tickerplant.client import Publisher, RejectedBatch, ReplayError

OPENED: list[str] = []
_WATCH: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if _WATCH and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if any(path.startswith(w) for w in _WATCH):
            OPENED.append(path)


sys.addaudithook(_audit)      # permanent by design of audit hooks; idle unless a test watches


def publish_day(tp, batches: int, rows: int, name: str = "fh.replay") -> list[float]:
    """batches quote batches of rows rows each (price = row number); returns every price."""
    pub = Publisher(name, tp.ingest)
    for k in range(batches):
        pub.publish("quote", quotes(range(k * rows, (k + 1) * rows)))
    pub.flush(timeout=60)
    pub.close()
    return [float(i) for i in range(batches * rows)]


def collector(tp, name: str, replay: str, chunk: int = 1 << 20, window: int = 4, **kw) -> Collector:
    """A Collector whose Subscriber replays through `replay` ("file" / "network", given as
    MARGINTICK_REPLAY says it), `chunk` bytes per request, `window` requests in flight, and waits
    2 s for each chunk."""
    old = os.environ.get("MARGINTICK_REPLAY")
    os.environ["MARGINTICK_REPLAY"] = replay
    try:
        c = Collector(name, tp.control, **kw)
    finally:
        if old is None:
            del os.environ["MARGINTICK_REPLAY"]
        else:
            os.environ["MARGINTICK_REPLAY"] = old
    c.sub.replay_chunk, c.sub.replay_window, c.sub.timeout = chunk, window, 2.0
    return c


def same_rows(a: Collector, b: Collector, table: str = "quote") -> None:
    assert a.seqs == b.seqs
    for col in a.rows[table]:
        x, y = a.column(table, col), b.column(table, col)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")


def test_network_replay_gives_exactly_the_file_replay_and_never_opens_the_journal(spawn, tmp_path):
    tp = start_tickerplant(spawn, tmp_path)
    pub = Publisher("fh.mixed", tp.ingest)
    for k in range(30):                      # records of many sizes, so chunks cut them anywhere
        pub.publish("quote", quotes(range(k * k, k * k + 2 * k + 1)))
    with pytest.raises(RejectedBatch):
        pub.publish_sync("quote", {**quotes([1]), "price": np.array([np.nan])})
    pub.flush(timeout=20)
    by_file = collector(tp, "by-file", "file")
    by_file.start()
    by_file_b = collector(tp, "by-file-b", "file", tables=["quote"], syms=["BBB"])
    by_file_b.start()

    _WATCH.append(str(tp.journal))
    try:
        by_net = collector(tp, "by-net", "network", chunk=4096, window=3)
        by_net.start()
        by_net_b = collector(tp, "by-net-b", "network", chunk=1000, window=1,
                             tables=["quote"], syms=["BBB"])
        by_net_b.start()
    finally:
        _WATCH.clear()
    assert OPENED == []
    assert by_net.sub.replayed_via == by_net_b.sub.replayed_via == "network"
    assert by_file.sub.replayed_via == "file" and by_net.sub.local is False
    assert by_net.sub.replay_bytes >= os.path.getsize(tp.journal_files()[-1]) - 4096
    same_rows(by_file, by_net)
    same_rows(by_file_b, by_net_b)
    assert by_net.column("quote", "price").tolist() == [
        float(i) for k in range(30) for i in range(k * k, k * k + 2 * k + 1)]
    assert set(by_net_b.column("quote", "sym")) == {"BBB"}

    for k in range(30, 35):                  # then live, with no gap and no repeat
        pub.publish("quote", quotes(range(k * k, k * k + 3)))
    pub.flush(timeout=20)
    for c in (by_file, by_net):
        c.poll_until(lambda c=c: c.sub.seq == 35, what="live messages after the replay")
    same_rows(by_file, by_net)
    assert [s for _, s in by_net.seqs] == list(range(1, 36))
    status = tp.status()["replay"]
    assert status["chunks"] > 0 and status["bytes"] > 0
    for c in (by_file, by_file_b, by_net, by_net_b):
        c.close()


SUBSCRIBE_AND_PRINT = """
import json, os, sys
from tickerplant.client import Subscriber
try:
    open(sys.argv[2], "rb").close()
    readable = True
except PermissionError:
    readable = False
got = []
sub = Subscriber("remote", sys.argv[1], tables=["quote"],
                 on_batch=lambda t, cols, seq: got.append([seq, cols["price"].tolist()]))
sub.start()
print(json.dumps({"readable": readable, "via": sub.replayed_via, "batches": got}))
sub.close()
"""


def test_subscriber_denied_the_journal_directory_recovers_over_the_network(spawn, tmp_path):
    tp = start_tickerplant(spawn, tmp_path)
    prices = publish_day(tp, 12, 50)
    reference = collector(tp, "reference", "file", tables=["quote"]).start()
    journal_file = str(tp.journal_files()[-1])
    os.chmod(tp.journal, 0)
    try:
        # the subscriber runs without the capability that lets root ignore file permissions
        out = subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c",
             SUBSCRIBE_AND_PRINT, tp.control, journal_file],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    finally:
        os.chmod(tp.journal, 0o755)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["readable"] is False and result["via"] == "network"
    assert [seq for seq, _ in result["batches"]] == [s for _, s in reference.seqs]
    assert [p for _, batch in result["batches"] for p in batch] == prices
    reference.close()


def test_vanished_replay_client_costs_nothing_and_the_retry_completes(spawn, tmp_path):
    tp = start_tickerplant(spawn, tmp_path)
    prices = publish_day(tp, 40, 2000)
    date = tp.status()["date"]
    ctx = zmq.Context.instance()
    gone = ctx.socket(zmq.DEALER)
    gone.connect(tp.status()["replay"]["endpoint"])
    for i in range(50):                      # far more than its credit, then it goes away
        gone.send_multipart([i.to_bytes(4, "little"),
                             pack({"date": date, "offset": i << 20, "size": 1 << 20})])
    gone.close(0)                            # vanishes with replies owed to it

    raw = ctx.socket(zmq.DEALER)             # bad requests get a clear error each
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(tp.status()["replay"]["endpoint"])
    raw.send_multipart([b"a", pack({"date": date, "offset": 0, "size": 1 << 20})])
    raw.send_multipart([b"x", pack({"date": "../../etc/passwd", "offset": 0, "size": 10})])
    raw.send_multipart([b"y", b"not msgpack \xc1"])
    raw.send_multipart([b"z", pack({"date": "1999-01-01", "offset": 0, "size": 10})])
    replies = {}
    for _ in range(4):
        assert raw.poll(10_000)
        frames = raw.recv_multipart()
        replies[frames[0]] = frames[1:]
    assert unpack(replies[b"a"][0])["offset"] == 0 and len(replies[b"a"][1]) == 1 << 20
    errors = {k: unpack(v[0])["error"] for k, v in replies.items() if k != b"a"}
    assert "bad journal date" in errors[b"x"] and "no journal for 1999-01-01" in errors[b"z"]
    assert errors[b"y"].startswith("replay:")
    raw.close(0)

    pub = Publisher("fh.live", tp.ingest)    # the live path carries on meanwhile
    assert pub.publish_sync("quote", quotes([80_000])) == 41
    sub = collector(tp, "retry", "network", tables=["quote"]).start()
    assert sub.sub.replayed_via == "network"
    assert sub.column("quote", "price").tolist() == prices + [80_000.0]
    assert tp.status()["replay"]["errors"] == 3
    sub.close()


def test_tickerplant_killed_during_a_network_replay_applies_nothing_then_retry_completes(
        spawn, tmp_path):
    tp = start_tickerplant(spawn, tmp_path)
    prices = publish_day(tp, 40, 5000)
    sub = collector(tp, "survivor", "network", chunk=16 << 10, window=1, tables=["quote"])
    failure: list[BaseException] = []

    def replay():
        try:
            sub.start()
        except BaseException as exc:         # noqa: BLE001 - handed to the test thread
            failure.append(exc)

    thread = threading.Thread(target=replay)
    thread.start()
    wait_until(lambda: sub.sub.replay_bytes > 0, timeout=30, interval=0.001,
               what="the network replay to start")
    tp.kill9()
    thread.join(30)
    assert not thread.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], ReplayError), failure
    text = str(failure[0])
    assert "no answer within 2s" in text and "nothing was applied" in text and "byte" in text
    assert sub.seqs == [] and sub.sub.seq == 0 and sub.sub.offset == 0

    tp.start()
    sub.start()                              # the next attempt, same Subscriber
    assert sub.column("quote", "price").tolist() == prices
    assert [s for _, s in sub.seqs] == list(range(1, 41))
    sub.close()


def _flip_byte(path, at: int) -> bytes:
    with open(path, "r+b") as f:
        f.seek(at)
        old = f.read(1)
        f.seek(at)
        f.write(bytes([old[0] ^ 0xFF]))
    return old


def test_record_failing_its_crc_mid_journal(spawn, tmp_path):
    tp = start_tickerplant(spawn, tmp_path)
    prices = publish_day(tp, 10, 20)
    path = tp.journal_files()[-1]
    bad = [r for r in journal.read_records(path) if not r.is_control][4]   # seq 5
    old = _flip_byte(path, bad.end - 10)

    for mode in ("file", "network"):         # readers: a clear error, nothing applied
        c = collector(tp, f"reader-{mode}", mode, chunk=512, tables=["quote"])
        with pytest.raises(ReplayError) as err:
            c.start()
        assert f"crc mismatch in record at byte {bad.offset}" in str(err.value)
        assert "after seq 4" in str(err.value) and "nothing was applied" in str(err.value)
        assert c.seqs == [] and c.sub.seq == 0
        if mode == "network":
            with open(path, "r+b") as f:     # repaired: the next attempt completes
                f.seek(bad.end - 10)
                f.write(old)
            c.start()
            assert c.column("quote", "price").tolist() == prices
        c.close()

    tp.stop()                                # the tickerplant at start-up: refuses, cuts nothing
    _flip_byte(path, bad.end - 10)
    size = os.path.getsize(path)
    refused = spawn("tickerplant", "--ingest", tp.ingest, "--pub", tp.pub, "--control", tp.control,
                    "--journal", tp.journal)
    assert refused.wait(60) == 2
    log = refused.log_path.read_text()
    assert f"crc mismatch in record at byte {bad.offset}" in log
    assert "5 good record(s) follow it (seq 6 to 10)" in log and "--truncate-damaged" in log
    assert os.path.getsize(path) == size

    cut = TickerplantProcess(spawn, tmp_path, "--truncate-damaged").start()
    status = cut.status()
    assert status["seq"] == 4 and status["startup_dropped"]["records"] == 6
    assert os.path.getsize(path) == bad.offset
    with open(f"{path}.cut-{bad.offset}", "rb") as f:
        assert len(f.read()) == size - bad.offset
    after = collector(cut, "after-cut", "network", tables=["quote"]).start()
    assert after.column("quote", "price").tolist() == prices[:80]
    after.close()
