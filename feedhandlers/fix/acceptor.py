"""The QuickFIX application of the drop-copy acceptor: ExecutionReports in, durable `fill` rows out.

For each incoming application message (on the session's QuickFIX thread):
- not an ExecutionReport: BusinessMessageReject (35=j, unsupported message type);
- a field booking needs is missing: BusinessMessageReject reason 5 naming the tag; a bad value (an
  identifier that is not printable ASCII or too long, LastQty or LastPx not > 0, a bad number or
  timestamp, see execreport.py): session Reject (35=3) reason 5 (value incorrect) or 6 (data format);
- other ExecTypes: counted, not booked; an ExecID already booked: counted as duplicate, not booked;
- a trade or correction over its fat-finger bound (limits.py): BusinessMessageReject reason 0;
- a cancel or correction of a trade that is not booked (or already cancelled, or rejected when it
  came): BusinessMessageReject reason 1 (unknown ID);
- trade / cancel / correct: rows planned by the session's Book, published (with a `data` alert the
  first time an unknown account or instrument is seen) through the session's channel, then committed;
- an unexpected error while booking (a bug): BusinessMessageReject reason 0 with the error, logged
  with its traceback, rather than a crash that every restart would repeat on the resent message.
Every reject carries the reason in Text (58) and is also published as a `data` alert naming the
session, the ExecID and the reason (published before the reject is sent and the message's sequence
number consumed, so a crash in between repeats the alert, never loses it). Received values appear in
texts only as printable ASCII (execreport.shown). Everything rejected is logged and counted per
session (`DropCopyApp.counters`).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter

import quickfix as fix

from feedhandlers.fix.batches import alert_batch
from feedhandlers.fix.book import Book, BookingError
from feedhandlers.fix.channel import SessionChannel, Stopping
from feedhandlers.fix.execreport import (ACCOUNT, CANCEL, EXEC_ID, OTHER, BadValue, MissingField, fields_of,
                                         is_identifier, parse_execution, shown)
from feedhandlers.fix.limits import Limits
from feedhandlers.fix.refdata import RefData
from feedhandlers.fix.threadstate import pin_thread_state

log = logging.getLogger("feedhandlers.fix")

BEGIN_STRING, MSG_SEQ_NUM, MSG_TYPE, SENDER_COMP_ID = "8", "34", "35", "49"
MSGTYPE_EXECUTION_REPORT = "8"
BUSINESS_REJECT_OTHER, BUSINESS_REJECT_UNKNOWN_ID, BUSINESS_REJECT_FIELD_MISSING = 0, 1, 5
SESSION_REJECT_VALUE_INCORRECT, SESSION_REJECT_DATA_FORMAT = 5, 6


class DropCopyApp(fix.Application):
    """Books ExecutionReports of every session; `channel_for(session_key)` gives each its channel."""

    def __init__(self, books: dict[str, Book], refdata: RefData, channel_for, limits: Limits):
        super().__init__()
        self.books = books
        self.refdata = refdata
        self.limits = limits
        self.channel_for = channel_for        # session key -> SessionChannel, made once per session
        self.channels: dict[str, SessionChannel] = {}
        self.counters: dict[str, Counter] = {}
        self._lock = threading.Lock()

    # --- sessions ------------------------------------------------------------------------------
    @staticmethod
    def session_key(session_id: fix.SessionID) -> str:
        """The `session` column of a fill: the counterparty's SenderCompID."""
        return session_id.getTargetCompID().getString()

    def onCreate(self, session_id):
        key = self.session_key(session_id)
        with self._lock:
            self.books.setdefault(key, Book(key))
            self.counters.setdefault(key, Counter())
            self.channels[key] = self.channel_for(key, fix.Session.lookupSession(session_id))

    def onLogon(self, session_id):
        session = fix.Session.lookupSession(session_id)
        log.info("logon %s (next incoming seq %d)", session_id.toString(), session.getExpectedTargetNum())

    def onLogout(self, session_id):
        log.info("logout %s", session_id.toString())

    def toAdmin(self, message, session_id):
        pass

    def fromAdmin(self, message, session_id):
        if message.getHeader().getField(35) == "3":
            log.warning("%s sent a session Reject: %s", session_id.toString(), message.toString().replace("\x01", "|"))

    def toApp(self, message, session_id):
        pass

    # --- application messages --------------------------------------------------------------------
    def fromApp(self, message, session_id):
        pin_thread_state()
        # one pass over the message string: header values too (SWIG getters cost more than parsing)
        fields = fields_of(message.toString())
        key = fields[SENDER_COMP_ID]          # the counterparty's SenderCompID: our session's TargetCompID
        counters = self.counters[key]
        channel = self.channels[key]
        fix_seq = int(fields[MSG_SEQ_NUM])
        if fields[MSG_TYPE] != MSGTYPE_EXECUTION_REPORT:
            counters["rejected unsupported message type"] += 1
            log.warning("%s seq %d: unsupported message type %s", key, fix_seq, fields[MSG_TYPE])
            raise fix.UnsupportedMessageType()
        counters["execution reports"] += 1
        try:
            self._process(key, fix_seq, fields, session_id, counters, channel)
        except Stopping as e:
            # shutting down while this message is not durable: exit at once without acknowledging it
            # (QuickFIX's store is not advanced, so it is resent); a normal exit would wait on this thread
            log.error("%s; exiting without acknowledging FIX seq %d", e, fix_seq)
            logging.shutdown()
            os._exit(1)
        except Exception as e:     # a bug must not take every session down in a crash loop: say so, loudly
            counters["rejected internal error"] += 1
            exec_id = fields.get(EXEC_ID, "")
            log.exception("%s seq %d: internal error booking ExecID %s", key, fix_seq, shown(exec_id))
            self._business_reject(session_id, fix_seq, exec_id, f"internal error: {e}", BUSINESS_REJECT_OTHER)

    def _process(self, key, fix_seq, fields, session_id, counters, channel) -> None:
        try:
            ex = parse_execution(fields, fields[BEGIN_STRING])
        except MissingField as e:
            self._refuse(key, fix_seq, fields, channel, counters, f"rejected missing tag {e.tag}", str(e))
            self._business_reject(session_id, fix_seq, fields.get(EXEC_ID, ""), str(e), BUSINESS_REJECT_FIELD_MISSING)
            return
        except BadValue as e:
            self._refuse(key, fix_seq, fields, channel, counters, f"rejected bad tag {e.tag}", str(e))
            reason = SESSION_REJECT_DATA_FORMAT if e.data_format else SESSION_REJECT_VALUE_INCORRECT
            self._session_reject(session_id, fix_seq, e.tag, str(e), reason)
            return
        book = self.books[key]
        if ex.kind == OTHER:
            counters[f"exectype {ex.exec_type} (not booked)"] += 1
            channel.processed(fix_seq)
            return
        if book.is_duplicate(ex.exec_id):
            counters["duplicate execid"] += 1
            if not ex.poss_dup:
                log.warning("%s seq %d: ExecID %s already booked (no PossDupFlag); not booked again",
                            key, fix_seq, ex.exec_id)
            channel.processed(fix_seq)
            return
        if ex.kind != CANCEL:
            assetclass, multiplier = self.refdata.contract_of(ex.sym)
            breach = self.limits.breach(ex.qty, ex.price, ex.sym, assetclass, multiplier)
            if breach is not None:
                self._refuse(key, fix_seq, fields, channel, counters, "rejected fat finger", breach)
                self._business_reject(session_id, fix_seq, ex.exec_id, breach, BUSINESS_REJECT_OTHER)
                return
        try:
            rows = book.rows_for(ex, self.refdata.status_of)
        except BookingError as e:
            self._refuse(key, fix_seq, fields, channel, counters, "rejected unknown execrefid", str(e))
            self._business_reject(session_id, fix_seq, ex.exec_id, str(e), BUSINESS_REJECT_UNKNOWN_ID)
            return
        alerts = [alert_batch(row.time, row.account, text) for row, text in self.refdata.first_unknowns(rows)]
        channel.book(fix_seq, rows, alerts)
        book.commit(rows)
        counters[f"booked {ex.kind}"] += 1
        if rows[-1].status != "ok":
            counters["booked with unknown reference data"] += 1

    @staticmethod
    def _refuse(key, fix_seq, fields, channel, counters, counter: str, reason: str) -> None:
        """Counts, logs and publishes (as a `data` alert, books nothing) the rejection of message `fix_seq`;
        the caller then sends the FIX reject."""
        counters[counter] += 1
        log.warning("%s seq %d rejected: %s", key, fix_seq, reason)
        account = fields.get(ACCOUNT, "")
        text = f"session {key} ExecID {shown(fields.get(EXEC_ID, ''))} rejected, not booked: {reason}"
        channel.book(fix_seq, [], [alert_batch(time.time_ns(), account if is_identifier(account) else "", text)])

    @staticmethod
    def _session_reject(session_id, fix_seq: int, tag: int, text: str, reason: int) -> None:
        reject = fix.Message()
        reject.getHeader().setField(fix.MsgType(fix.MsgType_Reject))
        reject.setField(fix.RefSeqNum(fix_seq))
        reject.setField(fix.RefTagID(tag))
        reject.setField(fix.RefMsgType(MSGTYPE_EXECUTION_REPORT))
        reject.setField(fix.SessionRejectReason(reason))
        reject.setField(fix.Text(text))
        fix.Session.sendToTarget(reject, session_id)

    @staticmethod
    def _business_reject(session_id, fix_seq: int, ref_id: str, text: str, reason: int) -> None:
        reject = fix.Message()
        reject.getHeader().setField(fix.MsgType(fix.MsgType_BusinessMessageReject))
        reject.setField(fix.RefSeqNum(fix_seq))
        reject.setField(fix.RefMsgType(MSGTYPE_EXECUTION_REPORT))
        if ref_id:
            reject.setField(fix.BusinessRejectRefID(ref_id if is_identifier(ref_id) else shown(ref_id)))
        reject.setField(fix.BusinessRejectReason(reason))
        reject.setField(fix.Text(text))
        fix.Session.sendToTarget(reject, session_id)
