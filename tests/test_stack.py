"""The supervised stack (stack.Stack, python -m stack) with every process real, on free 127.0.0.1 ports:
a process killed with SIGKILL is logged and restarted by the supervisor while the others keep their
pids, and the stack still answers through the gateway afterwards."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pykx as kx
import pytest
from conftest import REPO_ROOT, pykx_connection, rpc_answer, wait_until

from stack import PROCESSES, Stack, StackError, terminate


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("stack"), ports="free", supervise=True, omsim=False,
              extra_args={"prices": ["--steps-per-sec", "2"]})
    s.start(timeout=180)
    yield s
    s.stop()


def margin_through_gateway(port: int, account: str = "FUND1") -> dict:
    with pykx_connection(port) as q:
        return q("margin", account).py()


def test_every_process_answers_and_is_logged(stack):
    assert list(stack.procs) == [n for n in PROCESSES if n != "omsim"]
    for name in stack.procs:
        assert stack.ready(name), name
        assert stack.log_path(name).read_text().startswith(f"--- stack: starting {name}")
        assert stack.rss_bytes(name) > 10 << 20
    assert {"tp_ingest", "tp_control", "calc_query", "rdb_query", "gateway_port", "http_port",
            "fix_port"} <= set(stack.endpoints)
    rows = margin_through_gateway(stack.endpoints["gateway_port"])
    assert set(rows["sym"]) == {"FUND1"} and all(im > 0 for im in rows["im"])


@pytest.mark.parametrize("victim", ["calc", "tickerplant"])
def test_a_killed_process_is_restarted_and_the_others_keep_running(stack, victim):
    others = {n: stack.pid(n) for n in stack.procs if n != victim}
    restarts = stack.restarts(victim)
    old = stack.kill(victim, signal.SIGKILL)
    wait_until(lambda: stack.restarts(victim) == restarts + 1 and stack.ready(victim), 90,
               what=f"{victim} restarted by the supervisor")
    assert stack.pid(victim) != old
    assert {n: stack.pid(n) for n in others} == others
    died = [e for e in stack.events if e["name"] == victim and e["event"] == "died"][-1]
    assert died["pid"] == old and died["returncode"] == -signal.SIGKILL
    # margin still answers through the gateway, from a calc that has caught up with the tickerplant
    seq = wait_until(lambda: max(0, _seq(stack.endpoints["tp_control"])), 60, what="tickerplant seq")
    wait_until(lambda: _seq(stack.endpoints["calc_query"]) >= seq, 90, what="calc caught up")
    rows = wait_until(lambda: _margin_or_none(stack), 60, what="margin through the gateway")
    assert set(rows["sym"]) == {"FUND1"} and all(im > 0 for im in rows["im"])


def test_restart_and_bad_names(stack):
    old = stack.pid("gateway")
    new = stack.restart("gateway")
    assert new != old and stack.ready("gateway")
    assert stack.events[-1]["event"] == "restarted" and stack.events[-1]["reason"] == "restart()"
    with pytest.raises(KeyError):
        stack.pid("nosuch")
    with pytest.raises(ValueError, match="ports"):
        Stack("/nonexistent", ports="some")


def test_a_process_that_cannot_start_fails_start_with_its_log(tmp_path):
    s = Stack(tmp_path, ports="free", supervise=False, omsim=False,
              extra_args={"tickerplant": ["--durability", "never"]})
    with pytest.raises(StackError, match=r"(?s)tickerplant exited.*invalid choice"):
        s.start(timeout=60)
    assert not s.alive("tickerplant")


def test_python_m_stack_supervises_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "stack", "--ports", "free", "--state-dir", str(tmp_path),
                             "--no-omsim", "--process-log-level", "WARNING"],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while not any("margintick is up" in ln for ln in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        pids = {m[1]: int(m[2]) for ln in lines if (m := re.search(r"started (\w+) \(pid (\d+)\)", ln))}
        assert set(pids) == {"tickerplant", "rdb", "calc", "fix", "gateway", "notify", "prices"}
        os.kill(pids["rdb"], signal.SIGKILL)
        while not any("started rdb" in ln for ln in lines[len(pids):]):
            assert time.monotonic() < deadline, "".join(lines)
            lines.append(proc.stdout.readline())
        assert any(re.search(rf"rdb \(pid {pids['rdb']}\) exited: killed by SIGKILL.*restarting it in 0.5 s", ln)
                   for ln in lines), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        terminate(proc, 60)                # SIGTERM first: the supervisor stops its processes
    assert proc.returncode == 0, out
    for pid in pids.values():
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()


def _seq(endpoint: str) -> int:
    """The `seq` of a process's status (tickerplant or calc), -1 while it does not answer."""
    status = rpc_answer(endpoint, "status")
    return status["seq"] if status else -1


def _margin_or_none(stack):
    try:
        return margin_through_gateway(stack.endpoints["gateway_port"])
    except (kx.QError, OSError):          # the gateway or its backend (calc) is still coming back
        return None
