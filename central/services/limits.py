"""The bounds of what the central accepts, checked by the services and stated at the API's edge.

The services check every value a caller hands them against these (the web pages, the CLI and the
API all call them), and `central.web.api_schema` builds the API's request types from the same numbers,
so the document, the edge and the services agree. A value out of bounds is `Invalid(code, detail)`;
the detail names the field and the bound, never the value (it may be a name or a phone number).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from central.i18n import _l
from central.services import Invalid

NAME = 200  # a person's, a holder's or a ticket type's name (String(200))
PHONE = 32  # Person.phone is String(32)
REF = 200  # a sales channel's reference: an OTA order, an agency (String(200))
REASON = 500  # why a ticket was refunded or revoked (kept in the audit log)
CARD_UID_INPUT = 64  # 32 hex digits with separators ("04:A2:..."), before normalising
ID_NUMBER = 32  # a national ID or passport number, normalised
ID_LAST4_INPUT = 32  # the desk may hand the whole number: only the last four are kept
TEMPLATE = 4096 - 64  # a sealed template fits one MQTT delta entry
MAX_ID = 2**31 - 1  # record ids: INTEGER (PostgreSQL casts a larger parameter and fails)
MAX_BIG_ID = 2**63 - 1  # tickets' ids are BIGINT
TYPE_ID = 65535  # a ticket type id travels in the code as 16 bits
HEADCOUNT = 255  # 8 bits in the code
ZONE = 32  # zone numbers 1-32 (a 32-bit mask in the code)
ENTRIES = 1_000_000  # entries a ticket type allows (or None: unlimited)
MIN_GAP_S = 31 * 86400  # the shortest gap between two entries: a month at most
SLOT_GRACE_MIN = 24 * 60
VALIDITY_DAYS = 3660  # ten years
CAPACITY = 10_000_000  # a slot's or a zone's capacity (INTEGER)
BULK = 10_000  # tickets in one request
FINGER = 10
QR_SCALE = 40  # pixels (PNG) or units (SVG) per module: a 41x41-module code at 40 is 1960 pixels wide
CONFLICTS = 1000  # rows in one answer
PRICE_MAX = Decimal("9999999999.99")  # Numeric(12, 2)

# Printable text on one line: control characters break CSV exports, logs and PostgreSQL (NUL).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PHONE = re.compile(r"[0-9+()./ -]*")
_ID_NUMBER = re.compile(r"[0-9A-Z()-]{6,32}")
_ID_LAST4 = re.compile(r"[0-9A-Za-z]*")


# What a person calls each field a service checks: messages name the field the way the form does.
FIELDS = {
    "name": _l("Name"), "holder_name": _l("Visitor name"), "phone": _l("Phone"),
    "channel_ref": _l("Agency / order reference"), "reason": _l("Reason"), "id_last4": _l("ID number"),
    "headcount": _l("Headcount"), "entries": _l("Entries"), "zones": _l("Zones"), "finger": _l("Finger"),
    "capacity": _l("Capacity"), "validity_days": _l("Days of validity"),
    "min_gap_s": _l("Shortest gap between entries (seconds)"), "slot_grace_min": _l("Grace after the slot (minutes)"),
    "ticket_type": _l("Ticket type"), "ticket type id": _l("Ticket type number"),
    "weekdays (0 Monday to 6)": _l("Weekdays"), "count": _l("How many tickets"),
    "entries (or null for unlimited)": _l("Entries"), "username": _l("Username"), "password": _l("Password"),
    "min_headcount": _l("Fewest people on one ticket"), "max_headcount": _l("Most people on one ticket"),
}


def label(field: str) -> object:
    return FIELDS.get(field, field)


def text(code: str, field: str, value: str | None, max_length: int, *, required: bool = False) -> str | None:
    """`value` if it is printable text of at most `max_length` characters (None or "" when not required)."""
    if value is None or value == "":
        if required:
            raise Invalid(code, _l("“%(field)s” is required (at most %(n)s characters).",
                                   field=label(field), n=max_length))
        return None if value is None else ""
    if not isinstance(value, str):
        raise Invalid(code, _l("“%(field)s” must be text.", field=label(field)))
    if len(value) > max_length:
        raise Invalid(code, _l("“%(field)s” is too long: at most %(n)s characters.", field=label(field), n=max_length))
    if _CONTROL.search(value):
        raise Invalid(code, _l("“%(field)s” must not contain control characters.", field=label(field)))
    return value


def phone(value: str | None) -> str | None:
    value = text("bad_phone", "phone", value, PHONE)
    if value and not _PHONE.fullmatch(value):
        raise Invalid("bad_phone", _l("A phone number is digits, spaces and + - ( ) . / only."))
    return value or None


def id_number(value: str) -> str:
    """The normalised ID number (upper case, no surrounding space), or Invalid."""
    number = value.strip().upper() if isinstance(value, str) and len(value) <= ID_NUMBER + 8 else ""
    if not _ID_NUMBER.fullmatch(number):
        raise Invalid("bad_id_number", _l("An ID or passport number is 6 to %(n)s letters, digits and ( ) -.",
                                          n=ID_NUMBER))
    return number


def id_last4(value: str | None) -> str | None:
    value = text("bad_id_last4", "id_last4", value, ID_LAST4_INPUT)
    if value and not _ID_LAST4.fullmatch(value):
        raise Invalid("bad_id_last4", _l("An ID number is letters and digits only."))
    return value[-4:].upper() if value else None


def integer(code: str, field: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(code, _l("“%(field)s” is a whole number from %(low)s to %(high)s.", field=label(field), low=low,
                               high=high))
    return value


def zones(value) -> list[int]:
    if not isinstance(value, list | tuple) or len(value) > ZONE:
        raise Invalid("bad_zone", _l("Choose at most %(n)s zones.", n=ZONE))
    for zone in value:
        integer("bad_zone", "zones", zone, 1, ZONE)
    return sorted(set(value))


def money(value) -> Decimal:
    """A price: a finite decimal 0-9999999999.99 with at most two decimals."""
    if isinstance(value, bool | float):
        raise Invalid("bad_price", _l("A price is written as a decimal, such as 80.00."))
    if isinstance(value, str) and len(value) > 32:
        raise Invalid("bad_price", _l("A price is written as a decimal, such as 80.00."))
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError, TypeError):
        raise Invalid("bad_price", _l("A price is written as a decimal, such as 80.00.")) from None
    if not amount.is_finite() or amount < 0 or amount > PRICE_MAX:
        raise Invalid("bad_price", _l("A price is from 0 to %(max)s.", max=PRICE_MAX))
    exponent = amount.as_tuple().exponent  # an int for a finite number (letters mark NaN and infinity)
    if isinstance(exponent, int) and exponent < -2:
        raise Invalid("bad_price", _l("A price has at most two decimals."))
    return (amount + 0).quantize(Decimal("0.01"))  # + 0: "-0" is 0.00, not -0.00
