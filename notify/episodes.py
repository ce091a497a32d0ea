"""Episodes: an account's alert of one kind is open from its firing alert until the alert that clears
it (severity info). While an episode is open and not acknowledged (an `ack` row), a reminder is due
every `remind_s`; each reminder is a message of its own (alert id `SEQ.ROW.rN`, so its own idempotency
key). The state is a function of the journal's `alert`, `ack` and `notice` rows, rebuilt by replay."""
from __future__ import annotations

from dataclasses import dataclass, replace

from common.alerts import INFO
from notify.message import Message

REMINDER = ".r"


@dataclass
class Episode:
    message: Message               # the firing alert that opened it (or raised it again)
    channels: tuple[str, ...]
    since_ns: int                  # when its last notice (the alert or a reminder) was issued
    reminders: int = 0
    acked_by: str = ""


def reminder_of(alert: str) -> tuple[str, int] | None:
    """(the alert id, N) of a reminder's id `SEQ.ROW.rN`; None for an alert's own id."""
    base, sep, n = alert.rpartition(REMINDER)
    return (base, int(n)) if sep and n.isdigit() else None


class Episodes:
    def __init__(self, remind_s: float):
        self.remind_ns = int(remind_s * 1e9)
        self.open: dict[tuple[str, str], Episode] = {}
        self._by_alert: dict[str, Episode] = {}

    def alert(self, message: Message, channels: tuple[str, ...], time_ns: int) -> None:
        """An alert row: a firing one opens (or renews) its episode, an info one closes it."""
        key = (message.account, message.kind)
        old = self.open.pop(key, None)
        if old is not None:
            self._by_alert.pop(old.message.alert, None)
        if message.severity != INFO:
            self.open[key] = self._by_alert[message.alert] = Episode(message, channels, time_ns)

    def ack(self, account: str, kind: str, user: str) -> int:
        """An ack row (kind "" = every open episode of the account); how many episodes it acknowledged."""
        n = 0
        for (a, k), ep in self.open.items():
            if a == account and (not kind or k == kind) and not ep.acked_by:
                ep.acked_by, n = user or "?", n + 1
        return n

    def reminded(self, alert: str, n: int, time_ns: int) -> tuple[Message, tuple[str, ...]] | None:
        """A replayed notice of reminder N of `alert`: its message and channels (None if the episode ended)."""
        ep = self._by_alert.get(alert)
        if ep is None:
            return None
        if n > ep.reminders:
            ep.reminders, ep.since_ns = n, time_ns
        return self._reminder(ep, n), ep.channels

    def due(self, now_ns: int) -> list[tuple[Message, tuple[str, ...]]]:
        """The reminders due at `now_ns`, each counted as issued."""
        if self.remind_ns <= 0:
            return []
        out = []
        for ep in self.open.values():
            if not ep.acked_by and now_ns - ep.since_ns >= self.remind_ns:
                ep.reminders += 1
                ep.since_ns = now_ns
                out.append((self._reminder(ep, ep.reminders), ep.channels))
        return out

    @staticmethod
    def _reminder(ep: Episode, n: int) -> Message:
        m = ep.message
        return replace(m, alert=f"{m.alert}{REMINDER}{n}",
                       text=f"reminder {n}, not acknowledged: {m.text} "
                            f"(acknowledge: ack[`{m.account};`{m.kind}])")
