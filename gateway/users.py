"""Users of the gateway: salted password hashes, API tokens and entitlements, from a JSON file.

File format (config/users.json):
    {"users": {"demo": {"password": {"salt": hex, "iterations": n, "hash": hex},
                        "tokens": [sha256 hex of a token, ...],
                        "role": "treasury", "accounts": "*"},
               "trader1": {..., "role": "trader", "desks": ["TECH"]}, ...}}
`accounts` is "*" (every account) or a list of accounts; `desks` entitles the user to every account of
those desks (the desk of an account comes from the `account` table). Passwords are PBKDF2-HMAC-SHA256
with a per-user random salt; tokens are stored as their SHA-256 (they are random, long secrets).
`python -m gateway.users add NAME --password P [--accounts A,B | --all] [--desks D] [--role R]`
writes an entry; `--token T` adds an API token.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from common.defaults import REPO_ROOT

DEFAULT_USERS = REPO_ROOT / "config" / "users.json"
ITERATIONS = 100_000


@dataclass(frozen=True)
class User:
    name: str
    role: str
    accounts: frozenset[str] | None     # None: every account
    desks: frozenset[str]

    @property
    def sees_all(self) -> bool:
        return self.accounts is None


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> dict:
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return {"salt": salt.hex(), "iterations": iterations, "hash": digest.hex()}


def _check_password(password: str, record: dict) -> bool:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(record["salt"]),
                                 int(record["iterations"]))
    return hmac.compare_digest(digest.hex(), record["hash"])


class Users:
    """Verifies credentials (PBKDF2 once per distinct password, then a keyed in-memory cache)."""

    def __init__(self, entries: dict[str, dict]):
        self._entries = entries
        self._users = {name: _user(name, e) for name, e in entries.items()}
        self._tokens = {t: name for name, e in entries.items() for t in e.get("tokens", [])}
        self._verified: set[bytes] = set()
        self._cache_key = os.urandom(16)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path = DEFAULT_USERS) -> Users:
        try:
            data = json.loads(Path(path).read_text())
            return cls(data["users"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"users file {path}: {e}") from None

    def _key(self, name: str, password: str) -> bytes:
        return hmac.digest(self._cache_key, f"{name}\0{password}".encode(), "sha256")

    def verified(self, name: str, password: str) -> User | None:
        """The user when these credentials were verified before (fast: no hashing), else None."""
        key = self._key(name, password)
        with self._lock:
            return self._users[name] if key in self._verified else None

    def verify(self, name: str, password: str) -> User | None:
        """The user when name/password match, else None (slow on first sight of a password: run it
        off the event loop)."""
        entry = self._entries.get(name)
        if entry is None or "password" not in entry:
            return None
        key = self._key(name, password)
        with self._lock:
            if key in self._verified:
                return self._users[name]
        if not _check_password(password, entry["password"]):
            return None
        with self._lock:
            self._verified.add(key)
        return self._users[name]

    def by_token(self, token: str) -> User | None:
        name = self._tokens.get(hashlib.sha256(token.encode()).hexdigest())
        return None if name is None else self._users[name]

    def get(self, name: str) -> User | None:
        return self._users.get(name)


def _user(name: str, entry: dict) -> User:
    accounts = entry.get("accounts", [])
    if accounts != "*" and not (isinstance(accounts, list) and all(isinstance(a, str) for a in accounts)):
        raise ValueError(f"user {name}: accounts must be \"*\" or a list of account names")
    desks = entry.get("desks", [])
    return User(name=name, role=str(entry.get("role", "user")),
                accounts=None if accounts == "*" else frozenset(accounts), desks=frozenset(desks))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m gateway.users", description="Add or update a gateway user.")
    sub = p.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="add or replace a user")
    add.add_argument("name")
    add.add_argument("--password", required=True)
    add.add_argument("--role", default="trader")
    add.add_argument("--all", action="store_true", help="entitled to every account")
    add.add_argument("--accounts", default="", help="comma-separated accounts")
    add.add_argument("--desks", default="", help="comma-separated desks")
    add.add_argument("--token", action="append", default=[], help="an API token for HTTP Bearer auth")
    p.add_argument("--file", default=str(DEFAULT_USERS))
    a = p.parse_args(argv)
    path = Path(a.file)
    data = json.loads(path.read_text()) if path.exists() else {"users": {}}
    split = lambda s: [x for x in s.split(",") if x]
    data["users"][a.name] = {"password": hash_password(a.password), "role": a.role,
                             "accounts": "*" if a.all else split(a.accounts), "desks": split(a.desks),
                             "tokens": [hashlib.sha256(t.encode()).hexdigest() for t in a.token]}
    _user(a.name, data["users"][a.name])
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"{path}: user {a.name} written")


if __name__ == "__main__":
    main()
