"""The notifier's process loop: a tickerplant Subscriber to `alert`, `alertrule` and `account` (an alert
goes to the channels of the rule that raised it, else to the routes of config/notify.toml), `ack`
(acknowledged episodes get no more reminders) and, during the journal replay, its own `notice` rows,
which rebuild the outbox and the reminders issued; reminders of open episodes; the channels' attempts as asyncio tasks (at most
`delivery.concurrency` in flight), each attempt's `notice` row published back through the tickerplant,
and a `status` RPC endpoint."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import numpy as np

from common.alertrules import AccountLimits, RuleBook, rules_from_batch
from common.codec import text_array
from common.rpc import RpcServer
from notify.channels import Channel, Outcome, make_channel
from notify.config import NotifyConfig
from notify.episodes import Episodes, reminder_of
from notify.message import build_message
from notify.outbox import FINAL, Delivery, Outbox
from tickerplant.client import Publisher, Subscriber, TickerplantError

log = logging.getLogger("notify")
IDLE_S = 0.01


class Notifier:
    def __init__(self, config: NotifyConfig, control: str, ingest: str, status: str | None, name: str = "notify"):
        self.config = config
        d = config.delivery
        self.channels: dict[str, Channel] = {n: make_channel(s, config.smtp, d.timeout_s)
                                             for n, s in config.channels.items()}
        self.outbox = Outbox(d.backoff_min_s, d.backoff_max_s, d.max_attempts)
        self.episodes = Episodes(d.remind_s)
        self.counters: Counter = Counter()
        self.live = False
        self.rules = RuleBook()
        self.accounts: dict[str, AccountLimits] = {}
        self.sub = Subscriber(name, control=control, tables=["account", "alertrule", "alert", "ack", "notice"],
                              on_batch=self._on_batch)
        self.publisher = Publisher(name, ingest)
        self.rpc = RpcServer(status, {"status": self._status}) if status else None
        self.notices: list[dict] = []
        self.inflight: set[asyncio.Task] = set()

    # ---- input -------------------------------------------------------------------------------------
    def _on_batch(self, table: str, cols: dict, seq: int) -> None:
        now = time.monotonic()
        if table == "alert":
            names = list(cols)
            for i in range(len(cols["sym"])):
                row = {n: cols[n][i] for n in names}
                message = build_message(f"{seq}.{i}", row, self.config.dashboard,
                                        self.outbox.previous.get((str(row["sym"]), str(row["kind"]))))
                channels = self.channels_for(message.account, message.kind)
                self.outbox.add(message, channels, now)
                self.episodes.alert(message, channels, int(np.datetime64(row["time"], "ns").astype(np.int64)))
                self.counters["alerts"] += 1
        elif table == "ack":
            for account, kind, user in zip(cols["sym"], cols["kind"], cols["user"]):
                self.counters["acked"] += self.episodes.ack(str(account), str(kind), str(user))
        elif table == "alertrule":
            self.rules.apply(rules_from_batch(cols))       # calc raises the alert for a rule it cannot use
        elif table == "account":
            for sym, desk, threshold, callpct, imjump, mins in zip(cols["sym"], cols["desk"], cols["threshold"],
                                                                   cols["callpct"], cols["imjump"], cols["imjumpmins"]):
                self.accounts[str(sym)] = AccountLimits(str(sym), str(desk), float(threshold), float(callpct),
                                                        float(imjump), float(mins))
        elif table == "notice" and not self.live:     # live, our own rows only echo what we already know
            times = np.asarray(cols["time"]).astype("datetime64[ns]").view(np.int64)
            for alert, channel, status, attempts, t in zip(cols["alert"], cols["channel"], cols["status"],
                                                           cols["attempts"], times):
                alert, channel, status = str(alert), str(channel), str(status)
                reminder = reminder_of(alert)
                if reminder is not None:           # a reminder issued before the restart
                    issued = self.episodes.reminded(*reminder, int(t))
                    if issued is not None and status not in FINAL and (alert, channel) not in self.outbox.owed:
                        self.outbox.add(issued[0], (channel,), now)
                self.outbox.record(alert, channel, status, int(attempts), now)

    def channels_for(self, account: str, kind: str) -> tuple[str, ...]:
        """The channels of the rule that applies to the account and kind, else the configured routes."""
        rule = self.rules.effective(self.accounts.get(account) or AccountLimits(account), kind)
        return rule.channels if rule is not None and rule.channels else self.config.channels_for(account)

    # ---- delivery ----------------------------------------------------------------------------------
    async def _attempt(self, d: Delivery) -> None:
        channel = self.channels.get(d.channel)
        if channel is None:
            outcome = Outcome(False, f"channel {d.channel!r} is not configured (any more)")
        else:
            outcome = await channel.send(d.message)
        status = self.outbox.finished(d, outcome.ok, outcome.retry, time.monotonic())
        self.counters[status] += 1
        if status != "sent":
            log.warning("notify: %s of alert %s on %s (attempt %d): %s", status, d.message.alert, d.channel,
                        d.attempts, outcome.error)
        m = d.message
        self.notices.append({"sym": m.account, "alert": m.alert, "kind": m.kind, "severity": m.severity,
                             "channel": d.channel, "status": status, "attempts": d.attempts,
                             "error": outcome.error, "idem": m.key(d.channel)})

    def _remind(self) -> None:
        for message, channels in self.episodes.due(time.time_ns()):
            self.outbox.add(message, channels, time.monotonic())
            self.counters["reminders"] += 1

    def _dispatch(self) -> None:
        room = self.config.delivery.concurrency - len(self.inflight)
        for d in self.outbox.due(time.monotonic(), room) if room > 0 else ():
            task = asyncio.get_running_loop().create_task(self._attempt(d))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    def _publish_notices(self) -> None:
        if not self.notices:
            return
        rows, self.notices = self.notices, []
        batch = {"time": np.full(len(rows), time.time_ns(), dtype=np.int64).view("datetime64[ns]")}
        for col in ("sym", "alert", "kind", "severity", "channel", "status"):
            batch[col] = text_array([r[col] for r in rows])
        batch["attempts"] = np.array([r["attempts"] for r in rows], dtype=np.int64)
        batch["error"] = text_array([r["error"] for r in rows])
        batch["idem"] = text_array([r["idem"] for r in rows])
        self.publisher.publish("notice", batch)
        self.counters["notices"] += len(rows)

    def _status(self, request: dict) -> dict:
        return {"owed": len(self.outbox), "inflight": len(self.inflight), "seq": self.sub.seq,
                "pending_acks": self.publisher.pending, "channels": sorted(self.channels),
                **{k: int(v) for k, v in self.counters.items()}}

    # ---- loop ----------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self.sub.start()                  # replays the journal: alerts and our notices rebuild the outbox
        self.live = True
        log.info("notify: replayed to seq %d, %d deliveries owed", self.sub.seq, len(self.outbox))
        try:
            while not stop.is_set():
                self.sub.poll(0)
                if self.rpc is not None:
                    self.rpc.drain()
                self._remind()
                self._dispatch()
                self._publish_notices()
                self.publisher.poll(0)
                await asyncio.sleep(0 if self.notices else IDLE_S)
            if self.inflight:              # let attempts under way finish and be recorded
                await asyncio.wait(self.inflight, timeout=self.config.delivery.timeout_s + 1)
            self._publish_notices()
            try:
                self.publisher.flush(timeout=5.0)
            except TickerplantError as e:     # unacknowledged notices are resent... or redelivered after replay
                log.warning("notify: notices not acknowledged at exit: %s", e)
        finally:
            for channel in self.channels.values():
                await channel.close()
            self.sub.close()
            self.publisher.close()
            if self.rpc is not None:
                self.rpc.close()
