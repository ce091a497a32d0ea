"""One chaos run: the supervised stack (stack.Stack) with a FIX sender, the price feed and a treasury
subscriber, a SIGKILL of a random process every few seconds, then quiescence and the checks
(chaos.checks). `ChaosRun(options).run()` returns the summary dict that `python -m chaos` prints."""
from __future__ import annotations

import logging
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chaos import checks
from common.defaults import REPO_ROOT
from common.rpc import rpc_answer
from feedhandlers.omsim.initiator import Initiator
from feedhandlers.omsim.orders import OrderFlow
from feedhandlers.omsim.pacing import paced
from feedhandlers.refdata.loader import load_refdata
from common.net import free_port
from stack import Stack, StackError, terminate
from tickerplant.client import Subscriber

log = logging.getLogger("chaos")

VICTIMS = ("tickerplant", "rdb", "calc", "fix", "gateway")
SENDER_CONFIG = REPO_ROOT / "config" / "fix" / "omsim.cfg"
POLL_MS = 50


@dataclass
class Options:
    state_dir: Path
    fills: int = 100_000
    rate: float = 1000.0              # fills per second offered by the sender
    kill_every: float = 5.0
    max_kills: int = 0                # 0: keep killing until every fill is sent
    seed: int = 1
    ticks_per_sec: float = 4.0        # price simulator steps per second (each quotes every instrument)
    ack: str = "pipelined"            # the FIX acceptor's --ack mode
    recovery_timeout: float = 120.0   # a killed process must answer again within this
    settle_timeout: float = 180.0     # after the last fill is sent, for the stack to book it and go quiet


class Sender(threading.Thread):
    """The OMS side: a QuickFIX initiator with a persistent FileStore (so messages sent while the
    acceptor is down are resent on its ResendRequest after the next logon) sending `fills` trades
    at `rate`; `sent` holds the ExecID of every message handed to the session."""

    def __init__(self, opts: Options, fix_port: int):
        super().__init__(name="chaos-sender", daemon=True)
        self.fills, self.rate = opts.fills, opts.rate
        self.flow = OrderFlow.from_refdata(load_refdata(None), cancel_pct=0.0, correct_pct=0.0, seed=opts.seed)
        self.initiator = Initiator(SENDER_CONFIG, opts.state_dir / "sender", {"SocketConnectPort": str(fix_port)})
        self.sent: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.initiator.start(logon_timeout=60.0)
            for _ in paced(self.fills, self.rate, self.stop):
                fields = self.flow.next_message()
                if not self.initiator.send(fields):
                    raise RuntimeError("QuickFIX refused to queue an ExecutionReport")
                self.sent.append(dict(fields)[17])
        except BaseException as e:      # reported by the run, never swallowed
            self.error = e

    def close(self) -> None:
        self.stop.set()
        self.initiator.stop()


class Killer(threading.Thread):
    """Every `kill_every` seconds: SIGKILL a random process of VICTIMS, then wait until the supervisor
    has restarted it and it answers again (its recovery time)."""

    def __init__(self, stack: Stack, opts: Options):
        super().__init__(name="chaos-killer", daemon=True)
        self.stack, self.opts = stack, opts
        self.rng = random.Random(opts.seed)
        self.done = threading.Event()
        self.kills: Counter = Counter()
        self.recovery: dict[str, float] = {}
        self.unrecovered: list[str] = []

    def run(self) -> None:
        next_kill = time.monotonic() + self.opts.kill_every
        while not self.done.wait(max(0.0, next_kill - time.monotonic())):
            if self.opts.max_kills and sum(self.kills.values()) >= self.opts.max_kills:
                return
            name = self.rng.choice(VICTIMS)
            before = self.stack.restarts(name)
            t0 = time.monotonic()
            try:
                pid = self.stack.kill(name, signal.SIGKILL)
            except (StackError, ProcessLookupError):   # it died on its own and waits for its restart
                log.warning("%s is not running (restarting after a death of its own); killing it next time", name)
                next_kill = t0 + self.opts.kill_every
                continue
            self.kills[name] += 1
            log.warning("killed %s (pid %d), kill %d", name, pid, sum(self.kills.values()))
            while not (self.stack.restarts(name) > before and self.stack.ready(name)):
                if time.monotonic() - t0 > self.opts.recovery_timeout:
                    self.unrecovered.append(name)
                    log.error("%s did not answer within %g s of its kill", name, self.opts.recovery_timeout)
                    return
                time.sleep(0.05)
            took = time.monotonic() - t0
            self.recovery[name] = max(self.recovery.get(name, 0.0), took)
            log.warning("%s answers again after %.2f s", name, took)
            next_kill = max(t0 + self.opts.kill_every, time.monotonic())


class Treasury:
    """A treasury-style subscriber on `margin` (tickerplant.client.Subscriber) keeping every batch."""

    def __init__(self, control: str):
        self.seqs: list[int] = []
        self.parts: list[dict] = []
        self.sub = Subscriber("chaos-treasury", control=control, tables=["margin"], on_batch=self._on_batch)

    def _on_batch(self, table: str, cols: dict, seq: int) -> None:
        self.seqs.append(seq)
        self.parts.append({k: np.asarray(v) for k, v in cols.items()})


class ChaosRun:
    def __init__(self, opts: Options):
        self.opts = opts
        self.stack = Stack(opts.state_dir, ports="free", supervise=True, omsim=False,
                           extra_args={"prices": ["--steps-per-sec", str(opts.ticks_per_sec), "--seed", str(opts.seed)],
                                       "fix": ["--ack", opts.ack]})

    def run(self) -> dict:
        t0 = time.monotonic()
        self.stack.start()
        try:
            return self._run(t0)
        finally:
            self.stack.stop()

    def _run(self, t0: float) -> dict:
        e = self.stack.endpoints
        treasury = Treasury(e["tp_control"])
        treasury.sub.start()
        sender = Sender(self.opts, e["fix_port"])
        killer = Killer(self.stack, self.opts)
        sender.start()
        killer.start()
        log.warning("sending %d fills at %g/s, killing one of %s every %g s", self.opts.fills, self.opts.rate,
                    "/".join(VICTIMS), self.opts.kill_every)
        try:
            while sender.is_alive():
                treasury.sub.poll(POLL_MS)
            killer.done.set()
            while killer.is_alive():
                treasury.sub.poll(POLL_MS)
            if sender.error is not None:
                raise RuntimeError(f"the FIX sender failed: {sender.error!r}")
            sent_s = time.monotonic() - t0
            settled = self._quiesce(treasury, len(sender.sent))
        finally:
            killer.done.set()
            sender.close()
        j = checks.Journal(str(self.opts.state_dir / "journal"))
        self._drain(treasury, len(j.seqs("margin")))
        summary = self._check(j, sender.sent, treasury)
        live = rpc_answer(self.stack.endpoints["calc_query"], "status", timeout=5.0) or {"seq": j.seq}
        summary["fresh_calc"] = self._fresh_calc(j, live["seq"])
        treasury.sub.close()
        summary.update(self._processes(killer), settled=settled, seconds=round(time.monotonic() - t0, 1),
                       sending_seconds=round(sent_s, 1), options={k: str(v) for k, v in vars(self.opts).items()},
                       journal_seq=j.seq)
        summary["ok"] = (settled and not killer.unrecovered
                         and all(summary[k]["ok"] for k in ("journal", "rdb_fills", "calc_positions",
                                                              "rdb_tables", "subscriber", "fresh_calc")))
        return summary

    # ---- quiescence ---------------------------------------------------------------------------------
    def _quiesce(self, treasury: Treasury, sent: int) -> bool:
        """Waits for every process to answer, the fills to reach the rdb, then (price feed stopped) for
        the tickerplant's seq to stay put with the rdb and calc caught up. False on timeout."""
        e, deadline = self.stack.endpoints, time.monotonic() + self.opts.settle_timeout

        def until(predicate, what: str) -> bool:
            while not predicate():
                if time.monotonic() > deadline:
                    log.error("not settled within %g s: %s", self.opts.settle_timeout, what)
                    return False
                treasury.sub.poll(POLL_MS)
            return True

        if not until(lambda: all(self.stack.ready(n) for n in VICTIMS), "every process answering"):
            return False
        if not until(lambda: ((rpc_answer(e["rdb_query"], "count", timeout=5.0, table="fill") or {}).get("count", 0) >= sent),
                     f"{sent} fills in the rdb"):
            return False
        self.stack.stop_process("prices")
        last = {"seq": -1, "since": time.monotonic()}

        def quiet() -> bool:
            tp, rdb, calc = (rpc_answer(e[k], "status", timeout=5.0) for k in ("tp_control", "rdb_query", "calc_query"))
            if not (tp and rdb and calc):
                return False
            if tp["seq"] != last["seq"]:
                last.update(seq=tp["seq"], since=time.monotonic())
            return (time.monotonic() - last["since"] >= 2.0 and rdb["seq"] == tp["seq"] and calc["pending"] == 0
                    and tp["pending_acks"] == 0)

        return until(quiet, "the tickerplant's seq steady with the rdb caught up and calc's rows acknowledged")

    @staticmethod
    def _drain(treasury: Treasury, batches: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(treasury.seqs) < batches and time.monotonic() < deadline:
            treasury.sub.poll(POLL_MS)

    # ---- checks -------------------------------------------------------------------------------------
    def _check(self, j: checks.Journal, sent: list[str], treasury: Treasury) -> dict:
        e = self.stack.endpoints
        out = {"journal": checks.booked_once(sent, j.table("fill").get("execid", ()))}
        rdb_tables = {}
        for name in sorted(set(j.batches) | {"fill", "margin"}):
            reply = rpc_answer(e["rdb_query"], "select", timeout=60.0, table=name)
            rdb_tables[name] = reply["table"] if reply else None
        fill = rdb_tables.get("fill") or {}
        out["rdb_fills"] = checks.booked_once(sent, fill.get("execid", ()))
        problems = [f"{name}: " + ("no answer" if t is None else "; ".join(checks.compare_tables(j.table(name), t)))
                    for name, t in rdb_tables.items()
                    if t is None or checks.compare_tables(j.table(name), t)]
        out["rdb_tables"] = {"ok": not problems, "tables": len(rdb_tables),
                             "rows": sum(len(j.table(n).get("sym", ())) for n in rdb_tables),
                             "examples": problems[:checks.MAX_SHOWN]}
        calc_positions = {}
        accounts = (rpc_answer(e["calc_query"], "accounts", timeout=5.0) or {}).get("accounts", {}).get("sym", [])
        for account in accounts:
            cols = (rpc_answer(e["calc_query"], "positions", timeout=5.0, account=account) or {}).get("positions", {})
            for sym, qty in zip(cols.get("sym", ()), cols.get("qty", ())):
                calc_positions[(account, str(sym))] = float(qty)
        out["calc_positions"] = checks.compare_positions(checks.expected_positions(j), calc_positions)
        out["subscriber"] = checks.compare_subscriber(j, treasury.seqs, checks.concat(treasury.parts))
        out["subscriber"]["recoveries"] = treasury.sub.recoveries
        return out

    def _fresh_calc(self, j: checks.Journal, seq: int) -> dict:
        """A calc started now on its own query port replays the run's journal from the start with no
        kill; once it has applied the inputs up to `seq` (the live calc's, quiet), its margin (the
        `margin` op) must equal the journal's last row per (account, model)."""
        e = self.stack.endpoints
        query = f"tcp://127.0.0.1:{free_port()}"
        log_path = self.stack.log_dir / "fresh-calc.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "calc", "--control", e["tp_control"], "--ingest",
                                     e["tp_ingest"], "--query", query, "--name", "chaos-fresh-calc",
                                     "--log-level", "WARNING"], cwd=REPO_ROOT, env=self.stack.env,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + self.opts.recovery_timeout
            while not ((s := rpc_answer(query, "status", timeout=1.0)) and s["seq"] >= seq):
                if proc.poll() is not None or time.monotonic() > deadline:
                    return {"ok": False, "rows": 0, "differ": 0,
                            "examples": [f"the fresh calc did not replay to seq {seq} (log {log_path})"]}
                time.sleep(0.1)
            margin = (rpc_answer(query, "margin", timeout=60.0) or {}).get("margin", {})
            fresh = checks.last_margin_rows(margin)
        finally:
            terminate(proc, 20)
        return checks.compare_margin(checks.last_margin_rows(j.table("margin")), fresh)

    def _processes(self, killer: Killer) -> dict:
        rows = {name: {"kills": killer.kills[name], "deaths": self.stack.deaths(name),
                       "restarts": self.stack.restarts(name),
                       "longest_recovery_s": round(killer.recovery.get(name, 0.0), 2)}
                for name in self.stack.procs}
        return {"processes": rows, "kills": sum(killer.kills.values()), "unrecovered": killer.unrecovered}
