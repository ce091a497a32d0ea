"""The tickerplant's publish side: topics per table and per sym group, prev chains, batch mode.

Frames on the PUB socket (built with common/wire.py): `[topic, publish_header(seq, prev, segs),
payload]` on the table topic (every row of a table) or a sym group's topic (the rows of a
sym-filtered group); prev is the seq of the previous message on the same topic (a subscriber that
sees a prev it never received knows it missed something) and segs `[[seq, nrows], ...]` names the
journal records whose rows the payload holds, in order. Zero-latency mode publishes each record as
it is journaled, passing the received payload through; batch mode (`batch_ms` > 0) gathers each
topic's records and publishes them as one concatenated batch on `flush`. Events (heartbeat, end of
day): `[wire.HEARTBEAT or wire.EOD, pack(info)]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import zmq

from common.codec import pack
from common.wire import group_topic, publish_header, table_topic
from common.zmqio import SNDMORE


@dataclass
class Group:
    topic: bytes
    syms: frozenset[str]
    members: set[str] = field(default_factory=set)


@dataclass
class Pending:
    """Batch mode: the records gathered for one topic since the last flush."""
    segs: list[list[int]] = field(default_factory=list)
    parts: list[dict] = field(default_factory=list)


def select_rows(cols: dict, mask: np.ndarray) -> dict:
    return {name: values[mask] for name, values in cols.items()}


def concat(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


class Fanout:
    """Publishes journaled records to subscribers; owns the topic prev chains and sym groups."""

    def __init__(self, socket: zmq.Socket, batch_ms: float,
                 decode: Callable[[str, bytes], dict], start_seq: int):
        self.socket = socket
        self.batch_ms = batch_ms
        self.decode = decode
        # the first message on a topic names the start-up seq as its prev: a subscriber that had
        # not seen everything up to it (messages lost when the previous process died) sees a gap
        self.start_seq = start_seq
        self.prev: dict[bytes, int] = {}
        self.groups: dict[str, dict[bytes, Group]] = {}
        self.pending: dict[bytes, Pending] = {}
        self.messages = 0

    def join(self, subscriber: str, table: str, syms: list[str]) -> bytes:
        """Adds subscriber to the group (table, syms); returns the group's topic."""
        symset = frozenset(syms)
        topic = group_topic(table, symset)
        group = self.groups.setdefault(table, {}).setdefault(topic, Group(topic, symset))
        group.members.add(subscriber)
        return topic

    def leave(self, subscriber: str) -> None:
        """Removes subscriber from every group; a group left empty is no longer published."""
        for table in list(self.groups):
            for topic in list(self.groups[table]):
                group = self.groups[table][topic]
                group.members.discard(subscriber)
                if not group.members:
                    del self.groups[table][topic]
            if not self.groups[table]:
                del self.groups[table]

    def publish(self, table: str, seq: int, nrows: int, payload: bytes, cols: dict | None) -> None:
        """One journaled record: to the table topic and to each sym group holding any of its rows.
        cols are the decoded columns when the caller has them (else decoded here if needed)."""
        groups = self.groups.get(table)
        if (self.batch_ms or groups) and cols is None:
            cols = self.decode(table, payload)
        if self.batch_ms:
            self._gather(table_topic(table), seq, nrows, cols)
        else:
            self._send(table_topic(table), seq, [[seq, nrows]], payload)
        if not groups:
            return
        syms = cols["sym"]
        for group in groups.values():
            mask = np.fromiter((s in group.syms for s in syms), dtype=bool, count=nrows)
            n = int(mask.sum())
            if not n:
                continue
            part = cols if n == nrows else select_rows(cols, mask)
            if self.batch_ms:
                self._gather(group.topic, seq, n, part)
            else:
                self._send(group.topic, seq, [[seq, n]], pack(part))

    def flush(self) -> None:
        """Batch mode: publishes every topic's gathered records as one message each."""
        pending, self.pending = self.pending, {}
        for topic, p in pending.items():
            self._send(topic, p.segs[-1][0], p.segs, pack(concat(p.parts)))

    def event(self, topic: bytes, info: dict) -> None:
        self.socket.send_multipart([topic, pack(info)])

    def _gather(self, topic: bytes, seq: int, nrows: int, cols: dict) -> None:
        p = self.pending.get(topic)
        if p is None:
            p = self.pending[topic] = Pending()
        p.segs.append([seq, nrows])
        p.parts.append(cols)

    def _send(self, topic: bytes, seq: int, segs: list, payload: bytes) -> None:
        header = publish_header(seq, self.prev.get(topic, self.start_seq), segs)
        self.prev[topic] = seq
        send = self.socket.send
        send(topic, SNDMORE)
        send(header, SNDMORE)
        send(payload, 0, copy=len(payload) < 65536)
        self.messages += 1
