"""One FIX session's path into the tickerplant: its Publisher, the ack policy, and its watermark.

Two ack policies, both exactly-once (see docs/fix.md):
- `sync`: each message's rows are published and the QuickFIX callback returns (so QuickFIX advances
  the incoming sequence number) only once the tickerplant says they are durable.
- `pipelined`: rows are buffered and published as one batch once the oldest is `flush_s` old (checked
  on each message, and by the housekeeping tick when the session is quiet) or `max_batch` rows are
  waiting, with at most `window` batches unacknowledged; the callback returns at once. The
  durable watermark (feedhandlers/fix/watermark.py) follows the cumulative acks and is what a restart
  rewinds the session to, so anything not durable is resent by the counterparty.
If the tickerplant does not acknowledge in time, the session thread holds (retrying, logging) and
takes no further FIX message until it does: nothing is lost, the counterparty sees a stalled
session. The Publisher resends unacknowledged messages with their msgids, which the tickerplant
de-duplicates, so waiting longer never books twice.
"""
from __future__ import annotations

import logging
import threading
import time

from feedhandlers.fix.batches import fill_batch
from feedhandlers.fix.book import FillRow
from feedhandlers.fix.watermark import PendingAcks, WatermarkFile

log = logging.getLogger("feedhandlers.fix.channel")

SYNC, PIPELINED = "sync", "pipelined"


class Stopping(RuntimeError):
    """The feedhandler is shutting down while a booking is not yet durable (it stays unacknowledged)."""


class SessionChannel:
    def __init__(self, publisher, mode: str, watermark: WatermarkFile, durable_seq: int, window: int = 100,
                 max_batch: int = 1000, flush_s: float = 0.001, ack_timeout: float = 5.0,
                 stopping: threading.Event | None = None):
        if mode not in (SYNC, PIPELINED):
            raise ValueError(f"unknown ack mode {mode!r} (sync or pipelined)")
        self.publisher = publisher
        self.mode = mode
        self.window = window
        self.max_batch = max_batch
        self.flush_s = flush_s
        self.ack_timeout = ack_timeout
        self.watermark = watermark
        self.pending = PendingAcks(durable_seq)
        self.lock = threading.RLock()          # the Publisher's socket is used by one thread at a time
        self.stopping = stopping or threading.Event()
        self.tp_stalls = 0
        self._saved = durable_seq
        self._rows: list[FillRow] = []         # buffered, not yet published (pipelined)
        self._alerts: list[dict] = []
        self._first_buffered = 0               # incoming seq of the first message in the buffer
        self._buffered_at = 0.0                # monotonic time the buffer's first message came

    def book(self, fix_seq: int, rows: list[FillRow], alerts: list[dict]) -> None:
        """Takes the `fill` rows and `alert` batches of incoming message `fix_seq`, per the ack policy."""
        with self.lock:
            self._check_restart(fix_seq)
            now = time.monotonic()
            if not (self._rows or self._alerts):
                self._first_buffered, self._buffered_at = fix_seq, now
            self._rows.extend(rows)
            self._alerts.extend(alerts)
            self.pending.processed(fix_seq)
            stalled = False
            if self.mode == SYNC or len(self._rows) >= self.max_batch or now - self._buffered_at >= self.flush_s:
                stalled = self._publish_buffer()
            if stalled or self.mode == SYNC or self.publisher.pending > self.window:
                self._wait_durable()

    def processed(self, fix_seq: int) -> None:
        """Incoming message `fix_seq` needed no booking (other ExecType, duplicate, rejected)."""
        with self.lock:
            self._check_restart(fix_seq)
            self.pending.processed(fix_seq)

    def durable_seq(self) -> int:
        with self.lock:
            if self._rows or self._alerts:
                return min(self.pending.durable_seq, self._first_buffered - 1)
            return self.pending.durable_seq

    def _publish_buffer(self) -> bool:
        """Publishes the buffered alerts and rows; True if the tickerplant did not take them now."""
        if not (self._rows or self._alerts):
            return False
        batches = [("alert", a) for a in self._alerts]
        if self._rows:
            batches.append(("fill", fill_batch(self._rows)))
        stalled = False
        msgid = 0
        for table, batch in batches:
            msgid = self.publisher.next_msgid
            try:
                self.publisher.publish(table, batch)
            except TimeoutError:     # not accepted now; the Publisher keeps it and resends it
                stalled = True
        self.pending.published(msgid, self._first_buffered)
        self._rows, self._alerts = [], []
        return stalled

    def _check_restart(self, fix_seq: int) -> None:
        if fix_seq > self.pending.last_processed:
            return
        log.info("%s: incoming sequence numbers restarted (seq %d after %d)", self.publisher.name,
                 fix_seq, self.pending.last_processed)
        self._publish_buffer()
        self.pending.restart(fix_seq - 1)
        self._save(fix_seq - 1)

    def _save(self, seq: int) -> None:
        if seq != self._saved:
            self.watermark.save(seq)
            self._saved = seq

    def _wait_durable(self) -> None:
        while True:
            try:
                self.publisher.flush(timeout=self.ack_timeout)
                self.pending.acked(self.publisher.acked)
                return
            except TimeoutError:
                self.tp_stalls += 1
                self.pending.acked(self.publisher.acked)
                log.warning("tickerplant has not acknowledged %s's fills for %.1fs (%d batches in flight); "
                            "holding the FIX session until it does", self.publisher.name,
                            self.ack_timeout, self.publisher.pending)
                if self.stopping.is_set():
                    raise Stopping(f"{self.publisher.name}: stopping with fills not yet durable") from None

    def housekeep(self, save: bool = True, wait: bool = False) -> None:
        """Publishes a buffer the session left waiting and collects acks (every tick); saves the
        watermark if it moved and `save` (a watermark that lags only means more is resent).
        Skipped, unless `wait`, while the session thread is busy in the channel (it does the same)."""
        if not self.lock.acquire(blocking=wait):
            return
        try:
            if (self._rows or self._alerts) and time.monotonic() - self._buffered_at >= self.flush_s:
                self._publish_buffer()
            self.publisher.poll(0)
            self.pending.acked(self.publisher.acked)
            if save:
                self._save(self.durable_seq())
        finally:
            self.lock.release()

    def flush(self, timeout: float) -> bool:
        """Publishes the buffer and waits up to `timeout` s for all of it to be durable."""
        with self.lock:
            self._publish_buffer()
            try:
                self.publisher.flush(timeout=timeout)
                ok = True
            except TimeoutError:
                ok = False
        self.housekeep(wait=True)
        return ok
