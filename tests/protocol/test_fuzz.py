"""Fuzz every decoder a gate or the central feeds with outside input: only MessageError / CodeError escape.

Run longer with HYPOTHESIS_PROFILE=fuzz.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import CodeError, MessageError
from protocol.messages import MAX_BYTES, decode, encode
from protocol.reasons import Reason
from protocol.ticket_code import CODE_CHARS, KeyRing, PublicKey, decode_body
from tests.protocol.conftest import examples
from tests.protocol.test_messages import SAMPLES
from tests.protocol.test_ticket_code import CODE, SIGNER

KINDS = list(MAX_BYTES)
RING = KeyRing([PublicKey(1, SIGNER.public_key_bytes(), retired_at=datetime(2025, 1, 1, tzinfo=UTC))])
NOW = datetime(2025, 5, 1, tzinfo=UTC)
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def _decode(kind: type, payload) -> None:
    try:
        decode(kind, payload)
    except MessageError as exc:
        assert exc.reason in {"oversized", "malformed", "invalid", "version"}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@settings(**examples(60))
@given(data=st.binary(max_size=512) | st.text(max_size=256))
def test_arbitrary_bytes_and_text(kind: type, data) -> None:
    _decode(kind, data)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@settings(**examples(60))
@given(value=json_values)
def test_arbitrary_json(kind: type, value) -> None:
    _decode(kind, json.dumps(value).encode())


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@settings(**examples(60))
@given(data=st.data())
def test_valid_messages_with_one_field_replaced(kind: type, data) -> None:
    message = json.loads(encode(SAMPLES[kind]))
    field = data.draw(st.sampled_from(sorted(message)))
    message[field] = data.draw(json_values)
    _decode(kind, json.dumps(message).encode())


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@settings(**examples(60))
@given(data=st.data())
def test_valid_messages_with_bytes_mutated(kind: type, data) -> None:
    payload = bytearray(encode(SAMPLES[kind]))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    _decode(kind, bytes(payload))


def _verify(text) -> None:
    try:
        RING.verify(text, now=NOW)
    except CodeError as exc:
        assert exc.reason in {Reason.NOT_A_CODE, Reason.UNKNOWN_KEY, Reason.BAD_SIGNATURE, Reason.KEY_RETIRED}


@settings(**examples(300))
@given(st.text(max_size=400) | st.binary(max_size=200) | st.text(B32, min_size=CODE_CHARS, max_size=CODE_CHARS)
       | st.text(B32 + B32.lower() + " \n=01", min_size=CODE_CHARS - 2, max_size=CODE_CHARS + 2)
       | st.integers() | st.none())
def test_the_code_verifier_on_anything(text) -> None:
    _verify(text)


@settings(**examples(300))
@given(st.data())
def test_the_code_verifier_on_mutated_codes(data) -> None:
    code = list(CODE)
    for _ in range(data.draw(st.integers(1, 6))):
        code[data.draw(st.integers(0, CODE_CHARS - 1))] = data.draw(st.characters())
    _verify("".join(code))


@settings(**examples(300))
@given(st.binary(max_size=64))
def test_decode_body_on_anything(body: bytes) -> None:
    try:
        decode_body(body)
    except CodeError as exc:
        assert exc.reason == Reason.NOT_A_CODE
