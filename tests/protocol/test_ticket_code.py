"""The signed ticket code: the central signs, any gate verifies offline; strict, compact, rotating keys."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import segno
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import CodeError
from protocol.reasons import Reason
from protocol.ticket_code import (
    CODE_BYTES,
    CODE_CHARS,
    EPOCH,
    KeyRing,
    PublicKey,
    TicketClaims,
    TicketSigner,
    decode_body,
    encode_body,
    generate_signing_seed,
)
from tests.protocol.conftest import examples

SIGNER = TicketSigner.from_seed(1, bytes(range(32)))
SIGNER_2 = TicketSigner.from_seed(2, bytes(range(32, 64)))
STRANGER = TicketSigner.from_seed(1, bytes(range(64, 96)))  # same key id, another key
RING = KeyRing([PublicKey(1, SIGNER.public_key_bytes())])
NOW = datetime(2025, 5, 1, 2, 0, tzinfo=UTC)
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

TYPICAL = TicketClaims(
    ticket_id=2025_0501_000123, ticket_type=3,
    valid_from=datetime(2025, 5, 1, 0, 0, tzinfo=UTC), valid_to=datetime(2025, 5, 1, 10, 0, tzinfo=UTC),
    slot_start=datetime(2025, 5, 1, 6, 0, tzinfo=UTC), slot_end=datetime(2025, 5, 1, 7, 0, tzinfo=UTC),
    headcount=2, zones=frozenset({1, 3}),
)
CODE = SIGNER.sign(TYPICAL)


def _minute(lo: datetime, hi: datetime) -> st.SearchStrategy[datetime]:
    span = int((hi - lo).total_seconds() // 60)
    return st.integers(0, span).map(lambda m: lo + timedelta(minutes=m))


@st.composite
def claims(draw) -> TicketClaims:
    valid_from = draw(_minute(EPOCH, datetime(2100, 1, 1, tzinfo=UTC)))
    valid_to = valid_from + timedelta(minutes=draw(st.integers(0, 60 * 24 * 800)))
    slot_start = slot_end = None
    if draw(st.booleans()):
        slot_start = draw(_minute(EPOCH + timedelta(minutes=1), datetime(2100, 1, 1, tzinfo=UTC)))
        slot_end = slot_start + timedelta(minutes=draw(st.integers(1, 2**16 - 1)))
    return TicketClaims(
        ticket_id=draw(st.integers(0, 2**64 - 1)), ticket_type=draw(st.integers(0, 2**16 - 1)),
        valid_from=valid_from, valid_to=valid_to, slot_start=slot_start, slot_end=slot_end,
        headcount=draw(st.integers(1, 255)), zones=frozenset(draw(st.sets(st.integers(1, 32)))),
        key_id=draw(st.integers(0, 255)),
    )


def _refused(text, ring: KeyRing = RING, now: datetime | None = NOW) -> CodeError:
    with pytest.raises(CodeError) as caught:
        ring.verify(text, now=now)
    assert isinstance(caught.value.reason, str) and caught.value.reason in set(Reason)
    return caught.value


# --- round trip ----------------------------------------------------------------------------------


@settings(**examples(200))
@given(claims())
def test_a_signed_code_verifies_offline_to_the_same_claims(c: TicketClaims) -> None:
    code = SIGNER.sign(c)
    assert len(code) == CODE_CHARS and set(code) <= set(B32)
    assert RING.verify(code, now=NOW) == replace(c, key_id=SIGNER.key_id)


@settings(**examples(200))
@given(claims())
def test_the_body_layout_round_trips(c: TicketClaims) -> None:
    assert decode_body(encode_body(c)) == c


def test_the_code_is_152_characters_of_95_bytes() -> None:
    assert (CODE_BYTES, CODE_CHARS, len(CODE)) == (95, 152, 152)
    # 95 bytes are exactly 152 base32 characters: no padding bits, so no two texts mean one code.
    assert len(base64.b32encode(bytes(CODE_BYTES))) == CODE_CHARS


def test_a_typical_ticket_fits_a_version_6_qr_code_at_level_m() -> None:
    """A size contract (what a gate scanner reads fast), stated in ticket_code's docstring."""
    qr_m = segno.make(CODE, error="m", micro=False, boost_error=False)
    qr_q = segno.make(CODE, error="q", micro=False, boost_error=False)
    assert qr_m.mode == "alphanumeric"
    assert qr_m.version <= 6, qr_m.designator
    assert qr_q.version <= 8, qr_q.designator


def test_scanner_noise_is_tolerated_lowercase_and_surrounding_whitespace() -> None:
    assert RING.verify(f"  {CODE.lower()}\r\n", now=NOW).ticket_id == TYPICAL.ticket_id
    assert RING.verify(f"\t{CODE}\n", now=NOW) == RING.verify(CODE, now=NOW)


# --- strict parsing: every edit is refused -------------------------------------------------------


def test_every_single_character_change_is_refused() -> None:
    """All 152 positions x every other base32 character, and a few characters outside the alphabet."""
    outsiders = "0189=-_ .é\x00"
    for i, original in enumerate(CODE):
        for ch in B32 + outsiders:
            if ch == original:
                continue
            edited = CODE[:i] + ch + CODE[i + 1:]
            error = _refused(edited)
            assert error.reason in {Reason.NOT_A_CODE, Reason.UNKNOWN_KEY, Reason.BAD_SIGNATURE}


def test_every_single_bit_flip_of_the_raw_bytes_is_refused() -> None:
    raw = base64.b32decode(CODE)
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        _refused(base64.b32encode(bytes(flipped)).decode())


def test_a_bit_flip_in_the_key_id_is_refused_even_when_the_ring_holds_that_key() -> None:
    ring = KeyRing([PublicKey(1, SIGNER.public_key_bytes()), PublicKey(3, SIGNER.public_key_bytes())])
    raw = bytearray(base64.b32decode(CODE))
    raw[1] ^= 0b10  # key id 1 -> 3, which the ring knows (with the same public key, even)
    assert _refused(base64.b32encode(bytes(raw)).decode(), ring).reason == Reason.BAD_SIGNATURE


@settings(**examples(300))
@given(st.integers(0, CODE_CHARS - 1), st.sampled_from(B32))
def test_any_one_character_of_any_code_changed_is_refused(position: int, ch: str) -> None:
    code = SIGNER_2.sign(TYPICAL)
    edited = code[:position] + ch + code[position + 1:]
    ring = KeyRing([PublicKey(2, SIGNER_2.public_key_bytes())])
    if edited == code:
        assert ring.verify(edited, now=NOW).key_id == 2
    else:
        _refused(edited, ring)


def test_a_truncated_or_extended_code_is_not_a_code() -> None:
    for n in range(CODE_CHARS):
        assert _refused(CODE[:n]).reason == Reason.NOT_A_CODE
    assert _refused(CODE + "A").reason == Reason.NOT_A_CODE
    assert _refused(CODE[1:] + "A").reason in {Reason.NOT_A_CODE, Reason.BAD_SIGNATURE, Reason.UNKNOWN_KEY}


@pytest.mark.parametrize("text", [
    "", "hello", "https://example.com/ticket/123", "A" * CODE_CHARS, "=" * CODE_CHARS, "票" * CODE_CHARS,
    CODE[:-8] + "========", None, b"bytes", 12345,
], ids=["empty", "a word", "a url", "all A", "padding", "cjk", "padded", "None", "bytes", "an int"])
def test_what_is_not_a_code_is_refused_with_a_reason(text) -> None:
    assert _refused(text).reason in {Reason.NOT_A_CODE, Reason.UNKNOWN_KEY, Reason.BAD_SIGNATURE}


def test_another_code_version_is_not_a_code() -> None:
    raw = bytearray(base64.b32decode(CODE))
    raw[0] = 2
    assert _refused(base64.b32encode(bytes(raw)).decode()).reason == Reason.NOT_A_CODE


# --- keys: unknown, forged, retired, rotated -----------------------------------------------------


def test_a_code_signed_by_an_unknown_key_id_is_refused() -> None:
    assert _refused(SIGNER_2.sign(TYPICAL)).reason == Reason.UNKNOWN_KEY
    assert _refused(CODE, KeyRing()).reason == Reason.UNKNOWN_KEY


def test_a_code_signed_by_another_key_under_a_known_id_is_forged() -> None:
    assert _refused(STRANGER.sign(TYPICAL)).reason == Reason.BAD_SIGNATURE


def test_a_retired_key_is_accepted_within_its_grace_and_refused_after() -> None:
    retired = datetime(2025, 5, 1, 0, 0, tzinfo=UTC)
    ring = KeyRing([PublicKey(1, SIGNER.public_key_bytes(), retired_at=retired, grace=timedelta(days=1))])
    assert ring.verify(CODE, now=retired - timedelta(days=3)).ticket_id == TYPICAL.ticket_id
    assert ring.verify(CODE, now=retired + timedelta(hours=23)).ticket_id == TYPICAL.ticket_id
    assert ring.verify(CODE, now=retired + timedelta(days=1)).ticket_id == TYPICAL.ticket_id  # the boundary
    assert _refused(CODE, ring, now=retired + timedelta(days=1, minutes=1)).reason == Reason.KEY_RETIRED


def test_a_forged_code_under_a_retired_key_says_forged_not_retired() -> None:
    ring = KeyRing([PublicKey(1, SIGNER.public_key_bytes(), retired_at=EPOCH)])
    assert _refused(STRANGER.sign(TYPICAL), ring).reason == Reason.BAD_SIGNATURE


def test_rotation_a_gate_holding_two_keys_accepts_codes_of_both() -> None:
    ring = KeyRing([PublicKey(1, SIGNER.public_key_bytes(), retired_at=NOW, grace=timedelta(days=30)),
                    PublicKey(2, SIGNER_2.public_key_bytes())])
    assert ring.key_ids() == [1, 2]
    old, new = ring.verify(CODE, now=NOW), ring.verify(SIGNER_2.sign(TYPICAL), now=NOW)
    assert (old.key_id, new.key_id) == (1, 2)
    assert replace(old, key_id=0) == replace(new, key_id=0) == TYPICAL


def test_a_fresh_seed_signs_codes_its_public_key_verifies() -> None:
    signer = TicketSigner.from_seed(9, generate_signing_seed())
    ring = KeyRing([PublicKey(9, signer.public_key_bytes())])
    assert ring.verify(signer.sign(TYPICAL), now=NOW).ticket_type == TYPICAL.ticket_type


# --- what the signer refuses to write -------------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"headcount": 0}, {"headcount": 256}, {"ticket_type": 2**16}, {"ticket_id": -1}, {"zones": frozenset({33})},
    {"zones": frozenset({0})}, {"valid_to": TYPICAL.valid_from - timedelta(minutes=1)},
    {"valid_from": datetime(2025, 5, 1)}, {"valid_from": datetime(2023, 12, 31, tzinfo=UTC)},
    {"slot_end": None}, {"slot_end": TYPICAL.slot_start},
    {"slot_end": TYPICAL.slot_start + timedelta(seconds=30)},
    {"slot_end": TYPICAL.slot_start + timedelta(minutes=2**16)},
    {"slot_start": EPOCH, "slot_end": EPOCH + timedelta(hours=1)},
], ids=lambda change: ",".join(change))
def test_claims_the_code_cannot_say_are_refused_at_signing(change: dict) -> None:
    with pytest.raises(ValueError):
        SIGNER.sign(replace(TYPICAL, **change))


def test_a_bad_key_id_is_refused_at_construction() -> None:
    with pytest.raises(ValueError):
        TicketSigner.from_seed(256, bytes(32))


def test_decode_body_refuses_a_wrong_length_with_a_code_error() -> None:
    body = encode_body(TYPICAL)
    for bad in (b"", body[:-1], body + b"\x00"):
        with pytest.raises(CodeError):
            decode_body(bad)


def test_encode_body_refuses_a_key_id_beyond_one_byte() -> None:
    with pytest.raises(ValueError):
        encode_body(replace(TYPICAL, key_id=256))
