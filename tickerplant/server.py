"""The tickerplant process: ingest, validate, sequence, journal, acknowledge, publish, roll the day.

One thread runs the loop over three sockets (a second thread serves journal replay over the
network, tickerplant/replay.py): the ingest ROUTER (publishers' `U` updates and `hello`), the
control ROUTER (an RpcServer: `sub`, `unsub`, `progress`, `status`) and an inproc socket on which
the journal's group-commit thread says what became durable. Each ingest wake-up drains many
messages, validates them, journals the good ones with ONE write, publishes them (the received
payload bytes pass through untouched unless the tickerplant had to stamp `time`), and queues the
replies: one cumulative ack per publisher per drain (after any rejects), sent once that write is
durable. Msgids are contiguous per publisher name: a rejected batch consumes its msgid with a
journaled reject marker, a msgid already consumed is a duplicate (acknowledged, not journaled), and a
msgid beyond the next expected one is answered with `{"resend": next}`.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from dataclasses import dataclass, field

import zmq

from common import wire
from common.codec import pack, unpack
from common.rpc import RpcServer
from common.schema import BatchError, TableSchema
from common.wire import EOD, HEARTBEAT, table_topic
from common.zmqio import recv_message
from tickerplant import journal
from tickerplant.fanout import Fanout
from tickerplant.fastcheck import FastCheck
from tickerplant.replay import ReplayServer, default_endpoint
from tickerplant.tradingday import next_roll, trading_date

log = logging.getLogger("tickerplant")

MAX_DRAIN = 4096          # ingest messages handled per wake-up (one journal write each) ...
MAX_DRAIN_BYTES = 4 << 20   # ... and payload bytes
INDEX_EVERY = 1 << 20     # journal bytes between entries of the seq -> offset index (`locate`)
HEARTBEAT_S = 1.0


@dataclass
class Config:
    ingest: str
    pub: str
    control: str
    journal_dir: str
    durability: str = "group"
    group_ms: float = 5.0
    batch_ms: float = 0.0
    eod_ns: int = 0
    hwm: int = 10_000
    replay: str | None = None          # replay service endpoint (None: replay.default_endpoint)
    truncate_damaged: bool = False     # cut a journal damaged in the middle instead of refusing


@dataclass
class SubscriberInfo:
    name: str
    tables: list[str]
    syms: list[str] | None
    seq: int
    since_ns: int
    progress_ns: int = 0


@dataclass
class Counters:
    msgs: int = 0
    rows: int = 0
    rejects: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    bad_frames: int = 0
    rows_per_s: float = 0.0
    msgs_per_s: float = 0.0
    last_rows: int = 0
    last_msgs: int = 0
    last_t: float = field(default_factory=time.monotonic)

    def sample(self) -> None:
        now = time.monotonic()
        dt = max(now - self.last_t, 1e-9)
        self.rows_per_s = (self.rows - self.last_rows) / dt
        self.msgs_per_s = (self.msgs - self.last_msgs) / dt
        self.last_rows, self.last_msgs, self.last_t = self.rows, self.msgs, now


class Tickerplant:
    """Owns the sockets, the journal appender, the sequence and the per-publisher msgids."""

    def __init__(self, cfg: Config, schemas: dict[str, TableSchema]):
        self.cfg = cfg
        self.schemas = schemas
        self.fast = {name: FastCheck(schema) for name, schema in schemas.items()}
        self.epoch = time.time_ns()
        self.counters = Counters()
        self.subscribers: dict[str, SubscriberInfo] = {}
        self.wanted: set[str] = set()     # tables some subscriber asked for (as kdb+'s .u.w)
        self.durable_msgids: dict[str, int] = {}
        # (write number, replies to send once it is durable, {publisher: msgid acknowledged})
        self.pending: list[tuple[int, list[tuple[bytes, bytes]], dict[str, int]]] = []
        # (seq, offset) of the current file: every record before offset has a seq <= seq
        self.index: list[tuple[int, int]] = [(0, 0)]
        self.stopping = False

        state = journal.recover(cfg.journal_dir, cfg.truncate_damaged)
        self.recovered = state
        self.seq = state.seq
        self.msgids = dict(state.msgids)
        self.durable_msgids = dict(state.msgids)

        self.ctx = zmq.Context.instance()
        wake_addr = f"inproc://tp-durable-{id(self)}"
        self.wake = self.ctx.socket(zmq.PULL)
        self.wake.bind(wake_addr)
        self._wake_addr = wake_addr
        self._wake_push: zmq.Socket | None = None
        self.appender = journal.Appender(cfg.journal_dir, cfg.durability, cfg.group_ms,
                                         on_durable=self._signal_durable)
        self._open_journal(state)

        self.ingest = self.ctx.socket(zmq.ROUTER)
        self.ingest.setsockopt(zmq.LINGER, 0)
        self.ingest.bind(cfg.ingest)
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, cfg.hwm)
        self.pub.bind(cfg.pub)
        self.pub_endpoint = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.fanout = Fanout(self.pub, cfg.batch_ms, self._decode, self.seq)
        self.replay = ReplayServer(cfg.replay or default_endpoint(cfg.control),
                                   os.path.abspath(cfg.journal_dir), self.ctx)
        self.control = RpcServer(cfg.control, {"sub": self.op_sub, "unsub": self.op_unsub,
                                               "progress": self.op_progress,
                                               "locate": self.op_locate,
                                               "status": self.op_status}, self.ctx)

    # ---- journal ------------------------------------------------------------------------------
    def _start_info(self, date: str) -> dict:
        return {"kind": "start", "date": date, "seq": self.seq, "msgids": dict(self.msgids)}

    def _open_journal(self, state: journal.RecoveredState) -> None:
        today = trading_date(time.time_ns(), self.cfg.eod_ns)
        if state.date is not None and state.date < today and not state.closed:
            log.warning("journal %s was not closed by an end of day; closing it now", state.path)
            self.appender.open(state.date, None)
            self.appender.roll(today, {"kind": "eod", "date": state.date, "seq": self.seq},
                               self._start_info(today))
        else:
            self.appender.open(max(state.date or today, today), self._start_info(today))
            self.appender.sync()
        self.next_eod_ns = next_roll(time.time_ns(), self.cfg.eod_ns)
        log.info("journal %s: resuming at seq %d with %d publisher(s); dropped %d record(s), "
                 "%d byte(s) at start-up", self.appender.path, self.seq, len(self.msgids),
                 state.dropped_records, state.dropped_bytes)

    def _signal_durable(self, write_no: int) -> None:
        """Called from the group-commit thread: wakes the loop to release acks."""
        if self._wake_push is None:
            self._wake_push = self.ctx.socket(zmq.PUSH)
            self._wake_push.connect(self._wake_addr)
        self._wake_push.send(write_no.to_bytes(8, "little"))

    # ---- ingest -------------------------------------------------------------------------------
    def drain_ingest(self) -> None:
        """Handles up to MAX_DRAIN waiting ingest messages with one journal write."""
        recv_ns = time.time_ns()
        seq0, offset0 = self.seq, self.appender.size
        records: list[bytes] = []
        published: list[tuple[str, int, int, bytes, dict]] = []
        replies: dict[bytes, list[bytes]] = {}
        acks: dict[bytes, tuple[str, int, int]] = {}
        resent: set[bytes] = set()
        sock = self.ingest
        nbytes = 0
        for _ in range(MAX_DRAIN):
            frames = recv_message(sock)
            if frames is None:
                break
            if len(frames) == 3 and frames[1][:1] == wire.UPDATE:
                self._upd(frames, recv_ns, records, published, replies, acks, resent)
                nbytes += len(frames[2])
                if nbytes >= MAX_DRAIN_BYTES:
                    break
            elif len(frames) == 3 and frames[1] == wire.HELLO:
                self._hello(frames[0], frames[2])
            else:
                self.counters.bad_frames += 1
                log.warning("ingest: dropped a malformed message (%d frames, command %r)",
                            len(frames), frames[1][:16] if len(frames) > 1 else b"")
                sock.send_multipart([frames[0], wire.failure(
                    "malformed message: expected [U<msgid><name><table>, payload] or [hello, name]")])
        write_no = self.appender.write(records) if records else self.appender.write_no
        if offset0 - self.index[-1][1] >= INDEX_EVERY:
            self.index.append((seq0, offset0))
        wanted = self.wanted
        for table, seq, nrows, payload, cols in published:
            if table in wanted:
                self.fanout.publish(table, seq, nrows, payload, cols)
        if replies or acks:
            out = [(ident, body) for ident, bodies in replies.items() for body in bodies]
            acked = {}
            for ident, (name, msgid, seq) in acks.items():
                out.append((ident, wire.ack(msgid, seq, name)))
                acked[name] = msgid
            self.pending.append((write_no, out, acked))
            self.release(self.appender.durable_no)

    def _upd(self, frames, recv_ns, records, published, replies, acks, resent) -> None:
        ident, head, payload = frames
        try:
            msgid, name_b, table_b = wire.parse_ingest_head(head)
            name = name_b.decode()
            table = table_b.decode()
        except (UnicodeDecodeError, ValueError) as exc:
            self.counters.bad_frames += 1
            self.ingest.send_multipart([ident, wire.failure(f"malformed upd: {exc}")])
            return
        last = self.msgids.get(name, 0)
        if msgid <= last:
            self.counters.duplicates += 1
            prev = acks.get(ident)
            acks[ident] = (name, max(msgid, prev[1]) if prev else msgid, self.seq)
            return
        if msgid != last + 1:
            self.counters.out_of_order += 1
            if ident not in resent:
                resent.add(ident)
                replies.setdefault(ident, []).append(wire.resend(last + 1, name))
            return
        self.msgids[name] = msgid
        schema = self.schemas.get(table)
        error = "" if schema is not None else (f"unknown table {table!r}" if table
                                                else "empty table name")
        cols = None
        nrows = self.fast[table].rows(payload) if schema is not None else None
        if schema is not None and nrows is None:
            try:
                batch = unpack(payload)
                stamped = isinstance(batch, dict) and "time" not in batch
                nrows, cols = schema.validate(batch, stamp_ns=recv_ns)
                if stamped:
                    payload = pack(cols)
            except (BatchError, ValueError) as exc:
                error = str(exc)
            except Exception as exc:         # noqa: BLE001 - odd input must not stop the tickerplant
                error = f"{table}: invalid batch ({type(exc).__name__}: {exc})"
        if error:
            self.counters.rejects += 1
            log.info("rejected %s msgid %d (%s): %s", name, msgid, table, error)
            records.append(journal.encode_control(self.seq, name_b, msgid, recv_ns,
                                                  {"kind": "reject", "table": table[:255]}))
            replies.setdefault(ident, []).append(wire.reject(msgid, error, name))
        else:
            self.seq += 1
            records.extend(journal.record_parts(self.seq, msgid, recv_ns, table_b, name_b,
                                                payload))
            published.append((table, self.seq, nrows, payload, cols))
            self.counters.msgs += 1
            self.counters.rows += nrows
        acks[ident] = (name, msgid, self.seq)

    def _decode(self, table: str, payload: bytes) -> dict:
        """Columns of a journaled payload (the fanout needs them for sym groups and batches)."""
        return self.schemas[table].validate(unpack(payload))[1]

    def _hello(self, ident: bytes, name_b: bytes) -> None:
        name = name_b.decode(errors="replace")
        self.ingest.send_multipart([ident, wire.hello_reply(
            self.msgids.get(name, 0), self.durable_msgids.get(name, 0), self.seq, self.epoch, name)])

    def release(self, durable_no: int) -> None:
        """Sends the replies of every write now durable."""
        n = 0
        for write_no, out, acked in self.pending:
            if write_no > durable_no:
                break
            n += 1
            for ident, body in out:
                self.ingest.send_multipart([ident, body])
            self.durable_msgids.update(acked)
        del self.pending[:n]

    # ---- control ------------------------------------------------------------------------------
    def op_sub(self, req: dict) -> dict:
        name = str(req.get("name") or "")
        if not name:
            raise ValueError("sub: name required")
        tables = req.get("tables") or sorted(self.schemas)
        unknown = [t for t in tables if t not in self.schemas]
        if unknown:
            raise ValueError(f"sub: unknown table(s) {unknown}")
        syms = req.get("syms")
        if syms is not None and (not isinstance(syms, list)
                                 or not all(isinstance(s, str) for s in syms)):
            raise ValueError("sub: syms must be a list of str or null")
        self.fanout.leave(name)
        topics = {t: (self.fanout.join(name, t, syms) if syms is not None else table_topic(t))
                  for t in tables}
        self.subscribers[name] = SubscriberInfo(name, list(tables), syms, self.seq,
                                                time.time_ns())
        self.wanted = {t for s in self.subscribers.values() for t in s.tables}
        log.info("subscriber %s: tables %s, syms %s, at seq %d", name, tables,
                 "all" if syms is None else len(syms), self.seq)
        st = os.stat(self.appender.path)
        return {"schemas": {t: self.schemas[t].qtypes() for t in tables},
                "journal": os.path.abspath(self.appender.path), "date": self.appender.date,
                "journal_id": [st.st_dev, st.st_ino], "replay": self.replay.endpoint,
                "seq": self.seq, "epoch": self.epoch, "topics": topics, "pub": self.pub_endpoint}

    def op_unsub(self, req: dict) -> dict:
        name = str(req.get("name") or "")
        self.fanout.leave(name)
        removed = self.subscribers.pop(name, None) is not None
        self.wanted = {t for s in self.subscribers.values() for t in s.tables}
        return {"removed": removed}

    def op_locate(self, req: dict) -> dict:
        """Where to start reading the current journal to find every record above seq."""
        seq = int(req["seq"])
        i = bisect.bisect_right(self.index, (seq, float("inf"))) - 1
        found_seq, offset = self.index[max(i, 0)]
        return {"journal": os.path.abspath(self.appender.path), "offset": offset,
                "seq": found_seq}

    def op_progress(self, req: dict) -> dict:
        info = self.subscribers.get(str(req.get("name") or ""))
        if info is None:
            raise ValueError(f"progress: unknown subscriber {req.get('name')!r}")
        info.seq = int(req["seq"])
        info.progress_ns = time.time_ns()
        return {"seq": self.seq}

    def op_status(self, req: dict) -> dict:
        c = self.counters
        return {"seq": self.seq, "epoch": self.epoch, "date": self.appender.date,
                "journal": os.path.abspath(self.appender.path),
                "durability": self.cfg.durability, "batch_ms": self.cfg.batch_ms,
                "msgs": c.msgs, "rows": c.rows, "rejects": c.rejects,
                "duplicates": c.duplicates, "out_of_order": c.out_of_order,
                "bad_frames": c.bad_frames, "rows_per_s": round(c.rows_per_s, 1),
                "msgs_per_s": round(c.msgs_per_s, 1), "published": self.fanout.messages,
                "pending_acks": len(self.pending),
                "journal_bytes": os.path.getsize(self.appender.path),
                "startup_dropped": {"records": self.recovered.dropped_records,
                                    "bytes": self.recovered.dropped_bytes},
                "publishers": dict(self.msgids),
                "replay": {"endpoint": self.replay.endpoint, "chunks": self.replay.served,
                           "bytes": self.replay.bytes_sent, "errors": self.replay.errors,
                           "dropped": self.replay.dropped},
                "subscribers": [{"name": s.name, "seq": s.seq, "lag": self.seq - s.seq,
                                 "tables": s.tables, "syms": s.syms}
                                for s in self.subscribers.values()]}

    # ---- timers and loop ----------------------------------------------------------------------
    def end_of_day(self) -> None:
        """Closes the day's journal with an eod record, opens the next day, tells subscribers."""
        self.fanout.flush()
        old = self.appender.date
        new = trading_date(time.time_ns(), self.cfg.eod_ns)
        if new <= old:
            new = trading_date(self.next_eod_ns, self.cfg.eod_ns)
        self.appender.roll(new, {"kind": "eod", "date": old, "seq": self.seq},
                           self._start_info(new))
        self.index = [(self.seq, 0)]
        self.release(self.appender.durable_no)
        self.next_eod_ns = next_roll(time.time_ns(), self.cfg.eod_ns)
        log.info("end of day %s at seq %d; journal now %s", old, self.seq, self.appender.path)
        self.fanout.event(EOD, {"date": old, "seq": self.seq, "next": new,
                                "journal": os.path.abspath(self.appender.path),
                                "last": self.fanout.prev})

    def heartbeat(self) -> None:
        self.counters.sample()
        self.fanout.event(HEARTBEAT, {"seq": self.seq, "epoch": self.epoch,
                                      "time": time.time_ns(), "last": self.fanout.prev})

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.ingest, zmq.POLLIN)
        poller.register(self.control.socket, zmq.POLLIN)
        poller.register(self.wake, zmq.POLLIN)
        batch_s = self.cfg.batch_ms / 1000.0
        now = time.monotonic()
        next_hb = now
        next_flush = now + batch_s
        log.info("tickerplant up: ingest %s, pub %s, control %s, durability %s, %s", self.cfg.ingest,
                 self.pub_endpoint, self.control.endpoint, self.cfg.durability,
                 f"batch mode {self.cfg.batch_ms:g} ms" if batch_s else "zero-latency mode")
        while not self.stopping:
            now = time.monotonic()
            wait = next_hb - now
            if batch_s:
                wait = min(wait, next_flush - now)
            events = dict(poller.poll(max(0, int(wait * 1000) + 1)))
            if self.wake in events:
                while True:
                    try:
                        self.wake.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                self.release(self.appender.durable_no)
            if self.ingest in events:
                self.drain_ingest()
            if self.control.socket in events:
                self.control.drain()
            now = time.monotonic()
            if batch_s and now >= next_flush:
                self.fanout.flush()
                next_flush = now + batch_s
            if now >= next_hb:
                self.heartbeat()
                next_hb = now + HEARTBEAT_S
                if time.time_ns() >= self.next_eod_ns:
                    self.end_of_day()
        self.close()

    def close(self) -> None:
        self.fanout.flush()
        self.appender.close()
        self.release(self.appender.write_no)
        self.replay.close()
        for sock in (self.ingest, self.pub, self.wake):
            sock.close(0)
        self.control.close()
        if self._wake_push is not None:
            self._wake_push.close(0)
