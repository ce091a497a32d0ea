"""Reads a file of raw FIX messages (one per line, fields delimited by `|` or SOH) for replay.

Session-level header and trailer fields are dropped (BeginString, BodyLength, MsgSeqNum, comp IDs,
SendingTime, PossDupFlag, PossResend, OrigSendingTime, CheckSum, ...): the replaying session sets its
own. Admin messages (logon, heartbeats, resend requests ...) are skipped, so a QuickFIX message log
can be replayed as it is. Blank lines and lines starting with `#` are ignored; a line that is not
FIX (`tag=value` fields with a MsgType) is an error naming file and line.
"""
from __future__ import annotations

from pathlib import Path

SESSION_TAGS = frozenset({8, 9, 10, 34, 43, 49, 50, 52, 56, 57, 97, 115, 116, 122, 128, 129, 1128, 1129})
ADMIN_TYPES = frozenset({"0", "1", "2", "3", "4", "5", "A"})
MSG_TYPE = 35


class RawFixError(ValueError):
    """A line of the replay file is not a FIX message."""


def parse_line(line: str, where: str) -> tuple[str, list[tuple[int, str]]]:
    """(MsgType, body fields in order) of one raw message."""
    delimiter = "\x01" if "\x01" in line else "|"
    msg_type = ""
    fields: list[tuple[int, str]] = []
    for item in line.strip().strip(delimiter).split(delimiter):
        tag, sep, value = item.partition("=")
        if not sep or not tag.strip().isdigit():
            raise RawFixError(f"{where}: {item!r} is not a tag=value field")
        tag_no = int(tag)
        if tag_no == MSG_TYPE:
            msg_type = value
        elif tag_no not in SESSION_TAGS:
            fields.append((tag_no, value))
    if not msg_type:
        raise RawFixError(f"{where}: no MsgType (35)")
    return msg_type, fields


def read_messages(path: str | Path) -> list[tuple[str, list[tuple[int, str]]]]:
    """The application messages of a raw FIX file, in order (all parsed before any is sent)."""
    path = Path(path)
    out = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        # a QuickFIX message log prefixes each message with a timestamp: start at BeginString
        start = text.find("8=FIX")
        msg_type, fields = parse_line(text[start:] if start > 0 else text, f"{path}:{lineno}")
        if msg_type not in ADMIN_TYPES:
            out.append((msg_type, fields))
    return out
