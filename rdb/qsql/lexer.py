"""Tokenizer for the q-sql subset: q literals (symbols, numbers, booleans, temporals, strings),
names (with dotted suffixes such as time.minute), operators and punctuation."""
from __future__ import annotations

import re
from dataclasses import dataclass

from rdb.qsql.errors import QError


@dataclass(frozen=True)
class Token:
    kind: str        # sym, num, str, name, op, punct, end
    text: str
    pos: int


# Order matters: temporal forms before plain numbers.
_PATTERNS = [
    ("ws", r"\s+"),
    ("syms", r"(?:`[A-Za-z0-9_.]*)+"),
    ("str", r'"(?:[^"\\]|\\.)*"'),
    ("timestamp", r"\d{4}\.\d{2}\.\d{2}D(?:\d{2}(?::\d{2}(?::\d{2}(?:\.\d*)?)?)?)?"),
    ("timespan", r"\d+D(?:\d{2}(?::\d{2}(?::\d{2}(?:\.\d*)?)?)?)?"),
    ("date", r"\d{4}\.\d{2}\.\d{2}"),
    ("timeofday", r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?[nuvt]?"),
    ("bools", r"[01]+b"),
    ("num", r"(?:\d+\.\d*|\.\d+|\d+)(?:e[-+]?\d+)?[jfhie]?"),
    ("name", r"\.?[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*"),
    ("op", r"<=|>=|<>|[-+*%=<>&|,#~!@^$?]"),
    ("punct", r"[()\[\];:]"),
]
_RE = re.compile("|".join(f"(?P<{k}>{p})" for k, p in _PATTERNS))
LITERAL_KINDS = {"syms", "str", "timestamp", "timespan", "date", "timeofday", "bools", "num"}


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _RE.match(text, pos)
        if not m:
            raise QError(f"parse: unexpected character {text[pos]!r} at {pos}")
        kind = m.lastgroup
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return _negative_literals(tokens)


def _negative_literals(tokens: list[Token]) -> list[Token]:
    """Folds `-` into a following number where q reads a negative literal (after an operator or opener)."""
    out: list[Token] = []
    for i, t in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        prev = out[-1] if out else None
        if (t.kind == "op" and t.text == "-" and nxt is not None and nxt.kind in ("num", "timespan")
                and nxt.pos == t.pos + 1
                and (prev is None or prev.kind == "op" or prev.text in ("(", "[", ";", ":"))):
            tokens[i + 1] = Token(nxt.kind, "-" + nxt.text, t.pos)
            continue
        out.append(t)
    return out
