"""Parser of the q-sql subset into a small AST.

q evaluates right to left with no operator precedence: `a op b op c` is `a op (b op c)`, and a
monadic function applies to everything on its right (`sum price*size` is `sum (price*size)`).
Clauses of select / exec / by / where are separated by top-level commas.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rdb.qsql.errors import QError
from rdb.qsql.lexer import LITERAL_KINDS, Token, tokenize
from rdb.qsql.values import Value, literal_vector, parse_literal

MONADIC = {"neg", "abs", "sqrt", "exp", "log", "not", "count", "sum", "avg", "min", "max", "first", "last",
           "med", "dev", "var", "floor", "ceiling", "reciprocal", "signum", "distinct", "null"}
DYADIC_WORDS = {"in", "within", "like", "xbar", "wavg", "wsum", "and", "or", "mod", "div"}
SYMBOL_OPS = {"+", "-", "*", "%", "=", "<>", "<", ">", "<=", ">=", "&", "|"}
CLAUSE_END = {"by", "from", "where"}


@dataclass
class Lit:
    value: Value


@dataclass
class Name:
    name: str


@dataclass
class Call:
    fn: str
    args: list


@dataclass
class ListExpr:
    items: list


@dataclass
class Query:
    kind: str                                   # select | exec
    limit: object = None                        # node evaluating to n (select[n] / select[-n])
    columns: list = field(default_factory=list)  # [(name or None, node)]
    by: list = field(default_factory=list)
    table: object = None
    where: list = field(default_factory=list)


@dataclass
class AsOfJoin:
    keys: list
    left: object
    right: object


class Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, k: int = 0) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def take(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def expect(self, text: str) -> Token:
        t = self.take()
        if t.text != text:
            raise QError(f"parse: expected {text!r} at {t.pos}, found {t.text or 'end of query'!r}")
        return t

    def at_end_of_expr(self) -> bool:
        t = self.peek()
        return t.kind == "end" or t.text in (",", ")", "]", ";") or (t.kind == "name" and t.text in CLAUSE_END)

    # ---- entry ----------------------------------------------------------------------------------------
    def parse(self):
        node = self.expr()
        if self.peek().kind != "end":
            t = self.peek()
            raise QError(f"parse: unexpected {t.text!r} at {t.pos}")
        return node

    def expr(self):
        left = self.noun()
        if self.at_end_of_expr():
            return left
        t = self.peek()
        if (t.kind == "op" and t.text in SYMBOL_OPS) or (t.kind == "name" and t.text in DYADIC_WORDS):
            self.take()
            return Call(t.text, [left, self.expr()])
        if t.kind == "op":
            raise QError(f"nyi: operator {t.text}")
        raise QError(f"parse: unexpected {t.text!r} at {t.pos}")

    def noun(self):
        t = self.peek()
        if t.kind in LITERAL_KINDS:
            return self.literal()
        if t.text == "(":
            self.take()
            if self.peek().text in ("select", "exec"):
                q = self.query()
                self.expect(")")
                return q
            items = self.items(")")
            return items[0] if len(items) == 1 else ListExpr(items)
        if t.kind == "name":
            if t.text in ("select", "exec"):
                return self.query()
            if t.text in ("update", "delete", "insert", "upsert", "system") or t.text.startswith("."):
                raise QError(f"nyi: {t.text}")
            self.take()
            if self.peek().text == "[" and (t.text in MONADIC or t.text in DYADIC_WORDS or t.text == "aj"):
                self.take()
                args = self.items("]")
                return self.aj(args) if t.text == "aj" else Call(t.text, args)
            if t.text in MONADIC:
                nxt = self.peek()                  # a column named like a function: margin's `var`
                if self.at_end_of_expr() or (nxt.kind == "op" and nxt.text in SYMBOL_OPS) \
                        or (nxt.kind == "name" and nxt.text in DYADIC_WORDS):
                    return Name(t.text)
                return Call(t.text, [self.expr()])
            if t.text == "aj":
                raise QError("parse: aj takes [keys; t1; t2]")
            return Name(t.text)
        raise QError(f"parse: unexpected {t.text or 'end of query'!r} at {t.pos}")

    def literal(self):
        items = [parse_literal(self.take().kind, self.tokens[self.i - 1].text)]
        while self.peek().kind in ("num", "date", "timestamp", "timespan", "timeofday") \
                and self.tokens[self.i - 1].kind in ("num", "date", "timestamp", "timespan", "timeofday"):
            items.append(parse_literal(self.peek().kind, self.take().text))
        return Lit(items[0] if len(items) == 1 else literal_vector(items))

    def items(self, close: str) -> list:
        """`a; b; c` up to the closing bracket (consumed)."""
        out = []
        if self.peek().text == close:
            self.take()
            return out
        while True:
            out.append(self.expr())
            t = self.take()
            if t.text == close:
                return out
            if t.text != ";":
                raise QError(f"parse: expected ';' or {close!r} at {t.pos}, found {t.text or 'end'!r}")

    def aj(self, args):
        if len(args) != 3:
            raise QError("rank")
        keys = args[0]
        if not (isinstance(keys, Lit) and keys.value.qt == "s" and not keys.value.atom):
            raise QError("type: aj keys are a symbol list, e.g. `sym`time")
        return AsOfJoin(list(keys.value.data), args[1], args[2])

    # ---- select / exec ---------------------------------------------------------------------------------
    def query(self) -> Query:
        q = Query(self.take().text)
        if self.peek().text == "[":
            if q.kind != "select":
                raise QError("nyi: exec[n]")
            self.take()
            args = self.items("]")
            if len(args) != 1:
                raise QError("nyi: select[n;order]")
            q.limit = args[0]
        q.columns = self.clauses()
        if self.peek().text == "by":
            self.take()
            q.by = self.clauses()
            if not q.by:
                raise QError("parse: by needs a column")
        self.expect("from")
        q.table = self.expr()
        if self.peek().text == "where":
            self.take()
            q.where = [c for _, c in self.clauses()]
            if not q.where:
                raise QError("parse: where needs a condition")
        return q

    def clauses(self) -> list:
        out = []
        while not (self.peek().kind == "end" or self.peek().text in (")", "]", ";")
                   or (self.peek().kind == "name" and self.peek().text in CLAUSE_END)):
            name = None
            if self.peek().kind == "name" and self.peek(1).text == ":":
                name = self.take().text
                self.take()
            out.append((name, self.expr()))
            if self.peek().text == ",":
                self.take()
        return out


def parse(text: str):
    if not isinstance(text, str) or not text.strip():
        raise QError("parse: empty query")
    return Parser(text).parse()
