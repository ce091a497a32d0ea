"""A QuickFIX initiator session: logs on, sends application messages, records what comes back.

Used by the OMS simulator (`python -m feedhandlers.omsim`), the FIX tests and the FIX benchmark.
Messages are given as (tag, value) pairs of the body plus a MsgType; QuickFIX fills in the header
(BeginString, comp IDs, MsgSeqNum, SendingTime), stores them for resends, and frames them.
Rejects received (35=3 session Reject, 35=j BusinessMessageReject) are kept in `rejects`.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import quickfix as fix

from feedhandlers.fix.execreport import fields_of
from feedhandlers.fix.settings import load_settings

log = logging.getLogger("feedhandlers.omsim")

REJECT_TYPES = ("3", "j")


class _App(fix.Application):
    def __init__(self, owner: "Initiator"):
        super().__init__()
        self.owner = owner

    def onCreate(self, session_id):
        self.owner.session_id = session_id

    def onLogon(self, session_id):
        log.info("logged on %s", session_id.toString())
        self.owner.logged_on.set()

    def onLogout(self, session_id):
        log.info("logged out %s", session_id.toString())
        self.owner.logged_on.clear()

    def toAdmin(self, message, session_id):
        if self.owner.reset_on_logon and message.getHeader().getField(35) == "A":
            message.setField(fix.ResetSeqNumFlag(True))

    def fromAdmin(self, message, session_id):
        self.owner.received(message)

    def toApp(self, message, session_id):
        pass

    def fromApp(self, message, session_id):
        self.owner.received(message)


class Initiator:
    """One QuickFIX initiator session per the settings file (its first [SESSION])."""

    def __init__(self, config: str | Path, state_dir: str | Path, overrides: dict[str, str] | None = None,
                 reset_on_logon: bool = False):
        # QuickFIX keeps raw pointers to the settings and factories: they must outlive the initiator,
        # which is released first (stop(), or first in this __dict__ when collected)
        self.initiator = None
        self.settings = load_settings(config, state_dir, overrides)
        self.store_factory = fix.FileStoreFactory(self.settings)
        self.log_factory = fix.FileLogFactory(self.settings)
        self.reset_on_logon = reset_on_logon
        self.session_id: fix.SessionID | None = None
        self.logged_on = threading.Event()
        self.rejects: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self.app = _App(self)
        self.initiator = fix.SocketInitiator(self.app, self.store_factory, self.settings, self.log_factory)

    def received(self, message: fix.Message) -> None:
        if message.getHeader().getField(35) in REJECT_TYPES:
            fields = fields_of(message.toString())
            log.warning("reject received: %s", message.toString().replace("\x01", "|"))
            with self._lock:
                self.rejects.append(fields)

    def rejects_seen(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self.rejects)

    def start(self, logon_timeout: float | None = 30.0) -> None:
        """Starts connecting; waits for the logon unless logon_timeout is None."""
        self.initiator.start()
        if logon_timeout is not None and not self.logged_on.wait(logon_timeout):
            raise TimeoutError(f"no FIX logon within {logon_timeout:g}s")

    def stop(self) -> None:
        """Logs out and releases the session (QuickFIX keeps one registry of sessions per process)."""
        if self.initiator is not None:
            self.initiator.stop()
            self.initiator = None

    @property
    def session(self) -> fix.Session:
        return fix.Session.lookupSession(self.session_id)

    def send(self, fields: list[tuple[int, str]], msg_type: str = "8") -> bool:
        """Sends one application message (queued in the store and resent later if not logged on)."""
        message = fix.Message()
        message.getHeader().setField(fix.MsgType(msg_type))
        for tag, value in fields:
            message.setField(tag, value)
        return fix.Session.sendToTarget(message, self.session_id)
