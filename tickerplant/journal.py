"""The tickerplant journal: per-day append-only files of CRC-framed records.

Owns the on-disk format (see docs/protocol.md, "Journal"), the appender with its durability policy,
the reader used for subscriber replay and recovery, and the start-up scan that truncates a torn or
corrupt tail and recovers the sequence number and the last msgid of every publisher. A bad record
with good records after it is damage in the middle, not a torn tail: recover raises JournalDamaged
rather than cut acknowledged records (unless told to cut, keeping the bytes cut aside).

File: `<dir>/tp.YYYY-MM-DD.log`. Record: `[u32 length][u32 crc32(body)][body]`, little-endian;
body = header (seq u64, msgid u64, recv_ns i64, len(table) u8, len(publisher) u8) + table +
publisher + payload. A data record has a table name and a msgpack batch as payload. A control
record has an empty table name and a msgpack dict payload with a "kind":
  - "start": first record of every file: {"kind", "date", "seq", "msgids": {publisher: msgid}}, the
    state carried over from the previous day, so a restart only has to scan the newest file;
  - "reject": a rejected batch consumed this publisher's msgid (the batch itself is not journaled);
  - "eod": end of day, the last record of a closed file: {"kind", "date", "seq"}.
Control records carry the current (last data) seq and never consume a sequence number.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from common.codec import pack, unpack

log = logging.getLogger("tickerplant.journal")

FRAME = struct.Struct("<II")
HEADER = struct.Struct("<QQqBB")
MAX_BODY = 1 << 30
READ_CHUNK = 8 << 20
FILE_RE = re.compile(r"^tp\.(\d{4}-\d{2}-\d{2})\.log$")


def journal_path(directory: str, date: str) -> str:
    """The journal file of one day (date as YYYY-MM-DD)."""
    return os.path.join(directory, f"tp.{date}.log")


def journal_files(directory: str) -> list[tuple[str, str]]:
    """(date, path) of every journal file in directory, oldest first."""
    if not os.path.isdir(directory):
        return []
    found = [(m.group(1), os.path.join(directory, name))
             for name in os.listdir(directory) if (m := FILE_RE.match(name))]
    return sorted(found)


def record_parts(seq: int, msgid: int, recv_ns: int, table: bytes, publisher: bytes,
                 payload: bytes) -> tuple[bytes, ...]:
    """One framed record as pieces to append back to back (the payload is not copied)."""
    head = HEADER.pack(seq, msgid, recv_ns, len(table), len(publisher)) + table + publisher
    return (FRAME.pack(len(head) + len(payload), zlib.crc32(payload, zlib.crc32(head))), head,
            payload)


def encode_record(seq: int, msgid: int, recv_ns: int, table: bytes, publisher: bytes,
                  payload: bytes) -> bytes:
    """One framed record, ready to append."""
    return b"".join(record_parts(seq, msgid, recv_ns, table, publisher, payload))


def encode_control(seq: int, publisher: bytes, msgid: int, recv_ns: int, info: dict) -> bytes:
    """A control record (empty table name) carrying the dict info."""
    return encode_record(seq, msgid, recv_ns, b"", publisher, pack(info))


@dataclass(slots=True)
class Record:
    """One decoded journal record; offset/end are byte positions in its file."""
    seq: int
    msgid: int
    recv_ns: int
    table: str
    publisher: str
    payload: bytes
    offset: int
    end: int

    @property
    def is_control(self) -> bool:
        return self.table == ""

    def control(self) -> dict:
        """The dict of a control record."""
        return unpack(self.payload)


class CorruptRecord(Exception):
    """A record whose frame or checksum is wrong (not merely incomplete)."""


def _parse(buf: memoryview, pos: int, base: int) -> tuple[Record | None, int]:
    """Decode the record at buf[pos:]; (None, pos) when it is incomplete. base = file offset of buf."""
    if len(buf) - pos < FRAME.size:
        return None, pos
    length, crc = FRAME.unpack_from(buf, pos)
    if length < HEADER.size or length > MAX_BODY:
        raise CorruptRecord(f"bad record length {length} at byte {base + pos}")
    start = pos + FRAME.size
    stop = start + length
    if stop > len(buf):
        return None, pos
    body = buf[start:stop]
    if zlib.crc32(body) != crc:
        raise CorruptRecord(f"crc mismatch in record at byte {base + pos}")
    seq, msgid, recv_ns, tlen, plen = HEADER.unpack_from(body, 0)
    h = HEADER.size
    if h + tlen + plen > length:
        raise CorruptRecord(f"bad name lengths in record at byte {base + pos}")
    table = bytes(body[h:h + tlen]).decode()
    publisher = bytes(body[h + tlen:h + tlen + plen]).decode()
    payload = bytes(body[h + tlen + plen:])
    return Record(seq, msgid, recv_ns, table, publisher, payload, base + pos, base + stop), stop


def read_records(path: str, offset: int = 0) -> Iterator[Record]:
    """Yield the complete records of path from byte offset on, stopping at end of file or at an
    incomplete last record (a writer may be appending). Raises CorruptRecord on a bad frame."""
    with open(path, "rb") as f:
        yield from iter_records(f, offset)


def iter_records(f: BinaryIO, start: int, stop: int | None = None,
                 base: int | None = None) -> Iterator[Record]:
    """Yield the complete records of the open binary file f between positions start and stop (end
    of file when None). Their offset/end are reported relative to base: the record at position
    start is at byte `base` of its journal (base defaults to start; a replay spool holding a copy
    of a journal's bytes gives the journal offset of its first byte). Raises CorruptRecord."""
    f.seek(start)
    left = -1 if stop is None else stop - start
    base = start if base is None else base
    pending = b""
    while left:
        chunk = f.read(READ_CHUNK if left < 0 else min(READ_CHUNK, left))
        if not chunk:
            return
        left = left - len(chunk) if left > 0 else left
        buf = memoryview(pending + chunk) if pending else memoryview(chunk)
        pos = 0
        while True:
            rec, new_pos = _parse(buf, pos, base)
            if rec is None:
                break
            yield rec
            pos = new_pos
        pending = bytes(buf[pos:])
        base += pos


def parse_records(buf: bytes | memoryview, base: int) -> tuple[list[Record], int]:
    """The complete records at the start of buf (whose first byte is at journal offset base) and
    how many bytes they take; a trailing incomplete record is left for the caller to complete.
    Raises CorruptRecord naming the journal offset of a bad frame."""
    view = memoryview(buf)
    out: list[Record] = []
    pos = 0
    while True:
        rec, new_pos = _parse(view, pos, base)
        if rec is None:
            return out, pos
        out.append(rec)
        pos = new_pos


@dataclass
class ScanResult:
    """What a start-up scan of one file found."""
    path: str
    good_end: int = 0
    file_size: int = 0
    records: int = 0
    dropped_records: int = 0
    dropped_bytes: int = 0
    problem: str = ""
    following: int = 0          # good records found after the bad one: damage in the middle
    following_seqs: tuple[int, int] = (0, 0)
    start: dict | None = None
    closed: bool = False
    seq: int = 0
    msgids: dict[str, int] = field(default_factory=dict)


def _count_frames(data: bytes) -> int:
    """How many record frames the dropped tail held (the bad one and any that follow it)."""
    count, pos = 0, 0
    while pos < len(data):
        count += 1
        if len(data) - pos < FRAME.size:
            break
        length, _ = FRAME.unpack_from(data, pos)
        if length < HEADER.size or length > MAX_BODY:
            break
        pos += FRAME.size + length
    return count


def scan(path: str) -> ScanResult:
    """Check every record of path; find where the good records end and the state they leave
    (seq, last msgid per publisher, the start record, whether an eod record closed the file)."""
    res = ScanResult(path, file_size=os.path.getsize(path))
    try:
        for rec in read_records(path):
            res.records += 1
            res.good_end = rec.end
            if rec.is_control:
                info = rec.control()
                kind = info.get("kind")
                if kind == "start":
                    res.start = info
                    res.seq = int(info["seq"])
                    res.msgids = {str(k): int(v) for k, v in info["msgids"].items()}
                elif kind == "reject":
                    res.msgids[rec.publisher] = max(rec.msgid, res.msgids.get(rec.publisher, 0))
                elif kind == "eod":
                    res.closed = True
            else:
                res.seq = rec.seq
                res.msgids[rec.publisher] = max(rec.msgid, res.msgids.get(rec.publisher, 0))
    except CorruptRecord as exc:
        res.problem = str(exc)
        _look_past(res)
    if res.good_end < res.file_size:
        with open(path, "rb") as f:
            f.seek(res.good_end)
            tail = f.read()
        res.dropped_bytes = len(tail)
        res.dropped_records = _count_frames(tail)
        res.problem = res.problem or f"torn record at byte {res.good_end}"
    return res


def _look_past(res: ScanResult) -> None:
    """After a bad record: are there good records past it? Then the journal is damaged in the
    middle (a torn write only ever leaves garbage at the tail)."""
    with open(res.path, "rb") as f:
        f.seek(res.good_end)
        head = f.read(FRAME.size)
        if len(head) < FRAME.size:
            return
        length, _ = FRAME.unpack(head)
        if length < HEADER.size or length > MAX_BODY:
            return
        seqs = []
        try:
            for rec in iter_records(f, res.good_end + FRAME.size + length):
                res.following += 1
                seqs.append(rec.seq)
        except CorruptRecord:
            pass
        if seqs:
            res.following_seqs = (seqs[0], seqs[-1])


class JournalDamaged(Exception):
    """A record in the middle of a journal fails its check and good records follow it."""


def damage_report(res: ScanResult) -> str:
    """What a damaged (not merely torn) journal looks like and what to do about it."""
    first, last = res.following_seqs
    return (f"journal {res.path}: {res.problem} (the last good record before it has seq "
            f"{res.seq}), and {res.following} good record(s) follow it (seq {first} to {last}): "
            f"the journal is damaged in the middle, not torn at its tail, and cutting it there "
            f"would lose acknowledged records. Restore the file from a copy, or start the "
            f"tickerplant with --truncate-damaged to cut it at byte {res.good_end} (the bytes cut "
            f"are kept in {res.path}.cut-{res.good_end})")
@dataclass
class RecoveredState:
    """Where a restarted tickerplant carries on."""
    seq: int
    msgids: dict[str, int]
    path: str | None
    date: str | None
    closed: bool
    dropped_records: int = 0
    dropped_bytes: int = 0


def recover(directory: str, truncate_damaged: bool = False) -> RecoveredState:
    """Scan the newest journal file, truncate a torn or corrupt tail (logging exactly what was
    dropped) and return the state to resume from. A newest file whose start record is missing or
    bad holds nothing usable: it is emptied and the state comes from the file before it.
    A bad record with good records after it (damage in the middle) raises JournalDamaged, unless
    truncate_damaged: then the file is cut there too, the bytes cut kept in `<file>.cut-<offset>`."""
    files = journal_files(directory)
    if not files:
        return RecoveredState(0, {}, None, None, False)
    date, path = files[-1]
    res = recover_closed(path, truncate_damaged)
    if res.start is not None:
        return RecoveredState(res.seq, res.msgids, path, date, res.closed,
                              res.dropped_records, res.dropped_bytes)
    if res.good_end:
        log.warning("journal %s has no start record; emptying it (%d byte(s))", path, res.good_end)
        _truncate(path, 0)
    prev = recover_closed(files[-2][1], truncate_damaged) if len(files) > 1 else ScanResult(path)
    return RecoveredState(prev.seq, prev.msgids, path, date, False,
                          res.dropped_records + prev.dropped_records,
                          res.dropped_bytes + prev.dropped_bytes)


def recover_closed(path: str, truncate_damaged: bool = False) -> ScanResult:
    """Scan one file and truncate its bad tail, if any, logging exactly what was dropped; raise
    JournalDamaged for damage in the middle unless truncate_damaged (see recover)."""
    res = scan(path)
    if res.following:
        if not truncate_damaged:
            raise JournalDamaged(damage_report(res))
        cut = f"{path}.cut-{res.good_end}"
        with open(path, "rb") as src, open(cut, "wb") as dst:
            src.seek(res.good_end)
            dst.write(src.read())
        log.error("%s; --truncate-damaged: cutting it, bytes kept in %s", damage_report(res), cut)
    if res.dropped_bytes:
        log.warning("journal %s: %s; truncated %d byte(s): %d record(s) dropped, %d good "
                    "record(s) kept", path, res.problem, res.dropped_bytes, res.dropped_records,
                    res.records)
        _truncate(path, res.good_end)
    return res


def _truncate(path: str, size: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


class Appender:
    """Appends records to the current day's file under a durability policy.

    Every `write` is one os.write of many records and gets a write number; `durable_no` is the last
    write number known to be on disk. policy "fsync": each write is fdatasync'ed before `write`
    returns. policy "group": a background thread fdatasyncs at most every group_ms and calls
    on_durable(write_no) from that thread (the caller wakes its loop with it).
    """

    def __init__(self, directory: str, policy: str = "group", group_ms: float = 5.0,
                 on_durable: Callable[[int], None] | None = None):
        if policy not in ("fsync", "group"):
            raise ValueError(f"durability policy must be fsync or group, not {policy!r}")
        self.directory = directory
        self.policy = policy
        self.group_s = max(group_ms, 0.0) / 1000.0
        self.on_durable = on_durable
        self.path: str | None = None
        self.date: str | None = None
        self.fd = -1
        self.size = 0
        self.write_no = 0
        self.durable_no = 0
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        os.makedirs(directory, exist_ok=True)

    def open(self, date: str, start_info: dict | None) -> None:
        """Open (creating if needed) the file of date; a new or empty file gets start_info first."""
        path = journal_path(self.directory, date)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        with self._lock:
            self.fd, self.path, self.date = fd, path, date
        self.size = os.fstat(fd).st_size
        if self.size == 0 and start_info is not None:
            self.write([encode_control(start_info["seq"], b"tp", 0, 0, start_info)])
            self.sync()
        if self.policy == "group" and self._thread is None:
            self._thread = threading.Thread(target=self._group_commit, name="journal-sync",
                                            daemon=True)
            self._thread.start()

    def write(self, chunks: list[bytes]) -> int:
        """Append chunks (whole records, or record_parts) with one os.write; returns this write's
        number."""
        data = b"".join(chunks) if len(chunks) != 1 else chunks[0]
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.size += len(data)
        self.write_no += 1
        if self.policy == "fsync":
            os.fdatasync(self.fd)
            self.durable_no = self.write_no
        else:
            self._dirty.set()
        return self.write_no

    def sync(self) -> int:
        """fdatasync now; returns the write number now durable."""
        with self._lock:
            upto = self.write_no
            os.fdatasync(self.fd)
            self.durable_no = max(self.durable_no, upto)
        return self.durable_no

    def roll(self, new_date: str, eod_info: dict, start_info: dict) -> None:
        """End of day: append the eod record, make the day durable, close it, open new_date."""
        self.write([encode_control(eod_info["seq"], b"tp", 0, 0, eod_info)])
        self.sync()
        with self._lock:
            os.close(self.fd)
            self.fd = -1
        self.open(new_date, start_info)

    def close(self) -> None:
        """Stop the group-commit thread, sync and close."""
        self._stop = True
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.fd >= 0:
            self.sync()
            os.close(self.fd)
            self.fd = -1

    def _group_commit(self) -> None:
        while not self._stop:
            self._dirty.wait()
            if self._stop:
                return
            self._dirty.clear()
            with self._lock:
                if self.fd < 0:
                    continue
                upto = self.write_no
                os.fdatasync(self.fd)
                self.durable_no = max(self.durable_no, upto)
            if self.on_durable is not None:
                self.on_durable(upto)
            if self.group_s:
                time.sleep(self.group_s)
