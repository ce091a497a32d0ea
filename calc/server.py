"""The calc process: one poll loop over the tickerplant Subscriber (inputs), the RPC server (queries,
what-if) and the Publisher (margin and alert rows back into the tickerplant).

Publishing: after each drain of the input socket, every account touched gets its margin rows
computed; a row is published only when it differs from the last one published for its (account,
model), so rows are "on every change". Under load many input messages are applied
before one publish (conflation), but a drain stops after `engine.max_stale_ms` so no change waits
longer than that. Each row carries `seq` = the last input seq applied and `time` = the latest input
time (event time, so a replay reproduces it).

Recovery rule: at start the Subscriber replays the journal. Replayed inputs rebuild the engine's
state; replayed `margin` rows tell the last row published per (account, model) and rebuild the im
history of the alert rules; replayed `alert` rows rebuild which alert conditions hold and which data
alerts were raised. Nothing is published during the replay. Then every account's margin is computed
once and published only where it differs from the last published row, the alert rules see every
account's primary row (an alert fires only for a condition the journal's alerts do not already
show), and data alerts are published only if the journal does not already hold the same (account,
kind, text). So a restarted calc
publishes nothing twice, and the changes that happened while it was down come out as one conflated
row per account and model.

Queries come first: each turn answers the waiting RPC requests before anything else, again after
every chunk of inputs drained, and the periodic full recompute (the drift check) advances one
account at a time only while no request waits; the publisher's socket is polled only when it has
something to say or rows are unacknowledged. What-ifs and hedge sizing (calc.hedge) share one
`BeforeCache` (calc.whatif).
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import zmq

from calc.alerts import AlertEvent, AlertMonitor
from calc.attribution import format_drivers
from calc.engine import MARGIN_FIELDS, MarginEngine
from calc.hedge import DEFAULT_POINTS, hedge
from calc.margin_model import Issue
from calc.whatif import BeforeCache, what_if
from common.alerts import WARN, alert_batch, alert_row
from common.alertrules import RuleBook, rules_from_batch
from common.defaults import CALC_QUERY, TP_CONTROL, TP_INGEST
from common.rpc import RpcServer
from common.schema import TableSchema
from tickerplant.client import Publisher, Subscriber, TickerplantError

log = logging.getLogger(__name__)

DRAIN_CHUNK = 64            # input messages applied between two checks of the staleness deadline
DRIFT_CHUNK = 20            # at most this many accounts fully recomputed per loop turn by the drift check
ACCOUNT_COLUMNS = ("desk", "ccp", "model", "ccy", "collateral", "buffer", "threshold", "callpct", "imjump", "imjumpmins")


def same_margin(a: dict | None, b: dict) -> bool:
    """True when two margin rows hold the same numbers, bit for bit (NaN equal to NaN): the engine's
    numbers are a function of the book only (calc.exact), so an unchanged book gives the same bits."""
    if a is None:
        return False
    return all(a[f] == b[f] or (math.isnan(a[f]) and math.isnan(b[f])) for f in MARGIN_FIELDS)


def _rows_to_batch(rows: list[dict], schema: TableSchema) -> dict[str, np.ndarray]:
    return {c.name: np.array([r[c.name] for r in rows], dtype=c.dtype) for c in schema.columns}


class CalcServer:
    """Runs a MarginEngine against a live tickerplant and serves the calc RPC ops."""

    def __init__(self, engine: MarginEngine, control: str = TP_CONTROL, ingest: str = TP_INGEST,
                 query: str = CALC_QUERY, name: str = "calc"):
        self.engine = engine
        self.name = name
        self.ingest = ingest
        self.rules = RuleBook()
        self.monitor = AlertMonitor(engine.config.alerts, self.rules)
        self.published: dict[tuple[str, str], dict] = {}     # (account, model) -> last margin row published
        self.journal_alerts: Counter = Counter()              # (account, kind, text) of replayed alert rows
        self.last_stress_ns: dict[str, int] = {}
        self.replaying = False
        self.counters = engine.counters
        self.sub = Subscriber(name, control=control, tables=[*engine.tables, "alertrule", "margin", "alert"],
                              on_batch=self._on_batch)
        self.rpc = RpcServer(query, {"margin": self._op_margin, "whatif": self._op_whatif,
                                     "hedge": self._op_hedge,
                                     "positions": self._op_positions, "drivers": self._op_drivers,
                                     "stress": self._op_stress, "scenarios": self._op_scenarios,
                                     "accounts": self._op_accounts, "status": self._op_status,
                                     "breakdown": self._op_breakdown})
        self.publisher: Publisher | None = None
        self.whatif_before = BeforeCache()
        self._to_check: list[str] = []                        # accounts left in this round of the drift check
        self._drift = 0.0                                     # the round's largest drift so far

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Connects the publisher, replays the journal silently, then publishes what changed."""
        self.publisher = Publisher(self.name, endpoint=self.ingest, on_reject=self._rejected)
        self.replaying = True
        try:
            self.sub.start()
        finally:
            self.replaying = False
        log.info("calc: replayed the journal up to seq %d (%d accounts)", self.engine.seq, len(self.engine.book.accounts))
        self.engine.take_dirty()
        self.publish(sorted(self.engine.book.accounts), observe_unchanged=True)
        self.journal_alerts.clear()

    def serve(self, stop: Callable[[], bool] = lambda: False, poll_ms: int = 100) -> None:
        """The event loop until stop(); an error in one turn is logged and counted, never fatal."""
        poller = zmq.Poller()
        for sock in (self.sub.socket, self.rpc.socket, self.publisher.socket):
            poller.register(sock, zmq.POLLIN)
        next_check = time.monotonic() + self.engine.config.check_interval_s
        while not stop():
            try:
                self._turn(poller, poll_ms)
            except Exception:                                   # calc keeps serving
                self.counters["loop_errors"] += 1
                log.exception("calc: error in the event loop (continuing)")
            if time.monotonic() >= next_check:
                self._to_check, self._drift = sorted(self.engine.risk), 0.0
                next_check = time.monotonic() + self.engine.config.check_interval_s

    def _turn(self, poller: zmq.Poller, poll_ms: int) -> None:
        """One turn: queries, inputs (until drained or max_stale_ms, answering queries between
        chunks), publishing, acks, and a slice of the periodic full recompute."""
        events = dict(poller.poll(0 if self._to_check else poll_ms))
        if self.rpc.socket in events:
            self.rpc.drain()
        if self.sub.socket in events:
            deadline = time.monotonic() + self.engine.config.max_stale_ms / 1000.0
            while self.sub.drain(DRAIN_CHUNK) == DRAIN_CHUNK and time.monotonic() < deadline:
                self.rpc.drain()
        if self.engine.dirty or self.engine.issues:
            self.publish(self.engine.take_dirty())
        if self.publisher.socket in events or self.publisher.pending:
            self.publisher.poll(0)
        if self._to_check:
            self._check_slice()

    def _check_slice(self) -> None:
        """Up to DRIFT_CHUNK accounts of the running drift-check round, stopping for a waiting query."""
        for _ in range(DRIFT_CHUNK):
            if not self._to_check or self.rpc.waiting():
                break
            self._drift = max(self._drift, self.engine.check_drift([self._to_check.pop()]))
            if not self._to_check:
                log.info("calc: periodic full recompute done, max relative drift %.3g", self._drift)

    def close(self) -> None:
        if self.publisher is not None:
            try:
                self.publisher.flush(timeout=2.0)
            except TickerplantError as e:                   # closing anyway
                log.warning("calc: unacknowledged rows at close: %s", e)
            self.publisher.close()
        self.sub.close()
        self.rpc.close()

    def _rejected(self, msgid: int, error: str) -> None:
        self.counters["rejected"] += 1
        log.error("calc: the tickerplant rejected batch %d: %s", msgid, error)

    # ---- input -----------------------------------------------------------------------------------
    def _on_batch(self, table: str, cols: dict, seq: int) -> None:
        if table == "margin":
            if self.replaying:
                self._replay_margin(cols)
            return
        if table == "alert":
            if self.replaying:
                for sym, kind, severity, text in zip(cols["sym"].tolist(), cols["kind"].tolist(),
                                                     cols["severity"].tolist(), cols["text"].tolist()):
                    self.monitor.replay_alert(sym, kind, severity)
                    self.journal_alerts[(sym, kind, text)] += 1
            return
        if table == "alertrule":             # live and replayed alike: the rules are journaled state
            desks = {a.sym: a.desk for a in self.engine.book.accounts.values()}
            for rule, error in self.rules.apply(rules_from_batch(cols), desks):
                log.warning("calc: %s (ignored)", error)
                self.engine.issues.append(Issue(rule.target or rule.id, "rule", error))
            self.engine.seq = max(self.engine.seq, seq)      # an input applied (used from the next margin row)
            return
        self.engine.apply(table, cols, seq)

    def _replay_margin(self, cols: dict) -> None:
        names = list(cols)
        times = cols["time"].astype(np.int64)
        for i, values in enumerate(zip(*(cols[c].tolist() for c in names))):
            row = dict(zip(names, values))
            row["time"] = int(times[i])
            self.published[(row["sym"], row["model"])] = row
            models = self.engine.model_names(row["sym"])
            if models and row["model"] == models[0]:
                self.monitor.replay_margin(row, self.engine.book.accounts.get(row["sym"]))

    # ---- output ----------------------------------------------------------------------------------
    def publish(self, accounts: list[str], observe_unchanged: bool = False) -> tuple[int, int]:
        """Publishes the changed margin rows of `accounts` and every alert due; returns (margins, alerts).
        observe_unchanged (after a replay): the alert rules also see primary rows that are not
        republished, so an alert lost with a kill between a row and its alert still goes out."""
        eng = self.engine
        margins: list[dict] = []
        alerts: list[dict] = []
        for issue in eng.take_issues():
            key = (issue.account, issue.kind, issue.text)
            if self.journal_alerts[key] > 0:
                self.journal_alerts[key] -= 1
                continue
            alerts.append(self._issue_row(issue))
        for account in accounts:
            rows = eng.margin(account)
            events: list[AlertEvent] = []
            acct = eng.book.accounts.get(account)
            for i, row in enumerate(rows):
                row["time"], row["seq"] = eng.time_ns, eng.seq
                if not same_margin(self.published.get((account, row["model"])), row):
                    self.published[(account, row["model"])] = row
                    margins.append(row)
                elif not (i == 0 and observe_unchanged):
                    continue
                if i == 0:
                    events += self.monitor.observe(row, acct)
            alerts += self._alert_rows(account, rows, events)
        if margins:
            self.publisher.publish("margin", _rows_to_batch(margins, self.sub.schemas["margin"]))
            self.counters["published_margin"] += len(margins)
        if alerts:
            self.publisher.publish("alert", alert_batch(alerts))
            self.counters["published_alert"] += len(alerts)
        return len(margins), len(alerts)

    def _stress(self, account: str) -> dict | None:
        scenario = self.engine.config.alerts.stress_scenario
        if not scenario or not self.engine.runs_stress(account):
            return None
        try:
            return self.engine.stress(account, scenario)
        except (LookupError, ValueError, ArithmeticError) as e:     # an alert goes out without it
            self.counters["stress_failed"] += 1
            log.warning("calc: stress %s of %s failed: %s", scenario, account, e)
            return None

    def _alert_rows(self, account: str, rows: list[dict], events: list[AlertEvent]) -> list[dict]:
        """Runs the stress check when due (or when an alert fires) and formats the alerts."""
        eng = self.engine
        if not rows:
            return []
        stress = None
        interval_ns = eng.config.alerts.stress_interval_s * 1e9
        last = self.last_stress_ns.get(account)
        if events or last is None or eng.time_ns - last >= interval_ns:
            self.last_stress_ns[account] = eng.time_ns
            stress = self._stress(account)
            if stress is not None:
                events = events + self.monitor.observe_stress(eng.book.accounts[account], rows[0]["model"], stress)
        if not events:
            return []
        drivers = format_drivers(eng.drivers(account, top=eng.config.alerts.top_drivers))
        loss = stress["loss"] if stress else math.nan
        return [alert_row(eng.time_ns, e.account, e.kind, e.severity,
                          e.text + (f"; stress {stress['scenario']}: loss {stress['loss']:,.0f}, call "
                                    f"{stress['call']:,.0f}" if stress and e.kind != "stresscall" else ""),
                          model=e.model, value=e.value, threshold=e.threshold, drivers=drivers, stress=loss)
                for e in events]

    def _issue_row(self, issue: Issue) -> dict:
        return alert_row(self.engine.time_ns, issue.account, issue.kind, WARN, issue.text, model=issue.model)

    # ---- RPC ops (docs/protocol.md) --------------------------------------------------------------
    def _accounts_arg(self, req: dict) -> list[str]:
        """The requested accounts, each once in request order (all of the book's for none); a
        request naming more distinct accounts than the book holds is refused, so the work of a
        margin query is bounded by the book, never by the length of the list a client sent."""
        accounts = req.get("accounts")
        if accounts is None:
            return sorted(self.engine.book.accounts)
        if not isinstance(accounts, (list, tuple)) or not all(isinstance(a, str) for a in accounts):
            raise ValueError("type: accounts must be a list of account names")
        unique = list(dict.fromkeys(accounts))
        if len(unique) > max(len(self.engine.book.accounts), 1):
            raise ValueError(f"limit: {len(unique)} distinct accounts asked for, the book holds "
                             f"{len(self.engine.book.accounts)}")
        return unique

    def _op_margin(self, req: dict) -> dict:
        rows = []
        for account in self._accounts_arg(req):
            for row in self.engine.margin(account):
                row["time"], row["seq"] = self.engine.time_ns, self.engine.seq
                rows.append(row)
        return {"margin": _rows_to_batch(rows, self.sub.schemas["margin"])}

    def _op_whatif(self, req: dict) -> dict:
        return what_if(self.engine, _required(req, "account"), _required(req, "trades"), req.get("stress"),
                       req.get("top"), cache=self.whatif_before)

    def _op_hedge(self, req: dict) -> dict:
        return hedge(self.engine, _required(req, "account"), _required(req, "sym"), req.get("target"),
                     req.get("scenario"), req.get("points", DEFAULT_POINTS), cache=self.whatif_before)

    def _op_positions(self, req: dict) -> dict:
        account = _required(req, "account")
        return {"account": account, "positions": self.engine.positions(account)}

    def _op_drivers(self, req: dict) -> dict:
        account = _required(req, "account")
        drivers = self.engine.drivers(account, req.get("model"), top=req.get("top"))
        return {"account": account, "drivers": {"sym": [s for s, _ in drivers], "contribution": [c for _, c in drivers]}}

    def _op_breakdown(self, req: dict) -> dict:
        account = _required(req, "account")
        return {"account": account, "breakdown": self.engine.breakdown(account)}

    def _op_stress(self, req: dict) -> dict:
        scenario = req.get("scenario") or self.engine.config.alerts.stress_scenario
        return self.engine.stress(_required(req, "account"), scenario)

    def _op_scenarios(self, req: dict) -> dict:
        cfg = self.engine.config
        return {"scenarios": {n: asdict(s) for n, s in cfg.stress.items()},
                "models": {n: asdict(m) for n, m in cfg.models.items()}}

    def _op_accounts(self, req: dict) -> dict:
        book = self.engine.book
        accounts = [book.accounts[a] for a in sorted(book.accounts)]
        cols = {"sym": [a.sym for a in accounts]}
        for c in ACCOUNT_COLUMNS:
            cols[c] = [getattr(a, c) for a in accounts]
        cols["models"] = [",".join(self.engine.model_names(a.sym)) for a in accounts]
        cols["stress"] = [self.engine.runs_stress(a.sym) for a in accounts]
        return {"accounts": cols}

    def _op_status(self, req: dict) -> dict:
        return {"seq": self.engine.seq, "time": self.engine.time_ns, "accounts": len(self.engine.book.accounts),
                "counters": dict(self.counters), "pending": self.publisher.pending if self.publisher else 0}


def _required(req: dict, key: str):
    if key not in req or req[key] in (None, ""):
        raise ValueError(f"missing argument: {key}")
    return req[key]
