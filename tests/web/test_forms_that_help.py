"""Forms that help, as a desk clerk, a manager, a technician and an admin meet them: a refusal names the
field in the reader's language and the form keeps what was typed; values that cannot be right (a
past date, a group of one, a card UID of one byte, a password of one character, a zone the park
does not have, a controller profile typo) are refused before they are stored; generated passwords
are changed at the first login; an emergency shows on every page and its end returns each gate to the
mode it had before."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from central.models import Gate, Ticket, TicketType, utcnow
from central.services.gates import register_gate
from central.services.tickets import TicketTypeSpec, define_ticket_type
from central.services.users import create_user
from tests.web.conftest import login


def _text(res) -> str:
    return res.get_data(as_text=True)


def _field_error(html: str, field: str) -> str | None:
    match = re.search(rf'id="err-{field}">([^<]*)<', html)
    return match.group(1) if match else None


def test_a_refused_sale_keeps_what_was_typed_and_names_the_field(app, web_ctx):
    with web_ctx.sessions.begin() as db:
        define_ticket_type(db, web_ctx.config.site, TicketTypeSpec(name="Group of 10-60", id=7, min_headcount=10,
                                                                     max_headcount=60, price="50"))
    desk = login(app, "staff")
    desk.get("/desk/")
    res = desk.post("/desk/tickets", {"ticket_type": "7", "headcount": "1", "holder_name": "Wang Fang",
                                      "channel_ref": "CITS-2026-118"})
    html = _text(res)
    assert res.status_code == 422
    assert "10 to 60 people" in _field_error(html, "headcount")
    assert 'value="Wang Fang"' in html and 'value="CITS-2026-118"' in html  # nothing to type again
    assert re.search(r'<option value="7" selected>', html)
    assert desk.post("/desk/tickets", {"ticket_type": "7", "headcount": "12"}).status_code == 302


def test_a_sale_for_a_past_date_is_refused_until_it_is_confirmed_and_no_ticket_without_a_qr_is_made(app, web_ctx):
    desk = login(app, "staff")
    desk.get("/desk/")
    yesterday = (utcnow() + timedelta(hours=8) - timedelta(days=1)).date().isoformat()  # the park is at UTC+8
    res = desk.post("/desk/tickets", {"ticket_type": "1", "visit_date": yesterday, "holder_name": "Li Lei"})
    html = _text(res)
    assert res.status_code == 422 and "already over" in _field_error(html, "visit_date")
    assert 'name="allow_past"' in html and 'value="Li Lei"' in html
    with web_ctx.sessions() as db:
        assert db.scalar(select(Ticket.id).where(Ticket.holder_name == "Li Lei")) is None
    confirmed = desk.post("/desk/tickets", {"ticket_type": "1", "visit_date": yesterday, "holder_name": "Li Lei",
                                            "allow_past": "yes"}, follow_redirects=True)
    assert confirmed.status_code == 200 and "issued" in _text(confirmed)
    ticket_id = re.search(r"/desk/tickets/(\d+)/qr\.svg", _text(confirmed)).group(1)
    assert desk.get(f"/desk/tickets/{ticket_id}/qr.svg").status_code == 200  # its QR never fails


def test_an_enrolment_refused_for_a_one_byte_card_keeps_the_holders_details(app):
    desk = login(app, "staff")
    desk.get("/desk/persons")
    res = desk.post("/desk/persons", {"name": "Zhao Min", "phone": "+86 138 0000 0001", "card_uid": "1",
                                      "valid_from": "2026-12-01", "valid_to": "2027-12-01"})
    html = _text(res)
    assert res.status_code == 422 and "4, 7 or 10 bytes" in _field_error(html, "card_uid")
    assert 'value="Zhao Min"' in html and 'value="+86 138 0000 0001"' in html and 'value="2027-12-01"' in html
    for uid in ("04A1B2C3", "04:A1:B2:C3:D4:E5:F6", "04A1B2C3D4E5F6071829"):
        ok = desk.post("/desk/persons", {"name": f"Holder {uid}", "card_uid": uid, "valid_from": "2026-12-01",
                                         "valid_to": "2027-12-01"})
        assert ok.status_code == 302, (uid, _field_error(_text(ok), "card_uid"))


def test_a_card_in_use_names_the_pass_as_printed_not_an_internal_id(app):
    desk = login(app, "staff")
    desk.get("/desk/persons")
    assert desk.post("/desk/persons", {"name": "First", "card_uid": "04AA0001", "valid_from": "2026-12-01",
                                       "valid_to": "2027-12-01"}).status_code == 302
    desk.get("/desk/persons")
    res = desk.post("/desk/persons", {"name": "Second", "card_uid": "04AA0001", "valid_from": "2026-12-01",
                                      "valid_to": "2027-12-01"})
    message = _field_error(_text(res), "card_uid")
    assert re.search(r"annual pass P\d+", message) and "report that one lost first" in message


def test_the_chinese_desk_says_why_in_chinese(app, web_ctx):
    desk = login(app, "staff", accept_language="zh-CN")
    desk.get("/desk/persons")
    res = desk.post("/desk/persons", {"name": "赵敏", "card_uid": "1", "valid_from": "2026-12-01",
                                      "valid_to": "2027-12-01"})
    assert "卡号" in _field_error(_text(res), "card_uid") and 'value="赵敏"' in _text(res)


def test_the_add_user_form_has_no_default_role_and_refuses_a_weak_password(app, web_ctx):
    admin = login(app, "admin")
    page = _text(admin.get("/admin/users"))
    select_ = re.search(r'<select name="role" required>(.*?)</select>', page, re.S).group(1)
    assert re.match(r'\s*<option value="">', select_) and " selected" not in select_
    res = admin.post("/admin/users", {"username": "newclerk", "role": "", "password": ""})
    assert res.status_code == 422 and _field_error(_text(res), "role") and 'value="newclerk"' in _text(res)
    for weak in ("1", "1234567890", "newclerk12", "aaaaaaaaaaaa"):
        res = admin.post("/admin/users", {"username": "newclerk", "role": "staff", "password": weak})
        assert res.status_code == 422 and _field_error(_text(res), "password"), weak
    assert admin.post("/admin/users", {"username": "newclerk", "role": "staff",
                                       "password": "tea by the west lake"}).status_code == 200


def test_a_generated_password_must_be_changed_at_the_first_login_before_anything_else(app, web_ctx):
    with web_ctx.sessions.begin() as db:
        _user, one_time = create_user(db, "clerk2", "staff", sites=[web_ctx.config.site])
    browser = login(app, None)
    res = browser.post("/login", {"username": "clerk2", "password": one_time})
    assert res.status_code == 302 and "/account/password" in res.headers["Location"]
    assert "/account/password" in browser.get("/desk/").headers["Location"]  # no page until it is changed
    assert browser.get("/api/v1/occupancy").get_json()["error"] == "password_change_required"
    page = browser.get("/account/password")
    assert 'id="one-time"' in _text(page)
    browser.post("/account/password", {"current_password": one_time, "new_password": "short",
                                       "confirm_password": "short"})
    res = browser.post("/account/password", {"current_password": one_time, "new_password": "the clerk's own words",
                                             "confirm_password": "the clerk's own words"})
    assert res.status_code == 302
    assert browser.get("/desk/").status_code == 200


def test_a_gate_in_a_zone_the_park_does_not_have_is_refused_and_zones_come_from_a_list(app, web_ctx):
    tech = login(app, "technician")
    page = _text(tech.get("/gates/"))
    assert re.search(r'<select name="zone" required>\s*<option value="1"', page)  # the park's zones
    res = tech.post("/gates/", {"name": "ghost", "zone": "9", "direction": "in"})
    assert res.status_code == 422 and "no zone 9" in _field_error(_text(res), "zone")
    with web_ctx.sessions() as db:
        assert db.scalar(select(Gate).where(Gate.name == "ghost")) is None
    # a zone made by mistake can be removed when no gate serves it
    tech.post("/gates/zones", {"name": "Mistake", "capacity": "10"})
    number = max(int(n) for n in re.findall(r'data-zone="(\d+)"', _text(tech.get("/gates/"))))
    tech.post(f"/gates/zones/{number}", {"action": "remove"})
    assert f'data-zone="{number}"' not in _text(tech.get("/gates/"))


def test_a_controller_profile_is_chosen_from_the_known_ones_and_a_typo_is_refused(app, web_ctx):
    with web_ctx.sessions.begin() as db:
        register_gate(db, web_ctx.config.site, "east1", 1)
    tech = login(app, "technician")
    page = _text(tech.get("/gates/east1"))
    assert '<option value="tripod-coil">' in page and '<option value="swing-regcmd">' in page
    res = tech.post("/gates/east1/config", {"zone": "1", "direction": "both", "controller_profile": "tripod-coi",
                                            "unit_id": "1", "passage_timeout_s": "10", "repeat_scan_s": "1.5"})
    assert res.status_code == 422 and "saved" not in _text(res)
    with web_ctx.sessions() as db:
        assert "controller_profile" not in (db.scalar(select(Gate.hardware).where(Gate.name == "east1")) or {})


def test_an_emergency_shows_on_every_page_and_its_end_returns_each_gate_to_its_mode(app, web_ctx):
    site = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        for name, mode in (("north", "locked"), ("south", "normal"), ("west", "free")):
            register_gate(db, site, name, 1)
            db.flush()
            db.scalar(select(Gate).where(Gate.name == name)).mode = mode
    manager = login(app, "manager")
    desk = login(app, "staff")
    assert 'id="emergency-banner"' not in _text(desk.get("/desk/"))
    manager.get("/gates/")
    manager.post("/gates/emergency", {"state": "on"})
    for page in ("/desk/", "/desk/persons"):
        assert 'id="emergency-banner"' in _text(desk.get(page))
    assert 'id="emergency-banner"' in _text(manager.get("/reports/"))
    manager.post("/gates/emergency", {"state": "off"})
    with web_ctx.sessions() as db:
        modes = dict(db.execute(select(Gate.name, Gate.mode).where(Gate.site_id == site)).all())
    assert modes == {"north": "locked", "south": "normal", "west": "free"}
    assert 'id="emergency-banner"' not in _text(desk.get("/desk/"))


def test_a_mode_reported_by_the_gate_is_shown_at_the_central(app, web_ctx):
    from central.services.gates import record_status
    from protocol.messages import GateStatus

    site = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        register_gate(db, site, "box1", 1)
        db.flush()
        record_status(db, GateStatus(site=site, gate="box1", online=True, at=utcnow(), mode="locked"))
    tech = login(app, "technician")
    assert 'data-reported-mode="locked"' in _text(tech.get("/gates/"))
    assert 'id="reported-mode"' in _text(tech.get("/gates/box1"))
    with web_ctx.sessions.begin() as db:
        record_status(db, GateStatus(site=site, gate="box1", online=True, at=utcnow(), mode="emergency"))
    assert 'id="emergency-banner"' in _text(tech.get("/gates/"))  # the fire input at a box: every page says so


def test_a_card_search_puts_the_match_first(app, web_ctx):
    desk = login(app, "staff")
    for i in range(30):
        desk.get("/desk/persons")
        desk.post("/desk/persons", {"name": f"Holder {i}", "card_uid": f"04BB{i:04X}", "valid_from": "2026-12-01",
                                    "valid_to": "2027-12-01"})
    html = _text(desk.get("/desk/persons?card=04bb0007"))
    assert html.index('id="card-results"') < html.index('id="persons"')
    assert "Holder 7" in html[html.index('id="card-results"'):html.index('id="persons"')]


def test_each_kind_of_ticket_type_defined_through_the_web_the_api_and_the_services_is_stored_as_set(app, web_ctx):
    from central.services.users import create_token

    with web_ctx.sessions.begin() as db:
        _tok, token = create_token(db, "api-manager", "manager")
        define_ticket_type(db, web_ctx.config.site, TicketTypeSpec(name="Unlimited (services)", id=21, entries=None))
    manager = login(app, "manager")
    manager.get("/ticket-types/")
    res = manager.post("/ticket-types/", {"name": "Unlimited (web)", "unlimited": "yes", "anti_passback": "yes",
                                          "validity_days": "1", "price": "150", "min_headcount": "1",
                                          "max_headcount": "1"})
    assert res.status_code == 302
    api = app.test_client()
    made = api.post("/api/v1/ticket-types", json={"name": "Unlimited (api)", "entries": None},
                    headers={"Authorization": f"Bearer {token}"})
    assert made.status_code == 201 and made.get_json()["entries"] is None
    manager.get("/ticket-types/")
    assert manager.post("/ticket-types/", {"name": "Three entries", "entries": "3", "validity_days": "2",
                                           "min_headcount": "1", "max_headcount": "1"}).status_code == 302
    with web_ctx.sessions() as db:
        stored = {t.name: t.entries for t in db.scalars(select(TicketType))}
    assert stored["Unlimited (services)"] is None and stored["Unlimited (web)"] is None
    assert stored["Unlimited (api)"] is None and stored["Three entries"] == 3
