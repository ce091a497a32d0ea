"""Dashboard sign-in sessions: a random token per sign-in (the browser keeps it in an HttpOnly
cookie), mapped to the user it was issued to, expiring after `idle_s` without use. In memory only: a
restarted gateway asks everyone to sign in again. At most `max_sessions` live at once; the least
recently used goes first beyond that.
"""
from __future__ import annotations

import secrets
import time
from collections import OrderedDict

from gateway.users import User

SESSION_IDLE_S = 8 * 3600.0
MAX_SESSIONS = 10_000


class Sessions:
    def __init__(self, idle_s: float = SESSION_IDLE_S, max_sessions: int = MAX_SESSIONS, clock=time.monotonic):
        self.idle_s = idle_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._live: OrderedDict[str, tuple[User, float]] = OrderedDict()    # token -> (user, last use)

    def open(self, user: User) -> str:
        """A new session for the user; its token."""
        token = secrets.token_urlsafe(32)
        self._live[token] = (user, self._clock())
        while len(self._live) > self.max_sessions:
            self._live.popitem(last=False)
        return token

    def user(self, token: str | None) -> User | None:
        """The session's user (and its idle timer restarted), or None when unknown or expired."""
        entry = self._live.get(token) if token else None
        if entry is None:
            return None
        now = self._clock()
        if now - entry[1] > self.idle_s:
            del self._live[token]
            return None
        self._live[token] = (entry[0], now)
        self._live.move_to_end(token)
        return entry[0]

    def close(self, token: str | None) -> None:
        self._live.pop(token, None)

    def __len__(self) -> int:
        return len(self._live)
