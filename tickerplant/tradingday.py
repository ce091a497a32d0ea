"""Trading-day arithmetic for the end-of-day roll at a configurable UTC time of day.

The trading date of an instant is the UTC date on which its trading day ends: with the roll at
00:00 it is the plain UTC date; with the roll at 21:00, Monday 21:30 UTC belongs to Tuesday.
"""

from __future__ import annotations

import re

import numpy as np

DAY_NS = 86_400 * 1_000_000_000
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def parse_eod(text: str) -> int:
    """'HH:MM' or 'HH:MM:SS' (UTC) -> nanoseconds after midnight; ValueError if malformed."""
    m = _TIME_RE.match(text.strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59 or int(m.group(3) or 0) > 59:
        raise ValueError(f"end-of-day time must be HH:MM or HH:MM:SS (UTC), got {text!r}")
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    return ((h * 60 + mi) * 60 + s) * 1_000_000_000


def _shift(eod_ns: int) -> int:
    return (DAY_NS - eod_ns) % DAY_NS


def trading_date(now_ns: int, eod_ns: int) -> str:
    """YYYY-MM-DD of the trading day holding the instant now_ns."""
    return str(np.datetime64(now_ns + _shift(eod_ns), "ns").astype("datetime64[D]"))


def next_roll(now_ns: int, eod_ns: int) -> int:
    """The first end-of-day instant strictly after now_ns."""
    shift = _shift(eod_ns)
    return ((now_ns + shift) // DAY_NS + 1) * DAY_NS - shift
