"""The outbox: which (alert, channel) deliveries are still owed, their attempts and when each is due.
It is a function of the journal only: an `alert` row adds one delivery per routed channel, a `notice`
row of ours moves its attempts on, and a final one (`sent` / `failed`) removes it. So a notifier
restarted after a kill -9 replays the journal and owes exactly what was not yet delivered."""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from notify.message import Message, Previous

SENT, RETRY, FAILED = "sent", "retry", "failed"
FINAL = (SENT, FAILED)


@dataclass
class Delivery:
    message: Message
    channel: str
    attempts: int = 0
    due: float = 0.0              # time.monotonic() at which the next attempt may start
    busy: bool = False            # an attempt is in flight


class Outbox:
    def __init__(self, backoff_min: float, backoff_max: float, max_attempts: int):
        self.backoff_min, self.backoff_max, self.max_attempts = backoff_min, backoff_max, max_attempts
        self.owed: dict[tuple[str, str], Delivery] = {}
        self.previous: dict[tuple[str, str], Previous] = {}     # (account, kind) -> the last alert's numbers
        self._queue: list[tuple[float, int, tuple[str, str]]] = []    # (due, tiebreak, key), lazily pruned
        self._tie = itertools.count()

    def __len__(self) -> int:
        return len(self.owed)

    def add(self, message: Message, channels: tuple[str, ...], now: float) -> None:
        """An alert to deliver on each channel (a channel it is already owed on is left as it is)."""
        for ch in channels:
            key = (message.alert, ch)
            if key not in self.owed:
                self.owed[key] = Delivery(message, ch, due=now)
                heapq.heappush(self._queue, (now, next(self._tie), key))
        self.previous[(message.account, message.kind)] = Previous(message.time, message.severity, message.value)

    def record(self, alert: str, channel: str, status: str, attempts: int, now: float) -> None:
        """A notice row (ours, live or replayed): a final status removes the delivery, a retry backs off."""
        key = (alert, channel)
        d = self.owed.get(key)
        if d is None:
            return
        if status in FINAL:
            del self.owed[key]
            return
        d.attempts = max(d.attempts, attempts)
        d.due = now + self.backoff(d.attempts)
        if not d.busy:
            heapq.heappush(self._queue, (d.due, next(self._tie), key))

    def backoff(self, attempts: int) -> float:
        return min(self.backoff_max, self.backoff_min * 2 ** max(0, attempts - 1))

    def due(self, now: float, limit: int) -> list[Delivery]:
        """Up to `limit` deliveries whose next attempt is due, marked busy."""
        out = []
        q = self._queue
        while q and len(out) < limit and q[0][0] <= now:
            _, _, key = heapq.heappop(q)
            d = self.owed.get(key)
            if d is None or d.busy or d.due > now:
                continue
            d.busy = True
            out.append(d)
        return out

    def finished(self, d: Delivery, ok: bool, retry: bool, now: float) -> str:
        """The attempt of `d` ended: its status (sent / retry / failed); a retry is queued after its backoff."""
        d.busy = False
        d.attempts += 1
        key = (d.message.alert, d.channel)
        if ok or not retry or d.attempts >= self.max_attempts:
            self.owed.pop(key, None)
            return SENT if ok else FAILED
        d.due = now + self.backoff(d.attempts)
        heapq.heappush(self._queue, (d.due, next(self._tie), key))
        return RETRY

    def next_due(self) -> float | None:
        return self._queue[0][0] if self._queue else None
