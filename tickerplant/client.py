"""Client library of the tickerplant: Publisher (feedhandlers, calc) and Subscriber (rdb, calc, any
Python client). Protocol: docs/protocol.md, "Tickerplant"; usage: docs/tickerplant.md.

Publisher: a DEALER with a stable name. msgids continue across restarts (asked with `hello`);
every message stays in memory until the tickerplant acknowledges it as durable; a stalled or
restarted tickerplant gets the unacknowledged messages again (it drops the ones it already has).

Subscriber: `sub` handshake on the control socket, journal replay up to the handshake's seq, then
live messages from the PUB socket. The replay reads the journal file when it is readable here (and
is the tickerplant's very file), else fetches it from the tickerplant's replay service
(tickerplant/replay.py); either way it is all or nothing: every record is read and checked (over the
network, spooled) before any is applied, and a broken replay raises ReplayError with nothing applied. For each table it keeps `covered`, the seq up to which every
record of that table has been applied; a live message whose `prev` is above it (or a heartbeat
whose last seq for the topic is above it) shows a missed message, and everything missed is read
back from the journal. A new tickerplant epoch in the heartbeat means a restart: handshake again
and recover the same way. Nothing is lost and nothing is applied twice.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import zmq

from common import wire
from common.codec import as_columns, pack, unpack
from common.defaults import TP_CONTROL, TP_INGEST
from common.rpc import RpcClient, RpcError
from common.schema import TableSchema, schemas_from_qtypes
from common.wire import EOD, HEARTBEAT
from common.zmqio import EVENTS, NOBLOCK, POLLIN, SNDMORE, recv_message
from tickerplant import journal
from tickerplant.replay import SNDHWM

log = logging.getLogger("tickerplant.client")

REPLAY_MODES = ("auto", "file", "network")
MAX_WINDOW = SNDHWM         # more requests in flight than the replay socket queues would be dropped


def reachable(endpoint: str, control: str) -> str:
    """An endpoint the tickerplant reported, as a client reaches it: a wildcard host it bound
    (0.0.0.0, *, ::) becomes the host of its control endpoint."""
    if not endpoint.startswith("tcp://"):
        return endpoint
    host, port = endpoint[6:].rsplit(":", 1)
    if host in ("0.0.0.0", "*", "[::]", "::") and control.startswith("tcp://"):
        host = control[6:].rsplit(":", 1)[0]
    return f"tcp://{host}:{port}"


class TickerplantError(RuntimeError):
    """The tickerplant refused or did not answer."""


class TickerplantTimeout(TickerplantError, TimeoutError):
    """No answer from the tickerplant within the timeout."""


class ReplayError(TickerplantError):
    """A journal replay could not complete (a record failing its CRC, the tickerplant gone, an
    unreadable journal). Nothing of it was applied; the next attempt starts from the same place."""


class RejectedBatch(TickerplantError):
    """The tickerplant rejected a batch (it was not journaled); .msgid, .error."""

    def __init__(self, msgid: int, error: str):
        super().__init__(f"batch {msgid} rejected: {error}")
        self.msgid = msgid
        self.error = error


class Publisher:
    """Sends batches to the tickerplant's ingest socket under a stable publisher name."""

    def __init__(self, name: str, endpoint: str = TP_INGEST, timeout: float = 5.0,
                 resend_after: float = 1.0, on_reject: Callable[[int, str], None] | None = None,
                 context: zmq.Context | None = None):
        if not 0 < len(name.encode()) <= wire.MAX_NAME:
            raise ValueError(f"publisher name must be 1 to {wire.MAX_NAME} bytes")
        self.name = name
        self._name_b = name.encode()
        self.endpoint = endpoint
        self.timeout = timeout
        self.resend_after = resend_after
        self.on_reject = on_reject
        self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        # msgid -> (table, payload), oldest first; an OrderedDict because acks pop from the front, and
        # the first key of a plain dict costs O(keys deleted before it) (its iterator skips them)
        self.unacked: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()
        self.rejected: dict[int, str] = {}
        self.acked = 0
        self.acked_seq = 0
        self.epoch: int | None = None
        self.resends = 0
        self._progress_t = time.monotonic()
        self._hello_t: float | None = None
        self._last_resend: tuple[int, float] = (0, 0.0)
        self._last_msgid = 0
        self._deferred: list[dict] = []
        self._send_hello()
        deadline = time.monotonic() + timeout
        while self.epoch is None:
            left = deadline - time.monotonic()
            if left <= 0 or not self.socket.poll(int(left * 1000) + 1):
                raise TickerplantTimeout(f"tickerplant at {endpoint} did not answer hello "
                                         f"within {timeout:g}s")
            self._handle_replies()
        self.next_msgid = self._last_msgid + 1

    @property
    def pending(self) -> int:
        """How many published messages are not yet acknowledged."""
        return len(self.unacked)

    def publish(self, table: str, batch: dict | bytes) -> int:
        """Sends a batch (a dict of columns, or bytes already packed); returns its msgid."""
        payload = batch if isinstance(batch, bytes) else pack(batch)
        table_b = table.encode()
        msgid = self.next_msgid
        self.next_msgid += 1
        self.unacked[msgid] = (table_b, payload)
        self._send(msgid, table_b, payload)
        if self.socket.get(EVENTS) & POLLIN:
            self._handle_replies()
        return msgid

    def publish_sync(self, table: str, batch: dict | bytes, timeout: float | None = None) -> int:
        """Publishes and waits until the batch is durable; returns the seq acknowledged with it
        (its own seq unless later messages were acknowledged together). Raises RejectedBatch."""
        msgid = self.publish(table, batch)
        self._wait(lambda: msgid not in self.unacked, timeout, f"batch {msgid}")
        if msgid in self.rejected:
            raise RejectedBatch(msgid, self.rejected[msgid])
        return self.acked_seq

    def flush(self, timeout: float | None = None) -> None:
        """Waits until everything published is acknowledged (durable) or rejected."""
        self._wait(lambda: not self.unacked, timeout, f"{len(self.unacked)} batch(es)")

    def poll(self, timeout_ms: int = 0) -> None:
        """Handles acknowledgements and, if the tickerplant stalls, resends (call it when idle)."""
        ready = self.socket.get(EVENTS) & POLLIN if timeout_ms == 0 else self.socket.poll(timeout_ms)
        if ready:
            self._handle_replies()
        self._check_stall()

    def close(self) -> None:
        self.socket.close(0)

    def _wait(self, done: Callable[[], bool], timeout: float | None, what: str) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TickerplantTimeout(f"{what} not acknowledged by the tickerplant at "
                                         f"{self.endpoint} in time")
            self.poll(min(int(left * 1000) + 1, 100))

    def _send(self, msgid: int, table_b: bytes, payload: bytes) -> None:
        head = wire.ingest_head(msgid, self._name_b, table_b)
        copy = len(payload) < 65536
        try:
            self._send_frames(head, payload, copy)
            return
        except zmq.Again:
            pass
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self._handle_replies(resend=False)
            if self.socket.poll(50, zmq.POLLOUT):
                self._send_frames(head, payload, copy)
                return
        raise TickerplantTimeout(f"tickerplant at {self.endpoint} is not accepting messages "
                                 f"(msgid {msgid} kept and resent when it is back)")

    def _send_frames(self, head: bytes, payload: bytes, copy: bool) -> None:
        """[head, payload] as one message; raises zmq.Again (nothing sent) at the high-water mark.
        A message is queued whole or not at all, so the second frame cannot block."""
        send = self.socket.send
        send(head, NOBLOCK | SNDMORE)
        send(payload, NOBLOCK, copy=copy)

    def _send_hello(self) -> None:
        self._hello_t = time.monotonic()
        self.socket.send_multipart([wire.HELLO, self._name_b])

    def _handle_replies(self, resend: bool = True) -> None:
        """Applies waiting replies; resend=False (while blocked sending) defers resend requests
        and hello answers to the next call that allows them."""
        while True:
            try:
                body = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            kind, reply = wire.ingest_reply(body)
            if kind == "ack":
                self._acked(reply["ack"], reply.get("seq", 0))
            elif kind == "reject":
                msgid, error = reply["reject"], reply.get("error", "")
                self.rejected[msgid] = error
                self.unacked.pop(msgid, None)
                self._progress_t = time.monotonic()
                log.warning("publisher %s: batch %d rejected: %s", self.name, msgid, error)
                if self.on_reject is not None:
                    self.on_reject(msgid, error)
            elif kind in ("resend", "hello"):
                self._deferred.append(reply)
            else:
                log.warning("publisher %s: tickerplant says %s", self.name, reply.get("error"))
        if resend and self._deferred:
            deferred, self._deferred = self._deferred, []
            for r in deferred:
                if "resend" in r:
                    self._resend_from(r["resend"])
                else:
                    self._on_hello(r)

    def _acked(self, msgid: int, seq: int) -> None:
        self._progress_t = time.monotonic()
        if msgid <= self.acked:
            return
        self.acked, self.acked_seq = msgid, seq
        unacked = self.unacked
        while unacked:
            first = next(iter(unacked))
            if first > msgid:
                break
            unacked.popitem(last=False)

    def _on_hello(self, info: dict) -> None:
        restarted = self.epoch is not None and info["epoch"] != self.epoch
        self.epoch = info["epoch"]
        self._hello_t = None
        self._last_msgid = info["last_msgid"]
        self._acked(info["durable_msgid"], info["seq"])
        if restarted:
            log.warning("publisher %s: tickerplant restarted; resending %d unacknowledged "
                        "message(s)", self.name, len(self.unacked))
        self._resend_from(info["last_msgid"] + 1, force=True)

    def _resend_from(self, first: int, force: bool = False) -> None:
        now = time.monotonic()
        last_first, last_t = self._last_resend
        if not force and first == last_first and now - last_t < self.resend_after:
            return
        self._last_resend = (first, now)
        if self.unacked and first < next(iter(self.unacked)):
            self._renumber(first)
        for msgid in [m for m in self.unacked if m >= first]:
            entry = self.unacked.get(msgid)
            if entry is not None:
                self.resends += 1
                self._send(msgid, *entry)

    def _renumber(self, first: int) -> None:
        """The tickerplant expects msgid `first`, below everything still unacknowledged: it lost
        messages it had acknowledged (a damaged journal). Number the unacknowledged ones from
        `first` so that they are not taken for gaps."""
        log.error("publisher %s: tickerplant expects msgid %d but messages up to %d were "
                  "acknowledged; its journal lost them. Renumbering %d unacknowledged message(s)",
                  self.name, first, self.acked, len(self.unacked))
        self.unacked = OrderedDict((first + i, entry) for i, entry in enumerate(self.unacked.values()))
        self.next_msgid = first + len(self.unacked)
        self.acked = first - 1

    def _check_stall(self) -> None:
        now = time.monotonic()
        if not self.unacked or now - self._progress_t < self.resend_after:
            return
        if self._hello_t is None or now - self._hello_t > self.resend_after:
            self._send_hello()


@dataclass
class _Span:
    """A stretch [start, end) of one journal file that a replay applies, checked to its end."""
    path: str
    start: int
    end: int
    spooled: int = 0             # where its bytes begin in the spool (network replay)
    seq: int = 0                 # the last data record's seq in it
    reached: bool = False        # it ends at the replay's target
    rolled: bool = False         # it ends with the day's eod record ...
    later: str | None = None     # ... and the next day's file is there

    def take(self, rec: journal.Record, target: int) -> bool:
        """Extends the span over rec if the replay to target includes it; True once complete."""
        if rec.is_control:
            self.end = rec.end
            self.rolled = rec.control().get("kind") == "eod"
            return self.rolled
        if rec.seq > target:
            self.reached = True
            return True
        self.end, self.seq = rec.end, rec.seq
        self.reached = rec.seq == target
        return self.reached


class Subscriber:
    """Receives the tables (and syms) it asked for: journal replay, then live, gap-free."""

    def __init__(self, name: str, control: str = TP_CONTROL, tables: list[str] | None = None,
                 syms: list[str] | None = None,
                 on_batch: Callable[[str, dict, int], None] | None = None,
                 on_eod: Callable[[str, int], None] | None = None,
                 timeout: float = 5.0, progress_s: float = 1.0, rcvhwm: int = 100_000,
                 context: zmq.Context | None = None, replay: str | None = None,
                 replay_chunk: int = 1 << 20, replay_window: int = 4,
                 spool_memory: int = 16 << 20):
        replay = replay or os.environ.get("MARGINTICK_REPLAY") or "auto"
        if replay not in REPLAY_MODES:
            raise ValueError(f"replay must be one of {REPLAY_MODES}, not {replay!r}")
        if not 0 < replay_window <= MAX_WINDOW:
            raise ValueError(f"replay_window must be 1 to {MAX_WINDOW}, not {replay_window}")
        self.name = name
        self.replay = replay
        self.replay_chunk = replay_chunk
        self.replay_window = replay_window
        self.spool_memory = spool_memory
        self.timeout = timeout
        self.control = control
        self._context = context or zmq.Context.instance()
        self.tables = list(tables) if tables is not None else None
        self.syms = list(syms) if syms is not None else None
        self._symset = frozenset(syms) if syms is not None else None
        self.on_batch = on_batch
        self.on_eod = on_eod
        self.progress_s = progress_s
        self.rpc = RpcClient(control, timeout, context)
        self.socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, rcvhwm)
        self.socket.setsockopt(zmq.SUBSCRIBE, HEARTBEAT)
        self.socket.setsockopt(zmq.SUBSCRIBE, EOD)
        self.schemas: dict[str, TableSchema] = {}
        self.topics: dict[str, bytes] = {}
        self._by_topic: dict[bytes, str] = {}
        self.covered: dict[str, int] = {}
        self.seq = 0
        self.epoch: int | None = None
        self.path: str | None = None  # the journal file being read, as the tickerplant names it
        self.offset = 0
        self._offset_seq = 0          # every record before self.offset has a seq <= this
        self.local = False            # read the journal file itself (else over the network)
        self.replayed_via = ""        # "file" or "network": how the last recovery read it
        self.replay_bytes = 0         # journal bytes received over the network so far
        self._replay_endpoint = ""
        self.eods: list[str] = []
        self.recoveries = 0
        self.duplicates = 0
        self.last_heartbeat = 0.0
        self._pub: str | None = None
        self._progress_t = 0.0

    # ---- public -------------------------------------------------------------------------------
    def start(self) -> None:
        """Handshake, then replay the journal up to the tickerplant's current seq."""
        reply = self._handshake()
        self._recover(reply["seq"])

    def poll(self, timeout_ms: int = 0) -> int:
        """Waits up to timeout_ms for live messages and applies them; returns how many."""
        n = self.drain() if self.socket.poll(timeout_ms) else 0
        self._report_progress()
        return n

    def drain(self, limit: int = 10_000) -> int:
        """Applies the live messages waiting on self.socket (for use from your own zmq.Poller)."""
        n = 0
        while n < limit and (frames := recv_message(self.socket)) is not None:
            n += 1
            self._on_message(frames)
        self._report_progress()
        return n

    def close(self) -> None:
        try:
            self.rpc.call("unsub", name=self.name, timeout=0.5)
        except RpcError:
            pass
        self.rpc.close()
        self.socket.close(0)

    # ---- handshake and recovery ---------------------------------------------------------------
    def _handshake(self) -> dict:
        try:
            reply = self.rpc.call("sub", name=self.name, tables=self.tables, syms=self.syms)
        except RpcError as exc:
            raise TickerplantError(f"subscribe to the tickerplant failed: {exc}") from exc
        self.schemas = schemas_from_qtypes(reply["schemas"])
        pub = reachable(reply["pub"], self.control)
        if self._pub != pub:
            if self._pub is not None:
                self.socket.disconnect(self._pub)
            self._pub = pub
            self.socket.connect(self._pub)
        topics = {t: bytes(topic) for t, topic in reply["topics"].items()}
        for topic in set(self.topics.values()) - set(topics.values()):
            self.socket.setsockopt(zmq.UNSUBSCRIBE, topic)
        for topic in set(topics.values()) - set(self.topics.values()):
            self.socket.setsockopt(zmq.SUBSCRIBE, topic)
        self.topics = topics
        self._by_topic = {topic: t for t, topic in topics.items()}
        for t in topics:
            self.covered.setdefault(t, self.seq)
        self.epoch = reply["epoch"]
        self.last_heartbeat = time.monotonic()
        if self.path is None:
            self.path, self.offset = reply["journal"], 0
        self._current_journal = reply["journal"]
        self._replay_endpoint = reachable(reply["replay"], self.control)
        self.local = self._readable(reply)
        return reply

    def _readable(self, reply: dict) -> bool:
        """Whether to read the journal file itself: replay="file" says so, "network" says not;
        "auto" reads it when the file at the tickerplant's path is readable here and is the very
        file the tickerplant writes (same device and inode), not another host's file of that name."""
        if self.replay != "auto":
            return self.replay == "file"
        try:
            st = os.stat(reply["journal"])
        except OSError:
            return False
        return ([st.st_dev, st.st_ino] == list(reply["journal_id"])
                and os.access(reply["journal"], os.R_OK))

    def _recover(self, target: int) -> None:
        """Applies from the journal every record up to target that was not applied yet. All or
        nothing: the records are first read and checked (and, over the network, spooled), then
        applied; a replay that breaks raises ReplayError with nothing applied."""
        self.recoveries += 1
        self._skip_ahead()
        spool = None if self.local else tempfile.SpooledTemporaryFile(self.spool_memory)
        try:
            spans = self._stage(target, spool)
            self.replayed_via = "file" if self.local else "network"
            self._apply(spans, spool)
        finally:
            if spool is not None:
                spool.close()
        for t in self.covered:
            self.covered[t] = max(self.covered[t], target)
        self.seq = max(self.seq, target)

    def _stage(self, target: int, spool) -> list[_Span]:
        """The spans of journal to apply to reach target, each read and checked (CRC) to its end;
        over the network their bytes go to spool. Raises ReplayError."""
        spans: list[_Span] = []
        path, offset = self.path, self.offset
        while True:
            read = self._scan_file if spool is None else self._fetch
            span = read(path, offset, target, spool)
            spans.append(span)
            if span.later is not None:
                path, offset = span.later, 0
                continue
            if not span.reached and not span.rolled and path != self._current_journal:
                path, offset = self._current_journal, 0
                continue
            return spans

    def _scan_file(self, path: str, offset: int, target: int, spool: None) -> _Span:
        """Checks the local journal file from offset to where the replay of target stops."""
        span = _Span(path, offset, offset)
        try:
            size = os.path.getsize(path)
            if offset > size:
                log.warning("subscriber %s: journal %s is shorter than the position read so far; "
                            "it was truncated", self.name, path)
                span.start = span.end = offset = size
            for rec in journal.read_records(path, offset):
                if span.take(rec, target):
                    break
            if span.rolled:
                later = [p for d, p in journal.journal_files(os.path.dirname(path))
                         if os.path.basename(p) > os.path.basename(path)]
                span.later = later[0] if later else None
        except (OSError, journal.CorruptRecord) as exc:
            raise ReplayError(f"subscriber {self.name}: replay of {path} from byte {offset} "
                              f"failed after seq {span.seq or self._offset_seq}: {exc}; nothing "
                              f"was applied") from exc
        return span

    def _fetch(self, path: str, offset: int, target: int, spool) -> _Span:
        """Fetches the journal from offset to where the replay of target stops over the
        tickerplant's replay socket (request per chunk, replay_window requests in flight), checks
        every record and writes their bytes to spool."""
        span = _Span(path, offset, offset, spool.tell())
        date = journal.FILE_RE.match(os.path.basename(path)).group(1)
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self._replay_endpoint)
        buf = bytearray()
        base = offset                  # journal offset of buf[0]
        ask = offset                   # offset of the next request
        inflight: dict[bytes, int] = {}
        req_no = 0
        eof = done = False

        def fail(what: str) -> ReplayError:
            return ReplayError(f"subscriber {self.name}: network replay of {path} (tickerplant "
                               f"{self._replay_endpoint}) failed at byte {base} after seq "
                               f"{span.seq or self._offset_seq}: {what}; nothing was applied")
        try:
            while not done:
                while not eof and len(inflight) < self.replay_window:
                    req_no += 1
                    rid = wire.request_id(req_no)
                    sock.send_multipart([rid, wire.replay_request(date, ask, self.replay_chunk)])
                    inflight[rid] = ask
                    ask += self.replay_chunk
                if not sock.poll(int(self.timeout * 1000)):
                    raise fail(f"no answer within {self.timeout:g}s")
                frames = sock.recv_multipart()
                head = unpack(frames[1]) if len(frames) >= 2 else {}
                if "error" in head:
                    raise fail(f"the tickerplant says: {head['error']}")
                if len(frames) != 3 or inflight.pop(frames[0], None) != base + len(buf):
                    raise fail("a reply out of order or malformed")
                data = frames[2]
                self.replay_bytes += len(data)
                eof = base + len(buf) + len(data) >= head["end"]
                buf += data
                try:
                    recs, used = journal.parse_records(buf, base)
                except journal.CorruptRecord as exc:
                    raise fail(str(exc)) from exc
                for rec in recs:
                    if span.take(rec, target):
                        done = True
                        break
                keep = span.end - base
                spool.write(bytes(buf[:keep]) if keep < len(buf) else buf)
                del buf[:used]
                base += used
                if span.rolled:
                    span.later = (os.path.join(os.path.dirname(path), f"tp.{head['later']}.log")
                                  if head["later"] else None)
                done = done or eof      # the file ends here (a record being written waits)
        finally:
            sock.close(0)
        return span

    def _apply(self, spans: list[_Span], spool) -> None:
        """Applies the staged spans (read from spool, or from the journal files), moving the
        position along with each record."""
        for span in spans:
            self.path, self.offset = span.path, span.start
            if span.end == span.start:
                continue
            f = spool if spool is not None else open(span.path, "rb")
            try:
                start = span.spooled if spool is not None else span.start
                for rec in journal.iter_records(f, start, start + span.end - span.start,
                                                span.start):
                    self.offset = rec.end
                    if rec.is_control:
                        info = rec.control()
                        if info.get("kind") == "eod":
                            self._eod(info["date"], info["seq"])
                        continue
                    self._offset_seq = rec.seq
                    self._apply_record(rec)
            except journal.CorruptRecord as exc:
                raise ReplayError(f"subscriber {self.name}: {span.path} changed during the "
                                  f"replay: {exc}") from exc
            finally:
                if spool is None:
                    f.close()

    def _skip_ahead(self) -> None:
        """Asks the tickerplant where in the journal the oldest record not yet applied can be,
        to avoid reading the day from the top after a gap."""
        need = min((self.covered[t] for t in self.topics), default=0)
        if need <= self._offset_seq:
            return
        try:
            where = self.rpc.call("locate", seq=need, timeout=1.0)
        except RpcError:
            return
        if where["journal"] == self.path and where["offset"] > self.offset:
            self.offset, self._offset_seq = where["offset"], where["seq"]

    def _apply_record(self, rec: journal.Record) -> None:
        table = rec.table
        if table not in self.covered or rec.seq <= self.covered[table]:
            return
        batch = unpack(rec.payload)
        if self._symset is not None:
            mask = np.fromiter((s in self._symset for s in batch["sym"]), dtype=bool,
                               count=len(batch["sym"]))
            if not mask.any():
                self.covered[table] = rec.seq
                return
            cols = as_columns(batch, self.schemas[table])
            if not mask.all():
                cols = {k: v[mask] for k, v in cols.items()}
        else:
            cols = as_columns(batch, self.schemas[table])
        self.covered[table] = rec.seq
        self.seq = max(self.seq, rec.seq)
        if self.on_batch is not None:
            self.on_batch(table, cols, rec.seq)

    # ---- live ---------------------------------------------------------------------------------
    def _on_message(self, frames: list[bytes]) -> None:
        topic = frames[0]
        if topic == HEARTBEAT:
            self._on_heartbeat(unpack(frames[1]))
            return
        if topic == EOD:
            self._on_live_eod(unpack(frames[1]))
            return
        table = self._by_topic.get(topic)
        if table is None or len(frames) != 3:
            return
        seq, prev, segs = wire.read_publish_header(frames[1])
        covered = self.covered[table]
        if seq <= covered:
            self.duplicates += 1
            return
        if prev > covered:
            log.info("subscriber %s: missed messages on %s (prev %d, have %d); recovering from "
                     "the journal", self.name, table, prev, covered)
            self._try_recover(seq)
            return
        cols = as_columns(unpack(frames[2]), self.schemas[table])
        if segs[0][0] <= covered:
            skip = sum(n for s, n in segs if s <= covered)
            cols = {k: v[skip:] for k, v in cols.items()}
        self.covered[table] = seq
        self.seq = max(self.seq, seq)
        if self.on_batch is not None:
            self.on_batch(table, cols, seq)

    def _on_heartbeat(self, info: dict) -> None:
        self.last_heartbeat = time.monotonic()
        if info["epoch"] != self.epoch:
            log.warning("subscriber %s: tickerplant restarted (epoch %d -> %d); recovering",
                        self.name, self.epoch or 0, info["epoch"])
            try:
                reply = self._handshake()
            except TickerplantError as exc:
                log.warning("subscriber %s: %s; retrying at the next heartbeat", self.name, exc)
                return
            if not self._try_recover(reply["seq"]):
                self.epoch = None            # the next heartbeat tries again
            return
        self._recover_if_missed(info)

    def _try_recover(self, target: int) -> bool:
        """A recovery from the live path: a replay that fails is logged and applied nothing; the
        next heartbeat shows the gap again and retries. False if it failed."""
        try:
            self._recover(target)
            return True
        except ReplayError as exc:
            log.warning("subscriber %s: %s; retrying at the next heartbeat", self.name, exc)
            return False

    def _recover_if_missed(self, info: dict) -> bool:
        """info["last"] holds the seq of the last message sent on each topic: one above what a
        table has covered was missed (dropped at a high-water mark). False if recovering failed."""
        last = info.get("last", {})
        if any(last.get(topic, 0) > self.covered[t] for t, topic in self.topics.items()):
            return self._try_recover(info["seq"])
        return True

    def _on_live_eod(self, info: dict) -> None:
        if not self._recover_if_missed(info):
            return                           # the day is closed by the replay that repairs it
        self._eod(info["date"], info["seq"])
        for t in self.covered:
            self.covered[t] = max(self.covered[t], info["seq"])
        self.seq = max(self.seq, info["seq"])
        self.path, self.offset, self._offset_seq = info["journal"], 0, info["seq"]
        self._current_journal = info["journal"]

    def _eod(self, date: str, seq: int) -> None:
        if date in self.eods:
            return
        self.eods.append(date)
        if self.on_eod is not None:
            self.on_eod(date, seq)

    def _report_progress(self) -> None:
        """Tells the tickerplant our seq (its status shows the lag); skipped while its heartbeat is
        missing, so that a loop using this subscriber never waits on a tickerplant that is down."""
        now = time.monotonic()
        if now - self._progress_t < self.progress_s or now - self.last_heartbeat > 3.0:
            return
        self._progress_t = now
        try:
            self.rpc.call("progress", name=self.name, seq=self.seq, timeout=0.2)
        except RpcError:
            pass
