"""Paces a sender at a fixed message rate (the OMS simulator's `--rate`)."""
from __future__ import annotations

import threading
import time


def paced(count: int, rate: float, stop: threading.Event):
    """Yields 0, 1, 2 ... at `rate` per second (as fast as possible if rate <= 0) until count or stop."""
    start = time.monotonic()
    n = 0
    while not stop.is_set() and (count <= 0 or n < count):
        if rate > 0:
            wait = start + n / rate - time.monotonic()
            if wait > 0 and stop.wait(wait):
                return
        yield n
        n += 1
