"""Shared test fixtures: free ports, real subprocesses of our packages, a running tickerplant."""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from common.net import free_port as _free_port
from common.rpc import rpc_answer  # noqa: F401  (the tests take it from here)

REPO_ROOT = Path(__file__).resolve().parent.parent


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


def free_endpoint() -> str:
    """A ZeroMQ TCP endpoint on a currently free 127.0.0.1 port."""
    return f"tcp://127.0.0.1:{_free_port()}"


def answers(call):
    """call()'s result, or None while the process behind it is not answering yet (for wait_until)."""
    from common.rpc import RpcError
    try:
        return call()
    except RpcError:
        return None


def pykx_connection(port: int, user: str = "demo", password: str = "demo"):
    """The real PyKX client, default settings, to a gateway on 127.0.0.1."""
    import pykx as kx
    return kx.SyncQConnection("127.0.0.1", port, username=user, password=password, timeout=30.0)


def http_json(port: int, path: str, body=None, auth: str | None = "demo:demo", token: str | None = None):
    """(status, JSON reply) of the gateway's HTTP API on 127.0.0.1: HTTP Basic `auth` ("user:password"),
    a bearer `token`, or neither (auth None); a body is POSTed: bytes as they are, anything else as JSON."""
    headers = {"Authorization": f"Bearer {token}"} if token else \
        {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class TickerplantProcess:
    """A real `python -m tickerplant` on free 127.0.0.1 ports with its journal under a tmp dir;
    restartable on the same ports (kill9 / stop, then start)."""

    def __init__(self, spawn, tmp_path: Path, *args: str):
        self.spawn, self.args = spawn, args
        self.ingest, self.pub, self.control = (free_endpoint() for _ in range(3))
        self.journal = tmp_path / "journal"
        self.proc = None

    def start(self) -> "TickerplantProcess":
        self.proc = self.spawn("tickerplant", "--ingest", self.ingest, "--pub", self.pub, "--control", self.control,
                               "--journal", self.journal, *self.args)
        self.status(timeout=60)
        return self

    def status(self, timeout: float = 10.0) -> dict:
        """The tickerplant's status, waiting up to `timeout` for it to answer (fails with its log)."""
        from common.rpc import RpcClient, RpcError
        rpc = RpcClient(self.control, timeout=1.0)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    return rpc.call("status")
                except RpcError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"tickerplant not answering; log:\n{self.log()}")
        finally:
            rpc.close()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")

    def journal_files(self) -> list[Path]:
        return sorted(self.journal.iterdir())


def start_tickerplant(spawn, tmp_path: Path, *args: str) -> TickerplantProcess:
    """A started TickerplantProcess with extra command-line args (e.g. "--eod", "12:00")."""
    return TickerplantProcess(spawn, tmp_path, *args).start()


@pytest.fixture
def tickerplant(spawn, tmp_path) -> TickerplantProcess:
    """A running tickerplant subprocess (endpoints .ingest .pub .control, .journal dir, .kill9(), .start())."""
    return start_tickerplant(spawn, tmp_path)


class Collector:
    """A real Subscriber keeping every row it applies (per table and column), the (table, seq) of every
    batch and every end of day; `.start()` does the handshake and journal replay."""

    def __init__(self, name: str, control: str, tables=None, syms=None, rcvhwm: int = 100_000):
        from tickerplant.client import Subscriber
        self.name = name
        self.rows: dict[str, dict[str, list]] = {}
        self.seqs: list[tuple[str, int]] = []
        self.eods: list[tuple[str, int]] = []
        self.sub = Subscriber(name, control, tables=tables, syms=syms, on_batch=self._on_batch,
                              on_eod=lambda date, seq: self.eods.append((date, seq)), rcvhwm=rcvhwm)

    def start(self) -> "Collector":
        self.sub.start()
        return self

    def _on_batch(self, table, cols, seq):
        self.seqs.append((table, seq))
        dest = self.rows.setdefault(table, {})
        for k, v in cols.items():
            dest.setdefault(k, []).append(np.array(v))

    def column(self, table: str, col: str) -> np.ndarray:
        """One column of everything applied so far (no polling)."""
        parts = self.rows.get(table, {}).get(col, [])
        return np.concatenate(parts) if parts else np.array([])

    def table(self, name: str) -> dict:
        """Every row of one table received so far, after a short poll ({} before the first)."""
        self.sub.poll(50)
        return {col: self.column(name, col) for col in self.rows.get(name, {})}

    def count(self, name: str) -> int:
        return len(self.table(name).get("sym", ()))

    def poll_until(self, predicate, timeout: float = 30.0, what: str = "data") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: timed out after {timeout}s waiting for {what}")
            self.sub.poll(50)

    def close(self) -> None:
        self.sub.close()


@pytest.fixture
def collected(tickerplant):
    """A Collector subscribed to every table of the `tickerplant` fixture."""
    c = Collector("test", tickerplant.control).start()
    yield c
    c.close()


@contextmanager
def gateway_stack(tmp_path_factory, name: str, *gateway_args, prices: bool = False):
    """A GatewayStack in a fresh temporary folder `name`, every process stopped at the end (for a
    module-scoped fixture: `with gateway_stack(...) as s: yield s`)."""
    folder = tmp_path_factory.mktemp(name)
    spawn = Spawner(folder)
    try:
        yield GatewayStack(spawn, folder, *gateway_args, prices=prices)
    finally:
        spawn.close()


class GatewayStack:
    """tickerplant, reference data, rdb, calc and gateway (plus the price feed with prices=True) as
    processes on free ports, for the gateway's tests; `procs` are the long-running ones."""

    def __init__(self, spawn: Spawner, folder: Path, *gateway_args, prices: bool = False):
        from common.net import listening
        self.folder = folder
        self.rdb, self.calc = free_endpoint(), free_endpoint()
        self.port, self.http_port = _free_port(), _free_port()
        self.spawn = spawn
        self.tp = TickerplantProcess(spawn, folder, "--log-level", "WARNING").start()
        ingest, control = self.tp.ingest, self.tp.control
        assert spawn("feedhandlers.refdata", "--ingest", ingest).wait(60) == 0
        self.args = {"calc": ("--control", control, "--ingest", ingest, "--query", self.calc, "--log-level", "WARNING"),
                     "gateway": ("--port", self.port, "--http-port", self.http_port, "--rdb", self.rdb,
                                 "--calc", self.calc, "--control", control, "--ingest", ingest, *gateway_args)}
        self.procs = [self.tp.proc,
                      spawn("rdb", "--control", control, "--query", self.rdb, "--hdb", folder / "hdb",
                            "--log-level", "WARNING"),
                      spawn("calc", *self.args["calc"])]
        self.prices_control = None
        if prices:
            self.start_prices()
        self.procs.append(spawn("gateway", *self.args["gateway"]))
        wait_until(lambda: (s := rpc_answer(self.calc, "status")) and s["accounts"] >= 3, 120, what="calc ready")
        wait_until(lambda: rpc_answer(self.rdb, "count", table="account"), 60, what="rdb ready")
        wait_until(lambda: listening(self.http_port) and listening(self.port), 60, what="gateway listening")

    def start_prices(self, steps_per_sec: int = 2) -> None:
        """The simulated price feed; events go to `prices_control` (feedhandlers.prices --send)."""
        self.prices_control = free_endpoint()
        self.spawn("feedhandlers.prices", "--ingest", self.tp.ingest, "--control", self.prices_control,
                   "--steps-per-sec", steps_per_sec)

    def kill(self, name: str) -> None:
        """kill -9 of calc or the gateway."""
        proc = self.procs[2 if name == "calc" else 3]
        proc.kill()
        proc.wait(10)

    def restart(self, name: str) -> None:
        """Starts calc or the gateway again with its arguments and waits until it answers."""
        from common.net import listening
        self.procs[2 if name == "calc" else 3] = self.spawn(name, *self.args[name])
        if name == "calc":
            wait_until(lambda: (s := rpc_answer(self.calc, "status")) and s["accounts"] >= 3, 120, what="calc ready")
        else:
            wait_until(lambda: listening(self.http_port) and listening(self.port), 60, what="gateway listening")
