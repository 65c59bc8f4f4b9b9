"""Time-slot quotas and real-name bookings: a visitor books a slot with their ID number.

The booking is a real-name ticket: the gate finds it by the site-salted digest of the ID number the
card reader yields. The quota is taken with one conditional UPDATE, so two desks selling the last
place at once cannot both succeed.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from central.i18n import _l
from central.models import SlotQuota, Ticket
from central.services import Invalid, NotFound, Refused, limits
from central.services.gates import get_site
from central.services.tickets import IssueRequest, check_encodable, day_window, get_ticket_type, issue_tickets
from protocol.ids import id_number_digest


def define_quota(session: Session, site_id: str, slot_start: datetime, slot_end: datetime, capacity: int) -> SlotQuota:
    """Create or resize the quota of one time slot."""
    get_site(session, site_id)
    if not isinstance(slot_start, datetime) or not isinstance(slot_end, datetime) or slot_start.tzinfo is None \
            or slot_end.tzinfo is None or slot_end <= slot_start:
        raise Invalid("bad_slot", _l("A time slot needs a start and a later end."))
    try:
        check_encodable(slot_start, slot_end, slot_start, slot_end)  # its tickets must be printable
    except Invalid as exc:
        raise Invalid("bad_slot", exc.detail) from None
    limits.integer("bad_capacity", "capacity", capacity, 0, limits.CAPACITY)
    quota = session.scalar(select(SlotQuota).where(SlotQuota.site_id == site_id, SlotQuota.slot_start == slot_start))
    if quota is None:
        quota = SlotQuota(site_id=site_id, slot_start=slot_start, slot_end=slot_end, capacity=capacity, booked=0)
        session.add(quota)
    else:
        quota.slot_end = slot_end
        quota.capacity = capacity
    session.flush()
    return quota


def quotas_for_day(session: Session, site_id: str, start: datetime, end: datetime) -> list[SlotQuota]:
    return list(session.scalars(select(SlotQuota).where(
        SlotQuota.site_id == site_id, SlotQuota.slot_start >= start, SlotQuota.slot_start < end
    ).order_by(SlotQuota.slot_start)))


def book_slot(session: Session, site_id: str, *, ticket_type: int, slot_start: datetime, id_number: str,
              holder_name: str | None = None, headcount: int = 1, channel: str = "web",
              channel_ref: str | None = None, price=None, actor: str | None = None) -> Ticket:
    """Book `headcount` places of a slot for the holder of `id_number`; `Refused('quota_full')` when full."""
    site = get_site(session, site_id)
    tt = get_ticket_type(session, ticket_type)
    id_number = limits.id_number(id_number)
    limits.integer("bad_headcount", "headcount", headcount, 1, limits.HEADCOUNT)
    if not isinstance(slot_start, datetime) or slot_start.tzinfo is None:
        raise Invalid("bad_slot", _l("The slot start needs its UTC offset (such as +08:00)."))
    quota = session.scalar(select(SlotQuota).where(SlotQuota.site_id == site_id, SlotQuota.slot_start == slot_start))
    if quota is None:
        raise NotFound("no_slot", _l('There is no time slot to book at that time.'))
    day = quota.slot_start.astimezone(ZoneInfo(site.timezone)).date()
    valid_from, valid_to = day_window(site.timezone, day, tt.validity_days)
    digest = id_number_digest(site.id_salt, id_number)
    if session.scalar(select(Ticket.id).where(Ticket.site_id == site_id, Ticket.id_digest == digest,
                                              Ticket.status == "valid", Ticket.valid_from == valid_from)):
        raise Refused("already_booked", _l("This ID number already holds a booking for that day."))
    taken = session.execute(
        update(SlotQuota).where(SlotQuota.id == quota.id, SlotQuota.booked + headcount <= SlotQuota.capacity)
        .values(booked=SlotQuota.booked + headcount).returning(SlotQuota.id)
    ).first()
    if taken is None:
        raise Refused("quota_full", _l('This time slot is fully booked.'))
    request = IssueRequest(ticket_type=ticket_type, valid_from=valid_from, valid_to=valid_to, headcount=headcount,
                           holder_name=holder_name, id_number=id_number, channel=channel, channel_ref=channel_ref,
                           price=price, slot_start=quota.slot_start, slot_end=quota.slot_end)
    ticket = issue_tickets(session, site_id, [request], actor)[0]
    ticket.quota_id = quota.id
    session.flush()
    return ticket
