"""Managers set the booking calendar, the settings and the blocklist in the web UI and read the report of
suspicious patterns; the desk books for a visitor; the dashboard shows today's bookings against arrivals."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from central.models import AuditEntry, BookingSettings, CredentialUsage, SlotQuota
from central.services import visitor_bookings as vb
from central.services.tickets import TicketTypeSpec, define_ticket_type

TZ = ZoneInfo("Asia/Shanghai")
ZHANG = "11010519491231002X"


@pytest.fixture
def booked_type(web_ctx):
    with web_ctx.sessions.begin() as db:
        define_ticket_type(db, web_ctx.config.site, TicketTypeSpec(name="Booked visit", id=7, real_name=True))
    return 7


def test_a_manager_sets_the_rules_opens_a_slot_and_closes_a_day(as_role, web_ctx, booked_type):
    manager = as_role("manager")
    day = (datetime.now(TZ) + timedelta(days=2)).date()
    bad = manager.post("/bookings/settings", {"ticket_type_id": "7", "days_ahead": "7", "party_max": "99",
                                              "cancel_before_min": "60", "close_before_min": "0",
                                              "retention_days": "30"})
    assert bad.status_code == 400 and 'id="err-party_max"' in bad.get_data(as_text=True)
    assert 'value="99"' in bad.get_data(as_text=True)
    ok = manager.post("/bookings/settings", {"ticket_type_id": "7", "days_ahead": "7", "party_max": "4",
                                             "cancel_before_min": "30", "close_before_min": "15",
                                             "retention_days": "30", "face_entry": "yes"})
    assert ok.status_code == 302
    slot = manager.post("/bookings/slot", {"slot_day": day.isoformat(), "slot_start": "09:00", "slot_end": "11:00",
                                           "slot_capacity": "300", "slot_closes": "08:30"})
    assert slot.status_code == 302
    bad_slot = manager.post("/bookings/slot", {"slot_day": day.isoformat(), "slot_start": "11:00",
                                               "slot_end": "10:00", "slot_capacity": "lots"})
    assert bad_slot.status_code == 400 and 'id="err-slot_capacity"' in bad_slot.get_data(as_text=True)
    page = manager.get("/bookings/").get_data(as_text=True)
    assert "0 / 300" in page and "8:30" in page
    with web_ctx.sessions() as db:
        rules = db.get(BookingSettings, web_ctx.config.site)
        assert (rules.party_max, rules.cancel_before_min, rules.face_entry) == (4, 30, True)
        quota = db.scalar(select(SlotQuota))
        assert quota.closes_at == datetime.combine(day, time(8, 30), tzinfo=TZ)
    assert manager.post("/bookings/day", {"day": day.isoformat(), "day_capacity": ""}).status_code == 302
    visitor = as_role(None)
    assert "No day is open" in visitor.get("/book/").get_data(as_text=True)
    with web_ctx.sessions() as db:
        actions = set(db.scalars(select(AuditEntry.action)))
    assert {"booking.settings", "booking.slot", "booking.day"} <= actions


def test_the_desk_books_for_a_visitor_and_the_dashboard_counts_bookings_against_arrivals(as_role, web_ctx,
                                                                                        booked_type):
    site = web_ctx.config.site
    now = datetime.now(TZ)
    with web_ctx.sessions.begin() as db:
        vb.update_settings(db, site, "manager", ticket_type_id=7, days_ahead=7, party_max=5, cancel_before_min=0,
                           close_before_min=0, retention_days=30, face_entry=False)
        quota = vb.set_slot(db, site, "manager", day=now.date(), start=time(0), end=time(23, 59), capacity=20,
                            closes_at=datetime.combine(now.date(), time(23, 59), tzinfo=TZ))
        quota_id = quota.id
    desk = as_role("staff")
    missing = desk.post("/bookings/desk", {"slot": str(quota_id), "party": "1", "person-1-name": "Zhang San",
                                           "person-1-doc_type": "id_card", "person-1-doc_number": ZHANG,
                                           "phone": "13800138000"})
    assert missing.status_code == 400 and 'id="err-consent"' in missing.get_data(as_text=True)
    made = desk.post("/bookings/desk", {"slot": str(quota_id), "party": "1", "person-1-name": "Zhang San",
                                        "person-1-doc_type": "id_card", "person-1-doc_number": ZHANG,
                                        "phone": "13800138000", "consent": "yes"})
    assert made.status_code == 302
    page = desk.get(made.headers["Location"]).get_data(as_text=True)
    assert "Zhang San" in page and "110***********002X" in page
    with web_ctx.sessions.begin() as db:
        ticket_id = db.scalar(select(vb.BookingPerson.ticket_id))
        db.add(CredentialUsage(site_id=site, ref=f"T{ticket_id}", entries=1))
    dashboard = as_role("manager").get("/dashboard/").get_data(as_text=True)
    assert 'id="bookings-today"' in dashboard
    assert 'class="num booked">1<' in dashboard and 'class="num arrived">1<' in dashboard


def test_a_manager_blocks_a_document_with_a_reason_and_reads_the_report(as_role, web_ctx, booked_type):
    manager = as_role("manager")
    no_reason = manager.post("/bookings/blocklist", {"kind": "document", "doc_type": "id_card", "value": ZHANG,
                                                     "reason": ""})
    assert no_reason.status_code == 400 and 'id="err-reason"' in no_reason.get_data(as_text=True)
    wrong = manager.post("/bookings/blocklist", {"kind": "document", "doc_type": "id_card",
                                                 "value": ZHANG[:17] + "1", "reason": "touting"})
    assert wrong.status_code == 400 and 'id="err-value"' in wrong.get_data(as_text=True)
    assert manager.post("/bookings/blocklist", {"kind": "document", "doc_type": "id_card", "value": ZHANG,
                                                "reason": "touting"}).status_code == 302
    page = manager.get("/bookings/blocklist").get_data(as_text=True)
    assert "110***********002X" in page and "touting" in page and ZHANG not in page
    assert "Nothing suspicious" in manager.get("/bookings/report").get_data(as_text=True)
    assert as_role("staff").get("/bookings/blocklist").status_code == 403
    with web_ctx.sessions() as db:
        entry = db.scalar(select(AuditEntry).where(AuditEntry.action == "booking.block"))
        assert entry.actor == "manager" and entry.detail["reason"] == "touting" and ZHANG not in str(entry.detail)


def test_every_back_office_booking_page_needs_a_role_and_the_public_site_none(app, as_role):
    anonymous = as_role(None)
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("bookings.")]
    assert len(rules) >= 10
    for rule in rules:
        assert hasattr(app.view_functions[rule.endpoint], "roles"), rule.rule
        if "GET" in rule.methods and not rule.arguments:
            assert anonymous.get(rule.rule).status_code == 302, rule.rule
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("book."):
            assert not hasattr(app.view_functions[rule.endpoint], "roles"), rule.rule
    assert anonymous.get("/book/").status_code == 200
