"""The tickerplant's replay service: journal bytes over a socket, for subscribers that cannot read
the journal directory (another host, no shared filesystem).

A thread of the tickerplant with its own ROUTER socket, so that reading the journal never holds up
the live loop. Stateless, request per chunk (the ZeroMQ guide's credit-based file transfer; frames
in common/wire.py): the client's DEALER sends `[request_id, replay_request(date, offset, size)]`,
the reply is `[request_id, replay_head(date, offset, end, later), data]` where data is the bytes of
`tp.<date>.log` from `offset`, at most min(size, MAX_CHUNK) of them, cut anywhere (the client
reassembles records and checks every CRC); `end` is the file's size when it was read and `later`
the date of the next journal file, or None. An error is `[request_id, failure(text)]`.
The client keeps at most a few requests in flight (its credit). Sends never block: a reply that
does not fit in the peer's queue (SNDHWM replies) waits in that peer's backlog of at most BACKLOG
replies and is sent as the queue drains; past that it is dropped (a client ignoring its credit
then times out), and what is owed to a peer that has gone is dropped. A slow or vanished
subscriber costs the tickerplant at most (SNDHWM + BACKLOG) x MAX_CHUNK of memory and never
holds up the live loop or the other replays.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque

import zmq

from common import wire
from common.codec import unpack
from common.zmqio import NOBLOCK, recv_message
from tickerplant import journal

log = logging.getLogger("tickerplant.replay")

MAX_CHUNK = 1 << 20      # bytes per reply
SNDHWM = 8               # replies queued per peer in ZeroMQ; clients keep at most this many in flight
BACKLOG = 8              # replies waiting per peer for room in its queue (ZeroMQ returns credit lazily)
POLL_MS = 200            # how often the thread looks at its stop flag
RETRY_MS = 2             # how soon a backlog is tried again


def default_endpoint(control: str) -> str:
    """The replay endpoint when none is given: the control endpoint's host on a port the system
    chooses (subscribers learn it from the `sub` reply), or `<control>.replay` for ipc://."""
    if control.startswith("tcp://"):
        return control.rsplit(":", 1)[0] + ":*"
    return control + ".replay"


class ReplayServer:
    """Serves journal chunks on its own ROUTER from its own thread; .endpoint, .close()."""

    def __init__(self, endpoint: str, directory: str, ctx: zmq.Context):
        self.directory = directory
        self.socket = ctx.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, SNDHWM)
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 1)   # full or gone peers raise, not drop
        self.socket.bind(endpoint)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.served = 0
        self.bytes_sent = 0
        self.errors = 0
        self.dropped = 0
        self.backlog: dict[bytes, deque[list[bytes]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tp-replay", daemon=True)
        self._thread.start()
        log.info("replay service on %s", self.endpoint)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        sock = self.socket
        try:
            while not self._stop.is_set():
                if sock.poll(RETRY_MS if self.backlog else POLL_MS):
                    while (frames := recv_message(sock)) is not None:
                        self._serve(frames)
                for peer in list(self.backlog):
                    self._flush(peer)
        finally:
            sock.close(0)

    def _serve(self, frames: list[bytes]) -> None:
        if len(frames) != 3:
            self.errors += 1
            if len(frames) >= 2:
                self._send(frames[:2], wire.failure("replay request must be [request_id, "
                                                    "pack({date, offset, size})]"))
            return
        try:
            head, data = self.chunk(unpack(frames[2]))
        except Exception as exc:           # noqa: BLE001 - odd input must not stop the service
            self.errors += 1
            self._send(frames[:2], wire.failure(f"replay: {exc}"))
            return
        self.served += 1
        self.bytes_sent += len(data)
        self._send(frames[:2], head, data)

    def chunk(self, req: dict) -> tuple[bytes, bytes]:
        """The reply to one request: (head frame, data)."""
        date = str(req["date"])
        offset, size = int(req["offset"]), int(req["size"])
        if not journal.FILE_RE.match(f"tp.{date}.log"):
            raise ValueError(f"bad journal date {date!r} (YYYY-MM-DD)")
        path = journal.journal_path(self.directory, date)
        if offset < 0 or size <= 0:
            raise ValueError(f"offset must be >= 0 and size > 0, got {offset}, {size}")
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise ValueError(f"no journal for {date}") from None
        try:
            end = os.fstat(fd).st_size
            data = os.pread(fd, max(0, min(size, MAX_CHUNK, end - offset)), offset)
        finally:
            os.close(fd)
        later = [d for d, _ in journal.journal_files(self.directory) if d > date]
        return wire.replay_head(date, offset, end, later[0] if later else None), data

    def _send(self, route: list[bytes], *parts: bytes) -> None:
        """Sends [peer, request id, parts...] now, or after the peer's backlog."""
        msg = [*route, *parts]
        queue = self.backlog.get(route[0])
        if queue is None:
            if self._try(msg) is not False:
                return
            queue = self.backlog[route[0]] = deque()
        if len(queue) < BACKLOG:
            queue.append(msg)
        else:
            self.dropped += 1

    def _flush(self, peer: bytes) -> None:
        queue = self.backlog[peer]
        while queue:
            sent = self._try(queue[0])
            if sent is False:
                return
            queue.popleft()
            if sent is None:                 # the peer has gone: drop what it is owed
                self.dropped += len(queue)
                queue.clear()
        del self.backlog[peer]

    def _try(self, msg: list[bytes]) -> bool | None:
        """True if sent, False if the peer's queue is full, None if the peer has gone."""
        try:
            self.socket.send_multipart(msg, NOBLOCK, copy=len(msg[-1]) < 65536)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self.dropped += 1
                return None
            raise
