"""Timing shared by the benchmarks: per-call latencies in microseconds after a warm-up."""
from __future__ import annotations

import time

import numpy as np


def latencies_us(step, events: int, warmup: int = 200) -> np.ndarray:
    """Runs step(e) for e in range(events), timing each call in microseconds, after `warmup` untimed calls."""
    for e in range(min(warmup, events)):
        step(e)
    out = np.empty(events)
    clock = time.perf_counter_ns
    for e in range(events):
        t0 = clock()
        step(e)
        out[e] = clock() - t0
    return out / 1e3
