"""The rdb process: one loop over the tickerplant subscription and the query RPC socket.

At start-up the Subscriber handshakes with the tickerplant (schemas, journal, current seq) and
replays the day's journal through `on_batch`, so the store holds the day before the first query is
answered; then live batches and queries are served from one zmq.Poller, single-threaded, so a query
always sees whole batches. At end of day the tables are written to the HDB and the memory is freed;
if that write fails the day stays in memory (logged) and is retried at the next end of day.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import zmq

from common.rpc import RpcServer
from rdb.hdb import write_partition
from rdb.queries import QueryHandlers
from rdb.store import Store
from tickerplant.client import Subscriber, TickerplantError

log = logging.getLogger("rdb")


class Rdb:
    def __init__(self, control: str, query: str, hdb: str | Path, name: str = "rdb"):
        self.hdb = Path(hdb)
        self.store = Store({})
        self.queries = QueryHandlers(self.store)
        self.unsaved: dict[str, dict] = {}          # date -> tables whose HDB write failed
        self.apply_errors = 0
        self.subscriber = Subscriber(name, control=control, tables=None, syms=None,
                                     on_batch=self.on_batch, on_eod=self.on_eod)
        self.rpc = RpcServer(query, {**self.queries.handlers(), "status": self.status})
        self.stopping = False

    def on_batch(self, table: str, cols: dict, seq: int) -> None:
        """Applies one batch; a batch the store refuses is logged and counted, never fatal."""
        try:
            if table not in self.store.tables:
                self.store.set_schemas(self.subscriber.schemas)
            self.store.apply(table, cols)
        except Exception as e:                       # noqa: BLE001 - bad data must not stop the rdb
            self.apply_errors += 1
            log.error("seq %d: batch for %s not applied: %s", seq, table, e)

    def on_eod(self, date: str, seq: int) -> None:
        """Writes the day's tables to `<hdb>/date=<date>/` and frees them (retrying earlier failures)."""
        self.unsaved[date] = self.store.tables
        self.store.clear()
        for day, tables in list(self.unsaved.items()):
            try:
                path = write_partition(tables, day, self.hdb)
            except Exception:                        # noqa: BLE001 - keep the day, retry next eod
                log.exception("end of day %s: HDB write failed; the day stays in memory until the next eod", day)
                continue
            del self.unsaved[day]
            log.info("end of day %s (seq %d): wrote %s (%s rows)", day, seq, path,
                     sum(len(t) for t in tables.values()))

    def status(self, req: dict) -> dict:
        return {"seq": self.subscriber.seq, "counts": self.store.counts(), "syms": len(self.store.syms),
                "apply_errors": self.apply_errors, "unsaved_days": sorted(self.unsaved),
                "queries": self.rpc.served, "failed_queries": self.rpc.failed}

    def start(self, retry_s: float = 1.0) -> bool:
        """Subscribes and recovers the day, waiting for the tickerplant if it is not up yet;
        False if told to stop before that."""
        t0 = time.monotonic()
        while True:
            try:
                self.subscriber.start()
                break
            except TickerplantError as e:
                if self.stopping:
                    return False
                log.warning("%s; retrying in %gs", e, retry_s)
                time.sleep(retry_s)
        self.store.set_schemas(self.subscriber.schemas)
        self.store.update_indexes()
        log.info("rdb up: recovered %d rows to seq %d in %.2fs; queries on %s", sum(self.store.counts().values()),
                 self.subscriber.seq, time.monotonic() - t0, self.rpc.endpoint)
        return True

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.subscriber.socket, zmq.POLLIN)
        poller.register(self.rpc.socket, zmq.POLLIN)
        while not self.stopping:
            events = dict(poller.poll(100))
            if self.subscriber.socket in events:
                try:
                    self.subscriber.drain()
                except Exception:                    # noqa: BLE001 - the next heartbeat recovers
                    log.exception("subscription error; recovering from the journal at the next heartbeat")
            if self.rpc.socket in events:
                self.rpc.drain()
        self.close()

    def close(self) -> None:
        self.rpc.close()
        self.subscriber.close()
