"""One FIX session's path into the tickerplant: its Publisher, the ack policy, and its watermark.

Two ack policies, both exactly-once (see docs/fix.md):
- `sync`: the booking is published with `publish_sync`; the QuickFIX callback returns (and QuickFIX
  advances the incoming sequence number) only once the tickerplant says the rows are durable.
- `pipelined`: bookings are published asynchronously, up to `window` in flight; the callback
  returns at once. The durable watermark (feedhandlers/fix/watermark.py) follows the cumulative
  acks and is what a restart rewinds the session to, so anything not durable is resent.
If the tickerplant does not acknowledge in time, the session thread holds (retrying, logging) and
acknowledges nothing more over FIX until it does: nothing is lost, the counterparty sees a stalled
session. The Publisher resends unacknowledged messages with their msgids, which the tickerplant
de-duplicates, so waiting longer never books twice.
"""
from __future__ import annotations

import logging
import threading
import time

from feedhandlers.fix.watermark import PendingAcks, WatermarkFile

log = logging.getLogger("feedhandlers.fix.channel")

SYNC, PIPELINED = "sync", "pipelined"


class Stopping(RuntimeError):
    """The feedhandler is shutting down while a booking is not yet durable (it stays unacknowledged)."""


class SessionChannel:
    def __init__(self, publisher, mode: str, watermark: WatermarkFile, durable_seq: int,
                 window: int = 1000, ack_timeout: float = 5.0, stopping: threading.Event | None = None):
        if mode not in (SYNC, PIPELINED):
            raise ValueError(f"unknown ack mode {mode!r} (sync or pipelined)")
        self.publisher = publisher
        self.mode = mode
        self.window = window
        self.ack_timeout = ack_timeout
        self.watermark = watermark
        self.pending = PendingAcks(durable_seq)
        self.lock = threading.RLock()          # the Publisher's socket is used by one thread at a time
        self.stopping = stopping or threading.Event()
        self.tp_stalls = 0
        self._saved = durable_seq

    def book(self, fix_seq: int, batches: list[tuple[str, dict]]) -> None:
        """Publishes `batches` (table, batch) for incoming message `fix_seq`, per the ack policy."""
        with self.lock:
            self._check_restart(fix_seq)
            stalled = False
            for table, batch in batches:
                msgid = self.publisher.next_msgid
                try:
                    self.publisher.publish(table, batch)
                except TimeoutError:     # not accepted now; the Publisher keeps it and resends it
                    stalled = True
            self.pending.published(msgid, fix_seq)
            self.pending.processed(fix_seq)
            if stalled or self.mode == SYNC or len(self.pending) > self.window:
                self._wait_durable()

    def processed(self, fix_seq: int) -> None:
        """Incoming message `fix_seq` needed no booking (other ExecType, duplicate, rejected)."""
        with self.lock:
            self._check_restart(fix_seq)
            self.pending.processed(fix_seq)

    def _check_restart(self, fix_seq: int) -> None:
        if fix_seq > self.pending.last_processed:
            return
        log.info("%s: incoming sequence numbers restarted (seq %d after %d)", self.publisher.name,
                 fix_seq, self.pending.last_processed)
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
                log.warning("tickerplant has not acknowledged %s's fills for %.1fs (%d in flight); "
                            "holding the FIX session until it does", self.publisher.name,
                            self.ack_timeout, len(self.pending))
                if self.stopping.is_set():
                    raise Stopping(f"{self.publisher.name}: stopping with fills not yet durable") from None

    def housekeep(self) -> None:
        """Collects acks that arrived and saves the watermark if it moved (called periodically)."""
        with self.lock:
            self.publisher.poll(0)
            self.pending.acked(self.publisher.acked)
            self._save(self.pending.durable_seq)

    def flush(self, timeout: float) -> bool:
        """Waits up to `timeout` s for everything in flight to be durable; saves the watermark."""
        deadline = time.monotonic() + timeout
        with self.lock:
            try:
                self.publisher.flush(timeout=max(0.0, deadline - time.monotonic()))
                ok = True
            except TimeoutError:
                ok = False
        self.housekeep()
        return ok
