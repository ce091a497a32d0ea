"""The accounts and instruments the FIX feedhandler checks fills against, followed from the tickerplant.

`RefData` is fed the `account` and `instrument` rows published today (journal replay at start-up,
then live) by a Subscriber polled on its own thread. A fill naming an account or instrument not (yet)
known is booked with status `unknown`; `first_unknowns` says which names to raise a `data` alert
for, once per name per process run, so a stream of fills for one bad name raises one alert.
`contract_of(sym)` gives an instrument's asset class and multiplier for the fat-finger bounds
(feedhandlers/fix/limits.py).
"""
from __future__ import annotations

import logging
import threading

from feedhandlers.fix.book import FillRow

log = logging.getLogger("feedhandlers.fix.refdata")

OK, UNKNOWN = "ok", "unknown"
TABLES = ["instrument", "account"]


class RefData:
    def __init__(self):
        self.accounts: frozenset[str] = frozenset()
        self.syms: frozenset[str] = frozenset()
        self.contracts: dict[str, tuple[str, float]] = {}     # sym -> (asset class, multiplier)
        self._alerted: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def on_batch(self, table: str, cols: dict, seq: int) -> None:
        """Subscriber callback: adds the names of `instrument` / `account` rows."""
        names = {str(s) for s in cols["sym"]}
        with self._lock:
            if table == "instrument":
                self.syms = self.syms | names
                self.contracts = {**self.contracts, **{
                    str(s): (str(a), float(m)) for s, a, m in zip(cols["sym"], cols["assetclass"], cols["multiplier"])}}
            elif table == "account":
                self.accounts = self.accounts | names

    def status_of(self, account: str, sym: str) -> str:
        return OK if account in self.accounts and sym in self.syms else UNKNOWN

    def contract_of(self, sym: str) -> tuple[str, float]:
        """(asset class, multiplier) of an instrument; ("", 1.0) for one not in the reference data."""
        return self.contracts.get(sym, ("", 1.0))

    def first_unknowns(self, rows: list[FillRow]) -> list[tuple[FillRow, str]]:
        """(row, alert text) for each unknown account / instrument of `rows` not alerted before."""
        out = []
        if all(row.status == OK for row in rows):
            return out
        with self._lock:
            for row in rows:
                if row.status != UNKNOWN:
                    continue
                for kind, name, known in (("account", row.account, self.accounts),
                                          ("instrument", row.sym, self.syms)):
                    if name not in known and (kind, name) not in self._alerted:
                        self._alerted.add((kind, name))
                        out.append((row, f"fill {row.execid} (session {row.session}) names unknown "
                                         f"{kind} {name}; booked with status unknown"))
        return out


class RefDataFollower:
    """Keeps a RefData current: a Subscriber to `instrument` and `account`, polled on a daemon thread."""

    def __init__(self, subscriber, refdata: RefData):
        self.subscriber = subscriber
        self.refdata = refdata
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fix-refdata", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.subscriber.poll(200)
            except Exception:       # keep following: a broken batch must not stop reference updates
                log.exception("reference data subscription failed; retrying")
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
