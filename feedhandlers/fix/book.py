"""Per-session booking state: which ExecIDs are booked and which trades are live (for reversals).

`Book.rows_for(execution)` plans the `fill` rows an Execution books, without changing anything;
`Book.commit(rows)` applies rows once they are durable, and is also how the state is rebuilt at
start-up from the day's `fill` rows replayed from the tickerplant journal, so live booking and
recovery share one code path. Row conventions (q/schema.q `fill`):
- trade (F): one row, qty signed by side;
- trade cancel (H): one reversal row (qty negated, instrument / account / price of the booked trade),
  refexecid = the ExecRefID;
- trade correct (G): a reversal row then a replacement row, both with the correction's ExecID and
  refexecid; the replacement becomes the live trade, and a later cancel or correction may refer
  to either the original ExecID or the correction's.
"""
from __future__ import annotations

from typing import Callable, Iterable, NamedTuple

from feedhandlers.fix.execreport import CANCEL, CORRECT, TRADE, Execution


class FillRow(NamedTuple):
    time: int                 # UTC ns
    sym: str
    account: str
    qty: float
    price: float
    execid: str
    orderid: str
    exectype: str
    refexecid: str
    session: str
    status: str


class Trade(NamedTuple):
    sym: str
    account: str
    qty: float
    price: float
    orderid: str
    status: str


class BookingError(ValueError):
    """A cancel or correction that cannot be applied (unknown or already reversed ExecRefID)."""


class Book:
    def __init__(self, session: str):
        self.session = session
        self.booked: set[str] = set()           # every ExecID that produced rows
        self.live: dict[str, Trade] = {}        # ExecID -> the trade currently standing
        self.replaced_by: dict[str, str] = {}   # corrected ExecID -> the correction's ExecID

    def is_duplicate(self, exec_id: str) -> bool:
        return exec_id in self.booked

    def resolve(self, exec_id: str) -> str:
        """The ExecID of the trade standing for `exec_id` after any corrections."""
        while exec_id in self.replaced_by:
            exec_id = self.replaced_by[exec_id]
        return exec_id

    def rows_for(self, ex: Execution, status_of: Callable[[str, str], str]) -> list[FillRow]:
        """The rows booking `ex` adds (ex.kind TRADE, CANCEL or CORRECT); raises BookingError."""
        if ex.kind == TRADE:
            return [FillRow(ex.time_ns, ex.sym, ex.account, ex.qty, ex.price, ex.exec_id, ex.order_id,
                            TRADE, "", self.session, status_of(ex.account, ex.sym))]
        target = self.resolve(ex.ref_exec_id)
        trade = self.live.get(target)
        if trade is None:
            if target in self.booked:
                raise BookingError(f"ExecRefID {ex.ref_exec_id} was already cancelled")
            raise BookingError(f"ExecRefID {ex.ref_exec_id} is not a booked trade of session {self.session}")
        order_id = ex.order_id or trade.orderid
        reversal = FillRow(ex.time_ns, trade.sym, trade.account, -trade.qty, trade.price, ex.exec_id,
                           order_id, ex.kind, ex.ref_exec_id, self.session, trade.status)
        if ex.kind == CANCEL:
            return [reversal]
        return [reversal, FillRow(ex.time_ns, ex.sym, ex.account, ex.qty, ex.price, ex.exec_id, order_id,
                                  CORRECT, ex.ref_exec_id, self.session, status_of(ex.account, ex.sym))]

    def commit(self, rows: Iterable[FillRow]) -> None:
        """Applies booked rows, in order (live after the durable ack, or replayed from the journal)."""
        for r in rows:
            if r.exectype == TRADE or (r.exectype == CORRECT and r.execid in self.booked):
                self.live[r.execid] = Trade(r.sym, r.account, r.qty, r.price, r.orderid, r.status)
            else:                                   # a reversal (cancel, or first row of a correction)
                target = self.resolve(r.refexecid)
                self.live.pop(target, None)
                if r.exectype == CORRECT:
                    self.replaced_by[target] = r.execid
            self.booked.add(r.execid)
