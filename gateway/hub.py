"""Fan-out of live `margin` and `alert` rows to gateway subscribers (.u.sub clients, SSE streams).

The feed (gateway.feed) calls `publish(table, columns)` on the event loop for every batch the
tickerplant delivers; each subscription receives the rows of its tables whose `sym` (the account) is
among the accounts it may see, as a columnar batch, through its `sink(table, batch)`.
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common.schema import load_schemas
from gateway.api import ApiError
from gateway.qcodec import schema_qtypes

log = logging.getLogger("gateway.hub")

SUBSCRIBABLE = ("margin", "alert")


@dataclass
class Subscription:
    tables: frozenset[str]
    accounts: frozenset[str] | None      # None: every account
    sink: Callable[[str, dict], None]


class Hub:
    def __init__(self, live: bool = True):
        self.live = live                      # False: no tickerplant feed configured
        schemas = load_schemas()
        self.schemas = {t: schemas[t] for t in SUBSCRIBABLE}
        self.qtypes = schema_qtypes(self.schemas)
        self._subs: dict[int, Subscription] = {}
        self._ids = itertools.count(1)
        self.published = 0

    def add(self, tables, accounts, sink) -> int:
        if not self.live:
            raise ApiError("nyi: subscriptions need the gateway started with a tickerplant (--control)")
        sid = next(self._ids)
        self._subs[sid] = Subscription(frozenset(tables), None if accounts is None else frozenset(accounts), sink)
        return sid

    def remove(self, sid: int) -> None:
        self._subs.pop(sid, None)

    def __len__(self) -> int:
        return len(self._subs)

    def publish(self, table: str, columns: dict) -> None:
        self.published += 1
        syms = np.asarray(columns.get("sym", []), dtype=object)
        for sid, sub in list(self._subs.items()):
            if table not in sub.tables:
                continue
            if sub.accounts is None:
                rows = columns
            else:
                mask = np.isin(syms, list(sub.accounts))
                if not mask.any():
                    continue
                rows = columns if mask.all() else {c: np.asarray(v)[mask] for c, v in columns.items()}
            try:
                sub.sink(table, rows)
            except ConnectionError as e:
                log.warning("subscriber %d dropped: %s", sid, e)
                self.remove(sid)
            except Exception:
                log.exception("subscriber %d failed; dropped", sid)
                self.remove(sid)
