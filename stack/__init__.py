"""The margintick stack: launches every process of the demo (tickerplant, reference data, rdb, calc, FIX
acceptor, gateway, notifier, price feed, OMS simulator) on 127.0.0.1 and supervises them. A process that exits
without being asked to is logged (exit code or signal, time up) and restarted after a backoff that
doubles from `backoff_min` to `backoff_max` and resets once the process has stayed up `stable_after`
seconds; the others keep running. `python -m stack` (what `./run.sh` runs) and the tests and tools
(`from stack import Stack`) share this one code path. See docs/operations.md.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from common.defaults import (
    CALC_QUERY,
    FIX_PORT,
    GATEWAY_HTTP_PORT,
    GATEWAY_IPC_PORT,
    HOST,
    NOTIFY_CONTROL,
    PRICES_CONTROL,
    RDB_QUERY,
    RECON_QUERY,
    STATEMENTS_CONTROL,
    REPO_ROOT,
    TP_CONTROL,
    TP_INGEST,
    TP_PUB,
)
from common.net import free_port, listening
from common.rpc import rpc_answer

log = logging.getLogger("stack")

# start order; stop() goes the other way (feeds first, the tickerplant last)
PROCESSES = ("tickerplant", "rdb", "calc", "fix", "gateway", "notify", "prices", "omsim", "recon", "statements")
STOP_GRACE_S = 20.0
POLL_S = 0.1


class StackError(RuntimeError):
    """A process of the stack could not be started (the message names it and quotes its log)."""


def default_endpoints() -> dict:
    return {"tp_ingest": TP_INGEST, "tp_pub": TP_PUB, "tp_control": TP_CONTROL, "rdb_query": RDB_QUERY,
            "calc_query": CALC_QUERY, "prices_control": PRICES_CONTROL,
            "notify_control": NOTIFY_CONTROL, "gateway_port": GATEWAY_IPC_PORT,
            "http_port": GATEWAY_HTTP_PORT, "fix_port": FIX_PORT,
            "recon_query": RECON_QUERY, "statements_control": STATEMENTS_CONTROL}


def free_endpoints() -> dict:
    zmq_names = ("tp_ingest", "tp_pub", "tp_control", "rdb_query", "calc_query", "prices_control", "notify_control",
                 "recon_query", "statements_control")
    ports = {name: free_port() for name in ("gateway_port", "http_port", "fix_port")}
    return {**{name: f"tcp://{HOST}:{free_port()}" for name in zmq_names}, **ports}


def terminate(popen: subprocess.Popen, grace: float) -> bool:
    """SIGTERM, then SIGKILL if the process is still there after `grace` seconds; False when it had
    to be killed."""
    if popen.poll() is not None:
        return True
    popen.terminate()
    try:
        popen.wait(grace)
        return True
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(10)
        return False


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class Process:
    """One supervised process: its command line, readiness probe and run-time state."""
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    popen: subprocess.Popen | None = None
    started: float = 0.0                 # time.monotonic() of the last start
    managed: bool = False                # a restart()/stop() of ours is in progress: not a death
    delay: float = 0.0                   # the backoff before the next restart
    restart_at: float | None = None      # set while a restart waits out its backoff
    deaths: int = 0
    restarts: int = 0


class Stack:
    """The demo stack under `state_dir` (journal/, hdb/, fix/, omsim/, statements/, log/NAME.log).

    ports: "free" (currently free 127.0.0.1 ports, for tests and tools) or "default" (common.defaults).
    supervise: restart a process that exits on its own (with backoff); without it a death is only logged.
    extra_args: {name: [args]} appended to a process's command line; env: added to the children's.
    """

    def __init__(self, state_dir, ports: str = "free", supervise: bool = True, env: dict | None = None,
                 log_level: str = "WARNING", omsim: bool = True, extra_args: dict | None = None,
                 backoff_min: float = 0.5, backoff_max: float = 30.0, stable_after: float = 30.0):
        if ports not in ("free", "default"):
            raise ValueError(f"ports must be 'free' or 'default', not {ports!r}")
        self.state_dir = Path(state_dir).resolve()
        self.log_dir = self.state_dir / "log"
        self.supervise = supervise
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_level = log_level
        self.backoff_min, self.backoff_max, self.stable_after = backoff_min, backoff_max, stable_after
        self.endpoints = free_endpoints() if ports == "free" else default_endpoints()
        self.events: list[dict] = []      # every death and restart: {time, name, event, pid, ...}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        names = [n for n in PROCESSES if omsim or n != "omsim"]
        extra = extra_args or {}
        self.procs = {n: Process(n, [sys.executable, "-m", *self._command(n), *map(str, extra.get(n, ()))],
                                 self._probe(n)) for n in names}

    # ---- what each process is ---------------------------------------------------------------------
    def _command(self, name: str) -> list[str]:
        e, d, lvl = self.endpoints, self.state_dir, ["--log-level", self.log_level]
        return {
            "tickerplant": ["tickerplant", "--ingest", e["tp_ingest"], "--pub", e["tp_pub"],
                            "--control", e["tp_control"], "--journal", str(d / "journal"), *lvl],
            "rdb": ["rdb", "--control", e["tp_control"], "--query", e["rdb_query"], "--hdb", str(d / "hdb"), *lvl],
            "calc": ["calc", "--control", e["tp_control"], "--ingest", e["tp_ingest"],
                     "--query", e["calc_query"], *lvl],
            "fix": ["feedhandlers.fix", "--state-dir", str(d / "fix"), "--port", str(e["fix_port"]),
                    "--ingest", e["tp_ingest"], "--control", e["tp_control"], *lvl],
            "gateway": ["gateway", "--port", str(e["gateway_port"]), "--http-port", str(e["http_port"]),
                        "--rdb", e["rdb_query"], "--calc", e["calc_query"], "--control", e["tp_control"],
                        "--ingest", e["tp_ingest"], *lvl],
            "notify": ["notify", "--control", e["tp_control"], "--ingest", e["tp_ingest"],
                       "--status", e["notify_control"], "--log-file", str(d / "log" / "notices.jsonl"),
                       "--dashboard", f"http://{HOST}:{e['http_port']}/", *lvl],
            "prices": ["feedhandlers.prices", "--ingest", e["tp_ingest"], "--control", e["prices_control"]],
            "omsim": ["feedhandlers.omsim", "--state-dir", str(d / "omsim"), "--port", str(e["fix_port"]), *lvl],
            "recon": ["recon", "--control", e["tp_control"], "--ingest", e["tp_ingest"], "--query", e["recon_query"], *lvl],
            "statements": ["feedhandlers.statements", "--dir", str(d / "statements"), "--ingest", e["tp_ingest"],
                           "--control", e["tp_control"], "--status", e["statements_control"], *lvl],
        }[name]

    def _probe(self, name: str) -> Callable[[], bool]:
        e = self.endpoints
        return {
            "tickerplant": lambda: rpc_answer(e["tp_control"]) is not None,
            "rdb": lambda: rpc_answer(e["rdb_query"]) is not None,
            "calc": lambda: rpc_answer(e["calc_query"]) is not None,
            "fix": lambda: listening(e["fix_port"]),
            "gateway": lambda: listening(e["gateway_port"]) and listening(e["http_port"]),
            "notify": lambda: rpc_answer(e["notify_control"]) is not None,
            "prices": lambda: rpc_answer(e["prices_control"]) is not None,
            "omsim": lambda: True,
            "recon": lambda: rpc_answer(e["recon_query"]) is not None,
            "statements": lambda: rpc_answer(e["statements_control"]) is not None,
        }[name]

    # ---- lifecycle ----------------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> "Stack":
        """Starts the processes in order (publishing the reference data once the tickerplant answers),
        waiting until each answers; raises StackError (with the log's tail) if one does not."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        self._thread = threading.Thread(target=self._supervise, name="stack-supervisor", daemon=True)
        self._thread.start()
        try:
            for name in self.procs:
                with self._lock:
                    self._spawn(self.procs[name])
                self.wait_ready(name, max(1.0, deadline - time.monotonic()))
                if name == "tickerplant":
                    self._publish_refdata(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def _publish_refdata(self, timeout: float) -> None:
        path = self.log_dir / "refdata.log"
        with open(path, "ab") as out:
            rc = subprocess.run([sys.executable, "-m", "feedhandlers.refdata", "--ingest", self.endpoints["tp_ingest"]],
                                cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        if rc != 0:
            raise StackError(f"publishing the reference data failed ({describe_exit(rc)}):\n{_tail(path)}")
        log.info("published the reference data (data/ref)")

    def stop(self) -> None:
        """Stops every process: SIGTERM in reverse start order, SIGKILL for one still up after 20 s."""
        self._stopping.set()
        with self._lock:
            for p in self.procs.values():
                p.managed, p.restart_at = True, None
        deadline = time.monotonic() + STOP_GRACE_S
        for p in reversed(list(self.procs.values())):
            self._terminate(p, max(0.1, deadline - time.monotonic()))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- one process ----------------------------------------------------------------------------------
    def pid(self, name: str) -> int | None:
        popen = self.procs[name].popen
        return popen.pid if popen is not None and popen.poll() is None else None

    def alive(self, name: str) -> bool:
        return self.pid(name) is not None

    def ready(self, name: str) -> bool:
        """Alive and answering its probe (RPC status, or its listening port)."""
        return self.alive(name) and self.procs[name].ready()

    def wait_ready(self, name: str, timeout: float = 60.0) -> float:
        """Waits until `name` is up and answering; returns the seconds waited. Raises StackError after
        `timeout` (quoting its log) or at once if it exits while not supervised."""
        t0 = time.monotonic()
        while not self.ready(name):
            popen = self.procs[name].popen
            if popen is not None and popen.poll() is not None and not self.supervise:
                raise StackError(f"{name} exited ({describe_exit(popen.returncode)}):\n{_tail(self.log_path(name))}")
            if time.monotonic() - t0 > timeout:
                raise StackError(f"{name} not answering after {timeout:g} s:\n{_tail(self.log_path(name))}")
            time.sleep(POLL_S)
        return time.monotonic() - t0

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Sends `sig` to the process; returns its pid. Under supervision a death is then restarted."""
        pid = self.pid(name)
        if pid is None:
            raise StackError(f"{name} is not running")
        os.kill(pid, sig)
        return pid

    def restart(self, name: str, timeout: float = 60.0) -> int:
        """Stops `name` (SIGTERM, then SIGKILL) and starts it again at once; waits until it answers."""
        p = self.procs[name]
        with self._lock:
            p.managed, p.restart_at = True, None
        self._terminate(p, STOP_GRACE_S)
        with self._lock:
            self._spawn(p)
            p.restarts += 1
            self._event(p, "restarted", reason="restart()")
        self.wait_ready(name, timeout)
        return p.popen.pid

    def stop_process(self, name: str) -> None:
        """Stops `name` for good (SIGTERM, then SIGKILL after 20 s): it is not restarted."""
        p = self.procs[name]
        with self._lock:
            p.managed, p.restart_at = True, None
        self._terminate(p, STOP_GRACE_S)
        log.info("stopped %s", name)

    def rss_bytes(self, name: str) -> int:
        """Resident set size of the process (Linux /proc)."""
        pid = self.pid(name)
        if pid is None:
            raise StackError(f"{name} is not running")
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise StackError(f"no VmRSS for {name} (pid {pid})")

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def restarts(self, name: str) -> int:
        return self.procs[name].restarts

    def deaths(self, name: str) -> int:
        return self.procs[name].deaths

    # ---- internals ------------------------------------------------------------------------------------
    def _spawn(self, p: Process) -> None:
        with open(self.log_path(p.name), "ab") as out:
            out.write(f"--- stack: starting {p.name} at {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                      f"{' '.join(p.argv[1:])}\n".encode())
            out.flush()
            p.popen = subprocess.Popen(p.argv, cwd=REPO_ROOT, env=self.env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        p.started, p.managed, p.restart_at = time.monotonic(), False, None
        log.info("started %s (pid %d): python -m %s", p.name, p.popen.pid, " ".join(p.argv[2:]))

    def _terminate(self, p: Process, grace: float) -> None:
        if p.popen is not None and not terminate(p.popen, grace):
            log.warning("%s (pid %d) did not stop within %g s; killed it", p.name, p.popen.pid, grace)

    def _event(self, p: Process, event: str, **detail) -> None:
        self.events.append({"time": time.time(), "name": p.name, "event": event, "pid": p.popen.pid, **detail})

    def _supervise(self) -> None:
        while not self._stopping.wait(POLL_S):
            with self._lock:
                for p in self.procs.values():
                    self._check(p, time.monotonic())

    def _check(self, p: Process, now: float) -> None:
        if p.managed or p.popen is None:
            return
        if p.restart_at is not None:
            if now >= p.restart_at:
                self._spawn(p)
                p.restarts += 1
                self._event(p, "restarted", reason="supervisor")
            return
        code = p.popen.poll()
        if code is None:
            return
        up = now - p.started
        p.deaths += 1
        p.delay = self.backoff_min if up >= self.stable_after or p.delay == 0 else min(p.delay * 2, self.backoff_max)
        self._event(p, "died", returncode=code, up_s=round(up, 3))
        if not self.supervise:
            log.error("%s (pid %d) exited: %s after %.1f s up; not supervised, not restarted (log %s)",
                      p.name, p.popen.pid, describe_exit(code), up, self.log_path(p.name))
            p.managed = True
            return
        p.restart_at = now + p.delay
        log.error("%s (pid %d) exited: %s after %.1f s up; restarting it in %.1f s (log %s)",
                  p.name, p.popen.pid, describe_exit(code), up, p.delay, self.log_path(p.name))


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"
