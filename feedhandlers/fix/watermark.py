"""The durable watermark of a FIX session: every booking from an incoming MsgSeqNum <= seq is durable.

`PendingAcks` (pure) maps the tickerplant publisher's msgids in flight to the FIX sequence numbers
whose bookings they carry, and computes the watermark from the cumulative acks. `WatermarkFile`
persists it (atomic replace). At start-up the acceptor rewinds the session's next expected incoming
MsgSeqNum to min(expected, watermark + 1) (to 1 without a watermark file), so the counterparty
resends whatever may not have reached the journal; ExecID de-duplication drops the rest. A
watermark is only ever written after the acks that justify it, so it can lag (more resent, nothing
lost) but never lead. When the sequence numbers restart (a Logon with ResetSeqNumFlag, the daily
session reset) the first application message after it has a seq not above the last one handled:
the channel then restarts its watermark there and saves it at once, before booking that message.
"""
from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path


class PendingAcks:
    def __init__(self, durable_seq: int = 0):
        self._pending: deque[tuple[int, int]] = deque()      # (msgid, fix seq), msgids increasing
        self._processed = durable_seq                          # the last incoming seq fully handled

    def __len__(self) -> int:
        return len(self._pending)

    def published(self, msgid: int, fix_seq: int) -> None:
        """The booking of incoming message `fix_seq` went out as publisher message `msgid`."""
        self._pending.append((msgid, fix_seq))

    def processed(self, fix_seq: int) -> None:
        """Incoming message `fix_seq` is handled (booked and published, or needing no booking)."""
        self._processed = fix_seq

    def acked(self, msgid: int) -> None:
        """The tickerplant acknowledged every publisher message up to `msgid` as durable."""
        while self._pending and self._pending[0][0] <= msgid:
            self._pending.popleft()

    def restart(self, fix_seq: int) -> None:
        """The session's sequence numbers were reset: the next handled is after `fix_seq`.

        Bookings still in flight keep travelling (the Publisher delivers them) but no longer hold
        the watermark back: messages of the old numbering cannot be asked for again."""
        self._pending.clear()
        self._processed = fix_seq

    @property
    def last_processed(self) -> int:
        return self._processed

    @property
    def durable_seq(self) -> int:
        """The highest incoming seq such that it and everything before it is durable."""
        if self._pending:
            return self._pending[0][1] - 1
        return self._processed


class WatermarkFile:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def load(self) -> int | None:
        """The saved durable seq, or None if never written or unreadable (then rewind fully)."""
        try:
            return int(json.loads(self.path.read_text())["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, seq: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"seq": seq}))
        os.replace(tmp, self.path)


def rewind_target(next_target: int, saved: int | None) -> int:
    """The next expected incoming seq to restart from, given the store's and the saved watermark."""
    if saved is None:
        return 1
    return max(1, min(next_target, saved + 1))
