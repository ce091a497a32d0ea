"""The wire between margintick processes, each frame defined once: every process builds and parses
its messages with these functions (docs/protocol.md describes the same layouts). Batches themselves
are `common.codec.pack` bytes; the journal's record framing is tickerplant/journal.py.

- Ingest (publisher DEALER -> tickerplant ROUTER): an update is `[ingest_head(msgid, name, table),
  payload]`, a hello `[HELLO, name]`; the tickerplant answers with `ack`, `reject`, `resend`,
  `hello_reply` or `failure` bodies, told apart by `ingest_reply`.
- Publish (tickerplant PUB -> subscriber SUB): `[topic, publish_header(seq, prev, segs), payload]`
  on `table_topic(table)` (every row of a table) or `group_topic(table, syms)` (the rows of a sym
  group); events `[HEARTBEAT, pack(info)]` and `[EOD, pack(info)]`.
- Request/reply (common/rpc.py: ROUTER server, DEALER client): `[request_id(n), request(op, args)]`
  answered with `[request_id, pack(ok_reply(fields))]` or `[request_id, pack(error_reply(text))]`;
  a client reads an answer with `reply_error` and `reply_fields`.
- Journal replay (tickerplant/replay.py): `[request_id(n), replay_request(date, offset, size)]`
  answered with `[request_id, replay_head(date, offset, end, later), data]` or
  `[request_id, failure(text)]`.
"""
from __future__ import annotations

import hashlib

from common.codec import pack, unpack

# ---- ingest -------------------------------------------------------------------------------------
UPDATE = b"U"                 # first byte of an update's head
HELLO = b"hello"              # [HELLO, name]: where do my msgids stand?
MAX_NAME = 255                # a publisher name is 1 to MAX_NAME bytes (its length is one byte)
_BAD_HEAD = "head must be U + msgid (u64 LE) + len(name) (u8) + name + table"


def ingest_head(msgid: int, name: bytes, table: bytes) -> bytes:
    """The first frame of an update: U + msgid (u64 LE) + len(name) (u8) + name + table."""
    return UPDATE + msgid.to_bytes(8, "little") + bytes((len(name),)) + name + table


def parse_ingest_head(head: bytes) -> tuple[int, bytes, bytes]:
    """(msgid, name, table) of an update's first frame; ValueError when it is not one."""
    if len(head) < 11 or head[:1] != UPDATE or not 0 < head[9] <= len(head) - 10:
        raise ValueError(_BAD_HEAD)
    end = 10 + head[9]
    return int.from_bytes(head[1:9], "little"), head[10:end], head[end:]


def ack(msgid: int, seq: int, name: str) -> bytes:
    """Every update of `name` up to msgid is durable; seq is the last seq journaled with them."""
    return pack({"ack": msgid, "seq": seq, "name": name})


def reject(msgid: int, error: str, name: str) -> bytes:
    """Update msgid failed validation and was not journaled (sent before the ack covering it)."""
    return pack({"reject": msgid, "error": error, "name": name})


def resend(msgid: int, name: str) -> bytes:
    """An update arrived ahead of msgid, the next one expected: send again from msgid."""
    return pack({"resend": msgid, "name": name})


def hello_reply(last_msgid: int, durable_msgid: int, seq: int, epoch: int, name: str) -> bytes:
    return pack({"last_msgid": last_msgid, "durable_msgid": durable_msgid, "seq": seq,
                 "epoch": epoch, "name": name})


def failure(text: str) -> bytes:
    """The answer to a malformed ingest message or a bad replay request."""
    return pack({"error": text})


def ingest_reply(body: bytes) -> tuple[str, dict]:
    """(kind, reply) of a tickerplant answer on the ingest socket, kind one of "ack", "reject",
    "resend", "hello" and "error"."""
    reply = unpack(body)
    for kind in ("ack", "reject", "resend"):
        if kind in reply:
            return kind, reply
    return ("hello" if "last_msgid" in reply else "error"), reply


# ---- publish ------------------------------------------------------------------------------------
HEARTBEAT = b"\x00hb"         # every second: pack({"seq", "epoch", "time", "last": {topic: seq}})
EOD = b"\x00eod"              # a day closed: pack({"date", "seq", "next", "journal", "last"})


def table_topic(table: str) -> bytes:
    """The topic of every row of a table."""
    return table.encode() + b"\x00"


def group_topic(table: str, syms: frozenset[str]) -> bytes:
    """Topic of the sym group (table, syms); the same set always gives the same topic."""
    digest = hashlib.blake2b("\x1f".join(sorted(syms)).encode(), digest_size=8).hexdigest()
    return table.encode() + b"\x01" + digest.encode()


def publish_header(seq: int, prev: int, segs: list) -> bytes:
    """seq: the last seq in the message; prev: the seq of the previous message on the topic (a
    subscriber that never received it missed something); segs: [[seq, nrows], ...], the journal
    records whose rows the payload holds, in order."""
    return pack({"seq": seq, "prev": prev, "segs": segs})


def read_publish_header(frame: bytes) -> tuple[int, int, list]:
    """(seq, prev, segs) of a `publish_header` frame."""
    header = unpack(frame)
    return header["seq"], header["prev"], header["segs"]


# ---- request / reply ----------------------------------------------------------------------------
def request_id(n: int) -> bytes:
    """The id frame of a client's n-th request (the server echoes it, never reads it)."""
    return n.to_bytes(8, "little")


def request(op: str, args: dict) -> bytes:
    return pack({"op": op, **args})


def request_op(req) -> str | None:
    """The op a decoded request names (None when it is not a request)."""
    return req.get("op") if isinstance(req, dict) else None


def ok_reply(fields: dict) -> dict:
    return {"ok": True, **fields}


def error_reply(text: str) -> dict:
    return {"ok": False, "error": text}


def reply_error(reply: dict) -> str | None:
    """None for a success reply, else its error text."""
    return None if reply.get("ok") else reply.get("error", "error")


def reply_fields(reply: dict) -> dict:
    """A success reply without its envelope (in place)."""
    reply.pop("ok", None)
    return reply


# ---- journal replay -----------------------------------------------------------------------------
def replay_request(date: str, offset: int, size: int) -> bytes:
    """Ask for at most size bytes of the journal of date (YYYY-MM-DD) from offset."""
    return pack({"date": date, "offset": offset, "size": size})


def replay_head(date: str, offset: int, end: int, later: str | None) -> bytes:
    """The head of a chunk: end is the file's size when read, later the next journal's date or None."""
    return pack({"date": date, "offset": offset, "end": end, "later": later})
