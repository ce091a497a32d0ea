"""Test support for the tickerplant: a `python -m tickerplant` subprocess on free ports, and
subscribers that collect what they receive (used by tests/test_tickerplant*.py)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from common.rpc import RpcClient, RpcError
from tickerplant.client import Subscriber


@dataclass
class TickerplantUnderTest:
    """Endpoints and journal of a tickerplant started by `start`; restartable on the same ports."""
    spawn: object
    journal: str
    ingest: str
    pub: str
    control: str
    args: tuple = ()
    proc: object = None

    def start(self) -> "TickerplantUnderTest":
        self.proc = self.spawn("tickerplant", "--ingest", self.ingest, "--pub", self.pub,
                               "--control", self.control, "--journal", self.journal, *self.args)
        self.status(timeout=30)
        return self

    def status(self, timeout: float = 10.0) -> dict:
        rpc = RpcClient(self.control, timeout=1.0)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    return rpc.call("status")
                except RpcError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"tickerplant not answering; log:\n{self.log()}")
        finally:
            rpc.close()

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")

    def journal_files(self) -> list[str]:
        return sorted(os.path.join(self.journal, f) for f in os.listdir(self.journal))


def start_tp(spawn, tmp_path, free_port, *args: str) -> TickerplantUnderTest:
    ports = [free_port() for _ in range(3)]
    return TickerplantUnderTest(spawn, str(tmp_path / "journal"),
                                *(f"tcp://127.0.0.1:{p}" for p in ports), args=args).start()


@dataclass
class Collector:
    """A Subscriber whose callbacks keep every row (by column) and every (table, seq) applied."""
    name: str
    control: str
    tables: list | None = None
    syms: list | None = None
    rcvhwm: int = 100_000
    rows: dict = field(default_factory=dict)
    seqs: list = field(default_factory=list)
    eods: list = field(default_factory=list)
    sub: Subscriber | None = None

    def __post_init__(self):
        self.sub = Subscriber(self.name, self.control, tables=self.tables, syms=self.syms,
                              on_batch=self.on_batch, on_eod=lambda d, s: self.eods.append((d, s)),
                              rcvhwm=self.rcvhwm)

    def on_batch(self, table, cols, seq):
        self.seqs.append((table, seq))
        dest = self.rows.setdefault(table, {})
        for k, v in cols.items():
            dest.setdefault(k, []).append(np.asarray(v))

    def column(self, table: str, col: str) -> np.ndarray:
        parts = self.rows.get(table, {}).get(col, [])
        return np.concatenate(parts) if parts else np.array([])

    def poll_until(self, predicate, timeout: float = 30.0, what: str = "data") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: timed out waiting for {what}")
            self.sub.poll(50)
