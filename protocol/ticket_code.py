"""The signed ticket code: what a QR ticket carries and how any gate checks it offline.

Layout (version 1, big-endian), then an Ed25519 signature over a context string and these bytes:

    offset size field
    0      1    version (1)
    1      1    key id (keys rotate; a gate holds several public keys)
    2      8    ticket id
    10     2    ticket type id
    12     4    valid from, minutes since 2024-01-01T00:00Z
    16     4    valid to, minutes since the same epoch
    20     4    time-slot start, minutes since the epoch (0: no slot)
    24     2    time-slot length in minutes
    26     1    headcount (1-255)
    27     4    zones as a bit mask, bit n for zone number n (0: every zone)
    31     64   Ed25519 signature

95 bytes, written as unpadded RFC 4648 base32 (152 characters of A-Z and 2-7), which a QR code holds
in its alphanumeric mode: version 6 at error correction level M (41x41 modules), version 8 at Q
(measured with segno; `tests/protocol/test_ticket_code.py` keeps that true). Verifying one code
takes about 0.1 ms on the 2-core reference machine.

Decoding is strict: anything that is not exactly this is refused with a `CodeError` whose reason is
one of `Reason.NOT_A_CODE`, `Reason.UNKNOWN_KEY`, `Reason.BAD_SIGNATURE`, `Reason.KEY_RETIRED`.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.errors import CodeError
from protocol.ids import ticket_ref
from protocol.reasons import Reason

VERSION = 1
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_BODY = struct.Struct(">BBQHIIIHBI")
SIGNATURE_LEN = 64
CODE_BYTES = _BODY.size + SIGNATURE_LEN
CODE_CHARS = (CODE_BYTES * 8 + 4) // 5
_CONTEXT = b"scenic-gates/ticket/v1\x00"
MAX_ZONE = 32


@dataclass(frozen=True, slots=True)
class TicketClaims:
    """What a verified code says; times are UTC and minute-precise."""

    ticket_id: int
    ticket_type: int
    valid_from: datetime
    valid_to: datetime
    slot_start: datetime | None = None
    slot_end: datetime | None = None
    headcount: int = 1
    zones: frozenset[int] = field(default_factory=frozenset)  # empty: every zone
    key_id: int = 0

    @property
    def ref(self) -> str:
        """The credential reference used in events and usage (never the full code)."""
        return ticket_ref(self.ticket_id)


def _minutes(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("ticket times must be timezone-aware")
    value = int((at - EPOCH).total_seconds() // 60)
    if not 0 <= value < 2**32:
        raise ValueError(f"time {at.isoformat()} outside the code's range")
    return value


def _at(minutes: int) -> datetime:
    return EPOCH + timedelta(minutes=minutes)


def encode_body(claims: TicketClaims) -> bytes:
    if not 1 <= claims.headcount <= 255:
        raise ValueError("headcount must be 1-255")
    if not 0 <= claims.ticket_type < 2**16 or not 0 <= claims.ticket_id < 2**64:
        raise ValueError("ticket id or type out of range")
    mask = 0
    for zone in claims.zones:
        if not 1 <= zone <= MAX_ZONE:
            raise ValueError(f"zone number {zone} outside 1-{MAX_ZONE}")
        mask |= 1 << (zone - 1)
    slot_start, slot_len = 0, 0
    if claims.slot_start is not None:
        if claims.slot_end is None or claims.slot_end <= claims.slot_start:
            raise ValueError("a time slot needs an end after its start")
        slot_start = _minutes(claims.slot_start)
        slot_len = _minutes(claims.slot_end) - slot_start
        # Refuse what the layout cannot say rather than sign something else: 0 means "no slot", and
        # a slot silently cut to 45 days or to nothing would admit at times the central never sold.
        if slot_start == 0:
            raise ValueError("a time slot cannot start at the code's epoch (0 means no slot)")
        if not 1 <= slot_len < 2**16:
            raise ValueError("a time slot must last 1 to 65535 whole minutes")
    if not 0 <= claims.key_id <= 255:
        raise ValueError("key id must be 0-255")
    valid_from, valid_to = _minutes(claims.valid_from), _minutes(claims.valid_to)  # refuses naive times
    if valid_to < valid_from:
        raise ValueError("valid_to before valid_from")
    return _BODY.pack(VERSION, claims.key_id, claims.ticket_id, claims.ticket_type, valid_from, valid_to,
                      slot_start, slot_len, claims.headcount, mask)


def decode_body(body: bytes) -> TicketClaims:
    """The claims of a code body (no signature check: `KeyRing.verify` does that first)."""
    if len(body) != _BODY.size:
        raise CodeError(Reason.NOT_A_CODE, f"body of {len(body)} bytes, expected {_BODY.size}")
    version, key_id, ticket_id, ticket_type, vf, vt, slot, slot_len, headcount, mask = _BODY.unpack(body)
    if version != VERSION:
        raise CodeError(Reason.NOT_A_CODE, f"unsupported code version {version}")
    if headcount == 0 or vt < vf or (slot and not slot_len):
        raise CodeError(Reason.NOT_A_CODE, "inconsistent fields")
    zones = frozenset(n + 1 for n in range(MAX_ZONE) if mask >> n & 1)
    try:
        return TicketClaims(
            ticket_id=ticket_id, ticket_type=ticket_type, valid_from=_at(vf), valid_to=_at(vt),
            slot_start=_at(slot) if slot else None, slot_end=_at(slot + slot_len) if slot else None,
            headcount=headcount, zones=zones, key_id=key_id,
        )
    except OverflowError:  # minutes past year 9999
        raise CodeError(Reason.NOT_A_CODE, "time outside the calendar") from None


class TicketSigner:
    """The central's side: signs claims with the current private key."""

    def __init__(self, key_id: int, private_key: Ed25519PrivateKey) -> None:
        if not 0 <= key_id <= 255:
            raise ValueError("key id must be 0-255")
        self.key_id = key_id
        self._key = private_key

    @classmethod
    def from_seed(cls, key_id: int, seed: bytes) -> TicketSigner:
        return cls(key_id, Ed25519PrivateKey.from_private_bytes(seed))

    def public_key_bytes(self) -> bytes:
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, claims: TicketClaims) -> str:
        body = encode_body(_with_key(claims, self.key_id))
        signature = self._key.sign(_CONTEXT + body)
        return base64.b32encode(body + signature).decode().rstrip("=")


def _with_key(claims: TicketClaims, key_id: int) -> TicketClaims:
    if claims.key_id == key_id:
        return claims
    from dataclasses import replace

    return replace(claims, key_id=key_id)


@dataclass(frozen=True, slots=True)
class PublicKey:
    """One verification key a gate holds; after `retired_at` + `grace` its codes are refused."""

    key_id: int
    public: bytes
    retired_at: datetime | None = None
    grace: timedelta = timedelta(days=0)


class KeyRing:
    """The gate's side: verifies codes offline with public keys alone."""

    def __init__(self, keys: list[PublicKey] | tuple[PublicKey, ...] = ()) -> None:
        self._keys: dict[int, tuple[PublicKey, Ed25519PublicKey]] = {}
        for key in keys:
            self.add(key)

    def add(self, key: PublicKey) -> None:
        self._keys[key.key_id] = (key, Ed25519PublicKey.from_public_bytes(key.public))

    def key_ids(self) -> list[int]:
        return sorted(self._keys)

    def verify(self, text: str, now: datetime | None = None) -> TicketClaims:
        """Check a scanned code; `now` (aware) enables the retired-key check."""
        raw = _decode_text(text)
        body, signature = raw[: _BODY.size], raw[_BODY.size:]
        if body[0] != VERSION:
            raise CodeError(Reason.NOT_A_CODE, f"unsupported code version {body[0]}")
        entry = self._keys.get(body[1])
        if entry is None:
            raise CodeError(Reason.UNKNOWN_KEY, f"key id {body[1]}")
        key, public = entry
        try:
            public.verify(signature, _CONTEXT + body)
        except InvalidSignature:
            raise CodeError(Reason.BAD_SIGNATURE, "signature does not match") from None
        if key.retired_at is not None and now is not None and now > key.retired_at + key.grace:
            raise CodeError(Reason.KEY_RETIRED, f"key id {key.key_id} retired")
        return decode_body(body)


def _decode_text(text: str) -> bytes:
    if not isinstance(text, str):
        raise CodeError(Reason.NOT_A_CODE, "not text")
    cleaned = text.strip().upper()
    if len(cleaned) != CODE_CHARS:
        raise CodeError(Reason.NOT_A_CODE, f"length {len(cleaned)}, expected {CODE_CHARS}")
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        raise CodeError(Reason.NOT_A_CODE, "not base32") from None
    if len(raw) != CODE_BYTES:
        raise CodeError(Reason.NOT_A_CODE, "wrong length")
    return raw


def generate_signing_seed() -> bytes:
    """32 random bytes: a new Ed25519 private key for `TicketSigner.from_seed`."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    return Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
