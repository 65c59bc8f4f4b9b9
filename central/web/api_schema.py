"""What the JSON API accepts: one msgspec Struct per request body and per query string, with its limits.

`central.web.api` decodes every request into these before any service runs (`@accepts(body=..., query=...)`):
a value out of its limits, of the wrong type, or a field the API does not know is a 400 that names the
field. `central.web.openapi` builds the document's request schemas and query parameters from the same
structs (`msgspec.json.schema_components`), so the checks and the document cannot drift. The numbers
are the services' own (`central.services.limits`): the services check them again for the web pages.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from central.models import CHANNELS
from central.services import limits
from protocol.messages import HardwareParams

# One line of printable text. `$(?!\n)`: Python's `$` also matches before a final newline.
_LINE = r"^[^\x00-\x1f\x7f]*$(?!\n)"
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$(?!\n)"  # site and gate ids become MQTT topic levels


def _line(max_length: int, min_length: int | None = None, description: str | None = None) -> Meta:
    """The constraints of one line of text (an alias is `Annotated[str, _line(...)]`)."""
    return Meta(min_length=min_length, max_length=max_length, pattern=_LINE, description=description)


Name = Annotated[str, _line(limits.NAME, 1)]
OptName = Annotated[str, _line(limits.NAME)]
Phone = Annotated[str, Meta(max_length=limits.PHONE, pattern=r"^[0-9+()./ -]*$(?!\n)",
                            description="digits, spaces and + - ( ) . /")]
IdNumber = Annotated[str, Meta(min_length=6, max_length=limits.ID_NUMBER, pattern=r"^[0-9A-Za-z()-]+$(?!\n)",
                               description="digested at once with the site's salt, never stored")]
IdLast4 = Annotated[str, Meta(max_length=4, pattern=r"^[0-9A-Za-z]*$(?!\n)")]
ChannelRef = Annotated[str, _line(limits.REF, description="the channel's own reference: an OTA order, an agency")]
Reason = Annotated[str, _line(limits.REASON)]
CardUid = Annotated[str, Meta(max_length=limits.CARD_UID_INPUT, pattern=r"^[0-9A-Fa-f: ]*$(?!\n)",
                              description="up to 32 hex digits; colons and spaces are ignored")]
GateName = Annotated[str, Meta(pattern=NAME_PATTERN)]
SiteId = Annotated[str, Meta(pattern=NAME_PATTERN, description="the site; the configured default when absent")]
At = Annotated[datetime, Meta(tz=True, description="RFC 3339 with a UTC offset")]
Channel = Literal[CHANNELS]  # type: ignore[valid-type]
Mode = Literal["normal", "free", "locked", "emergency"]
Price = (Annotated[str, Meta(pattern=r"^[0-9]{1,10}(\.[0-9]{1,2})?$(?!\n)", description="a decimal: \"80.00\"")]
         | Annotated[int, Meta(ge=0, le=9_999_999_999)])
TypeId = Annotated[int, Meta(ge=0, le=limits.TYPE_ID)]
Headcount = Annotated[int, Meta(ge=1, le=limits.HEADCOUNT)]
Zone = Annotated[int, Meta(ge=1, le=limits.ZONE)]
Zones = Annotated[list[Zone], Meta(max_length=limits.ZONE, description="empty: every zone")]
RecordId = Annotated[int, Meta(ge=1, le=limits.MAX_ID)]


class _Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: a JSON object whose every field is known."""


class TicketTypeBody(_Body):
    """A ticket type and its entry rules (an existing `id` is changed in place)."""

    name: Name
    id: TypeId | None = None
    entries: Annotated[int, Meta(ge=1, le=limits.ENTRIES)] | None = 1  # null: unlimited within validity
    same_person: bool = False
    anti_passback: bool = False
    min_gap_s: Annotated[int, Meta(ge=0, le=limits.MIN_GAP_S)] = 0
    zones: Zones = []
    weekdays: Annotated[list[Annotated[int, Meta(ge=0, le=6)]], Meta(max_length=7)] = []
    slot_grace_min: Annotated[int, Meta(ge=0, le=limits.SLOT_GRACE_MIN)] = 15
    real_name: bool = False
    validity_days: Annotated[int, Meta(ge=1, le=limits.VALIDITY_DAYS)] = 1
    price: Price = 0
    min_headcount: Headcount = 1
    max_headcount: Headcount = limits.HEADCOUNT
    staff_check: bool = False  # staff at the gate look at the visitor (child, senior, concession)
    id_face: bool = False  # 人证核验: an ID-card entry needs the camera's face to match the card's photo
    bind_finger: bool = False  # 人票绑定: the first entry takes the finger, a re-entry needs the same


class TicketBody(_Body):
    """One sale: the type, the day of the visit (or an explicit window), who sold it and for how much."""

    ticket_type: TypeId
    visit_date: date | None = None
    valid_from: At | None = None
    valid_to: At | None = None
    headcount: Headcount = 1
    holder_name: OptName | None = None
    id_number: IdNumber | None = None
    channel: Channel = "box_office"
    channel_ref: ChannelRef | None = None
    price: Price | None = None
    zones: Zones = []
    allow_past: Annotated[bool, Meta(description="sell even though the validity is already over")] = False


class BulkBody(_Body):
    """Either `tickets` (a list of sales) or `ticket` and `count` (that many identical tickets)."""

    tickets: Annotated[list[TicketBody], Meta(min_length=1, max_length=limits.BULK)] | None = None
    ticket: TicketBody | None = None
    count: Annotated[int, Meta(ge=1, le=limits.BULK)] | None = None


class ReasonBody(_Body):
    reason: Reason | None = None


class ConflictDecisionBody(_Body):
    """A manager's decision on a conflict from offline gates (central.services.conflicts)."""

    decision: Literal["accepted", "credential_revoked", "followed_up"]
    note: Annotated[str, Meta(min_length=1, max_length=limits.REASON, pattern=_LINE,
                              description="what was decided and why, in the manager's words")]


class QuotaBody(_Body):
    slot_start: At
    slot_end: At
    capacity: Annotated[int, Meta(ge=0, le=limits.CAPACITY)]


class BookingBody(_Body):
    """A real-name booking of a time slot for the holder of an ID number."""

    ticket_type: TypeId
    slot_start: At
    id_number: IdNumber
    holder_name: OptName | None = None
    headcount: Headcount = 1
    channel: Channel = "web"
    channel_ref: ChannelRef | None = None
    price: Price | None = None


class PersonBody(_Body):
    name: Name
    phone: Phone | None = None
    id_last4: IdLast4 | None = None


class PassBody(_Body):
    """An annual pass for `person_id`, or for a new holder named `holder_name`."""

    valid_from: At
    valid_to: At
    person_id: RecordId | None = None
    holder_name: OptName | None = None
    phone: Phone | None = None
    card_uid: CardUid = ""
    zones: Zones = []
    channel: Channel = "box_office"
    price: Price = 0


class CardBody(_Body):
    card_uid: CardUid


class RenewBody(_Body):
    valid_to: At
    price: Price | None = None


class TemplateBody(_Body):
    """A face (512 bytes) or fingerprint template, base64; bound to the pass's holder."""

    kind: Literal["face", "fingerprint"]
    data: Annotated[bytes, Meta(min_length=1, max_length=limits.TEMPLATE)]
    finger: Annotated[int, Meta(ge=0, le=limits.FINGER)] = 0


class Hardware(HardwareParams, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The settings a technician may change from the central (unknown keys refused)."""


class GateBody(_Body):
    name: GateName
    zone: Zone
    direction: Literal["in", "out", "both"] = "both"
    hardware: Hardware | None = None


class GateUpdateBody(_Body):
    zone: Zone | None = None
    direction: Literal["in", "out", "both"] | None = None
    hardware: Hardware | None = None


class ModeBody(_Body):
    mode: Mode


class CommandBody(_Body):
    """A command; `mode` goes with `set_mode`, `direction` with `open_once`."""

    kind: Literal["open_once", "set_mode", "resync", "test_devices"]
    mode: Mode | None = None
    direction: Literal["in", "out"] = "in"


class SiteQuery(msgspec.Struct, kw_only=True):
    """The query string every operation reads (other parameters are ignored)."""

    site: SiteId | None = None


class QrPngQuery(SiteQuery):
    scale: Annotated[int, Meta(ge=1, le=limits.QR_SCALE, description="pixels per module")] = 8


class QrSvgQuery(SiteQuery):
    scale: Annotated[int, Meta(ge=1, le=limits.QR_SCALE, description="units per module")] = 4


class ConflictsQuery(SiteQuery):
    limit: Annotated[int, Meta(ge=1, le=limits.CONFLICTS, description="the newest first")] = 100


def hardware_dict(hardware: Hardware | None) -> dict | None:
    """The settings sent, as the dict the gate service stores (defaults left out)."""
    return None if hardware is None else msgspec.to_builtins(hardware)


# --- group customers and finance (#21) ---------------------------------------------------------

CustomerKind = Literal["agency", "ota", "company", "school", "government"]
PaymentMethod = Literal["cash", "bank_card", "wechat_pay", "alipay", "voucher", "on_account"]
SignedMoney = Annotated[str, Meta(pattern=r"^-?[0-9]{1,10}(\.[0-9]{1,2})?$(?!\n)", description="a decimal: \"-80.00\"")]
Text500 = Annotated[str, _line(500)]


class CustomerBody(_Body):
    """A group customer (travel agency, OTA, company, school, government unit)."""

    name: Name
    kind: CustomerKind = "agency"
    credit_limit: Price = 0
    payment_term_days: Annotated[int, Meta(ge=0, le=366)] = 30
    note: Text500 = ""


class ContractPriceBody(_Body):
    """The customer's price per person for a ticket type over local days (`valid_to` null: open-ended)."""

    ticket_type: TypeId
    price: Price
    valid_from: date
    valid_to: date | None = None


class MemberBody(_Body):
    name: Name
    id_number: IdNumber | None = None


class GroupOrderBody(_Body):
    """A group visit. A channel's token orders for its own customer (`customer_id` may be left out)."""

    ticket_type: TypeId
    visit_date: date
    headcount: Annotated[int, Meta(ge=1, le=limits.BULK)]
    guide_name: Name
    guide_phone: Annotated[str, Meta(min_length=1, max_length=limits.PHONE, pattern=r"^[0-9+()./ -]*$(?!\n)")]
    customer_id: RecordId | None = None
    members: Annotated[list[MemberBody], Meta(max_length=limits.HEADCOUNT)] = []
    slot_start: At | None = None
    slot_end: At | None = None
    payment_method: PaymentMethod = "on_account"
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=128, pattern=_LINE,
                                         description="or the Idempotency-Key header: a retry issues nothing "
                                                     "new")] | None = None


class StatementBody(_Body):
    customer_id: RecordId
    start: date
    end: date


class CorrectionBody(_Body):
    description: Annotated[str, Meta(min_length=1, max_length=500, pattern=_LINE)]
    amount: SignedMoney


class ShiftBody(_Body):
    window: Annotated[str, Meta(min_length=1, max_length=64, pattern=_LINE)]
    opening_float: Price = 0


class ShiftSaleBody(_Body):
    ticket_type: TypeId
    method: PaymentMethod = "cash"
    quantity: Annotated[int, Meta(ge=1, le=500)] = 1
    headcount: Headcount = 1
    visit_date: date | None = None
    customer_id: RecordId | None = None


class ShiftRefundBody(_Body):
    ticket_id: Annotated[int, Meta(ge=1, le=limits.MAX_BIG_ID)]
    reason: Reason | None = None


class ShiftCloseBody(_Body):
    counted_cash: Price
    note: Text500 = ""


class StatementsQuery(SiteQuery):
    customer_id: RecordId | None = None
