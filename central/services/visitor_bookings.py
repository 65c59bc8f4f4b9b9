"""Visitors book their own visit: a party of named persons, each with a document, in one time slot.

    settings(...)/update_settings(...)   the site's booking rules (days ahead, party maximum, cut-offs)
    calendar(...)                        the open days with each slot's places left
    set_day(...)/set_slot(...)           managers open or close a day, cap it, set a slot's capacity and close
    make_booking(...)                    book: checks every value, then takes the places
    find_booking(...)/cancel_booking()   a visitor finds and cancels with the number and the phone or a document
    face_round(...)/face_round_all(...)  face entry: the visit day's faces onto the gates, past days' deleted
    block(...)/unblock(...)              the blocklist of documents and phones (audited; gates refuse)
    suspicious(...)                      many bookings from one client address or one phone

Rules that hold under a rush:
- one booking per document per day per site: the primary key of `booking_documents`, inserted in the
  booking's transaction (a second request for the same document waits for the first and then fails);
- the slot's capacity and the day's cap are taken by conditional UPDATEs (`booked + n <= capacity`), in
  that order, after every other write of the booking, so their row locks (and the site's delta sequence)
  are held only from there to the commit; a visitor refused for a full slot never waits for the day's row;
- a cancellation deletes the document rows and gives the places back in the same transaction.

Each person gets a ticket of the site's booking ticket type (headcount 1, the slot, the person's name
and document digest), so gates admit an ID card by its salted digest, or any document by the ticket's
signed QR code, as for every other real-name ticket.

Face entry (the site's `face_entry`): a person may add a selfie (checked like a desk enrolment). Its
template is sealed with the template key for the holder `ticket_ref(ticket)` and reaches the site's gates
on the visit day only, so a gate matches a booked face among that day's bookings (a small gallery: fewer
false accepts than among every booking ahead); after the visit day, or at a cancellation, the template
is deleted here and the gates forget it.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import secrets
import weakref
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from time import monotonic
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Integer,
    LargeBinary,
    Row,
    String,
    Text,
    bindparam,
    cast,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from central.db import table
from central.i18n import _l
from central.models import (
    DOCUMENT_TYPES,
    Booking,
    BookingBlock,
    BookingDay,
    BookingDocument,
    BookingPerson,
    BookingSettings,
    Site,
    SlotQuota,
    SyncChange,
    Ticket,
    TicketType,
    utcnow,
)
from central.services import Invalid, NotFound, Refused, limits
from central.services.audit import audit, audit_rows
from central.services.gates import get_site
from central.services.sync import booked_face_change, delta_parts, record_delta, ticket_change
from central.services.tickets import IssueRequest, check_encodable, day_window, get_ticket_type, ticket_values
from protocol.clock import park_now
from protocol.ids import id_number_digest, ticket_ref
from protocol.messages import Change, HolderForget

PARTY_LIMIT = 20  # the most a site may allow in one booking
DAYS_AHEAD_LIMIT = 90
CUTOFF_LIMIT = 7 * 24 * 60  # minutes
RETENTION_LIMIT = 365
PERSON_NAME = 50  # a person's name on a booking (the gate's display and the desk's list)
NUMBER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no I, O, 0, 1: typed from a screen without doubt
NUMBER_LENGTH = 10

DOCUMENT_LABELS = {
    "id_card": _l("Mainland resident ID card"), "passport": _l("Passport"),
    "hk_macao": _l("Mainland travel permit for Hong Kong and Macao residents"),
    "taiwan": _l("Mainland travel permit for Taiwan residents"),
}
_DOC_PATTERNS = {
    "id_card": re.compile(r"\d{17}[\dX]"),
    "passport": re.compile(r"[A-Z0-9]{5,17}"),
    "hk_macao": re.compile(r"[HM]\d{8}(\d{2})?"),
    "taiwan": re.compile(r"\d{8}(\d{2})?"),
}
_DOC_HINTS = {
    "id_card": _l("A mainland ID number is 17 digits and a check character (a digit or X)."),
    "passport": _l("A passport number is 5 to 17 letters and digits."),
    "hk_macao": _l("A Hong Kong or Macao permit number is H or M and 8 or 10 digits."),
    "taiwan": _l("A Taiwan permit number is 8 or 10 digits."),
}
FACE_OFF = _l("This park does not offer face entry.")
_PHONE = re.compile(r"\+?\d{6,15}")
_GB11643_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_GB11643_CHECK = "10X98765432"


class FieldError(Invalid):
    """A value a visitor typed is wrong: `field` names the form field ("phone", "person-2-doc_number")."""

    field: str

    def __init__(self, code: str, detail: object, field: str) -> None:
        super().__init__(code, detail)
        self.field = field


# --- values ----------------------------------------------------------------------------------------


def gb11643_check(first17: str) -> str:
    """The check character of a mainland ID number (GB 11643-1999, ISO 7064 MOD 11-2)."""
    total = sum(int(d) * w for d, w in zip(first17, _GB11643_WEIGHTS, strict=True))
    return _GB11643_CHECK[total % 11]


def normalise_document(doc_type: str, number: str, field: str = "doc_number") -> str:
    """The document number upper-cased without spaces, checked for its type, or FieldError."""
    if doc_type not in DOCUMENT_TYPES:
        raise FieldError("bad_doc_type", _l("Choose the type of document."), field.replace("doc_number", "doc_type"))
    value = re.sub(r"[\s-]", "", number or "").upper() if isinstance(number, str) and len(number) <= 40 else None
    if not value:
        raise FieldError("bad_doc_number", _l("Give the document number."), field)
    if not _DOC_PATTERNS[doc_type].fullmatch(value):
        raise FieldError("bad_doc_number", _DOC_HINTS[doc_type], field)
    if doc_type == "id_card":
        try:
            date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
        except ValueError:
            raise FieldError("bad_doc_number", _l("This ID number holds no valid date of birth."), field) from None
        if gb11643_check(value[:17]) != value[17]:
            raise FieldError("bad_check_char", _l("This ID number's last character does not match: check it "
                                                  "against the card."), field)
    return value


def normalise_phone(phone: str, field: str = "phone") -> str:
    value = re.sub(r"[\s().-]", "", phone or "") if isinstance(phone, str) and len(phone) <= 40 else None
    if not value:
        raise FieldError("bad_phone", _l("Give a phone number we can reach you on."), field)
    if not _PHONE.fullmatch(value):
        raise FieldError("bad_phone", _l("A phone number is 6 to 15 digits, with + before a country code."), field)
    return value


def normalise_number(number: str) -> str:
    """A booking number as typed (spaces, dashes, lower case) in its stored form."""
    return re.sub(r"[\s-]", "", number or "").upper()[:32] if isinstance(number, str) else ""


def display_number(number: str) -> str:
    return f"{number[:5]}-{number[5:]}"


def mask_document(number: str) -> str:
    head, keep = (number[:3], 4) if len(number) >= 15 else (number[:1], 2)
    return head + "*" * (len(number) - len(head) - keep) + number[-keep:]


def mask_phone(phone: str) -> str:
    if len(phone) <= 6:
        return phone[:1] + "*" * (len(phone) - 3) + phone[-2:]
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def document_digest(salt: bytes, doc_type: str, number: str) -> str:
    """The keyed digest a document is known by: a mainland ID as gates know it from the card, the others
    in a namespace of their type (a passport and a permit with the same digits are different documents)."""
    return id_number_digest(salt, number if doc_type == "id_card" else f"{doc_type}:{number}")


def phone_digest(salt: bytes, phone: str) -> str:
    return id_number_digest(salt, f"tel:{phone}")


def client_digest(salt: bytes, address: str) -> tuple[str, str]:
    """The keyed digest of a client address, and a masked form for the managers' report (/24, /48)."""
    try:
        ip = ipaddress.ip_address(address)
        prefix = 24 if ip.version == 4 else 48
        masked = str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
    except ValueError:
        masked = "?"
    return id_number_digest(salt, f"ip:{address}"), masked


# --- settings and calendar -------------------------------------------------------------------------


@dataclass(frozen=True)
class BookingRules:
    """A site's booking rules (BookingSettings' values, the defaults until a manager saves them) and what
    a booking needs of the site itself (its time zone, the salt of its digests), as read at one moment."""

    site_id: str
    ticket_type_id: int | None
    days_ahead: int
    party_max: int
    cancel_before_min: int
    close_before_min: int
    retention_days: int
    face_entry: bool
    timezone: str
    id_salt: bytes
    ticket_type: BookingTicketType | None = None  # the booking ticket type, when one is set


@dataclass(frozen=True)
class BookingTicketType:
    """What a booking's tickets take from their type (TicketType's attributes of those names)."""

    id: int
    site_id: str
    name: str
    active: bool
    real_name: bool
    min_headcount: int
    max_headcount: int
    validity_days: int
    price: Any
    zones: list[int]


@functools.cache
def _sql(dialect: str) -> SimpleNamespace:
    """The public site's and a booking's statements, built once per dialect with bound parameters: under
    a rush, building a statement cost as much as running it, and a built one keeps its cache key."""
    sites, rows, types = table(Site), table(BookingSettings), table(TicketType)
    slots, days, blocks = table(SlotQuota), table(BookingDay), table(BookingBlock)
    bookings, documents, tickets = table(Booking), table(BookingDocument), table(Ticket)
    # Parameters of the UPDATEs are named like no column: a parameter named like one would be SET.
    n = bindparam("take_n", type_=Integer)
    take_slot = update(slots).where(slots.c.id == bindparam("take_quota"), slots.c.booked + n <= slots.c.capacity) \
        .values(booked=slots.c.booked + n).returning(slots.c.booked)
    take_day = update(days).where(
        days.c.site_id == bindparam("take_site"), days.c.day == bindparam("take_day"), days.c.open.is_(True),
        or_(days.c.capacity.is_(None), days.c.booked + n <= days.c.capacity),
    ).values(booked=days.c.booked + n).returning(days.c.id, days.c.booked)
    out = SimpleNamespace(
        rules=select(sites.c.timezone, sites.c.id_salt, rows.c.site_id.label("saved"),
                     *[rows.c[name] for name in DEFAULT_RULES],
                     *[types.c[f.name].label(f"tt_{f.name}") for f in fields(BookingTicketType)])
        .select_from(sites.outerjoin(rows, rows.c.site_id == sites.c.id)
                     .outerjoin(types, types.c.id == rows.c.ticket_type_id))
        .where(sites.c.id == bindparam("site_id")),
        slot=select(slots).where(slots.c.id == bindparam("quota_id"), slots.c.site_id == bindparam("site_id")),
        blocked=select(blocks.c.id).where(blocks.c.site_id == bindparam("site_id"), or_(
            (blocks.c.kind == "document") & blocks.c.digest.in_(bindparam("digests", expanding=True)),
            (blocks.c.kind == "phone") & (blocks.c.digest == bindparam("tel")))).limit(1),
        booking=insert(bookings).returning(bookings.c.id),
        documents=_dialect_insert(dialect, documents).on_conflict_do_nothing().returning(documents.c.doc_digest),
        tickets=insert(tickets).returning(tickets.c.id, sort_by_parameter_order=True),
        persons=insert(table(BookingPerson)),
        take_slot=take_slot, take_day=take_day, take_both=None,
    )
    if dialect == "postgresql":  # the counts, the seq and the delta in one statement: see _take_places
        changes = table(SyncChange)
        took_slot = take_slot.cte("took_slot")
        took_day = take_day.where(exists(select(took_slot.c.booked))).cte("took_day")
        took_seq = update(sites).where(sites.c.id == bindparam("take_site"), exists(select(took_day.c.id))) \
            .values(sync_seq=sites.c.sync_seq + 1).returning(sites.c.sync_seq).cte("took_seq")
        payload = bindparam("delta_head", type_=LargeBinary).op("||", return_type=LargeBinary)(
            func.convert_to(cast(took_seq.c.sync_seq, Text), "UTF8")).op("||", return_type=LargeBinary)(
            bindparam("delta_tail", type_=LargeBinary))
        wrote = insert(changes).from_select(
            ["site_id", "seq", "kinds", "payload", "created_at"],
            select(bindparam("take_site", type_=String), took_seq.c.sync_seq, bindparam("delta_kinds", type_=String),
                   payload, bindparam("delta_created", type_=changes.c.created_at.type)),
        ).returning(changes.c.seq).cte("wrote")
        out.take_both = select(select(took_slot.c.booked).scalar_subquery().label("slot_booked"),
                               select(took_day.c.id).scalar_subquery().label("id"),
                               select(took_day.c.booked).scalar_subquery().label("booked"),
                               select(wrote.c.seq).scalar_subquery().label("seq"))
    return out


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


class _RecentReads:
    """Rows this process read, per database (engine: tests and embedders run several) and key, with when:
    `get` gives one read at most `max_age` seconds ago. At most `most` keys a database (then it starts again)."""

    def __init__(self, most: int = 10_000) -> None:
        self.most = most
        self._reads: weakref.WeakKeyDictionary[Any, dict[Any, tuple[float, Any]]] = weakref.WeakKeyDictionary()

    def get(self, bind: Any, key: Any, max_age: float) -> Any | None:
        found = self._reads.get(bind, {}).get(key)
        return found[1] if found is not None and monotonic() - found[0] <= max_age else None

    def put(self, bind: Any, key: Any, value: Any, read_at: float) -> None:
        reads = self._reads.setdefault(bind, {})
        if len(reads) >= self.most:
            reads.clear()
        reads[key] = (read_at, value)

    def forget(self, bind: Any, key: Any) -> None:
        self._reads.get(bind, {}).pop(key, None)

    def clear(self) -> None:
        self._reads.clear()


RULES_TTL_S = 5.0
DEFAULT_RULES = {"ticket_type_id": None, "days_ahead": 7, "party_max": 5, "cancel_before_min": 60,
                 "close_before_min": 0, "retention_days": 30, "face_entry": False}
# Per database (engine) and site: (when read, rules). Every page and booking of the public site reads the
# rules, and two ORM SELECTs of them were a third of a refused visitor's answer in the booking rush.
_rules = _RecentReads()


@event.listens_for(BookingSettings, "after_insert")
@event.listens_for(BookingSettings, "after_update")
@event.listens_for(BookingSettings, "after_delete")
@event.listens_for(Site, "after_update")
@event.listens_for(Site, "after_delete")
@event.listens_for(TicketType, "after_update")
@event.listens_for(TicketType, "after_delete")
def _forget_rules(_mapper, _connection, _row) -> None:
    """Rules or a site written in this process: its next read is the database's (other processes read
    them again within RULES_TTL_S)."""
    _rules.clear()


def settings(session: Session, site_id: str, *, fresh: bool = False) -> BookingRules:
    """The site's booking rules; NotFound for an unknown site. Read at most every RULES_TTL_S per process
    (the public site's pages and bookings); `fresh`: from the database now (the managers' settings page)."""
    bind, now = session.get_bind(), monotonic()
    cached = None if fresh else _rules.get(bind, site_id, RULES_TTL_S)
    if cached is not None:
        return cached
    found = session.execute(_sql(bind.dialect.name).rules, {"site_id": site_id}).first()
    if found is None:
        get_site(session, site_id)  # its NotFound (or Invalid for a malformed id)
        raise NotFound("no_site", _l("There is no park %(site_id)s.", site_id=site_id))
    values = {name: getattr(found, name) for name in DEFAULT_RULES} if found.saved is not None else DEFAULT_RULES
    ticket_type = BookingTicketType(**{f.name: getattr(found, f"tt_{f.name}") for f in fields(BookingTicketType)}) \
        if found.tt_id is not None else None
    rules = BookingRules(site_id=site_id, timezone=found.timezone, id_salt=bytes(found.id_salt),
                         ticket_type=ticket_type, **values)
    _rules.put(bind, site_id, rules, now)
    return rules


def update_settings(session: Session, site_id: str, actor: str, *, ticket_type_id: int | None,
                    days_ahead: int, party_max: int, cancel_before_min: int, close_before_min: int,
                    retention_days: int, face_entry: bool) -> BookingSettings:
    """Save the site's booking rules (audited)."""
    if ticket_type_id is not None:
        tt = get_ticket_type(session, ticket_type_id)
        if tt.site_id != site_id:
            raise FieldError("bad_ticket_type", _l("Choose a ticket type of this park."), "ticket_type_id")
    for name, value, low, high in (("days_ahead", days_ahead, 0, DAYS_AHEAD_LIMIT),
                                   ("party_max", party_max, 1, PARTY_LIMIT),
                                   ("cancel_before_min", cancel_before_min, 0, CUTOFF_LIMIT),
                                   ("close_before_min", close_before_min, -CUTOFF_LIMIT, CUTOFF_LIMIT),
                                   ("retention_days", retention_days, 1, RETENTION_LIMIT)):
        try:
            limits.integer("bad_setting", name, value, low, high)
        except Invalid as exc:
            raise FieldError(exc.code, exc.detail, name) from None
    row = session.get(BookingSettings, site_id)
    if row is None:
        get_site(session, site_id)
        row = BookingSettings(site_id=site_id)
        session.add(row)
    row.ticket_type_id, row.days_ahead, row.party_max = ticket_type_id, days_ahead, party_max
    row.cancel_before_min, row.close_before_min = cancel_before_min, close_before_min
    row.retention_days = retention_days
    row.face_entry = bool(face_entry)
    row.updated_at, row.updated_by = utcnow(), actor
    audit(session, actor, "booking.settings", site_id, days_ahead=days_ahead, party_max=party_max,
          cancel_before_min=cancel_before_min, close_before_min=close_before_min, face_entry=bool(face_entry))
    session.flush()
    return row


def site_day(site: Site | BookingRules, now: datetime) -> date:
    return now.astimezone(ZoneInfo(site.timezone)).date()


def slot_closes(quota: SlotQuota | Row, rules: BookingRules) -> datetime:
    return quota.closes_at or quota.slot_start - timedelta(minutes=rules.close_before_min)


@dataclass(frozen=True)
class SlotView:
    quota_id: int
    start: datetime
    end: datetime
    capacity: int
    booked: int
    closes: datetime
    is_open: bool

    @property
    def left(self) -> int:
        return max(0, self.capacity - self.booked) if self.is_open else 0


@dataclass(frozen=True)
class DayView:
    day: date
    is_open: bool
    capacity: int | None
    booked: int
    slots: list[SlotView] = field(default_factory=list)

    @property
    def left(self) -> int:
        slot_left = sum(s.left for s in self.slots)
        if self.capacity is None:
            return slot_left
        return max(0, min(slot_left, self.capacity - self.booked))


def calendar(session: Session, site_id: str, now: datetime | None = None, *, first: date | None = None,
             days: int | None = None, staff: bool = False) -> list[DayView]:
    """The days from `first` (today) for `days` (the site's days ahead, today included) with their slots.

    A visitor's view lists only days that are open and have a slot; staff see every day of the range."""
    now = now or park_now()
    site = get_site(session, site_id)
    rules = settings(session, site_id)
    first = first or site_day(site, now)
    count = days if days is not None else rules.days_ahead + 1
    start, _ = day_window(site.timezone, first)
    _, end = day_window(site.timezone, first + timedelta(days=max(count - 1, 0)))
    quotas = session.scalars(select(SlotQuota).where(SlotQuota.site_id == site_id, SlotQuota.slot_start >= start,
                                                     SlotQuota.slot_start < end).order_by(SlotQuota.slot_start))
    day_rows = {d.day: d for d in session.scalars(select(BookingDay).where(
        BookingDay.site_id == site_id, BookingDay.day >= first, BookingDay.day < first + timedelta(days=count)))}
    out: dict[date, DayView] = {}
    tz = ZoneInfo(site.timezone)
    for offset in range(count):
        d = first + timedelta(days=offset)
        row = day_rows.get(d)
        out[d] = DayView(d, row.open if row else True, row.capacity if row else None, row.booked if row else 0, [])
    for q in quotas:
        d = q.slot_start.astimezone(tz).date()
        view = out.get(d)
        if view is None:
            continue
        closes = slot_closes(q, rules)
        view.slots.append(SlotView(q.id, q.slot_start, q.slot_end, q.capacity, q.booked, closes,
                                   view.is_open and closes > now))
    days_out = list(out.values())
    if not staff:
        days_out = [d for d in days_out if d.is_open and d.slots]
    return days_out


SLOT_TTL_S = 1.0
# Per database (engine): (site, slot) -> (when read, row). Under a rush most visitors send a form for a
# slot that filled meanwhile; a read of the last second tells them so without a database round trip.
_slots = _RecentReads()


def get_slot(session: Session, site_id: str, quota_id: object) -> Row | None:
    """The site's slot `quota_id` as a row of its columns (id, slot_start, slot_end, capacity, booked,
    closes_at), or None: a Core SELECT, as cheap as a read can be (every booking request reads it first)."""
    return recent_slot(session, site_id, quota_id, 0.0)[0]


def recent_slot(session: Session, site_id: str, quota_id: object, max_age: float) -> tuple[Row | None, bool]:
    """(`get_slot`, whether read now): a row this process read at most `max_age` seconds ago will do (the
    public site's "full" answer; a booking reads the slot afresh in its transaction, a cancellation here
    forgets the row, one elsewhere is seen within SLOT_TTL_S)."""
    if not isinstance(quota_id, int) or isinstance(quota_id, bool) or not 0 < quota_id <= limits.MAX_ID:
        return None, True
    bind, now = session.get_bind(), monotonic()
    cached = _slots.get(bind, (site_id, quota_id), max_age) if max_age > 0 else None
    if cached is not None:
        return cached, False
    row = session.execute(_sql(bind.dialect.name).slot, {"quota_id": quota_id, "site_id": site_id}).first()
    if row is not None:
        _slots.put(bind, (site_id, quota_id), row, now)
    return row, True


def _forget_slot(session: Session, site_id: str, quota_id: int) -> None:
    _slots.forget(session.get_bind(), (site_id, quota_id))


def slot_view(session: Session, site_id: str, quota: SlotQuota | Row, now: datetime | None = None) -> SlotView:
    """One slot as the form shows it: its places left, unless booking for it has closed."""
    rules = settings(session, site_id)
    closes = slot_closes(quota, rules)
    return SlotView(quota.id, quota.slot_start, quota.slot_end, quota.capacity, quota.booked, closes,
                    closes > (now or park_now()))


def set_day(session: Session, site_id: str, day: date, actor: str, *, is_open: bool,
            capacity: int | None) -> BookingDay:
    """Open or close a day for booking, and cap it (None: only the slots' capacities count)."""
    get_site(session, site_id)
    if capacity is not None:
        try:
            limits.integer("bad_capacity", "capacity", capacity, 0, limits.CAPACITY)
        except Invalid as exc:
            raise FieldError(exc.code, exc.detail, "day_capacity") from None
    row = _day_row(session, site_id, day, lock=True)
    row.open, row.capacity = bool(is_open), capacity
    audit(session, actor, "booking.day", day.isoformat(), open=bool(is_open), capacity=capacity)
    session.flush()
    return row


def set_slot(session: Session, site_id: str, actor: str, *, day: date, start: time, end: time, capacity: int,
             closes_at: datetime | None = None) -> SlotQuota:
    """Create or change a slot of a day (times in the park's zone); its capacity may not go below what is booked."""
    site = get_site(session, site_id)
    tz = ZoneInfo(site.timezone)
    slot_start = datetime.combine(day, start, tzinfo=tz)
    slot_end = datetime.combine(day, end, tzinfo=tz)
    if slot_end <= slot_start:
        raise FieldError("bad_slot", _l("A time slot needs a start and a later end."), "slot_end")
    try:
        check_encodable(slot_start, slot_end, slot_start, slot_end)
        limits.integer("bad_capacity", "capacity", capacity, 0, limits.CAPACITY)
    except Invalid as exc:
        raise FieldError(exc.code, exc.detail, "slot_capacity") from None
    if closes_at is not None and closes_at > slot_end:
        raise FieldError("bad_closes", _l("Booking must close before the slot ends."), "slot_closes")
    quota = session.scalar(select(SlotQuota).where(SlotQuota.site_id == site_id, SlotQuota.slot_start == slot_start)
                           .with_for_update())
    if quota is None:
        quota = SlotQuota(site_id=site_id, slot_start=slot_start, slot_end=slot_end, capacity=capacity, booked=0)
        session.add(quota)
    else:
        if capacity < quota.booked:
            raise FieldError("below_booked", _l("%(n)s places are already booked: the capacity cannot be lower.",
                                                n=quota.booked), "slot_capacity")
        quota.slot_end, quota.capacity = slot_end, capacity
    quota.closes_at = closes_at
    _day_row(session, site_id, day)
    audit(session, actor, "booking.slot", slot_start.isoformat(), capacity=capacity,
          closes_at=closes_at.isoformat() if closes_at else None)
    session.flush()
    _forget_slot(session, site_id, quota.id)
    return quota


def _day_row(session: Session, site_id: str, day: date, *, lock: bool = False) -> BookingDay:
    query = select(BookingDay).where(BookingDay.site_id == site_id, BookingDay.day == day)
    row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        try:
            with session.begin_nested():
                row = BookingDay(site_id=site_id, day=day, open=True, capacity=None, booked=0)
                session.add(row)
        except IntegrityError:  # made meanwhile by another request
            row = session.scalar(query.with_for_update() if lock else query)
            assert row is not None
    return row


# --- booking -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartyMember:
    name: str
    doc_type: str
    doc_number: str


@dataclass(frozen=True)
class BookingRequest:
    quota_id: int
    persons: list[PartyMember]
    phone: str
    consent: bool
    language: str = "zh"
    channel: str = "web"  # web | desk
    client_address: str | None = None
    faces: dict[int, bytes] = field(default_factory=dict)  # person's position (from 1) -> checked face template


@dataclass(frozen=True)
class CheckedPerson:
    name: str
    doc_type: str
    number: str  # only in memory, for the ticket's digest; never stored


def check_party(rules: BookingRules, persons: list[PartyMember]) -> list[CheckedPerson]:
    """Every person's name and document, or the FieldError of the first wrong value."""
    if not 1 <= len(persons) <= rules.party_max:
        raise FieldError("bad_party", _l("A booking is for 1 to %(n)s people.", n=rules.party_max), "party")
    checked: list[CheckedPerson] = []
    seen: set[tuple[str, str]] = set()
    for i, person in enumerate(persons, start=1):
        name = person.name.strip() if isinstance(person.name, str) else person.name
        try:
            limits.text("bad_name", "name", name, PERSON_NAME, required=True)
        except Invalid as exc:
            raise FieldError(exc.code, exc.detail, f"person-{i}-name") from None
        number = normalise_document(person.doc_type, person.doc_number, f"person-{i}-doc_number")
        if (person.doc_type, number) in seen:
            raise FieldError("same_document", _l("Each person needs their own document."), f"person-{i}-doc_number")
        seen.add((person.doc_type, number))
        checked.append(CheckedPerson(name, person.doc_type, number))
    return checked


def _dialect_insert(dialect: str, target):
    """INSERT with ON CONFLICT for the database (PostgreSQL in production, SQLite embedded)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(target)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(target)


def new_number() -> str:
    return "".join(secrets.choice(NUMBER_ALPHABET) for _ in range(NUMBER_LENGTH))


def _check_faces(rules: BookingRules, req: BookingRequest, cipher) -> dict[int, bytes]:
    if not req.faces:
        return {}
    if not rules.face_entry:
        raise FieldError("face_off", FACE_OFF, "party")
    if cipher is None:
        raise Refused("no_template_key", _l("Face entry cannot be stored at the moment: book without a photo "
                                            "and enter with your document."))
    from biometrics.templates import TemplateFormatError, check_template

    out = {}
    for position, template in req.faces.items():
        if not isinstance(position, int) or not 1 <= position <= len(req.persons):
            raise FieldError("bad_face", _l("A face photo belongs to a person of the party."), "party")
        try:
            out[position] = check_template("face", template)
        except TemplateFormatError:
            raise FieldError("bad_face", _l("This photo cannot be used for face entry."),
                             f"person-{position}-face") from None
    return out


@dataclass(frozen=True)
class Booked:
    """What `make_booking` booked (its rows are written without the ORM: `get_booking` reads them)."""

    id: int
    number: str
    party: int
    day: date
    slot_start: datetime
    slot_end: datetime
    phone_masked: str
    channel: str
    ticket_ids: list[int]


def make_booking(session: Session, site_id: str, req: BookingRequest, actor: str | None = None,
                 now: datetime | None = None, *, cipher=None, slot: Row | None = None) -> Booked:
    """Book the places of one slot for a party, in the caller's transaction (commit it at once).
    `cipher` (the template key) seals the faces of a party asking for face entry; `slot`: the slot as
    the caller read it in this transaction (`get_slot`), not read again.

    Refused: `slot_closed`, `day_closed`, `quota_full`, `day_full`, `already_booked`, `blocked`."""
    now = now or park_now()
    rules = site = settings(session, site_id)  # the site's time zone and salt with its rules
    tt = rules.ticket_type
    if tt is None:
        raise Refused("booking_off", _l("This park does not take bookings online yet."))
    persons = check_party(rules, list(req.persons))
    faces = _check_faces(rules, req, cipher)
    phone = normalise_phone(req.phone)
    if req.consent is not True:
        raise FieldError("no_consent", _l("Booking needs your consent to the personal data notice."), "consent")
    quota = slot if slot is not None and slot.id == req.quota_id else get_slot(session, site_id, req.quota_id)
    if quota is None:
        raise FieldError("no_slot", _l("Choose a time slot from the list."), "slot")
    day = site_day(site, quota.slot_start)
    today = site_day(site, now)
    if not today <= day <= today + timedelta(days=rules.days_ahead):
        raise FieldError("day_not_open", _l("That day is not open for booking."), "slot")
    if slot_closes(quota, rules) <= now:
        raise FieldError("slot_closed", _l("Booking for this time slot has closed: choose another one."), "slot")
    if quota.booked + len(persons) > quota.capacity:
        # Full already when this request began: say so at once. Only a fast path: the conditional UPDATE
        # below is what decides when places are left at this read.
        raise Refused("quota_full", _l("This time slot is fully booked."))
    salt = site.id_salt
    digests = [document_digest(salt, p.doc_type, p.number) for p in persons]
    tel = phone_digest(salt, phone)
    sql = _sql(_dialect(session))
    blocked = session.execute(sql.blocked, {"site_id": site_id, "digests": digests, "tel": tel}).first()
    if blocked is not None:
        raise Refused("blocked", _l("This booking cannot be made online: please contact the park."))
    # Every value checked before the first write: the persons' tickets too.
    number, channel = new_number(), "desk" if req.channel == "desk" else "web"
    valid_from, valid_to = day_window(site.timezone, day, tt.validity_days)
    ticket_rows = [ticket_values(site_id, IssueRequest(
        ticket_type=tt.id, valid_from=valid_from, valid_to=valid_to, headcount=1, holder_name=p.name,
        id_number=p.number, channel="web" if channel == "web" else "box_office", channel_ref=f"B{number}",
        slot_start=quota.slot_start, slot_end=quota.slot_end, quota_id=quota.id), tt, site.timezone, salt,
        actor or "visitor") for p in persons]
    client, masked_client = client_digest(salt, req.client_address) if req.client_address else (None, None)
    # Core statements, one per table (the ORM's unit of work was most of a booking's cost in the rush).
    booking_id = session.execute(sql.booking, dict(
        site_id=site_id, number=number, quota_id=quota.id, day=day, slot_start=quota.slot_start,
        slot_end=quota.slot_end, party=len(persons), phone_digest=tel, phone_masked=mask_phone(phone),
        status="booked", channel=channel, language=(req.language or "zh")[:8], consent_at=now,
        client_digest=client, client_masked=masked_client, created_at=now, created_by=actor,
    )).scalar_one()
    # One booking per document per day: the primary key decides. A second request for the same document
    # waits here for the first one's commit, then inserts nothing (and the caller rolls back).
    claimed = session.execute(sql.documents, [{"site_id": site_id, "day": day, "doc_digest": d,
                                               "booking_id": booking_id} for d in digests]).all()
    if len(claimed) != len(digests):
        raise FieldError("already_booked", _l("Someone in this party already holds a booking for that day."),
                         "party")
    ticket_ids = list(session.scalars(sql.tickets, ticket_rows))
    changes: list[Change] = [ticket_change(SimpleNamespace(id=i, **row), tt.zones)
                             for i, row in zip(ticket_ids, ticket_rows, strict=True)]
    on_the_day = day == today  # a face reaches the gates on its visit day only (`face_round` for later days)
    person_rows = []
    for i, (p, d, ticket_id) in enumerate(zip(persons, digests, ticket_ids, strict=True), start=1):
        record = cipher.encrypt(faces[i], ticket_ref(ticket_id), "face") if i in faces else None
        person_rows.append({"booking_id": booking_id, "position": i, "name": p.name, "doc_type": p.doc_type,
                            "doc_digest": d, "doc_masked": mask_document(p.number), "ticket_id": ticket_id,
                            "face_entry": record is not None, "face_record": record,
                            "face_on_gates": record is not None and on_the_day})
        if record is not None and on_the_day:
            changes.append(booked_face_change(ticket_id, record))
    session.execute(sql.persons, person_rows)
    audit_rows(session, [
        (actor or "visitor", "ticket.issue", f"{ticket_ids[0]}..{ticket_ids[-1]}",
         {"count": len(ticket_ids), "channels": sorted({row["channel"] for row in ticket_rows})}),
        (actor or "visitor", "booking.make", display_number(number),
         {"party": len(persons), "channel": channel, "faces": len(faces)})])
    # The hot rows, last: the slot's and the day's counts (in that order everywhere), then the site's delta
    # sequence. Their row locks are held from here to the caller's commit only, so a rush queues on a few
    # statements, not on a whole booking.
    slot_booked, taken, take_day, recorded = _take_places(session, site_id, quota.id, day, len(persons), changes)
    if slot_booked is None:
        raise Refused("quota_full", _l("This time slot is fully booked."))
    loaded_slot = session.identity_map.get(identity_key(SlotQuota, quota.id))
    if loaded_slot is not None:  # a slot loaded in this session: its new count, as the ORM's UPDATE would
        set_committed_value(loaded_slot, "booked", slot_booked)
    if taken is None:
        day_row = session.scalar(select(BookingDay).where(BookingDay.site_id == site_id, BookingDay.day == day))
        if day_row is None:  # a day with slots but no calendar row yet: its count starts now
            _day_row(session, site_id, day)
            taken = session.execute(sql.take_day, take_day).first()
            if taken is None:
                raise Refused("day_full", _l("That day is fully booked."))
        elif not day_row.open:
            raise FieldError("day_closed", _l("That day is no longer open for booking."), "slot")
        else:
            raise Refused("day_full", _l("That day is fully booked."))
    loaded_day = session.identity_map.get(identity_key(BookingDay, taken.id))
    if loaded_day is not None:
        set_committed_value(loaded_day, "booked", taken.booked)
    if not recorded:
        record_delta(session, site_id, changes)
    return Booked(id=booking_id, number=number, party=len(persons), day=day, slot_start=quota.slot_start,
                  slot_end=quota.slot_end, phone_masked=mask_phone(phone), channel=channel, ticket_ids=ticket_ids)


def _take_places(session: Session, site_id: str, quota_id: int, day: date, n: int,
                 changes: list[Change]) -> tuple[int | None, Row | None, dict[str, Any], bool]:
    """Take `n` places of the slot, then of its day (conditional UPDATEs, in that order everywhere), and
    record the gates' delta: (the slot's new count or None when it is full, the day's (id, booked) or
    None, the parameters of the day's UPDATE `_sql(...).take_day`, whether the delta is recorded).

    These rows are the rush's: every booking of the slot waits for the one before to commit. So Core
    statements, and on PostgreSQL all four writes in one statement (data-modifying CTEs, each only when
    the one before took), the rows locked for one round trip before the commit instead of four."""
    sql = _sql(_dialect(session))
    params = {"take_n": n, "take_quota": quota_id, "take_site": site_id, "take_day": day}
    if sql.take_both is not None:
        kinds, head, tail = delta_parts(site_id, changes)
        row = session.execute(sql.take_both, params | {"delta_kinds": kinds, "delta_head": head, "delta_tail": tail,
                                                       "delta_created": utcnow()}).one()
        return row.slot_booked, (row if row.id is not None else None), params, row.seq is not None
    took = session.execute(sql.take_slot, params).first()  # SQLite: one writer at a time anyway
    if took is None:
        return None, None, params, False
    return took.booked, session.execute(sql.take_day, params).first(), params, False


def get_booking(session: Session, site_id: str, number: str) -> Booking | None:
    number = normalise_number(number)
    if not number:
        return None
    return session.scalar(select(Booking).where(Booking.site_id == site_id, Booking.number == number))


def find_booking(session: Session, site_id: str, number: str, proof: str) -> Booking:
    """The booking with `number` whose phone or one of whose documents is `proof`; NotFound otherwise
    (one answer for a wrong number and a wrong proof: nobody learns which numbers exist)."""
    site = get_site(session, site_id)
    booking = get_booking(session, site_id, number)
    not_found = NotFound("no_booking", _l("No booking matches this number and phone or document number."))
    if booking is None or not isinstance(proof, str) or not proof.strip() or len(proof) > 40:
        raise not_found
    tel = re.sub(r"[\s().-]", "", proof)
    doc = re.sub(r"[\s-]", "", proof).upper()
    if booking.phone_digest == phone_digest(site.id_salt, tel):
        return booking
    for person in booking.persons:
        if person.doc_digest == document_digest(site.id_salt, person.doc_type, doc):
            return booking
    raise not_found


def cancel_deadline(booking: Booking, rules: BookingRules) -> datetime:
    return booking.slot_start - timedelta(minutes=rules.cancel_before_min)


def cancel_booking(session: Session, site_id: str, booking: Booking, actor: str | None = None,
                   now: datetime | None = None, *, staff: bool = False) -> Booking:
    """Cancel a booking: its tickets end (gates refuse them), its documents may book again, its places return."""
    now = now or park_now()
    rules = settings(session, site_id)
    locked = session.scalar(select(Booking).where(Booking.id == booking.id).with_for_update())
    if locked is None or locked.status != "booked":
        raise Refused("already_cancelled", _l("This booking is already cancelled."))
    if not staff and now >= cancel_deadline(locked, rules):
        raise Refused("too_late", _l("A booking can be cancelled until %(n)s minutes before its slot starts.",
                                     n=rules.cancel_before_min))
    locked.status, locked.cancelled_at, locked.cancelled_by = "cancelled", now, actor or "visitor"
    session.execute(delete(BookingDocument).where(BookingDocument.booking_id == locked.id))
    ticket_ids = [p.ticket_id for p in locked.persons if p.ticket_id is not None]
    tickets = list(session.scalars(select(Ticket).where(Ticket.id.in_(ticket_ids), Ticket.status == "valid")))
    for t in tickets:
        t.status, t.status_changed_at = "refunded", now
    session.execute(update(SlotQuota).where(SlotQuota.id == locked.quota_id)
                    .values(booked=SlotQuota.booked - len(tickets)))
    _forget_slot(session, site_id, locked.quota_id)  # its places are free again: not "full" from a stale read
    session.execute(update(BookingDay).where(BookingDay.site_id == site_id, BookingDay.day == locked.day)
                    .values(booked=BookingDay.booked - len(tickets)))
    session.flush()
    changes: list[Change] = [ticket_change(t) for t in tickets]
    changes += _delete_faces(list(locked.persons))  # a cancelled visit's faces go at once
    record_delta(session, site_id, changes)
    audit(session, actor or "visitor", "booking.cancel", display_number(locked.number), party=locked.party)
    session.flush()
    return locked


# --- face entry --------------------------------------------------------------------------------


def _delete_faces(persons: list[BookingPerson]) -> list[Change]:
    """Delete these persons' face templates; what the gates hold, they forget (the changes to record)."""
    out: list[Change] = []
    for person in persons:
        if person.face_on_gates and person.ticket_id is not None:
            out.append(HolderForget(holder_id=ticket_ref(person.ticket_id)))
        person.face_record, person.face_on_gates = None, False
    return out


def face_round(session: Session, site_id: str, now: datetime | None = None) -> tuple[int, int]:
    """The visit day's booked faces onto the gates, the faces of past days (and of bookings no longer
    valid) deleted here and forgotten by the gates. (sent, deleted); the scheduler runs it every few
    minutes, so a day's gallery is on the gates from its first minutes (bookings made on the day go at once)."""
    now = now or park_now()
    site = get_site(session, site_id)
    today = site_day(site, now)
    persons = list(session.scalars(
        select(BookingPerson).join(Booking, Booking.id == BookingPerson.booking_id)
        .where(Booking.site_id == site_id, BookingPerson.face_record.is_not(None),
               or_(Booking.day != today, Booking.status != "booked", BookingPerson.face_on_gates.is_(False)))
        .order_by(BookingPerson.id).limit(5000).with_for_update(of=BookingPerson)))
    if not persons:
        return 0, 0
    bookings = {b.id: b for b in session.scalars(select(Booking).where(
        Booking.id.in_({p.booking_id for p in persons})))}
    changes: list[Change] = []
    gone = [p for p in persons if bookings[p.booking_id].day < today or bookings[p.booking_id].status != "booked"]
    changes += _delete_faces(gone)
    sent = 0
    for p in persons:
        b = bookings[p.booking_id]
        if b.day == today and b.status == "booked" and not p.face_on_gates and p.ticket_id is not None \
                and p.face_record is not None:
            p.face_on_gates = True
            changes.append(booked_face_change(p.ticket_id, p.face_record))
            sent += 1
    session.flush()
    if changes:
        record_delta(session, site_id, changes)
    return sent, len(gone)


def face_round_all(session: Session, now: datetime | None = None, skip: Collection[str] = ()) -> tuple[int, int]:
    """`face_round` for every site with booked faces (the scheduler's `booking_faces` job); `skip`: parks
    whose own server puts the faces on its gates (a head office's park servers)."""
    sites = session.scalars(select(Booking.site_id).join(BookingPerson, BookingPerson.booking_id == Booking.id)
                            .where(BookingPerson.face_record.is_not(None)).distinct())
    sent = deleted = 0
    for site_id in [s for s in sites if s not in skip]:
        s, d = face_round(session, site_id, now)
        sent, deleted = sent + s, deleted + d
    return sent, deleted


# --- blocklist and report ------------------------------------------------------------------------


def block(session: Session, site_id: str, actor: str, *, kind: str, value: str, reason: str,
          doc_type: str = "id_card") -> BookingBlock:
    """Block a document or phone from booking; its valid bookings' tickets are revoked so gates refuse them."""
    site = get_site(session, site_id)
    try:
        limits.text("bad_reason", "reason", reason.strip() if isinstance(reason, str) else reason, limits.REASON,
                    required=True)
    except Invalid as exc:
        raise FieldError(exc.code, exc.detail, "reason") from None
    if kind == "phone":
        phone = normalise_phone(value, "value")
        digest, masked = phone_digest(site.id_salt, phone), mask_phone(phone)
    elif kind == "document":
        number = normalise_document(doc_type, value, "value")
        digest, masked = document_digest(site.id_salt, doc_type, number), mask_document(number)
    else:
        raise FieldError("bad_kind", _l("Block a document or a phone."), "kind")
    existing = session.scalar(select(BookingBlock).where(BookingBlock.site_id == site_id, BookingBlock.kind == kind,
                                                         BookingBlock.digest == digest))
    if existing is not None:
        raise Refused("already_blocked", _l("This is already on the blocklist."))
    entry = BookingBlock(site_id=site_id, kind=kind, digest=digest, masked=masked, reason=reason.strip(),
                         created_by=actor)
    session.add(entry)
    session.flush()
    # What is already booked for that document or phone: its tickets end, gates refuse them.
    if kind == "document":
        ticket_ids = session.scalars(select(BookingPerson.ticket_id).join(Booking).where(
            Booking.site_id == site_id, Booking.status == "booked", BookingPerson.doc_digest == digest))
    else:
        ticket_ids = session.scalars(select(BookingPerson.ticket_id).join(Booking).where(
            Booking.site_id == site_id, Booking.status == "booked", Booking.phone_digest == digest))
    ids = [i for i in ticket_ids if i is not None]
    tickets = list(session.scalars(select(Ticket).where(Ticket.id.in_(ids), Ticket.status == "valid"))) if ids else []
    for t in tickets:
        t.status, t.status_changed_at = "revoked", utcnow()
    if tickets:
        session.flush()
        record_delta(session, site_id, [ticket_change(t) for t in tickets])
    audit(session, actor, "booking.block", f"{kind}:{masked}", reason=reason.strip(), revoked=len(tickets))
    session.flush()
    return entry


def unblock(session: Session, site_id: str, block_id: int, actor: str) -> None:
    entry = session.get(BookingBlock, block_id) if isinstance(block_id, int) and 0 < block_id <= limits.MAX_ID else None
    if entry is None or entry.site_id != site_id:
        raise NotFound("no_block", _l("There is no such blocklist entry."))
    audit(session, actor, "booking.unblock", f"{entry.kind}:{entry.masked}")
    session.delete(entry)
    session.flush()


def blocks(session: Session, site_id: str) -> list[BookingBlock]:
    return list(session.scalars(select(BookingBlock).where(BookingBlock.site_id == site_id)
                                .order_by(BookingBlock.created_at.desc())))


@dataclass(frozen=True)
class Pattern:
    kind: str  # address | phone
    masked: str
    bookings: int
    persons: int
    last: datetime


def suspicious(session: Session, site_id: str, *, since: datetime, threshold: int = 5) -> list[Pattern]:
    """Client addresses and phones with at least `threshold` bookings made since `since`, most first."""
    out: list[Pattern] = []
    for kind, key, masked in (("address", Booking.client_digest, Booking.client_masked),
                              ("phone", Booking.phone_digest, Booking.phone_masked)):
        rows = session.execute(
            select(func.max(masked), func.count(Booking.id), func.sum(Booking.party), func.max(Booking.created_at))
            .where(Booking.site_id == site_id, Booking.created_at >= since, key.is_not(None))
            .group_by(key).having(func.count(Booking.id) >= threshold)
            .order_by(func.count(Booking.id).desc()).limit(100))
        out.extend(Pattern(kind, m or "?", int(n), int(p or 0), last) for m, n, p, last in rows)
    out.sort(key=lambda p: -p.bookings)
    return out


@dataclass(frozen=True)
class SlotArrivals:
    start: datetime
    end: datetime
    capacity: int
    booked: int
    arrived: int


def today_by_slot(session: Session, site_id: str, now: datetime | None = None) -> list[SlotArrivals]:
    """Today's slots: places, booked persons, and how many of those have entered (their ticket used)."""
    from central.models import CredentialUsage

    now = now or park_now()
    site = get_site(session, site_id)
    start, end = day_window(site.timezone, site_day(site, now))
    out = []
    for q in session.scalars(select(SlotQuota).where(SlotQuota.site_id == site_id, SlotQuota.slot_start >= start,
                                                     SlotQuota.slot_start < end).order_by(SlotQuota.slot_start)):
        refs = [ticket_ref(i) for i in session.scalars(select(Ticket.id).where(Ticket.quota_id == q.id))]
        arrived = 0
        for chunk in range(0, len(refs), 1000):
            arrived += len(list(session.scalars(select(CredentialUsage.ref).where(
                CredentialUsage.site_id == site_id, CredentialUsage.ref.in_(refs[chunk:chunk + 1000]),
                CredentialUsage.entries > 0))))
        out.append(SlotArrivals(q.slot_start, q.slot_end, q.capacity, q.booked, arrived))
    return out


def purge(session: Session, site_id: str, now: datetime | None = None) -> int:
    """Forget the names and masked numbers of bookings past the retention days after their visit."""
    now = now or park_now()
    rules = settings(session, site_id)
    site = get_site(session, site_id)
    cutoff = site_day(site, now) - timedelta(days=rules.retention_days)
    old = list(session.scalars(select(Booking.id).where(Booking.site_id == site_id, Booking.day < cutoff,
                                                        Booking.phone_masked != "").limit(5000)))
    if not old:
        return 0
    session.execute(delete(BookingDocument).where(BookingDocument.booking_id.in_(old)))
    session.execute(update(BookingPerson).where(BookingPerson.booking_id.in_(old))
                    .values(name="", doc_digest="", doc_masked=""))
    session.execute(update(Ticket).where(Ticket.id.in_(select(BookingPerson.ticket_id).where(
        BookingPerson.booking_id.in_(old)))).values(holder_name=None, id_digest=None, id_last4=None))
    session.execute(update(Booking).where(Booking.id.in_(old)).values(phone_digest="", phone_masked="",
                                                                      client_digest=None, client_masked=None))
    return len(old)


def purge_all(session: Session, now: datetime | None = None, skip: Collection[str] = ()) -> int:
    """`purge` for every site taking bookings (the scheduler's hourly booking retention job); `skip`: parks
    whose own server purges (the deletions come with the replication)."""
    return sum(purge(session, site_id, now) for site_id in session.scalars(select(BookingSettings.site_id))
               if site_id not in skip)
