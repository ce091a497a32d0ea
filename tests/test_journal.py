"""Journal format, reader, and start-up recovery of torn or corrupt tails (tickerplant/journal.py)."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest

from common.codec import pack, unpack
from tickerplant import journal


def _batch(i: int) -> bytes:
    return pack({"time": np.array([i], dtype="datetime64[ns]"), "sym": [f"S{i}"],
                 "price": np.array([float(i)])})


def _write_day(directory, n: int, publisher: bytes = b"fh", group: bool = False) -> journal.Appender:
    app = journal.Appender(str(directory), "group" if group else "fsync", 1.0)
    app.open("2026-01-05", {"kind": "start", "date": "2026-01-05", "seq": 0, "msgids": {}})
    for i in range(1, n + 1):
        app.write(list(journal.record_parts(i, i, 1000 + i, b"quote", publisher, _batch(i))))
    return app


def test_records_round_trip_and_read_from_offset(tmp_path):
    app = _write_day(tmp_path, 5)
    app.close()
    recs = list(journal.read_records(app.path))
    assert recs[0].is_control and recs[0].control()["kind"] == "start"
    data = recs[1:]
    assert [r.seq for r in data] == [1, 2, 3, 4, 5]
    assert [r.table for r in data] == ["quote"] * 5 and data[2].publisher == "fh"
    assert unpack(data[2].payload)["sym"] == ["S3"]
    assert [r.seq for r in journal.read_records(app.path, data[2].offset)] == [3, 4, 5]
    assert list(journal.read_records(app.path, data[-1].end)) == []


def test_group_commit_reports_durable_writes(tmp_path):
    durable = []
    app = journal.Appender(str(tmp_path), "group", 1.0, on_durable=durable.append)
    app.open("2026-01-05", {"kind": "start", "date": "2026-01-05", "seq": 0, "msgids": {}})
    n = app.write([journal.encode_record(1, 1, 0, b"quote", b"fh", _batch(1))])
    deadline = time.monotonic() + 10
    while not (durable and max(durable) >= n) and time.monotonic() < deadline:
        time.sleep(0.01)
    app.close()
    assert app.durable_no >= n and max(durable) >= n


def test_recover_resumes_seq_and_msgids_per_publisher(tmp_path):
    app = _write_day(tmp_path, 3, b"a")
    app.write([journal.encode_record(4, 7, 0, b"quote", b"b", _batch(4))])
    app.write([journal.encode_control(4, b"a", 4, 0, {"kind": "reject", "table": "quote"})])
    app.close()
    state = journal.recover(str(tmp_path))
    assert (state.seq, state.msgids, state.dropped_records) == (4, {"a": 4, "b": 7}, 0)


def test_truncated_mid_record_is_cut_and_reported(tmp_path, caplog):
    app = _write_day(tmp_path, 4)
    app.close()
    size = os.path.getsize(app.path)
    last = list(journal.read_records(app.path))[-1]
    with open(app.path, "r+b") as f:
        f.truncate(last.offset + 10)
    with caplog.at_level(logging.WARNING, logger="tickerplant.journal"):
        state = journal.recover(str(tmp_path))
    assert state.seq == 3 and state.dropped_records == 1 and state.dropped_bytes == 10
    assert os.path.getsize(app.path) == last.offset < size
    assert "1 record(s) dropped" in caplog.text and "10 byte(s)" in caplog.text


def test_flipped_bytes_in_last_record_are_cut(tmp_path):
    app = _write_day(tmp_path, 4)
    app.close()
    last = list(journal.read_records(app.path))[-1]
    with open(app.path, "r+b") as f:
        f.seek(last.end - 3)
        f.write(b"\xff\x00\xff")
    state = journal.recover(str(tmp_path))
    assert state.seq == 3 and state.dropped_records == 1
    assert state.dropped_bytes == last.end - last.offset
    assert [r.seq for r in journal.read_records(app.path) if not r.is_control] == [1, 2, 3]


def test_bad_record_raises_for_readers(tmp_path):
    app = _write_day(tmp_path, 2)
    app.close()
    first = list(journal.read_records(app.path))[1]
    with open(app.path, "r+b") as f:
        f.seek(first.end - 1)
        f.write(b"\x00" if open(app.path, "rb").read()[first.end - 1] else b"\x01")
    with pytest.raises(journal.CorruptRecord, match="crc mismatch"):
        list(journal.read_records(app.path))


def test_roll_closes_the_day_and_carries_state_to_the_next_file(tmp_path):
    app = _write_day(tmp_path, 2)
    app.roll("2026-01-06", {"kind": "eod", "date": "2026-01-05", "seq": 2},
             {"kind": "start", "date": "2026-01-06", "seq": 2, "msgids": {"fh": 2}})
    app.write([journal.encode_record(3, 3, 0, b"quote", b"fh", _batch(3))])
    app.close()
    files = journal.journal_files(str(tmp_path))
    assert [d for d, _ in files] == ["2026-01-05", "2026-01-06"]
    old = journal.scan(files[0][1])
    assert old.closed and old.seq == 2
    assert journal.recover(str(tmp_path)).seq == 3
    # a new day's file torn inside its start record: state comes from the closed day before
    with open(files[1][1], "r+b") as f:
        f.truncate(5)
    state = journal.recover(str(tmp_path))
    assert (state.seq, state.msgids, state.date) == (2, {"fh": 2}, "2026-01-06")
    assert os.path.getsize(files[1][1]) == 0


def test_bad_record_in_the_middle_is_damage_not_a_torn_tail(tmp_path):
    app = _write_day(tmp_path, 6)
    app.close()
    recs = list(journal.read_records(app.path))
    bad = recs[3]                                    # seq 3; seqs 4 to 6 follow it intact
    size = os.path.getsize(app.path)
    with open(app.path, "r+b") as f:
        f.seek(bad.end - 2)
        f.write(b"\xfe\xfe")
    res = journal.scan(app.path)
    assert (res.seq, res.following, res.following_seqs) == (2, 3, (4, 6))
    with pytest.raises(journal.JournalDamaged, match=rf"crc mismatch in record at byte "
                       rf"{bad.offset} .*seq 2\), and 3 good record\(s\) follow it \(seq 4 to 6\)"):
        journal.recover(str(tmp_path))
    assert os.path.getsize(app.path) == size         # nothing cut
    state = journal.recover(str(tmp_path), truncate_damaged=True)
    assert (state.seq, state.dropped_records, state.dropped_bytes) == (2, 4, size - bad.offset)
    assert os.path.getsize(app.path) == bad.offset
    with open(f"{app.path}.cut-{bad.offset}", "rb") as f:
        assert len(f.read()) == size - bad.offset
    assert journal.journal_files(str(tmp_path)) == [("2026-01-05", app.path)]


def test_iter_records_of_a_copy_reports_journal_offsets_and_parse_keeps_a_partial_tail(tmp_path):
    app = _write_day(tmp_path, 4)
    app.close()
    recs = list(journal.read_records(app.path))
    data = open(app.path, "rb").read()
    copy = tmp_path / "spool"
    copy.write_bytes(b"junk" + data[recs[1].offset:recs[3].end])
    with open(copy, "rb") as f:
        got = list(journal.iter_records(f, 4, 4 + recs[3].end - recs[1].offset, recs[1].offset))
    assert [(r.seq, r.offset, r.end) for r in got] == [(r.seq, r.offset, r.end) for r in recs[1:4]]
    parsed, used = journal.parse_records(data[recs[2].offset:recs[4].end - 1], recs[2].offset)
    assert [r.seq for r in parsed] == [2, 3] and used == recs[3].end - recs[2].offset
    assert parsed[0].offset == recs[2].offset
