"""What a kdb+ client asked for: a decoded IPC request -> a `Call` (function name + arguments).

Accepted forms, as a q server accepts them:
  - a list `(`name; arg1; ...)` or `("name"; arg1; ...)`      h(`margin;`FUND1), conn('margin', 'FUND1')
  - a string in q call syntax: "margin[`FUND1]", "whatif[`FUND1;`AMD;-100;0n]", "margin`FUND1",
    "margin[]", ".u.sub[`margin;`]"; arguments are q atoms/lists of atoms (symbols, numbers, 0n / 0N,
    strings, timestamps 2026.11.21D05:00:00);
  - "(.u.sub[t;s];`.u `i`L)", as kdb+tick's r.q sends it: the subscription, with no log to replay;
  - any other string is a q-sql query, passed to the rdb (`qsql`);
  - the context probes PyKX's QConnection sends on connect (answered as a q server would), and
    the probe of `conn.margin` (the named functions are functions, so `conn.margin('FUND1')` works).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pykx as kx

from gateway.qcodec import plain

# PyKX (kx.SyncQConnection with default settings) probes the server's q context on connect.
PYKX_CTX_PROBE = ('k){x:. x;$[99h<@x;:`$"_pykx_fn_marker";99h~@x;if[` in!x;if[(::)~x`;'
                  ':`$"_pykx_ctx_marker"]]]x}')
PYKX_SQL_PROBE = "@[{2<count .s};(::);{0b}]"


class QSyntaxError(ValueError):
    """A request the gateway cannot read (q-style text)."""


@dataclass
class Call:
    name: str
    args: list
    tick_log: bool = False      # kdb+tick's r.q form: also answer (log count; log file) for `.u `i`L


# what r.q (kdb+tick's rdb) sends on start-up: "(.u.sub[`;`];`.u `i`L)"
_TICK_SUB = re.compile(r"\(\s*(\.u\.sub\[[^\]]*\])\s*;\s*`\.u\s*`i`L\s*\)")


_NAME = re.compile(r"\s*([.a-zA-Z][.\w]*)\s*")
_TOKEN = re.compile(r"""\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<syms>(?:`[.:\w/]*)+)
  | (?P<ts>\d{4}\.\d{2}\.\d{2}D[\d:.]*)
  | (?P<date>\d{4}\.\d{2}\.\d{2})
  | (?P<null>0N[jf]?|0n|0w|-0w)
  | (?P<bool>[01]+b)
  | (?P<num>-?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?[fj]?)
)\s*""", re.VERBOSE)


def _atom(text: str):
    m = _TOKEN.fullmatch(text)
    if not m:
        raise QSyntaxError(f"parse: cannot read argument {text.strip()[:40]!r}")
    kind, tok = m.lastgroup, m.group(m.lastgroup)
    if kind == "str":
        try:
            return bytes(tok[1:-1], "utf-8").decode("unicode_escape")
        except UnicodeDecodeError:
            raise QSyntaxError(f"parse: bad escape in string {tok[:40]!r}") from None
    if kind == "syms":
        syms = tok.split("`")[1:]
        return syms[0] if len(syms) == 1 else syms
    if kind in ("ts", "date"):
        day, _, clock = tok.partition("D")
        try:
            return np.datetime64(day.replace(".", "-") + ("T" + clock if clock else ""), "ns")
        except ValueError:
            raise QSyntaxError(f"parse: bad timestamp {tok[:40]!r}") from None
    if kind == "null":
        return {"0N": None, "0Nj": None, "0Nf": math.nan, "0n": math.nan, "0w": math.inf, "-0w": -math.inf}[tok]
    if kind == "bool":
        bits = [c == "1" for c in tok[:-1]]
        return bits[0] if len(bits) == 1 else bits
    if tok.endswith("f") or "." in tok or "e" in tok:
        return float(tok.rstrip("f"))
    value = int(tok.rstrip("j"))
    if not -2**63 < value < 2**63:
        raise QSyntaxError(f"limit: {tok[:40]} does not fit in a long")
    return value


def _split_args(text: str) -> list[str]:
    parts, current, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if not quoted and ch == ";":
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def parse_text(text: str, functions) -> Call | None:
    """A Call for q call syntax of a named function or .u.sub, else None (then the text is q-sql)."""
    m = _NAME.match(text)
    if not m or (m.group(1) not in functions and m.group(1) != ".u.sub"):
        return None
    name, rest = m.group(1), text[m.end():].strip()
    if not rest:
        return Call(name, [])
    if rest.startswith("[") and rest.endswith("]"):
        inner = rest[1:-1]
        if not inner.strip():
            return Call(name, [])
        return Call(name, [None if not a.strip() else _atom(a) for a in _split_args(inner)])
    if _TOKEN.fullmatch(rest):
        return Call(name, [_atom(rest)])
    return None


def _key(namespace: str, functions) -> list[str]:
    if namespace in ("", "."):
        return sorted(functions)
    if namespace == ".q":
        return [""]
    raise QSyntaxError(namespace)


def read(request, functions) -> Call | Answer:
    """Interpret a decoded request (a K object)."""
    if isinstance(request, kx.CharVector):
        text = request.py().decode("utf-8", "replace").strip()
        if text == "":
            return Answer(None)
        if text == PYKX_SQL_PROBE:
            return Answer(False)
        if m := _TICK_SUB.fullmatch(text):
            sub = parse_text(m.group(1), functions)
            return Call(sub.name, sub.args, tick_log=True)
        return parse_text(text, functions) or Call("qsql", [text])
    if isinstance(request, kx.SymbolAtom):
        raise QSyntaxError(f"type: send (`{request.py()};args) to call {request.py()}")
    items = request.py() if isinstance(request, kx.List) else None
    if items and isinstance(items[0], (str, bytes)):
        head = items[0]
        name = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
        args = [plain(x) for x in items[1:]]
        if name == PYKX_CTX_PROBE:
            target = args[0] if args else ""
            if target == ".q":
                return Answer(kx.SymbolAtom("_pykx_ctx_marker"))
            if isinstance(target, str) and target[1:] in functions:     # conn.margin('FUND1') in PyKX
                return Answer(kx.SymbolAtom("_pykx_fn_marker"))
            raise QSyntaxError(str(target).lstrip(".") or "type")
        if name.startswith(".") and name[1:] in functions:               # PyKX calls them as `.name
            name = name[1:]
        if name == "key" and len(args) == 1 and isinstance(args[0], str):
            return Answer(_key(args[0], functions))
        return Call(name.strip(), args)
    raise QSyntaxError("type: expected a string or a list (`function; args...)")


@dataclass
class Answer:
    """A reply the gateway gives without calling the API (probes, empty query)."""
    value: object
