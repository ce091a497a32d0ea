"""Wires the drop-copy feedhandler together: rebuild, reference data, the QuickFIX acceptor, housekeeping.

Start-up order, so that nothing is booked twice and nothing is missed:
1. replay today's `fill` rows from the tickerplant journal into one Book per session (the booked
   ExecIDs and the live trades), waiting for the tickerplant if it is not up yet;
2. follow `instrument` / `account` (replayed, then live) for the reference data checks;
3. create the QuickFIX acceptor; as each session is created its next expected incoming MsgSeqNum is
   rewound to its durable watermark + 1 (feedhandlers/fix/watermark.py), so the counterparty resends
   anything whose booking may not have reached the journal;
4. accept connections; a housekeeping thread collects acks, saves watermarks and logs counters.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import quickfix as fix

from feedhandlers.fix.acceptor import DropCopyApp
from feedhandlers.fix.batches import fill_rows
from feedhandlers.fix.book import Book
from feedhandlers.fix.channel import SessionChannel
from feedhandlers.fix.limits import LIMITS_PATH, Limits
from feedhandlers.fix.refdata import TABLES as REFDATA_TABLES
from feedhandlers.fix.refdata import RefData, RefDataFollower
from feedhandlers.fix.settings import SettingsError, load_settings
from feedhandlers.fix.watermark import WatermarkFile, rewind_target
from tickerplant.client import Publisher, Subscriber, TickerplantError

log = logging.getLogger("feedhandlers.fix")

PUBLISHER_PREFIX = "fixfh."
HOUSEKEEP_S = 0.002          # a quiet session's buffered fills go out within this (pipelined)
SAVE_WATERMARK_S = 0.1


@dataclass
class Options:
    config: Path
    state_dir: Path
    ingest: str
    control: str
    port: int | None = None
    ack: str = "sync"
    window: int = 100
    max_batch: int = 1000
    ack_timeout: float = 5.0
    stats_every: float = 10.0
    name: str = "fixfh"
    limits: Path = LIMITS_PATH


def _session_keys(settings: fix.SessionSettings) -> list[str]:
    keys = [sid.getTargetCompID().getString() for sid in settings.getSessions()]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise SettingsError(f"sessions must have distinct TargetCompIDs (the fill `session`): {repeated} repeat")
    if not keys:
        raise SettingsError("no [SESSION] configured")
    return keys


def rebuild_books(control: str, name: str, stopping: threading.Event) -> dict[str, Book]:
    """One Book per session from today's `fill` rows in the tickerplant journal (waits for the tickerplant)."""
    books: dict[str, Book] = {}

    def on_batch(table, cols, seq):
        for row in fill_rows(cols):
            book = books.get(row.session)
            if book is None:
                book = books[row.session] = Book(row.session)
            book.commit([row])

    sub = _start_subscriber(f"{name}.rebuild", control, ["fill"], on_batch, stopping)
    sub.close()
    log.info("rebuilt from the journal: %s", {k: len(b.booked) for k, b in books.items()} or "no fills today")
    return books


def _start_subscriber(name: str, control: str, tables: list[str], on_batch, stopping: threading.Event):
    while True:
        sub = Subscriber(name, control=control, tables=tables, on_batch=on_batch)
        try:
            sub.start()
            return sub
        except TickerplantError as e:
            sub.close()
            if stopping.is_set():
                raise TimeoutError(f"stopped while waiting for the tickerplant at {control}") from e
            log.warning("tickerplant at %s not answering (%s); retrying %s", control, e, name)


def _connect_publisher(name: str, ingest: str, on_reject, stopping: threading.Event) -> Publisher:
    while True:
        try:
            return Publisher(name, endpoint=ingest, on_reject=on_reject)
        except TimeoutError:
            if stopping.is_set():
                raise
            log.warning("tickerplant at %s not answering; retrying publisher %s", ingest, name)


class DropCopyService:
    def __init__(self, opts: Options):
        self.opts = opts
        self.stopping = threading.Event()
        self.refdata = RefData()
        self.app: DropCopyApp | None = None
        self.acceptor = None               # released in stop(), before what it points to
        self.quickfix_parts: tuple = ()    # settings and factories: QuickFIX keeps raw pointers to them
        self.follower: RefDataFollower | None = None
        self._housekeeper = threading.Thread(target=self._housekeep, name="fix-housekeeping", daemon=True)

    def start(self) -> None:
        overrides = {"SocketAcceptPort": str(self.opts.port)} if self.opts.port else {}
        settings = load_settings(self.opts.config, self.opts.state_dir, overrides)
        keys = _session_keys(settings)
        limits = Limits.load(self.opts.limits)
        books = rebuild_books(self.opts.control, self.opts.name, self.stopping)
        refsub = _start_subscriber(f"{self.opts.name}.refdata", self.opts.control, REFDATA_TABLES,
                                   self.refdata.on_batch, self.stopping)
        self.follower = RefDataFollower(refsub, self.refdata)
        self.follower.start()
        self.app = DropCopyApp(books, self.refdata, self._channel_for, limits)
        self.quickfix_parts = (settings, fix.FileStoreFactory(settings), fix.FileLogFactory(settings))
        self.acceptor = fix.ThreadedSocketAcceptor(self.app, self.quickfix_parts[1], settings,
                                                   self.quickfix_parts[2])
        self.acceptor.start()
        self._housekeeper.start()
        log.info("accepting FIX sessions %s (ack mode %s) per %s", keys, self.opts.ack, self.opts.config)

    def _channel_for(self, key: str, session: fix.Session) -> SessionChannel:
        watermark = WatermarkFile(self.opts.state_dir / "watermark" / f"{key}.json")
        expected = session.getExpectedTargetNum()
        target = rewind_target(expected, watermark.load())
        if target != expected:
            log.warning("session %s: rewinding the next expected incoming seq from %d to %d (the durable "
                        "watermark); the counterparty will resend from there", key, expected, target)
            session.setNextTargetMsgSeqNum(target)
        watermark.save(target - 1)
        counters = self.app.counters[key]

        def on_reject(msgid: int, error: str) -> None:   # a schema mismatch between us and the tickerplant
            counters["rejected by the tickerplant"] += 1
            log.error("session %s: the tickerplant rejected batch %d (%s); it is not booked", key, msgid, error)

        publisher = _connect_publisher(PUBLISHER_PREFIX + key, self.opts.ingest, on_reject, self.stopping)
        return SessionChannel(publisher, self.opts.ack, watermark, target - 1,
                              window=self.opts.window, max_batch=self.opts.max_batch,
                              ack_timeout=self.opts.ack_timeout,
                              stopping=self.stopping)

    def _housekeep(self) -> None:
        last_stats = last_save = time.monotonic()
        logged: dict[str, Counter] = {}
        while not self.stopping.wait(HOUSEKEEP_S):
            save = time.monotonic() - last_save >= SAVE_WATERMARK_S
            if save:
                last_save = time.monotonic()
            for channel in list(self.app.channels.values()):
                try:
                    channel.housekeep(save)
                except Exception:      # a failed save must not stop the others; it is retried next time
                    log.exception("housekeeping of %s failed", channel.publisher.name)
            if time.monotonic() - last_stats >= self.opts.stats_every:
                last_stats = time.monotonic()
                logged = self.log_counters(logged)

    def log_counters(self, previous: dict[str, Counter] | None = None) -> dict[str, Counter]:
        """Logs each session's counters that changed since `previous`; returns the current ones."""
        current = {k: Counter(c) for k, c in self.app.counters.items()}
        for key, counters in current.items():
            if counters and (previous is None or counters != previous.get(key)):
                stalls = self.app.channels[key].tp_stalls
                log.info("session %s: %s%s", key, dict(sorted(counters.items())),
                         f", tickerplant stalls {stalls}" if stalls else "")
        return current

    def stop(self, flush_timeout: float = 5.0) -> None:
        self.stopping.set()
        if self.acceptor is not None:
            self.acceptor.stop()
            self.acceptor = None
        if self._housekeeper.is_alive():
            self._housekeeper.join(timeout=5)
        if self.app is not None:
            for key, channel in self.app.channels.items():
                if not channel.flush(flush_timeout):
                    log.warning("session %s: fills still in flight at exit; they will be resent", key)
                channel.publisher.close()
            self.log_counters()
        if self.follower is not None:
            self.follower.stop()
            self.follower.subscriber.close()
