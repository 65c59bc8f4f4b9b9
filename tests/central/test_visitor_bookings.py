"""Visitor bookings in the services: a party of named persons with their documents, one booking per document
per day held by the database, quotas never oversold, cancellation returning places, the blocklist."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from central.models import Booking, BookingDocument, BookingPerson, SlotQuota, Ticket
from central.services import Invalid, NotFound, Refused
from central.services import visitor_bookings as vb
from central.services.tickets import TicketTypeSpec, define_ticket_type

TZ = ZoneInfo("Asia/Shanghai")
ZHANG, LI, WANG = "11010519491231002X", "110105198001010032", "440106199003071231"


def valid_id(first17: str) -> str:
    return first17 + vb.gb11643_check(first17)


def tomorrow() -> datetime:
    return datetime.now(TZ) + timedelta(days=1)


@pytest.fixture
def park(ctx):
    """A park taking bookings: a real-name ticket type, tomorrow 09:00-11:00 for 10, 11:00-13:00 for 2."""
    site = ctx.config.site
    day = tomorrow().date()
    with ctx.sessions.begin() as db:
        define_ticket_type(db, site, TicketTypeSpec(name="Booked visit", id=7, real_name=True))
        vb.update_settings(db, site, "manager", ticket_type_id=7, days_ahead=7, party_max=5, cancel_before_min=60,
                           close_before_min=0, retention_days=30, face_entry=False)
        morning = vb.set_slot(db, site, "manager", day=day, start=time(9), end=time(11), capacity=10).id
        noon = vb.set_slot(db, site, "manager", day=day, start=time(11), end=time(13), capacity=2).id
    return ctx, site, {"morning": morning, "noon": noon}


def party(*numbers: str) -> list[vb.PartyMember]:
    return [vb.PartyMember(f"Visitor {i}", "id_card", n) for i, n in enumerate(numbers, start=1)]


def book(ctx, site, quota_id, persons, phone="13800138000", **kw) -> vb.Booked:
    with ctx.sessions.begin() as db:
        return vb.make_booking(db, site, vb.BookingRequest(quota_id=quota_id, persons=persons, phone=phone,
                                                           consent=True, **kw))


def test_gb11643_check_character_is_what_the_card_prints():
    assert vb.gb11643_check(ZHANG[:17]) == "X"
    assert vb.gb11643_check(LI[:17]) == "2"
    assert vb.normalise_document("id_card", " 11010519491231002x ") == ZHANG
    with pytest.raises(vb.FieldError) as wrong:
        vb.normalise_document("id_card", ZHANG[:17] + "3")
    assert wrong.value.code == "bad_check_char"
    with pytest.raises(vb.FieldError):
        vb.normalise_document("id_card", "110105194913310026")  # the 31st of the 13th month
    assert vb.normalise_document("passport", "e1234 5678") == "E12345678"
    assert vb.normalise_document("hk_macao", "H12345678") == "H12345678"
    with pytest.raises(vb.FieldError):
        vb.normalise_document("taiwan", "1234")


def test_a_party_books_each_person_gets_a_ticket_and_no_number_is_stored_in_clear(park):
    ctx, site, slots = park
    booking = book(ctx, site, slots["morning"], party(ZHANG, LI) + [vb.PartyMember("Ann", "passport", "E12345678")])
    assert len(booking.number) == vb.NUMBER_LENGTH and set(booking.number) <= set(vb.NUMBER_ALPHABET)
    assert booking.party == 3 and booking.phone_masked == "138****8000"
    with ctx.sessions() as db:
        persons = list(db.scalars(select(BookingPerson).where(BookingPerson.booking_id == booking.id)))
        assert [p.doc_masked for p in persons] == ["110***********002X", "110***********0032", "E******78"]
        tickets = [db.get(Ticket, p.ticket_id) for p in persons]
        assert {t.slot_start for t in tickets} == {booking.slot_start} and all(t.headcount == 1 for t in tickets)
        assert tickets[0].holder_name == "Visitor 1" and tickets[0].id_digest
        assert db.get(SlotQuota, slots["morning"]).booked == 3
        stored = " ".join(str(v) for row in db.execute(select(BookingPerson.__table__)).all() for v in row) + \
            " ".join(str(v) for row in db.execute(select(Booking.__table__)).all() for v in row)
        for secret in (ZHANG, LI, "E12345678", "13800138000"):
            assert secret not in stored


def test_a_booking_tells_the_gates_its_tickets_in_one_delta_with_the_sites_next_seq(park):
    """The booking's delta (written in the statement that takes its places, on PostgreSQL) is the one a
    gate decodes: its seq is the row's, the site's next after a ticket sold before, its changes the
    party's tickets with their digests."""
    from central.models import Site, SyncChange
    from central.services.tickets import IssueRequest, issue_ticket
    from protocol.messages import Delta, decode, encode

    ctx, site, slots = park
    with ctx.sessions.begin() as db:
        issue_ticket(db, site, IssueRequest(ticket_type=7, id_number=WANG))
        before = db.get(Site, site).sync_seq
    booking = book(ctx, site, slots["morning"], party(ZHANG, LI))
    with ctx.sessions() as db:
        assert db.get(Site, site).sync_seq == before + 1
        row = db.get(SyncChange, (site, before + 1))
        delta = decode(Delta, row.payload)
        assert delta.seq == before + 1 and delta.site == site and row.kinds == "ticket"
        assert sorted(c.ticket_id for c in delta.changes) == sorted(booking.ticket_ids)
        assert all(c.id_digest and c.slot_start == booking.slot_start for c in delta.changes)
        assert row.payload == encode(delta)  # byte for byte what the encoder writes for that seq


def test_a_slot_whose_day_has_no_calendar_row_yet_books_and_the_days_count_starts(park):
    """Slots made before the booking calendar existed have no day row: the first booking makes it (its
    count starts with this party) and still tells the gates its tickets, with the site's next seq."""
    from central.models import BookingDay, Site, SyncChange
    from protocol.messages import Delta, decode

    ctx, site, slots = park
    with ctx.sessions.begin() as db:
        db.query(BookingDay).delete()
        before = db.get(Site, site).sync_seq
    booking = book(ctx, site, slots["morning"], party(ZHANG, LI))
    with ctx.sessions() as db:
        day = db.scalar(select(BookingDay).where(BookingDay.site_id == site, BookingDay.day == booking.day))
        assert day is not None and day.booked == 2 and day.open
        assert db.get(SlotQuota, slots["morning"]).booked == 2
        delta = decode(Delta, db.get(SyncChange, (site, before + 1)).payload)
        assert sorted(c.ticket_id for c in delta.changes) == sorted(booking.ticket_ids)


def test_one_document_books_once_a_day_and_again_after_cancelling(park):
    ctx, site, slots = park
    first = book(ctx, site, slots["morning"], party(ZHANG))
    with pytest.raises(vb.FieldError) as again:
        book(ctx, site, slots["noon"], party(LI, ZHANG), phone="13900139000")
    assert again.value.code == "already_booked"
    with ctx.sessions() as db:
        assert db.get(SlotQuota, slots["noon"]).booked == 0  # the refused party took nothing
    with ctx.sessions.begin() as db:
        found = vb.find_booking(db, site, vb.display_number(first.number).lower(), "138 0013 8000")
        vb.cancel_booking(db, site, found)
    with ctx.sessions() as db:
        assert db.get(SlotQuota, slots["morning"]).booked == 0
        assert {t.status for t in db.scalars(select(Ticket))} == {"refunded"}
    book(ctx, site, slots["noon"], party(ZHANG))


def test_a_booking_is_found_by_a_document_but_not_by_a_wrong_phone(park):
    ctx, site, slots = park
    booking = book(ctx, site, slots["morning"], party(ZHANG, LI))
    with ctx.sessions() as db:
        assert vb.find_booking(db, site, booking.number, LI.lower()).id == booking.id
        for number, proof in ((booking.number, "13900000000"), ("ZZZZZZZZZZ", "13800138000"), (booking.number, "")):
            with pytest.raises(NotFound):
                vb.find_booking(db, site, number, proof)


def test_cancelling_closes_before_the_slot_and_booking_closes_at_the_slots_closing_time(park):
    ctx, site, slots = park
    booking = book(ctx, site, slots["morning"], party(ZHANG))
    late = booking.slot_start - timedelta(minutes=59)
    with ctx.sessions.begin() as db, pytest.raises(Refused) as too_late:
        vb.cancel_booking(db, site, vb.find_booking(db, site, booking.number, ZHANG), now=late)
    assert too_late.value.code == "too_late"
    with ctx.sessions.begin() as db, pytest.raises(vb.FieldError) as closed:
        vb.make_booking(db, site, vb.BookingRequest(quota_id=slots["morning"], persons=party(LI), phone="13800138000",
                                                    consent=True), now=booking.slot_start + timedelta(seconds=1))
    assert closed.value.code == "slot_closed"


def test_every_bad_value_is_named_by_its_field(park):
    ctx, site, slots = park

    def refused(persons, phone="13800138000", consent=True, quota=None) -> tuple[str, str]:
        with ctx.sessions.begin() as db, pytest.raises(vb.FieldError) as err:
            vb.make_booking(db, site, vb.BookingRequest(quota_id=quota or slots["morning"], persons=persons,
                                                        phone=phone, consent=consent))
        return err.value.code, err.value.field

    assert refused([vb.PartyMember("x" * 300, "id_card", ZHANG)]) == ("bad_name", "person-1-name")
    assert refused(party(ZHANG, ZHANG[:17] + "1")) == ("bad_check_char", "person-2-doc_number")
    assert refused(party(ZHANG), phone="call me") == ("bad_phone", "phone")
    assert refused(party(ZHANG), consent=False) == ("no_consent", "consent")
    assert refused(party(ZHANG, ZHANG)) == ("same_document", "person-2-doc_number")
    assert refused(party(*[valid_id(f"1101051980010100{i}") for i in range(6)])) == ("bad_party", "party")
    assert refused(party(ZHANG), quota=2**31 + 5) == ("no_slot", "slot")


def test_a_full_slot_and_a_full_day_refuse_and_take_nothing(park):
    ctx, site, slots = park
    book(ctx, site, slots["noon"], party(ZHANG, LI))
    with pytest.raises(Refused) as full:
        book(ctx, site, slots["noon"], party(WANG), phone="13900139000")
    assert full.value.code == "quota_full"
    with ctx.sessions.begin() as db:
        vb.set_day(db, site, tomorrow().date(), "manager", is_open=True, capacity=3)
    with pytest.raises(Refused) as day_full:
        book(ctx, site, slots["morning"], party(WANG, valid_id("11010519900101003")), phone="13900139000")
    assert day_full.value.code == "day_full"
    with ctx.sessions() as db:
        assert db.scalar(select(func.count()).select_from(BookingDocument)) == 2
        assert db.get(SlotQuota, slots["morning"]).booked == 0


def test_a_blocked_phone_cannot_book_and_a_blocked_document_loses_its_tickets(park):
    ctx, site, slots = park
    booking = book(ctx, site, slots["morning"], party(ZHANG))
    with ctx.sessions.begin() as db:
        vb.block(db, site, "manager", kind="document", value=ZHANG, reason="resold tickets")
        vb.block(db, site, "manager", kind="phone", value="+86 139 0000 0000", reason="scalper")
    with ctx.sessions() as db:
        ticket_id = db.scalar(select(BookingPerson.ticket_id).where(BookingPerson.booking_id == booking.id))
        ticket = db.get(Ticket, ticket_id)
        assert ticket.status == "revoked"
        assert [b.masked for b in vb.blocks(db, site)] == ["+86*******0000", "110***********002X"]
    with pytest.raises(Refused) as blocked:
        book(ctx, site, slots["noon"], party(LI), phone="+8613900000000")
    assert blocked.value.code == "blocked"


def test_many_bookings_from_one_address_show_in_the_report(park):
    ctx, site, slots = park
    for i in range(5):
        book(ctx, site, slots["morning"], party(valid_id(f"1101051980010100{i}")), phone=f"1380013800{i}",
             client_address="203.0.113.9")
    with ctx.sessions() as db:
        found = vb.suspicious(db, site, since=datetime.now(UTC) - timedelta(hours=1), threshold=5)
    assert [(p.kind, p.masked, p.bookings) for p in found] == [("address", "203.0.113.0/24", 5)]


@pytest.mark.postgres
def test_concurrent_bookings_of_one_document_and_of_the_last_places_on_postgresql(park):
    ctx, site, slots = park
    if not ctx.config.database_url.startswith("postgresql"):
        pytest.skip("the race is PostgreSQL's")
    start = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(persons, phone):
        start.wait()
        try:
            book(ctx, site, slots["noon"] if len(persons) == 1 else slots["morning"], persons, phone=phone)
            result = "ok"
        except (Refused, Invalid) as exc:
            result = exc.code
        with lock:
            outcomes.append(result)

    # Eight visitors at once: four with the same document (morning), four others for noon's 2 places.
    threads = [threading.Thread(target=attempt, args=(party(ZHANG, valid_id(f"1101051980010100{i}")), f"1380000000{i}"))
               for i in range(4)]
    threads += [threading.Thread(target=attempt, args=(party(valid_id(f"1101051990010100{i}")), f"1390000000{i}"))
                for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == sorted(["ok"] + ["already_booked"] * 3 + ["ok", "ok"] + ["quota_full"] * 2)
    with ctx.sessions() as db:
        assert db.get(SlotQuota, slots["noon"]).booked == 2
        assert db.get(SlotQuota, slots["morning"]).booked == 2
        assert db.scalar(select(func.count()).select_from(Booking)) == 3


def test_names_documents_and_phones_are_forgotten_the_retention_days_after_the_visit(park):
    ctx, site, slots = park
    booking = book(ctx, site, slots["morning"], party(ZHANG))
    visit = booking.slot_start
    with ctx.sessions.begin() as db:
        assert vb.purge_all(db, now=visit + timedelta(days=30)) == 0  # the 30th day after: still kept
    with ctx.sessions.begin() as db:
        assert vb.purge_all(db, now=visit + timedelta(days=31, hours=12)) == 1
        assert vb.purge_all(db, now=visit + timedelta(days=31, hours=13)) == 0  # once
    with ctx.sessions() as db:
        person = db.scalar(select(BookingPerson))
        ticket = db.get(Ticket, person.ticket_id)
        kept = db.get(Booking, booking.id)
        assert (person.name, person.doc_digest, person.doc_masked) == ("", "", "")
        assert (ticket.holder_name, ticket.id_digest, ticket.id_last4) == (None, None, None)
        assert (kept.phone_digest, kept.phone_masked, kept.party) == ("", "", 1)  # the count stays for reports
        assert db.scalar(select(func.count()).select_from(BookingDocument)) == 0
