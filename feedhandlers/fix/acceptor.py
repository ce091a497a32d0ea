"""The QuickFIX application of the drop-copy acceptor: ExecutionReports in, durable `fill` rows out.

For each incoming application message (on the session's QuickFIX thread):
- not an ExecutionReport: BusinessMessageReject (35=j, unsupported message type);
- a field booking needs is missing: BusinessMessageReject reason 5 naming the tag; a bad value:
  session Reject (35=3) reason 5 (value incorrect) or 6 (data format);
- other ExecTypes: counted, not booked; an ExecID already booked: counted as duplicate, not booked;
- trade / cancel / correct: rows planned by the session's Book, published (with a `data` alert the
  first time an unknown account or instrument is seen) through the session's channel, then committed;
- a cancel or correction of a trade that is not booked (or already cancelled): BusinessMessageReject
  reason 1 (unknown ID) with the reason in Text, and a `data` alert;
- an unexpected error while booking (a bug): BusinessMessageReject reason 0 with the error, logged
  with its traceback, rather than a crash that every restart would repeat on the resent message.
Everything rejected or odd is logged and counted per session (`DropCopyApp.counters`).
"""
from __future__ import annotations

import logging
import os
import threading
from collections import Counter

import quickfix as fix

from feedhandlers.fix.batches import alert_batch
from feedhandlers.fix.book import Book, BookingError
from feedhandlers.fix.channel import SessionChannel, Stopping
from feedhandlers.fix.execreport import OTHER, BadValue, MissingField, fields_of, parse_execution
from feedhandlers.fix.refdata import RefData
from feedhandlers.fix.threadstate import pin_thread_state

log = logging.getLogger("feedhandlers.fix")

BEGIN_STRING, MSG_SEQ_NUM, MSG_TYPE, SENDER_COMP_ID = "8", "34", "35", "49"
MSGTYPE_EXECUTION_REPORT = "8"
BUSINESS_REJECT_OTHER, BUSINESS_REJECT_UNKNOWN_ID = 0, 1


class DropCopyApp(fix.Application):
    """Books ExecutionReports of every session; `channel_for(session_key)` gives each its channel."""

    def __init__(self, books: dict[str, Book], refdata: RefData, channel_for):
        super().__init__()
        self.books = books
        self.refdata = refdata
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
            ex = parse_execution(fields, fields[BEGIN_STRING])
        except MissingField as e:
            counters[f"rejected missing tag {e.tag}"] += 1
            log.warning("%s seq %d rejected: %s", key, fix_seq, e)
            raise fix.FieldNotFound(e.tag) from None
        except BadValue as e:
            counters[f"rejected bad tag {e.tag}"] += 1
            log.warning("%s seq %d rejected: %s", key, fix_seq, e)
            raise (fix.IncorrectDataFormat(e.tag) if e.data_format else fix.IncorrectTagValue(e.tag)) from None
        try:
            self._book(key, fix_seq, ex, session_id, counters, channel)
        except Stopping as e:
            # shutting down while this message is not durable: exit at once without acknowledging it
            # (QuickFIX's store is not advanced, so it is resent); a normal exit would wait on this thread
            log.error("%s; exiting without acknowledging FIX seq %d", e, fix_seq)
            logging.shutdown()
            os._exit(1)
        except Exception as e:     # a bug must not take every session down in a crash loop: say so, loudly
            counters["rejected internal error"] += 1
            log.exception("%s seq %d: internal error booking ExecID %s", key, fix_seq, ex.exec_id)
            self._business_reject(session_id, fix_seq, ex.exec_id, f"internal error: {e}", BUSINESS_REJECT_OTHER)

    def _book(self, key, fix_seq, ex, session_id, counters, channel) -> None:
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
        try:
            rows = book.rows_for(ex, self.refdata.status_of)
        except BookingError as e:
            counters["rejected unknown execrefid"] += 1
            log.warning("%s seq %d rejected: %s", key, fix_seq, e)
            channel.book(fix_seq, [], [alert_batch(ex.time_ns, "", f"{key} ExecID {ex.exec_id}: {e}")])
            self._business_reject(session_id, fix_seq, ex.exec_id, str(e), BUSINESS_REJECT_UNKNOWN_ID)
            return
        alerts = [alert_batch(row.time, row.account, text) for row, text in self.refdata.first_unknowns(rows)]
        channel.book(fix_seq, rows, alerts)
        book.commit(rows)
        counters[f"booked {ex.kind}"] += 1
        if rows[-1].status != "ok":
            counters["booked with unknown reference data"] += 1

    @staticmethod
    def _business_reject(session_id, fix_seq: int, ref_id: str, text: str, reason: int) -> None:
        reject = fix.Message()
        reject.getHeader().setField(fix.MsgType(fix.MsgType_BusinessMessageReject))
        reject.setField(fix.RefSeqNum(fix_seq))
        reject.setField(fix.RefMsgType(MSGTYPE_EXECUTION_REPORT))
        reject.setField(fix.BusinessRejectRefID(ref_id))
        reject.setField(fix.BusinessRejectReason(reason))
        reject.setField(fix.Text(text))
        fix.Session.sendToTarget(reject, session_id)
