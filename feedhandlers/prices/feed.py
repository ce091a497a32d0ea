"""The feed loop: publishes a QuoteSource's batches, fires scheduled events, serves the control socket.

Batches go out through tickerplant.client.Publisher without waiting for each acknowledgement; when
`max_pending` batches are unacknowledged the loop waits for acks (backpressure), so a slow
tickerplant slows the feed instead of growing its memory.

Control ops (common/rpc.py request/reply):
  `event`    {"spec": "antitrust AMD"}     applies a market event now (feedhandlers/prices/events.py)
  `schedule` {"spec": "+30 antitrust AMD"} schedules one (`+SECONDS` counts from the feed's start)
  `status`   {}                            source status, rows and batches published, pending events
  `stop`     {}                            publishes what is due, flushes, and ends the loop
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import zmq

from common.rpc import RpcServer
from feedhandlers.prices.events import MarketEvent, parse_event, parse_schedule
from feedhandlers.prices.source import QuoteSource
from tickerplant.client import Publisher, TickerplantTimeout

log = logging.getLogger(__name__)
IDLE_POLL_MS = 100


class PriceFeed:
    def __init__(self, source: QuoteSource, publisher: Publisher, sectors: dict[str, str],
                 control_endpoint: str | None = None, start_ns: int | None = None, max_pending: int = 64):
        self.source = source
        self.publisher = publisher
        self.max_pending = max_pending
        self.sectors = sectors
        self.start_ns = start_ns if start_ns is not None else time.time_ns()
        self.schedule: list[tuple[int, MarketEvent]] = []
        self.rows = 0
        self.batches = 0
        self.source_errors = 0
        self.stopping = False
        self.control = RpcServer(control_endpoint, {"event": self._on_event, "schedule": self._on_schedule,
                                                    "status": self._on_status, "stop": self._on_stop}) \
            if control_endpoint else None
        self.poller = zmq.Poller()
        self.poller.register(publisher.socket, zmq.POLLIN)
        if self.control is not None:
            self.poller.register(self.control.socket, zmq.POLLIN)

    def add_event(self, due_ns: int, event: MarketEvent) -> None:
        """Schedules an event for wall-clock time due_ns (UTC ns); one already due fires on the next loop."""
        self.schedule.append((due_ns, event))
        self.schedule.sort(key=lambda entry: entry[0])

    def apply(self, event: MarketEvent) -> None:
        self.source.apply_event(event)
        log.info("event applied: %s", event.text)

    def _on_event(self, request: dict) -> dict:
        event = parse_event(str(request.get("spec", "")), self.sectors)
        self.apply(event)
        return {"event": event.text, "shocks": event.shocks, "vol": event.vol}

    def _on_schedule(self, request: dict) -> dict:
        due, event = parse_schedule(str(request.get("spec", "")), self.start_ns, self.sectors)
        self.add_event(due, event)
        return {"due_ns": due, "event": event.text}

    def _on_status(self, request: dict) -> dict:
        return {**self.source.status(), "rows": self.rows, "batches": self.batches,
                "unacked": self.publisher.pending, "rejected": len(self.publisher.rejected),
                "source_errors": self.source_errors,
                "scheduled": [[due, event.text] for due, event in self.schedule]}

    def _on_stop(self, request: dict) -> dict:
        self.stopping = True
        return {"rows": self.rows}

    def _fire_due_events(self, now_ns: int) -> None:
        while self.schedule and self.schedule[0][0] <= now_ns:
            _, event = self.schedule.pop(0)
            try:
                self.apply(event)
            except (ValueError, RuntimeError) as e:       # e.g. a source that takes no events
                log.error("scheduled event %r not applied: %s", event.text, e)

    def _wait(self, until_ns: int) -> None:
        """Serves control requests and acks until `until_ns` (or the next scheduled event, or 100 ms)."""
        if self.schedule:
            until_ns = min(until_ns, self.schedule[0][0])
        self._serve(max(0, min(IDLE_POLL_MS, (until_ns - time.time_ns()) // 1_000_000)))

    def _serve(self, timeout_ms: int) -> None:
        ready = dict(self.poller.poll(timeout_ms))
        if self.control is not None and self.control.socket in ready:
            self.control.drain()
        self.publisher.poll(0)

    def _take(self, now_ns: int) -> dict | None:
        """The source's due batch; a failing source (a vendor adapter's bug) is logged and counted, not fatal."""
        try:
            return self.source.poll(now_ns)
        except Exception:                         # noqa: BLE001 - an adapter must not take the feed down
            self.source_errors += 1
            log.exception("source %s failed to produce quotes", self.source.name)
            self._serve(IDLE_POLL_MS)
            return None

    def _publish(self, batch: dict) -> None:
        try:
            self.publisher.publish("quote", batch)
        except TickerplantTimeout as e:           # the batch is kept and resent when the tickerplant is back
            log.warning("%s", e)
        self.rows += len(batch["sym"])
        self.batches += 1

    def run(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Runs until the source is exhausted, `stop()` is true or a `stop` request; returns rows published."""
        self.source.start(self.start_ns)
        while not (self.stopping or stop()):
            now = time.time_ns()
            self._fire_due_events(now)
            due = self.source.next_due_ns(now)
            if due is None:
                break
            if due > now:
                self._wait(due)
                continue
            batch = self._take(now)
            if batch is not None:
                self._publish(batch)
            self._serve(0)
            while self.publisher.pending >= self.max_pending and not self.stopping:
                self._serve(IDLE_POLL_MS)
        return self.rows

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
        self.source.close()
