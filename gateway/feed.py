"""Live margin and alert rows from the tickerplant into the gateway's Hub.

A tickerplant Subscriber (tickerplant/client.py, synchronous and pollable) runs in its own thread:
handshake + journal replay, then `poll` in a loop; each batch is handed to the event loop with
`call_soon_threadsafe(hub.publish, ...)`, so the hub and every socket write stay on the loop thread.
If the tickerplant is not up yet, the thread retries every second until it is.
"""
from __future__ import annotations

import asyncio
import logging
import threading

from gateway.hub import SUBSCRIBABLE, Hub
from tickerplant.client import Subscriber, TickerplantError

log = logging.getLogger("gateway.feed")


class Feed:
    def __init__(self, hub: Hub, control: str, loop: asyncio.AbstractEventLoop, name: str = "gateway"):
        self.hub = hub
        self.control = control
        self.loop = loop
        self.name = name
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _deliver(self, table: str, columns: dict, seq: int) -> None:
        if self.connected.is_set():              # the journal replay at start-up is history, not news
            self.loop.call_soon_threadsafe(self.hub.publish, table, columns)

    def _run(self) -> None:
        while not self._stop.is_set():
            sub = Subscriber(self.name, control=self.control, tables=list(SUBSCRIBABLE), on_batch=self._deliver)
            try:
                sub.start()
                self.connected.set()
                log.info("subscribed to %s (margin, alert) at seq %d", self.control, sub.seq)
                while not self._stop.is_set():
                    sub.poll(100)
            except (TickerplantError, OSError) as e:
                log.warning("tickerplant %s: %s; retrying in 1s", self.control, e)
                self._stop.wait(1.0)
            except Exception:
                log.exception("tickerplant subscription failed; retrying in 1s")
                self._stop.wait(1.0)
            finally:
                self.connected.clear()
                sub.close()
