"""Rate limit for the gateway's log: hostile clients must not be able to fill the disk.

`RateLimit` is a logging filter: each kind of line (logger, level, message template) passes at most
`burst` times per `interval` seconds; the rest are counted, and the next line of that kind that
passes says how many were suppressed. `install()` puts one on every handler of the root logger
(the gateway process's handlers, set up by common.cli.setup_logging).
"""
from __future__ import annotations

import logging
import time

BURST, INTERVAL_S = 10, 60.0


class RateLimit(logging.Filter):
    def __init__(self, burst: int = BURST, interval: float = INTERVAL_S, clock=time.monotonic):
        super().__init__()
        self.burst, self.interval, self.clock = burst, interval, clock
        self._windows: dict[tuple, list] = {}      # kind -> [window start, passed, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        kind = (record.name, record.levelno, record.msg if isinstance(record.msg, str) else type(record.msg))
        window = self._windows.get(kind)
        if window is None or now - window[0] >= self.interval:
            suppressed = window[2] if window else 0
            if len(self._windows) > 10_000:     # bounded: forget old kinds rather than grow
                self._windows.clear()
            window = self._windows[kind] = [now, 0, 0]
            if suppressed:
                record.msg = f"{record.msg} ({suppressed} similar lines suppressed)"
        if window[1] >= self.burst:
            window[2] += 1
            return False
        window[1] += 1
        return True


def install(burst: int = BURST, interval: float = INTERVAL_S) -> RateLimit:
    limit = RateLimit(burst, interval)
    for handler in logging.getLogger().handlers:
        handler.addFilter(limit)
    return limit
