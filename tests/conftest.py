"""Shared test fixtures: free ports, real subprocesses of our packages, a running tickerplant."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    """A function returning a currently free TCP port on 127.0.0.1."""
    return _free_port


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


class Spawner:
    """Starts `python -m module args` from the repo root; every process is killed at teardown."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.procs: list[subprocess.Popen] = []

    def __call__(self, module: str, *args: str, env: dict | None = None, name: str | None = None) -> subprocess.Popen:
        name = name or module.replace(".", "_")
        log = open(self.logdir / f"{name}.{len(self.procs)}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=REPO_ROOT,
                                stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        proc.log_path = Path(log.name)
        log.close()
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.fixture
def spawn(tmp_path):
    """spawn(module, *args) -> Popen of `python -m module args` (log at proc.log_path), killed at teardown."""
    s = Spawner(tmp_path)
    yield s
    s.close()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Polls predicate() until it is truthy (returns its value) or fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def answers(call):
    """call()'s result, or None while the process behind it is not answering yet (for wait_until)."""
    from common.rpc import RpcError
    try:
        return call()
    except RpcError:
        return None


class TickerplantProcess:
    """A real `python -m tickerplant` on free 127.0.0.1 ports with its journal under a tmp dir."""

    def __init__(self, spawn, tmp_path: Path, *args: str):
        from common.rpc import RpcClient
        self.spawn, self.args = spawn, args
        self.ingest, self.pub, self.control = (f"tcp://127.0.0.1:{_free_port()}" for _ in range(3))
        self.journal = tmp_path / "journal"
        self.rpc = RpcClient(self.control, timeout=2.0)
        self.start()

    def start(self) -> subprocess.Popen:
        self.proc = self.spawn("tickerplant", "--ingest", self.ingest, "--pub", self.pub, "--control", self.control,
                               "--journal", self.journal, *self.args)
        wait_until(lambda: answers(self.status), timeout=60, what="tickerplant up")
        return self.proc

    def status(self) -> dict:
        return self.rpc.call("status")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def tickerplant(spawn, tmp_path) -> TickerplantProcess:
    """A running tickerplant subprocess (endpoints .ingest .pub .control, .journal dir, .kill9(), .start())."""
    return TickerplantProcess(spawn, tmp_path)


class Collector:
    """A real Subscriber gathering every row it receives, per table (replay and live alike)."""

    def __init__(self, control: str, tables=None, name: str = "test"):
        from tickerplant.client import Subscriber
        self.parts: dict[str, list[dict]] = {}
        self.sub = Subscriber(name, control=control, tables=tables, on_batch=self._on_batch)
        self.sub.start()

    def _on_batch(self, table, cols, seq):
        self.parts.setdefault(table, []).append({k: np.array(v) for k, v in cols.items()})

    def table(self, name: str) -> dict:
        """Every row of one table received so far, concatenated ({} before the first)."""
        self.sub.poll(50)
        parts = self.parts.get(name, [])
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

    def count(self, name: str) -> int:
        return len(self.table(name).get("sym", ()))

    def close(self) -> None:
        self.sub.close()


@pytest.fixture
def collected(tickerplant):
    """A Collector subscribed to every table of the `tickerplant` fixture."""
    c = Collector(tickerplant.control)
    yield c
    c.close()
