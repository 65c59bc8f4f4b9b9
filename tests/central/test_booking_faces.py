"""Face entry at booking in the services: a booked person's face is sealed at the central, reaches the
gates on the visit day only (a gallery of that day's bookings), and is deleted after the day or at a
cancellation; the ingest accepts an entry by face only for a ticket whose person asked for face entry."""

from __future__ import annotations

import struct
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from central.models import BookingPerson, SyncChange
from central.services import Refused
from central.services import visitor_bookings as vb
from central.services.sync import decrypt_templates, snapshot
from central.services.tickets import TicketTypeSpec, define_ticket_type
from protocol.ids import ticket_ref
from protocol.messages import Delta, HolderForget, TemplateChange, decode

TZ = ZoneInfo("Asia/Shanghai")
ZHANG, LI = "11010519491231002X", "110105198001010032"


def face(seed: int) -> bytes:
    """A face descriptor's shape (128 float32 within -1..1): the services never look inside one."""
    return struct.pack("<128f", *[((seed * 7919 + i * 104729) % 2000) / 1000 - 1 for i in range(128)])


@pytest.fixture
def park(ctx):
    site = ctx.config.site
    day = (datetime.now(TZ) + timedelta(days=1)).date()
    with ctx.sessions.begin() as db:
        define_ticket_type(db, site, TicketTypeSpec(name="Booked visit", id=7, real_name=True))
        vb.update_settings(db, site, "manager", ticket_type_id=7, days_ahead=7, party_max=5, cancel_before_min=60,
                           close_before_min=0, retention_days=30, face_entry=True)
        tomorrow = vb.set_slot(db, site, "manager", day=day, start=time(9), end=time(11), capacity=10).id
        today = vb.set_slot(db, site, "manager", day=day - timedelta(days=1), start=time(23, 0), end=time(23, 59),
                            capacity=10).id
    return ctx, site, day, {"tomorrow": tomorrow, "today": today}


def book(ctx, site, quota_id, faces, numbers=(ZHANG, LI), now=None, cipher=True):
    persons = [vb.PartyMember(f"Visitor {i}", "id_card", n) for i, n in enumerate(numbers, start=1)]
    with ctx.sessions.begin() as db:
        booking = vb.make_booking(db, site, vb.BookingRequest(quota_id=quota_id, persons=persons, phone="13800138000",
                                                              consent=True, faces=faces),
                                  now=now, cipher=ctx.cipher if cipher else None)
        return booking.id


def persons_of(ctx, booking_id) -> list[BookingPerson]:
    with ctx.sessions() as db:
        rows = list(db.scalars(select(BookingPerson).where(BookingPerson.booking_id == booking_id)
                               .order_by(BookingPerson.position)))
        db.expunge_all()
        return rows


def deltas_after(ctx, site, seq: int) -> list:
    with ctx.sessions() as db:
        rows = db.scalars(select(SyncChange).where(SyncChange.site_id == site, SyncChange.seq > seq)
                          .order_by(SyncChange.seq))
        return [ch for row in rows for ch in decode(Delta, row.payload).changes]


def last_seq(ctx, site) -> int:
    with ctx.sessions() as db:
        return db.scalar(select(func.max(SyncChange.seq)).where(SyncChange.site_id == site)) or 0


def at(day, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=TZ)


def test_a_booked_face_reaches_the_gates_on_its_visit_day_only_and_is_deleted_after_it(park):
    ctx, site, day, slots = park
    seq = last_seq(ctx, site)
    booking_id = book(ctx, site, slots["tomorrow"], {1: face(1)})
    first, second = persons_of(ctx, booking_id)
    assert first.face_entry and first.face_record and face(1) not in first.face_record  # sealed, never in clear
    assert not second.face_entry and second.face_record is None
    assert not first.face_on_gates
    assert not [c for c in deltas_after(ctx, site, seq) if isinstance(c, TemplateChange)]  # not before the day

    with ctx.sessions.begin() as db:
        assert vb.face_round(db, site, now=at(day - timedelta(days=1), 22)) == (0, 0)  # the day before: nothing
    seq = last_seq(ctx, site)
    with ctx.sessions.begin() as db:
        assert vb.face_round(db, site, now=at(day, 6)) == (1, 0)  # the visit day's first minutes
    sent = [c for c in deltas_after(ctx, site, seq) if isinstance(c, TemplateChange)]
    holder = ticket_ref(first.ticket_id)
    assert [(c.holder_id, c.kind) for c in sent] == [(holder, "face")]
    # What the publisher sends a gate: the template itself, opened with the holder it was sealed for.
    assert decrypt_templates(sent, ctx.cipher)[0].data == face(1)
    with ctx.sessions() as db:  # a gate resyncing on the day gets it in its snapshot too
        snap = snapshot(db, site, now=at(day, 7))
        assert [c.holder_id for c in snap.changes if isinstance(c, TemplateChange)] == [holder]
    with ctx.sessions.begin() as db:
        assert vb.face_round(db, site, now=at(day, 12)) == (0, 0)  # sent once

    seq = last_seq(ctx, site)
    with ctx.sessions.begin() as db:
        assert vb.face_round(db, site, now=at(day + timedelta(days=1), 0)) == (0, 1)  # the day after
    assert [c.holder_id for c in deltas_after(ctx, site, seq) if isinstance(c, HolderForget)] == [holder]
    after = persons_of(ctx, booking_id)[0]
    assert after.face_record is None and not after.face_on_gates and after.face_entry
    with ctx.sessions() as db:
        snap = snapshot(db, site, now=at(day + timedelta(days=1), 1))
        assert not [c for c in snap.changes if isinstance(c, TemplateChange)]


def test_a_face_booked_on_the_day_goes_at_once_and_a_cancellation_takes_it_back(park):
    ctx, site, day, slots = park
    today = day - timedelta(days=1)
    seq = last_seq(ctx, site)
    booking_id = book(ctx, site, slots["today"], {2: face(2)}, now=at(today, 9))
    holder = ticket_ref(persons_of(ctx, booking_id)[1].ticket_id)
    assert [c.holder_id for c in deltas_after(ctx, site, seq) if isinstance(c, TemplateChange)] == [holder]
    seq = last_seq(ctx, site)
    with ctx.sessions.begin() as db:
        booking = db.get(vb.Booking, booking_id)
        vb.cancel_booking(db, site, booking, now=at(today, 10))
    assert [c.holder_id for c in deltas_after(ctx, site, seq) if isinstance(c, HolderForget)] == [holder]
    assert persons_of(ctx, booking_id)[1].face_record is None


def test_faces_are_refused_where_the_park_has_no_face_entry_or_no_template_key(park):
    ctx, site, day, slots = park
    with pytest.raises(Refused) as no_key:
        book(ctx, site, slots["tomorrow"], {1: face(3)}, cipher=False)
    assert no_key.value.code == "no_template_key"
    with pytest.raises(vb.FieldError) as not_a_face:
        book(ctx, site, slots["tomorrow"], {1: b"\x00" * 100})
    assert (not_a_face.value.code, not_a_face.value.field) == ("bad_face", "person-1-face")
    with ctx.sessions.begin() as db:
        vb.update_settings(db, site, "manager", ticket_type_id=7, days_ahead=7, party_max=5, cancel_before_min=60,
                           close_before_min=0, retention_days=30, face_entry=False)
    with pytest.raises(vb.FieldError) as off:
        book(ctx, site, slots["tomorrow"], {1: face(3)})
    assert off.value.code == "face_off"
    with ctx.sessions() as db:  # nothing of the refused bookings is left
        assert db.scalar(select(func.count()).select_from(BookingPerson)) == 0


def test_the_ingest_counts_an_entry_by_face_only_on_a_ticket_whose_person_gave_a_face(park):
    from central.models import PassageEventRecord, utcnow
    from central.services.ingest import ingest_batch
    from protocol.ids import new_event_id
    from protocol.messages import PassageEvent
    from tests.central.conftest import add_gates

    ctx, site, day, slots = park
    add_gates(ctx, site, "east1")
    today = day - timedelta(days=1)
    booking_id = book(ctx, site, slots["today"], {1: face(5)}, now=at(today, 9))
    with_face, without = (ticket_ref(p.ticket_id) for p in persons_of(ctx, booking_id))
    events = [PassageEvent(id=new_event_id(), site=site, gate="east1", zone=1, at=utcnow(), direction="in",
                           credential_kind="face", credential_ref=ref, passed=True) for ref in (with_face, without)]
    with ctx.sessions.begin() as db:
        ingest_batch(db, events, utcnow())
    with ctx.sessions() as db:
        flags = {r.credential_ref: r.flag for r in db.scalars(select(PassageEventRecord).where(
            PassageEventRecord.event_id.in_([e.id for e in events])))}
    assert flags == {with_face: None, without: "credential_kind"}
