"""Fuzzing the gateway's edges (issue 22), bounded to a few hundred cases:

- Hypothesis builds kdb+ IPC messages (valid q objects of every type the gateway reads, nested, and
  then mutated: bytes flipped, counts changed, truncated, deep nesting) and checks the gateway's
  decoder (gateway.ipc.decode: gateway.qscan, PyKX, gateway.qcall) in this process: a request or a
  q-style refusal, never a crash nor another exception; the same messages go to the real gateway
  over a socket, whose every reply is a kdb+ message, errors q-style text;
- schemathesis generates requests from the running gateway's /openapi.json and checks every reply
  against it (status codes, content types, headers, response schemas, no 5xx).
The stack is the real one of test_gateway_hostile.py (its module fixture, started again here).
"""
from __future__ import annotations

import base64
import struct

import pykx as kx
import pytest
import schemathesis
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_gateway_hostile import PYTHON_TEXT, healthy, stack  # noqa: F401 - stack is the module fixture
from test_gateway_unit import raw_login, recv_message

from gateway.api import ApiError
from gateway.ipc import decode
from gateway.qcall import Answer, Call, QSyntaxError
from gateway.qscan import Limits, ScanError

AUTH = {"Authorization": "Basic " + base64.b64encode(b"demo:demo").decode()}

# ---- kdb+ IPC messages ------------------------------------------------------------------------------
_ATOMS = {-1: 1, -2: 16, -4: 1, -5: 2, -6: 4, -7: 8, -8: 4, -9: 8, -10: 1, -12: 8, -13: 4, -14: 4,
          -15: 8, -16: 8, -17: 4, -18: 4, -19: 4}
_names = st.sampled_from(["margin", "whatif", "positions", "drivers", "stress", "alerts", "accounts",
                          "scenarios", ".u.sub", "FUND1", "SPY", "", "nosuch"])
_symbol = st.one_of(_names, st.text(max_size=8).filter(lambda s: "\0" not in s)).map(lambda s: s.encode() + b"\0")


@st.composite
def _atom(draw) -> bytes:
    t = draw(st.sampled_from(sorted(_ATOMS) + [-11]))
    body = draw(_symbol) if t == -11 else draw(st.binary(min_size=_ATOMS[t], max_size=_ATOMS[t]))
    return struct.pack("<b", t) + body


@st.composite
def _vector(draw) -> bytes:
    t = draw(st.sampled_from(sorted(-k for k in _ATOMS) + [11]))
    n = draw(st.integers(0, 6))
    items = b"".join(draw(_symbol) for _ in range(n)) if t == 11 else draw(
        st.binary(min_size=n * _ATOMS[-t], max_size=n * _ATOMS[-t]))
    return struct.pack("<bBi", t, 0, n) + items


def _containers(children):
    general = st.lists(children, max_size=5).map(lambda xs: struct.pack("<bBi", 0, 0, len(xs)) + b"".join(xs))
    dictionary = st.tuples(_vector(), general).map(lambda kv: b"\x63" + kv[0] + kv[1])
    return st.one_of(general, dictionary)


_objects = st.recursive(st.one_of(_atom(), _vector(), st.just(b"\x65\x00")), _containers, max_leaves=20)
# what a client sends: a call (`name; args...) or a q string, and hostile extremes
_requests = st.one_of(
    st.lists(_objects, max_size=4).flatmap(lambda args: _symbol.map(
        lambda name: struct.pack("<bBi", 0, 0, len(args) + 1) + b"\xf5" + name + b"".join(args))),
    _objects,
    st.text(max_size=40).map(lambda s: struct.pack("<bBi", 10, 0, len(s.encode())) + s.encode()),
    st.integers(60, 3000).map(lambda n: b"\x00\x00\x01\x00\x00\x00" * n + b"\xf9" + b"\x00" * 8),
)


@st.composite
def messages(draw) -> bytes:
    """A sync kdb+ message: a request, then perhaps mutated (bytes replaced, cut, or extended)."""
    body = bytearray(draw(_requests))
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["flip", "cut", "extend"]))
        if how == "flip" and body:
            body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
        elif how == "cut" and len(body) > 1:
            del body[draw(st.integers(1, len(body) - 1)):]
        elif how == "extend":
            body += draw(st.binary(min_size=1, max_size=8))
    return struct.pack("<BBBBI", 1, 1, 0, 0, len(body) + 8) + bytes(body)


@settings(max_examples=1000, deadline=None)
@given(messages())
def test_ipc_decoder_refuses_or_reads_never_crashes(msg):
    """In this process: a request read, or refused with q-style text (a crash would kill the run)."""
    try:
        assert isinstance(decode(msg, False, Limits(), 1 << 20), (Call, Answer))
    except (ScanError, ApiError, QSyntaxError) as e:
        text = getattr(e, "text", None) or str(e)
        assert text and not PYTHON_TEXT.search(text), text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msgs=st.lists(messages(), min_size=1, max_size=4))
def test_gateway_answers_every_fuzzed_message_in_kdb_form(stack, msgs):
    s, _ = raw_login(stack["port"])
    s.settimeout(30)
    try:
        for msg in msgs:
            s.sendall(msg)
            reply = recv_message(s)
            assert reply[0] == 1 and reply[1] == 2                      # a response message
            if reply[8] == 0x80:
                text = reply[9:-1].decode()
                assert text and not PYTHON_TEXT.search(text), text
            else:
                kx.deserialize(reply)
    finally:
        s.close()
    assert all(p.poll() is None for p in stack["procs"])


def test_the_stack_is_healthy_after_the_ipc_fuzzing(stack):
    healthy(stack)


# ---- HTTP against /openapi.json -----------------------------------------------------------------------
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_http_api_conforms_to_its_openapi_document(stack, mode):
    """schemathesis: data that fits the document (positive) and data that does not (negative), for
    every operation but the endless /stream; 25 cases each (schemathesis' pytest loader for fixtures
    does not run on this pytest, so each operation's strategy is driven by Hypothesis here). Every
    check but "schema-valid data is accepted": whether an account, instrument or scenario exists is
    not something a schema can say, and the gateway answers 400 for one that does not."""
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{stack['http']}/openapi.json").exclude(path="/stream")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {o.path for o in operations} >= {"/margin", "/whatif", "/positions", "/drivers", "/stress", "/alerts"}
    for operation in operations:
        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def conforms(case):
            case.call_and_validate(headers=AUTH, timeout=30, excluded_checks=[positive_data_acceptance])
        conforms()


def test_the_stack_is_healthy_after_the_http_fuzzing(stack):
    healthy(stack)
