"""What the benchmarks share: free ports, waiting for a process to answer, a tickerplant subprocess,
CPU time of a process, per-call latencies, and the raw column bytes of an rdb table."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common.net import free_port
from common.rpc import rpc_answer

REPO = Path(__file__).resolve().parent.parent


def free_endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def wait_for(predicate, what: str, timeout: float = 120.0):
    """predicate()'s first truthy value, polled until `timeout` seconds (then RuntimeError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")



def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TickerplantProcess:
    """`python -m tickerplant` on free ports in a temporary journal directory (logging warnings only)."""

    def __init__(self, *args: str):
        self.dir = tempfile.mkdtemp(prefix="bench_tp_")
        self.ingest, self.pub, self.control = (free_endpoint() for _ in range(3))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tickerplant", "--ingest", self.ingest, "--pub", self.pub,
             "--control", self.control, "--journal", os.path.join(self.dir, "journal"),
             "--log-level", "WARNING", *args], cwd=REPO)
        wait_for(lambda: rpc_answer(self.control), "the tickerplant", timeout=30)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


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


def raw_bytes(table) -> int:
    """Bytes of an rdb Table's live column data (rows x stored item sizes), the baseline of the
    memory ratios (bench_rdb, tests/test_rdb_store.py)."""
    return sum(table.column(name).nbytes for name in table.column_names)
