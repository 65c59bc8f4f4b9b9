"""Identifiers on the wire: time-ordered event ids, credential refs, salted digests of national ID numbers."""

from __future__ import annotations

import hashlib
import hmac

import uuid6


def new_event_id() -> str:
    """A globally unique, time-ordered id (UUIDv7) for a passage event or a message."""
    return str(uuid6.uuid7())


# Credential refs on the wire (PassageEvent.credential_ref, usage, claims, holder ids): a letter for the
# kind and the central's id. Built and read only through the functions below.
TICKET, PASS, HOLDER = "T", "P", "H"


def ticket_ref(ticket_id: int) -> str:
    return f"{TICKET}{ticket_id}"


def pass_ref(pass_id: int) -> str:
    return f"{PASS}{pass_id}"


def holder_ref(person_id: int) -> str:
    """The holder id gates know a person by (templates, fingerprint slots, forgetting)."""
    return f"{HOLDER}{person_id}"


def ref_kind(ref: str) -> str | None:
    """TICKET, PASS or HOLDER for a well-formed ref, else None."""
    kind = ref[:1]
    return kind if kind in (TICKET, PASS, HOLDER) and ref_number(ref) is not None else None


def is_ticket_ref(ref: str) -> bool:
    return ref_kind(ref) == TICKET


def ref_number(ref: str) -> int | None:
    """The id in a credential ref (T123 a ticket, P45 a pass, H6 a holder); None unless it is 1-18
    ASCII digits, so it fits a 64-bit id (`str.isdigit` alone also takes "²", which `int()` refuses)."""
    number = ref[1:]
    if not (0 < len(number) <= 18 and number.isascii() and number.isdigit()):
        return None
    return int(number)


def normalise_id_number(id_number: str) -> str:
    return id_number.strip().upper()


def id_number_digest(salt: bytes, id_number: str) -> str:
    """The salted hash under which gates know a booked ID number; gates never store the number.

    HMAC-SHA256 keyed with the site's salt, so a leaked gate store cannot be reversed with a table of
    all 10^17 possible numbers without the salt, and one site's digests say nothing about another's.
    """
    mac = hmac.new(salt, normalise_id_number(id_number).encode(), hashlib.sha256)
    return mac.hexdigest()[:32]
