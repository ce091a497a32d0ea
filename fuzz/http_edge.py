"""HTTP edge: hostile requests to the gateway's HTTP JSON API over raw sockets (so that framing itself
can be wrong): random methods, paths and parameters, what-if bodies with wrong types, invalid and deeply
nested JSON, real and declared-huge bodies, bad chunked encoding, slow headers (slowloris), broken
request lines and headers, bad credentials. A 5xx, an error that is not JSON or that leaks a Python
exception, and a 2xx to input that must be refused are flagged."""
from __future__ import annotations

import json
import math
import random
import socket

from fuzz.core import CLOSED, ERROR, HANG, OK, Case, Deadline, Result, abort, closed, connect, error_flags, short

EDGE = "http"
TOKEN = "demo-token"
PATHS = ("/margin", "/whatif", "/hedge", "/positions", "/drivers", "/stress", "/alerts", "/recon", "/openapi.json",
         "/stream", "/login", "/ui/account", "/", "/nosuch", "/margin/", "//margin", "/../etc/passwd", "/margin%00",
         "/%ff", "/whatif?")
PARAMS = ("account", "scenario", "since", "tables", "sym", "qty", "target", "n", "conflate", "username", "x")
VALUES = ("FUND1", "FUND2", "FUND1,FUND2", "FUTS1", "", "NOSUCH", "tech_crash", "nosuch", "2026-12-05T00:00:00",
          "2026.12.05D00:00:00", "margin,alert", "%00", "%ff%fe", "FUND1" * 3000, "'", "`FUND1", "-1", "1e309",
          "NaN", "<script>", "FUND1&account=FUND2")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "GETT", "get", "")
JSON_ATOMS = (None, True, False, 0, -1, 1, -200000, 2**53 + 1, 2**63, -2**63 - 1, 10**400, 1e308, -1e308, 0.5, "",
              "FUND1", "SPY", "AMD", "NOSUCH", "x" * 10000, "FUND1\u0000", "ФОНД", [], {})
WEIGHTS = {"api": 34, "whatif": 20, "badjson": 8, "deepjson": 5, "bigbody": 2, "declared": 4, "chunked": 6,
           "slow": 1, "requestline": 10, "auth": 6, "stream": 4}
MAX_READ = 1 << 20


def request(method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"",
            auth: str | None = f"Bearer {TOKEN}", length: bool = True) -> bytes:
    """One HTTP/1.1 request with Connection: close (Content-Length from the body unless told not to)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if auth:
        lines.append(f"Authorization: {auth}")
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if length and body and "Transfer-Encoding" not in (headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def json_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth > 3 or r < 0.5:
        return rng.choice(JSON_ATOMS)
    if r < 0.75:
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(("sym", "qty", "price", "account", "trades", "x", "")): json_value(rng, depth + 1)
            for _ in range(rng.randrange(0, 4))}


def whatif_body(rng: random.Random) -> tuple[object, bool]:
    """A /whatif body close to the documented one with hostile fields; hostile = must be refused."""
    account = rng.choice(("FUND1", "FUND2", "FUTS1", "NOSUCH", "", None, 1, ["FUND1"], "FUND1" * 500))
    trade = {"sym": rng.choice(("SPY", "AMD", "ESZ26", "ZZZ", "", None, 5, ["SPY"])),
             "qty": rng.choice((-200000, 1000, 0, None, "1000", math.nan, math.inf, 1e308, 2**63, [1], {})),
             "price": rng.choice((None, 100.0, 0.0, -5.0, math.nan, math.inf, "x", 1e308))}
    for k in rng.sample(list(trade), rng.choice((0, 0, 0, 1, 2))):
        del trade[k]
    hostile = not (account in ("FUND1", "FUND2", "FUTS1") and trade.get("sym") in ("SPY", "AMD", "ESZ26")
                   and type(trade.get("qty")) is int and abs(trade["qty"]) < 2**53
                   and (trade.get("price") is None or (type(trade["price"]) is float and 0 < trade["price"] < 1e300)))
    if rng.random() < 0.5:
        return {"account": account, **trade}, hostile
    trades = [trade] * rng.choice((0, 1, 2, 100, 5000))
    return {"account": account, "trades": trades}, hostile or not trades


def generate(rng: random.Random) -> Case:
    kind = rng.choices(tuple(WEIGHTS), weights=tuple(WEIGHTS.values()))[0]
    if kind == "api":
        method = rng.choice(("GET",) * 6 + METHODS)
        path = rng.choice(PATHS)
        query = "&".join(f"{rng.choice(PARAMS)}={rng.choice(VALUES)}" for _ in range(rng.randrange(0, 4)))
        target = f"{path}?{query}" if query else path
        return Case(EDGE, kind, f"{method} {short(target, 100)}", (request(method, target), False))
    if kind == "whatif":
        body, hostile = whatif_body(rng)
        raw = json.dumps(body, allow_nan=True).encode()
        return Case(EDGE, kind, f"POST /whatif {short(raw, 120)}", (request("POST", "/whatif", body=raw), False),
                    hostile=hostile)
    if kind == "badjson":
        raw = rng.choice((b"{", b'{"account": "FUND1", "sym": "SPY", "qty": -200000', b"\xff\xfe{}", b"null", b"[]",
                          b'{"account": NaN}', b'{"qty": 1e999999}', b'{"account": "FUND1", "account": "FUND2"}',
                          b"'account'", b'{"a":"\\ud800"}', json.dumps(json_value(rng)).encode(), b"\x00" * 100))
        ctype = rng.choice(("application/json", "text/plain", "application/x-www-form-urlencoded", "", "json;;;"))
        return Case(EDGE, kind, f"POST /whatif {short(raw, 100)} as {ctype!r}",
                    (request("POST", "/whatif", {"Content-Type": ctype} if ctype else None, raw), False), hostile=True)
    if kind == "deepjson":
        depth = int(math.exp(rng.uniform(math.log(10), math.log(200_000))))
        raw = b"[" * depth + b"1" + b"]" * depth if rng.random() < 0.5 else b'{"a":' * depth + b"1" + b"}" * depth
        return Case(EDGE, kind, f"POST /whatif JSON nested {depth:,} deep",
                    (request("POST", "/whatif", body=raw), False), hostile=True)
    if kind == "bigbody":
        size = rng.choice((1 << 20, (1 << 20) + 1, 3 << 20, 8 << 20))
        return Case(EDGE, kind, f"POST /whatif with a {size:,} byte body",
                    (request("POST", "/whatif", body=b" " * size), False), hostile=True)
    if kind == "declared":
        value = rng.choice(("9223372036854775808", "9223372036854775807", "18446744073709551616", "1000000000000",
                            "-1", "abc", "1 000", "0x10", "100, 200"))
        raw = request("POST", "/whatif", {"Content-Length": value, "Content-Type": "application/json"},
                      b'{"account": "FUND1"', length=False)
        return Case(EDGE, kind, f"POST /whatif declaring Content-Length {value}", (raw, False), hostile=True)
    if kind == "chunked":
        chunks = rng.choice((b"ffffffffffffffff\r\n{}\r\n0\r\n\r\n", b"zz\r\n{}\r\n0\r\n\r\n", b"-1\r\n{}\r\n0\r\n\r\n",
                             b"64\r\n{\"account\": \"FUND1\"", b"2\r\n{}\r\n", b"2;ext=" + b"x" * 10000 + b"\r\n{}\r\n0\r\n\r\n",
                             b"2\r\n{}0\r\n\r\n", b"0\r\n" + b"X-Trailer: " + b"y" * 100000 + b"\r\n\r\n",
                             b"1\r\n{\r\n" * 2000 + b"0\r\n\r\n"))
        headers = {"Transfer-Encoding": rng.choice(("chunked", "chunked, chunked", "gzip, chunked", "identity"))}
        if rng.random() < 0.2:
            headers["Content-Length"] = "5"
        return Case(EDGE, kind, f"POST /whatif chunked {short(chunks, 80)} {headers}",
                    (request("POST", "/whatif", headers, chunks), False), hostile=True)
    if kind == "slow":
        return Case(EDGE, kind, "slow headers: one byte every 0.2 s (slowloris)", (b"", True), hostile=True)
    if kind == "requestline":
        raw = rng.choice((
            b"GET /margin\r\n\r\n", b"GET /margin HTTP/0.9\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            request("GET", "/margin", {"X-Big": "b" * 100_000}),
            request("GET", "/margin", {f"X-H{i}": "v" for i in range(2000)}),
            request("GET", "/margin", {"X-Nul": "a\x00b"}),
            request("GET", "/margin\r\nX-Injected: 1"),
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), rng.randbytes(rng.randrange(1, 2000)),
            b"GET /margin HTTP/1.1\r\nHost: x\r\n" + b"Authorization: Bearer demo-token\r\n" + b"\n" * 10 + b"\r\n",
            b"GET /margin HTTP/1.1\nHost: x\nAuthorization: Bearer demo-token\n\n",
            b"GET /margin HTTP/1.1\r\n Host: x\r\n\r\n"))
        return Case(EDGE, kind, f"request {short(raw, 100)}", (raw, False), hostile=True)
    if kind == "auth":
        auth = rng.choice(("Basic ZGVtbzp3cm9uZw==", "Basic ###", "Basic " + "A" * 10000, "Bearer nosuch",
                           "Bearer " + "t" * 100_000, "Bearer", "Basic", "Digest x", "", "Basic ZGVtbw==",
                           "Basic ZGVtbzpkZW1v", "bearer demo-token", "Bearer demo-token demo-token"))
        hostile = auth not in ("Basic ZGVtbzpkZW1v", "bearer demo-token")
        return Case(EDGE, kind, f"GET /margin with Authorization {short(auth, 60)}",
                    (request("GET", "/margin?account=FUND1", auth=auth or None), False), hostile=hostile)
    tables = rng.choice(("margin,alert", "margin", "nosuch", "", "alert," * 1000))
    return Case(EDGE, kind, f"GET /stream?tables={short(tables, 40)}",
                (request("GET", f"/stream?tables={tables}&account={rng.choice(VALUES)}"), False))


def parse(raw: bytes, hostile: bool) -> Result:
    """A response: status class and the findings in it."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return Result(ERROR, f"not an HTTP response: {short(raw[:80])}", ["badreply"])
    status = int(parts[1])
    if status < 400:
        return Result(OK, str(status), ["accepted"] if hostile else [])
    text = body.decode("utf-8", "replace")
    flags = error_flags(text)
    if status >= 500:
        flags.append("5xx")
    try:
        is_json = isinstance(json.loads(text), dict) and "error" in json.loads(text)
    except ValueError:
        is_json = False
    if not is_json:
        flags.append("plaintext")
    return Result(ERROR, f"{status} {short(text, 200)}", flags)


def complete(buf: bytes) -> bool:
    """Whether `buf` holds a whole response (headers and the body its headers announce)."""
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    headers = head.lower()
    if b"text/event-stream" in headers:
        return True                                 # a stream never ends: its headers answer the case
    for line in headers.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value)
    if b"transfer-encoding: chunked" in headers:
        return body.endswith(b"0\r\n\r\n")
    return False


def exchange(port: int, raw: bytes, hostile: bool, timeout: float) -> Result:
    deadline = Deadline(timeout)
    sock = None
    try:
        sock = connect(port, deadline.left())
        sock.settimeout(deadline.left())
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass                                     # refused early: its answer may still be readable
        buf = b""
        while not complete(buf):
            if deadline.passed():
                raise TimeoutError
            sock.settimeout(deadline.left())
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            if len(buf) > MAX_READ:
                break
        if not buf:
            return Result(CLOSED, "closed without a response")
        return parse(buf, hostile)
    except (TimeoutError, socket.timeout):
        return Result(HANG, f"no complete response within {timeout:g} s")
    except OSError as e:
        return closed(e)
    finally:
        abort(sock)


def slowloris(port: int, timeout: float) -> Result:
    """Headers trickled one byte every 0.2 s for up to 2 x timeout: the server must cut the client."""
    deadline = Deadline(2 * timeout)
    sock = None
    try:
        sock = connect(port, timeout)
        sock.sendall(b"GET /margin HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        while not deadline.passed():
            sock.sendall(b"X")
            sock.settimeout(0.2)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return Result(CLOSED, "the server cut the slow client")
            return Result(ERROR, f"answered the slow client: {short(data[:60])}")
        return Result(HANG, f"a client sending one header byte per 0.2 s still connected after {2 * timeout:g} s")
    except OSError as e:
        return closed(e)
    finally:
        abort(sock)


class HttpTarget:
    edge = EDGE

    def __init__(self, port: int):
        self.port = port

    def generate(self, rng: random.Random) -> Case:
        return generate(rng)

    def run(self, case: Case, timeout: float) -> Result:
        raw, slow = case.data
        if slow:
            return slowloris(self.port, timeout)
        return exchange(self.port, raw, case.hostile, timeout)

    def ping(self, timeout: float) -> Result:
        return exchange(self.port, request("GET", "/margin?account=FUND1"), False, timeout)

    def close(self) -> None:
        pass
