"""Reads an ExecutionReport (35=8) into an `Execution`: what happened, and the fields booking needs.

Pure Python over a {tag: value} mapping of strings (tags as decimal strings, e.g. "55") (no QuickFIX objects), so it is unit-testable and version-aware:
- FIX 4.3 / 4.4 / 5.0: ExecType (150) F = trade, H = trade cancel, G = trade correct.
- FIX 4.2: a trade is ExecType 1 / 2 (partial fill / fill) with ExecTransType (20) 0 = new,
  1 = cancel, 2 = correct (cancels and corrections reference the trade by ExecRefID, 19).
Anything else is `OTHER` (counted, not booked). A field the booking needs that is missing raises
`MissingField`, one with an unusable value `BadValue`; the acceptor turns them into the rejects FIX
prescribes (BusinessMessageReject 35=j reason 5, session Reject 35=3 reason 5 / 6).

Clean data at the edge: every identifier booked (ExecID, ExecRefID, OrderID, Symbol, Account) must be
1 to `ID_MAX_LEN` printable ASCII characters (0x20-0x7E): a NUL or other control character, or any
non-ASCII character (FIX strings are ASCII unless sent in the Encoded fields, which are not booked),
is a BadValue (data format), as is a longer value (value incorrect); LastQty and LastPx must be > 0;
a timestamp must be representable as ns since 1970 (before 2262). `shown(value)` is the printable
ASCII form of any received value, for reject texts, alerts and logs.
"""
from __future__ import annotations

import datetime
import functools
import math
import re
from typing import NamedTuple

TRADE, CANCEL, CORRECT, OTHER = "F", "H", "G", "other"

ACCOUNT, EXEC_ID, EXEC_REF_ID, EXEC_TRANS_TYPE, LAST_PX, LAST_QTY = "1", "17", "19", "20", "31", "32"
ORDER_ID, SENDING_TIME, SIDE, SYMBOL, TRANSACT_TIME = "37", "52", "54", "55", "60"
EXEC_TYPE, POSS_DUP = "150", "43"

# Side (54): buys are booked with a positive quantity, sells (incl. short sells) negative
BUY_SIDES = frozenset("13")            # 1 buy, 3 buy minus
SELL_SIDES = frozenset("2456")         # 2 sell, 4 sell plus, 5 sell short, 6 sell short exempt
_EPOCH = datetime.date(1970, 1, 1)
_MAX_DAYS = (datetime.date(2262, 1, 1) - _EPOCH).days      # int64 ns of UTC hold up to 2262-04-11
ID_MAX_LEN = 64
_IDENTIFIER = re.compile(r"[\x20-\x7e]{1,%d}" % ID_MAX_LEN)
_RAW_BYTE = re.compile(r"\\udc([89a-f][0-9a-f])")     # surrogateescape's U+DC80-DCFF in ascii() form


class MissingField(ValueError):
    """A field required to book this ExecutionReport is absent."""

    def __init__(self, tag: str, reason: str):
        super().__init__(f"tag {tag} missing: {reason}")
        self.tag = int(tag)


class BadValue(ValueError):
    """A field has a value that cannot be booked (`data_format`: it is not even of the right type)."""

    def __init__(self, tag: str, value: str, reason: str, data_format: bool = False):
        super().__init__(f"tag {tag}={shown(value)}: {reason}")
        self.tag = int(tag)
        self.reason = reason
        self.data_format = data_format


class Execution(NamedTuple):
    kind: str                 # TRADE, CANCEL, CORRECT or OTHER
    exec_type: str            # the raw ExecType (150) value, for counting OTHER
    exec_id: str
    ref_exec_id: str = ""     # the execution a cancel / correction refers to
    time_ns: int = 0          # TransactTime (60), else SendingTime (52), UTC ns
    sym: str = ""
    account: str = ""
    qty: float = 0.0          # signed by Side: buy > 0
    price: float = 0.0
    order_id: str = ""
    poss_dup: bool = False


def shown(value: str, limit: int = ID_MAX_LEN) -> str:
    """`value` quoted as printable ASCII (control and non-ASCII characters escaped, as Python's
    ascii() does; a byte that was not UTF-8, which QuickFIX hands over as a lone surrogate, as the
    byte: FF FE -> '\\xff\\xfe'), cut to `limit` characters: safe for a reject's Text, an alert, a log."""
    return _RAW_BYTE.sub(r"\\x\1", ascii(value[:limit])) + ("..." if len(value) > limit else "")


_UTC_SECOND = re.compile(r"(\d{4})(\d\d)(\d\d)-(\d\d):(\d\d):(\d\d)", re.ASCII)


@functools.lru_cache(maxsize=256)
def _second_ns(text: str) -> int:
    """UTC ns of `YYYYMMDD-HH:MM:SS`; ValueError if it is not one. Cached: a stream of fills stamps
    the same few seconds over and over."""
    m = _UTC_SECOND.fullmatch(text)
    if m is None:
        raise ValueError(text)
    year, month, day, hh, mm, ss = map(int, m.groups())
    if hh > 23 or mm > 59 or ss > 60:
        raise ValueError(text)
    days = (datetime.date(year, month, day) - _EPOCH).days
    if not 0 <= days < _MAX_DAYS:
        raise ValueError(text)
    return days * 86_400_000_000_000 + ((hh * 60 + mm) * 60 + ss) * 1_000_000_000


def parse_utc_timestamp(tag: str, text: str) -> int:
    """FIX UTCTimestamp `YYYYMMDD-HH:MM:SS[.fff[fff[fff]]]` -> UTC nanoseconds."""
    try:
        ns = _second_ns(text[:17])
        if len(text) > 17:
            digits = text[18:]
            if text[17] != "." or not 0 < len(digits) <= 9 or not (digits.isascii() and digits.isdigit()):
                raise ValueError(text)
            ns += int(digits.ljust(9, "0"))
        return ns
    except ValueError:
        raise BadValue(tag, text, "not a UTCTimestamp YYYYMMDD-HH:MM:SS[.sss] from 1970 to 2261",
                       data_format=True) from None


def _number(fields: dict, tag: str, what: str) -> float:
    text = fields.get(tag)
    if text is None or text == "":
        raise MissingField(tag, f"{what} is required to book a trade")
    try:
        value = float(text)
    except ValueError:
        raise BadValue(tag, text, f"{what} is not a number", data_format=True) from None
    if not math.isfinite(value):
        raise BadValue(tag, text, f"{what} must be finite")
    return value


def _text(fields: dict, tag: str, what: str) -> str:
    value = fields.get(tag, "")
    if value == "":
        raise MissingField(tag, f"{what} is required")
    return value


def is_identifier(value: str) -> bool:
    """True for 1 to ID_MAX_LEN printable ASCII characters (0x20-0x7E)."""
    return _IDENTIFIER.fullmatch(value) is not None


def _identifier(fields: dict, tag: str, what: str, required: bool = True) -> str:
    """A text field that is booked: printable ASCII, 1 to ID_MAX_LEN characters ("" if optional and absent)."""
    value = _text(fields, tag, what) if required else fields.get(tag, "")
    if value == "" or is_identifier(value):
        return value
    if len(value) > ID_MAX_LEN:
        raise BadValue(tag, value, f"{what} is longer than {ID_MAX_LEN} characters")
    raise BadValue(tag, value, f"{what} may hold only printable ASCII characters (0x20-0x7E)", data_format=True)


def _kind(fields: dict, begin_string: str) -> tuple[str, str]:
    exec_type = _text(fields, EXEC_TYPE, "ExecType")
    if begin_string <= "FIX.4.2":     # FIX.4.0 .. FIX.4.2 ("FIXT.1.1" sorts after them)
        if exec_type not in ("1", "2"):
            return OTHER, exec_type
        trans = fields.get(EXEC_TRANS_TYPE, "0")
        kind = {"0": TRADE, "1": CANCEL, "2": CORRECT}.get(trans)
        if kind is None:
            return OTHER, f"{exec_type}/{trans}"
        return kind, exec_type
    return {"F": TRADE, "H": CANCEL, "G": CORRECT}.get(exec_type, OTHER), exec_type


def _signed_qty(fields: dict) -> float:
    qty = _number(fields, LAST_QTY, "LastQty")
    if qty <= 0:
        raise BadValue(LAST_QTY, fields[LAST_QTY], "LastQty must be > 0")
    side = _text(fields, SIDE, "Side")
    if side in BUY_SIDES:
        return qty
    if side in SELL_SIDES:
        return -qty
    raise BadValue(SIDE, side, "Side is neither a buy (1, 3) nor a sell (2, 4, 5, 6)")


def parse_execution(fields: dict, begin_string: str) -> Execution:
    """The Execution an ExecutionReport's {tag: value} describes (begin_string picks the dialect)."""
    kind, exec_type = _kind(fields, begin_string)
    if kind == OTHER:
        return Execution(kind=OTHER, exec_type=exec_type, exec_id=fields.get(EXEC_ID, ""))
    exec_id = _identifier(fields, EXEC_ID, "ExecID")
    poss_dup = fields.get(POSS_DUP) == "Y"
    if TRANSACT_TIME in fields:
        time_ns = parse_utc_timestamp(TRANSACT_TIME, fields[TRANSACT_TIME])
    else:
        time_ns = parse_utc_timestamp(SENDING_TIME, _text(fields, SENDING_TIME, "SendingTime"))
    ref = ""
    if kind in (CANCEL, CORRECT):
        ref = _identifier(fields, EXEC_REF_ID, "ExecRefID (the execution cancelled or corrected)")
        if ref == exec_id:
            raise BadValue(EXEC_REF_ID, ref, "ExecRefID equals the message's own ExecID")
    order_id = _identifier(fields, ORDER_ID, "OrderID", required=False)
    if kind == CANCEL:        # the reversal takes everything else from the booked trade
        return Execution(kind=kind, exec_type=exec_type, exec_id=exec_id, ref_exec_id=ref,
                         time_ns=time_ns, order_id=order_id, poss_dup=poss_dup)
    price = _number(fields, LAST_PX, "LastPx")
    if price <= 0:
        raise BadValue(LAST_PX, fields[LAST_PX], "LastPx must be > 0")
    return Execution(kind=kind, exec_type=exec_type, exec_id=exec_id, ref_exec_id=ref, time_ns=time_ns,
                     sym=_identifier(fields, SYMBOL, "Symbol"), account=_identifier(fields, ACCOUNT, "Account"),
                     qty=_signed_qty(fields), price=price, order_id=order_id, poss_dup=poss_dup)


def fields_of(raw: str) -> dict[str, str]:
    """{tag: value} of a SOH-delimited FIX message string (the first occurrence of a tag wins)."""
    fields: dict[str, str] = {}
    first = fields.setdefault
    for item in raw.rstrip("\x01").split("\x01"):
        tag, _, value = item.partition("=")
        first(tag, value)
    return fields
