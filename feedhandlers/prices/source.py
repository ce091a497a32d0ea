"""The adapter interface every quote source implements: the simulator, the CSV replay, a vendor feed.

The feed loop (feedhandlers/prices/feed.py) asks a source when its next batch is due, waits until then
(serving control requests meanwhile) and takes the batch. A vendor adapter that receives quotes on its
own thread or socket queues them, answers `next_due_ns` with "now" while it has some, and returns them
from `poll` as one columnar `quote` batch.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class UnsupportedEvent(RuntimeError):
    """The source cannot apply market events (only the simulator can)."""


class QuoteSource(ABC):
    """A source of `quote` batches: {column: array} with the columns of the quote table in q/schema.q."""

    name = "source"

    @abstractmethod
    def next_due_ns(self, now_ns: int) -> int | None:
        """Wall-clock time (UTC ns) at which the next batch is due, or None when the source is exhausted."""

    @abstractmethod
    def poll(self, now_ns: int) -> dict[str, np.ndarray] | None:
        """The quotes due by `now_ns` as one batch, or None when nothing is due yet."""

    def start(self, now_ns: int) -> None:
        """Called once when the feed starts publishing: a paced source counts its schedule from now_ns."""

    def apply_event(self, event) -> None:
        """Applies a market event (feedhandlers/prices/events.py MarketEvent) to the next quotes."""
        raise UnsupportedEvent(f"the {self.name} source does not take market events")

    def status(self) -> dict:
        """What the source reports through the control socket's `status` op."""
        return {"source": self.name}

    def close(self) -> None:
        """Releases what the source holds (sockets, files)."""
