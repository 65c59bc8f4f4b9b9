"""Ticket types and tickets: define, issue (singly, in bulk), sign, refund, revoke, expire, render as QR.

A ticket's code is not stored: it is the signed encoding of the ticket row (`ticket_code`), so the
database never holds something a thief could print. Each ticket records its sales channel and price
for settlement per channel. Changes gates must know (real-name tickets, refunds, revocations) are
written as deltas in the same transaction (`central.services.sync`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from central.db import rowcount
from central.i18n import _l, status_label
from central.models import CHANNELS, SlotQuota, Ticket, TicketType
from central.services import Invalid, NotFound, Refused, limits
from central.services.audit import audit
from central.services.gates import bump_site_configs, get_site
from central.services.sync import record_delta, ticket_change
from protocol.clock import park_now
from protocol.ids import id_number_digest
from protocol.ticket_code import TicketClaims, TicketSigner, encode_body

MAX_BULK = limits.BULK


@dataclass(frozen=True)
class TicketTypeSpec:
    name: str
    id: int | None = None
    entries: int | None = 1
    same_person: bool = False
    anti_passback: bool = False
    min_gap_s: int = 0
    zones: list[int] = field(default_factory=list)
    weekdays: list[int] = field(default_factory=list)
    slot_grace_min: int = 15
    real_name: bool = False
    validity_days: int = 1
    price: Decimal | str | int = 0
    min_headcount: int = 1  # a group ticket type: e.g. 10 to 60 people on one ticket
    max_headcount: int = limits.HEADCOUNT
    staff_check: bool = False  # staff at the gate look at the visitor (child, senior, concession)
    id_face: bool = False  # 人证核验: an ID-card entry needs the camera's face to match the card's photo
    bind_finger: bool = False  # 人票绑定: the first entry takes the finger, a re-entry needs the same


_money = limits.money  # the name passes.py and older callers import


def _check_spec(spec: TicketTypeSpec) -> None:
    limits.text("bad_name", "name", spec.name, limits.NAME, required=True)
    if spec.entries is not None:
        limits.integer("bad_entries", "entries (or null for unlimited)", spec.entries, 1, limits.ENTRIES)
    for flag in ("same_person", "anti_passback", "real_name", "staff_check", "id_face", "bind_finger"):
        if not isinstance(getattr(spec, flag), bool):
            raise Invalid("bad_rules", _l('“%(flag)s” is yes or no.', flag=flag))
    limits.zones(spec.zones)
    if not isinstance(spec.weekdays, list | tuple) or len(spec.weekdays) > 7:
        raise Invalid("bad_weekday", _l("Choose at most the 7 days of the week."))
    for day in spec.weekdays:
        limits.integer("bad_weekday", "weekdays (0 Monday to 6)", day, 0, 6)
    limits.integer("bad_rules", "validity_days", spec.validity_days, 1, limits.VALIDITY_DAYS)
    limits.integer("bad_rules", "min_gap_s", spec.min_gap_s, 0, limits.MIN_GAP_S)
    limits.integer("bad_rules", "slot_grace_min", spec.slot_grace_min, 0, limits.SLOT_GRACE_MIN)
    limits.integer("bad_headcount", "min_headcount", spec.min_headcount, 1, limits.HEADCOUNT)
    limits.integer("bad_headcount", "max_headcount", spec.max_headcount, spec.min_headcount, limits.HEADCOUNT)


def define_ticket_type(session: Session, site_id: str, spec: TicketTypeSpec, actor: str | None = None) -> TicketType:
    """Create a ticket type, or change the rules of an existing one (gates learn it with their config)."""
    get_site(session, site_id)
    _check_spec(spec)
    type_id = spec.id
    if type_id is None:
        type_id = (session.scalar(select(func.max(TicketType.id))) or 0) + 1
    limits.integer("bad_type_id", "ticket type id", type_id, 0, limits.TYPE_ID)
    tt = session.get(TicketType, type_id)
    if tt is not None and tt.site_id != site_id:
        raise Refused("type_exists", _l('Ticket type %(type_id)s belongs to another park.', type_id=type_id))
    if tt is None:
        tt = TicketType(id=type_id, site_id=site_id)
        session.add(tt)
    tt.name = spec.name
    tt.entries = spec.entries
    tt.same_person = spec.same_person
    tt.anti_passback = spec.anti_passback
    tt.min_gap_s = spec.min_gap_s
    tt.zones = sorted(set(spec.zones))
    tt.weekdays = sorted(set(spec.weekdays))
    tt.slot_grace_min = spec.slot_grace_min
    tt.real_name = spec.real_name
    tt.validity_days = spec.validity_days
    tt.price = _money(spec.price)
    tt.min_headcount = spec.min_headcount
    tt.max_headcount = spec.max_headcount
    tt.staff_check = spec.staff_check
    tt.id_face = spec.id_face
    tt.bind_finger = spec.bind_finger
    tt.active = True
    bump_site_configs(session, site_id)
    audit(session, actor, "ticket_type.define", str(type_id), name=spec.name)
    session.flush()
    return tt


def get_ticket_type(session: Session, type_id: int) -> TicketType:
    limits.integer("bad_ticket_type", "ticket_type", type_id, 0, limits.TYPE_ID)
    tt = session.get(TicketType, type_id)
    if tt is None:
        raise NotFound("no_ticket_type", _l('There is no ticket type %(type_id)s.', type_id=type_id))
    return tt


def get_ticket(session: Session, ticket_id: int) -> Ticket:
    if isinstance(ticket_id, bool) or not isinstance(ticket_id, int) or not 0 < ticket_id <= limits.MAX_BIG_ID:
        raise NotFound("no_ticket", _l("There is no such ticket."))
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound("no_ticket", _l('There is no ticket T%(ticket_id)s.', ticket_id=ticket_id))
    return ticket


@dataclass(frozen=True)
class IssueRequest:
    """One sale: the type, the day of the visit (or an explicit window), who sold it and for how much."""

    ticket_type: int
    visit_date: date | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    headcount: int = 1
    holder_name: str | None = None
    id_number: str | None = None  # digested at once, never stored
    channel: str = "box_office"
    channel_ref: str | None = None
    price: Decimal | str | int | None = None
    zones: list[int] = field(default_factory=list)
    slot_start: datetime | None = None
    slot_end: datetime | None = None
    allow_past: bool = False  # sell a ticket whose validity is over (a correction): only when asked
    quota_id: int | None = None  # the slot quota whose place this ticket holds (a booking's)


def day_window(tz_name: str, day: date, days: int = 1) -> tuple[datetime, datetime]:
    """Local midnight of `day` to local midnight `days` later, as aware datetimes."""
    tz = ZoneInfo(tz_name)
    try:
        start = datetime.combine(day, time(0), tzinfo=tz)
        end = datetime.combine(day + timedelta(days=days), time(0), tzinfo=tz)
    except OverflowError:  # past year 9999
        raise Invalid("bad_validity", _l("The validity would end after the year 9999.")) from None
    return start, end


def check_encodable(valid_from: datetime, valid_to: datetime, slot_start: datetime | None = None,
                    slot_end: datetime | None = None) -> None:
    """Refuse a validity or slot the signed code cannot carry (before 2024, a slot of 45 days ...).

    A ticket sold with such times could never show a code: its QR and its API answer would fail."""
    try:
        encode_body(TicketClaims(ticket_id=1, ticket_type=0, valid_from=valid_from, valid_to=valid_to,
                                 slot_start=slot_start, slot_end=slot_end))
    except (ValueError, OverflowError):
        raise Invalid("bad_validity", _l(
            'A ticket cannot be valid at these times (from 2024 on, a time slot of at most 45 days).')) from None


def _check_request(req: IssueRequest) -> None:
    limits.integer("bad_headcount", "headcount", req.headcount, 1, limits.HEADCOUNT)
    limits.text("bad_name", "holder_name", req.holder_name, limits.NAME)
    limits.text("bad_channel_ref", "channel_ref", req.channel_ref, limits.REF)
    if not isinstance(req.channel, str) or req.channel not in CHANNELS:
        raise Invalid("bad_channel", _l('Choose a sales channel from the list.'))
    limits.zones(req.zones)
    for key in ("valid_from", "valid_to", "slot_start", "slot_end"):
        value = getattr(req, key)
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise Invalid("bad_validity", _l('“%(key)s” needs its UTC offset (such as +08:00).', key=key))
    if req.visit_date is not None and not isinstance(req.visit_date, date):
        raise Invalid("bad_validity", _l("The visit date is a date."))


def ticket_values(site_id: str, req: IssueRequest, tt: TicketType | Any, tz: str, salt: bytes,
                  actor: str | None) -> dict[str, Any]:
    """A new ticket's column values for `req`, every value checked (Invalid or Refused otherwise). `tt`
    is the TicketType, or a snapshot of it with the same attributes (a booking's)."""
    if tt.site_id != site_id:
        raise Invalid("bad_ticket_type", _l('Ticket type %(id)s belongs to another park.', id=tt.name))
    if not tt.active:
        raise Refused("type_inactive", _l('Ticket type %(id)s is not on sale.', id=tt.name))
    _check_request(req)
    if not tt.min_headcount <= req.headcount <= tt.max_headcount:
        raise Invalid("bad_headcount", _l("A %(type)s ticket is for %(low)s to %(high)s people.", type=tt.name,
                                          low=tt.min_headcount, high=tt.max_headcount))
    if req.valid_from is not None or req.valid_to is not None:
        if req.valid_from is None or req.valid_to is None:
            raise Invalid("bad_validity", _l("Give both the start and the end of the validity, or a visit date."))
        valid_from, valid_to = req.valid_from, req.valid_to
    else:
        day = req.visit_date or park_now().astimezone(ZoneInfo(tz)).date()
        valid_from, valid_to = day_window(tz, day, tt.validity_days)
    if valid_to <= valid_from:
        raise Invalid("bad_validity", _l("The validity must end after it starts."))
    if (req.slot_start is None) != (req.slot_end is None) or (
            req.slot_start is not None and req.slot_end is not None and req.slot_end <= req.slot_start):
        raise Invalid("bad_slot", _l("A time slot needs a start and a later end."))
    check_encodable(valid_from, valid_to, req.slot_start, req.slot_end)
    if valid_to <= park_now() and not req.allow_past:
        # Sold by mistake, such a ticket admits nobody: say so, and sell it only when asked to.
        raise Refused("past_date", _l("This ticket's validity is already over (%(day)s, the park's date): "
                                      "choose today or a later day, or confirm a sale for a past date.",
                                      day=valid_from.astimezone(ZoneInfo(tz)).date().isoformat()))
    digest = last4 = None
    if req.id_number:
        number = limits.id_number(req.id_number)
        digest, last4 = id_number_digest(salt, number), number[-4:]
    elif tt.real_name:
        raise Invalid("id_number_required", _l("%(name)s is a real-name ticket: give the visitor's ID number.",
                                               name=tt.name))
    return dict(
        site_id=site_id, ticket_type_id=tt.id, status="valid", valid_from=valid_from, valid_to=valid_to,
        slot_start=req.slot_start, slot_end=req.slot_end, headcount=req.headcount, zones=sorted(set(req.zones)),
        holder_name=req.holder_name, id_digest=digest, id_last4=last4, channel=req.channel,
        channel_ref=req.channel_ref, price=_money(tt.price if req.price is None else req.price), issued_by=actor,
        issued_at=park_now(),
        quota_id=req.quota_id,
    )


def _new_ticket(session: Session, site_id: str, req: IssueRequest, tt: TicketType, tz: str, salt: bytes,
                actor: str | None) -> Ticket:
    ticket = Ticket(**ticket_values(site_id, req, tt, tz, salt, actor))
    ticket.ticket_type = tt
    session.add(ticket)
    return ticket


def issue_tickets(session: Session, site_id: str, requests: list[IssueRequest],
                  actor: str | None = None, *, deltas: bool = True) -> list[Ticket]:
    """Issue tickets (one sale or a bulk order) in the caller's transaction; all or none.

    `deltas=False`: the caller records the gates' delta itself (`sync.record_delta` with `ticket_change`),
    as late as it can (a booking takes the site's sequence number just before its commit)."""
    if not requests:
        return []
    if len(requests) > MAX_BULK:
        raise Invalid("too_many", _l('At most %(n)s tickets at once.', n=MAX_BULK))
    site = get_site(session, site_id)
    types: dict[int, TicketType] = {}
    tickets = []
    for req in requests:
        tt = types.get(req.ticket_type) or types.setdefault(req.ticket_type, get_ticket_type(session, req.ticket_type))
        tickets.append(_new_ticket(session, site_id, req, tt, site.timezone, site.id_salt, actor))
    session.flush()
    if deltas:
        record_delta(session, site_id, [ticket_change(t) for t in tickets if t.id_digest])
    channels = sorted({t.channel for t in tickets})
    audit(session, actor, "ticket.issue", f"{tickets[0].id}..{tickets[-1].id}", count=len(tickets), channels=channels)
    return tickets


def issue_ticket(session: Session, site_id: str, request: IssueRequest, actor: str | None = None) -> Ticket:
    return issue_tickets(session, site_id, [request], actor)[0]


def ticket_claims(ticket: Ticket) -> TicketClaims:
    return TicketClaims(ticket_id=ticket.id, ticket_type=ticket.ticket_type_id, valid_from=ticket.valid_from,
                        valid_to=ticket.valid_to, slot_start=ticket.slot_start, slot_end=ticket.slot_end,
                        headcount=ticket.headcount, zones=frozenset(ticket.zones or ()))


def ticket_code(ticket: Ticket, signer: TicketSigner) -> str:
    """The signed code printed in the ticket's QR (Ed25519 is deterministic: the same every time).

    `Refused('no_code')` for a ticket whose times no code can carry (one stored before the issue
    checks, `check_encodable`, existed): there is nothing a gate could read, so nothing to print."""
    try:
        return signer.sign(ticket_claims(ticket))
    except (ValueError, OverflowError):
        raise Refused("no_code", _l('Ticket %(ref)s has times no ticket code can carry: revoke it and issue a new one.',
                                    ref=ticket.ref)) from None


def _release_quota(session: Session, ticket: Ticket) -> None:
    if ticket.quota_id is not None:
        session.execute(update(SlotQuota).where(SlotQuota.id == ticket.quota_id)
                        .values(booked=case((SlotQuota.booked > ticket.headcount, SlotQuota.booked - ticket.headcount),
                                            else_=0)))


def _end_ticket(session: Session, ticket_id: int, status: str, allowed: tuple[str, ...], actor: str | None,
                reason: str | None) -> Ticket:
    limits.text("bad_reason", "reason", reason, limits.REASON)
    ticket = session.get(Ticket, ticket_id, with_for_update=True)
    if ticket is None:
        raise NotFound("no_ticket", _l('There is no ticket T%(ticket_id)s.', ticket_id=ticket_id))
    if ticket.status not in allowed:
        label = status_label("ticket_status", ticket.status)
        raise Refused(f"ticket_{ticket.status}", _l("Ticket T%(ticket_id)s is already %(status)s.",
                                                    ticket_id=ticket_id, status=label))
    ticket.status = status
    ticket.status_changed_at = park_now()
    _release_quota(session, ticket)
    record_delta(session, ticket.site_id, [ticket_change(ticket)])
    audit(session, actor, f"ticket.{status}", ticket.ref, reason=reason)
    return ticket


def refund_ticket(session: Session, ticket_id: int, actor: str | None = None, reason: str | None = None) -> Ticket:
    """Refund an unused ticket; every gate refuses its code within seconds (a Delta)."""
    from central.models import CredentialUsage

    ticket = get_ticket(session, ticket_id)
    used = session.get(CredentialUsage, (ticket.site_id, ticket.ref))
    if used is not None and used.entries > 0:
        raise Refused("ticket_used", _l('Ticket T%(ticket_id)s was already used: it cannot be refunded, only revoked.',
                                        ticket_id=ticket_id))
    return _end_ticket(session, ticket_id, "refunded", ("valid",), actor, reason)


def revoke_ticket(session: Session, ticket_id: int, actor: str | None = None, reason: str | None = None) -> Ticket:
    """Cancel a ticket whatever its use (fraud, a cancelled group); gates refuse it within seconds."""
    return _end_ticket(session, ticket_id, "revoked", ("valid", "used", "expired"), actor, reason)


def expire_tickets(session: Session, now: datetime | None = None) -> int:
    """Mark tickets past their validity as expired (gates refuse them by date anyway: no delta)."""
    now = now or park_now()
    result = session.execute(update(Ticket).where(Ticket.status.in_(("valid", "used", "held")), Ticket.valid_to < now)
                             .values(status="expired", status_changed_at=now))
    return rowcount(result)


def _qr(code: str, kind: str, scale: int, **options) -> bytes:
    import segno

    # Memory grows with the square of the scale: a scale of 10,000 would want tens of gigabytes.
    limits.integer("bad_scale", "scale", scale, 1, limits.QR_SCALE)
    buf = io.BytesIO()
    segno.make(code, error="m", micro=False).save(buf, kind=kind, scale=scale, border=4, **options)
    return buf.getvalue()


def qr_png(code: str, scale: int = 8) -> bytes:
    return _qr(code, "png", scale)


def qr_svg(code: str, scale: int = 4) -> bytes:
    return _qr(code, "svg", scale, xmldecl=False)
