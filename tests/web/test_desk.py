"""The staff desk through the test client: sell, look up, refund, passes, deletion, injection, uploads."""

from __future__ import annotations

import html
import io
import re

from central.services.tickets import IssueRequest, issue_ticket, ticket_code
from tests.web.conftest import login

NASTY = "<script>alert(1)</script>' OR '1'='1' -- {{7*7}} %_"


def _issue(staff, **fields) -> int:
    data = {"ticket_type": "1", "headcount": "1", "quantity": "1", "channel": "box_office"} | fields
    res = staff.post("/desk/tickets", data)
    assert res.status_code == 302, res.get_data(as_text=True)
    match = re.search(r"/desk/tickets/(\d+)", res.headers["Location"])
    assert match, res.headers["Location"]
    return int(match.group(1))


def test_staff_sells_a_ticket_and_prints_its_qr(app):
    staff = login(app, "staff")
    ticket_id = _issue(staff, holder_name="Li Lei")
    page = staff.get(f"/desk/tickets/{ticket_id}").get_data(as_text=True)
    assert f"Ticket T{ticket_id}" in page and "Li Lei" in page
    qr = staff.get(f"/desk/tickets/{ticket_id}/qr.svg")
    assert qr.mimetype == "image/svg+xml" and b"<svg" in qr.data


def test_look_up_by_number_by_scanned_code_and_by_id_number(app, web_ctx):
    staff = login(app, "staff")
    ticket_id = _issue(staff, id_number="110101199003071234", holder_name="Han Meimei")
    with web_ctx.sessions() as db:
        code = ticket_code(db.get(__import__("central.models", fromlist=["Ticket"]).Ticket, ticket_id), web_ctx.signer)
    for by, q in (("ticket", f"T{ticket_id}"), ("code", code), ("id_number", "110101199003071234")):
        page = staff.get(f"/desk/lookup?by={by}&q={q}").get_data(as_text=True)
        assert f"T{ticket_id}" in page, by
        assert "1234" in page  # the last four characters, for the staff to confirm
    assert "110101199003071234" not in staff.get(f"/desk/tickets/{ticket_id}").get_data(as_text=True)
    page = staff.get("/desk/lookup?by=id_number&q=110101199003079999").get_data(as_text=True)
    assert "No ticket found" in page
    page = staff.get("/desk/lookup?by=code&q=NOTACODE").get_data(as_text=True)
    assert "not a valid ticket code" in page
    fragment = staff.get(f"/desk/lookup?by=ticket&q=T{ticket_id}", headers={"HX-Request": "true"})
    assert "<html" not in fragment.get_data(as_text=True)


def test_refund_makes_the_ticket_refunded_and_twice_is_refused(app):
    staff = login(app, "staff")
    ticket_id = _issue(staff)
    res = staff.post(f"/desk/tickets/{ticket_id}/refund", {"reason": "rain"}, follow_redirects=True)
    assert 'id="ticket-status">refunded<' in res.get_data(as_text=True)
    res = staff.post(f"/desk/tickets/{ticket_id}/refund", follow_redirects=True)
    assert "is already refunded" in res.get_data(as_text=True)


def test_a_pass_holder_is_enrolled_suspended_renewed_and_reported_lost(app):
    staff = login(app, "staff")
    res = staff.post("/desk/persons", {"name": "Wang Fang", "phone": "13800000000", "card_uid": "04:a1:b2:c3",
                                       "valid_from": "2026-01-01", "valid_to": "2027-01-01", "price": "300"})
    assert res.status_code == 302
    person_url = res.headers["Location"]
    page = staff.get(person_url).get_data(as_text=True)
    assert "Wang Fang" in page and "04A1B2C3" in page
    pass_id = int(re.search(r'id="pass-(\d+)"', page).group(1))
    staff.post(f"/desk/passes/{pass_id}/suspend")
    assert "suspended" in staff.get(person_url).get_data(as_text=True)
    staff.post(f"/desk/passes/{pass_id}/resume")
    staff.post(f"/desk/passes/{pass_id}/renew", {"valid_to": "2028-01-01"})
    renewed = staff.get(person_url).get_data(as_text=True)  # the new end, as the page's locale writes a day
    assert "Jan 1, 2028" in renewed or "Dec 31, 2027" in renewed
    staff.post(f"/desk/passes/{pass_id}/lost")
    page = staff.get(person_url).get_data(as_text=True)
    assert ">lost<" in page
    staff.post(f"/desk/passes/{pass_id}/replace", {"card_uid": "04D5E6F7"})
    assert "04D5E6F7" in staff.get(person_url).get_data(as_text=True)
    found = staff.get("/desk/persons?card=04d5e6f7").get_data(as_text=True)
    assert person_url in found


def test_a_card_already_bound_is_refused_with_a_message(app):
    staff = login(app, "staff")
    form = {"valid_from": "2026-01-01", "valid_to": "2027-01-01", "card_uid": "AABBCCDD"}
    staff.post("/desk/persons", {"name": "First"} | form)
    res = staff.post("/desk/persons", {"name": "Second"} | form, follow_redirects=True)
    assert res.status_code == 422 and "already belongs to annual pass P" in res.get_data(as_text=True)


def test_deleting_a_person_on_request_removes_name_and_templates(app, web_ctx):
    from central.models import BiometricTemplate, Person
    from central.services.passes import bind_template

    staff = login(app, "staff")
    res = staff.post("/desk/persons", {"name": "Zhao Lei", "valid_from": "2026-01-01", "valid_to": "2027-01-01"})
    person_id = int(res.headers["Location"].rsplit("/", 1)[1])
    with web_ctx.sessions.begin() as db:
        bind_template(db, web_ctx.cipher, person_id, "face", bytes(512), actor="test")
    assert "version 1" in staff.get(f"/desk/persons/{person_id}").get_data(as_text=True)
    res = staff.post(f"/desk/persons/{person_id}/forget", follow_redirects=True)
    assert "Tick the box" in res.get_data(as_text=True)
    res = staff.post(f"/desk/persons/{person_id}/forget", {"confirm": "yes"}, follow_redirects=True)
    assert "deleted" in res.get_data(as_text=True)
    with web_ctx.sessions() as db:
        assert db.get(Person, person_id).name == ""
        assert db.query(BiometricTemplate).filter_by(person_id=person_id).count() == 0
    assert staff.get(f"/desk/persons/{person_id}").status_code == 404


def test_injection_through_the_search_fields_is_shown_as_text(app, web_ctx):
    staff = login(app, "staff")
    staff.post("/desk/persons", {"name": NASTY})
    page = staff.get("/desk/persons", query_string={"q": NASTY}).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert html.escape(NASTY, quote=False).replace("'", "&#39;") in page or "&lt;script&gt;" in page
    assert "{{7*7}}" in page and ">49<" not in page
    assert page.count("/desk/persons/") == 1  # the quote trick matched nothing beyond the one person
    for by in ("code", "ticket", "id_number"):
        res = staff.get("/desk/lookup", query_string={"by": by, "q": NASTY})
        assert res.status_code == 200
        assert "<script>alert(1)</script>" not in res.get_data(as_text=True)
    audit = login(app, "admin").get("/admin/audit", query_string={"actor": NASTY, "action": "%"})
    assert audit.status_code == 200 and "<script>alert(1)" not in audit.get_data(as_text=True)


def test_an_upload_that_is_not_a_photo_is_refused(app):
    staff = login(app, "staff")
    res = staff.post("/desk/persons", {"name": "Sun Li"})
    person_id = int(res.headers["Location"].rsplit("/", 1)[1])
    for payload, name in ((b"#!/bin/sh\nrm -rf /\n", "photo.jpg"), (b"GIF89a" + bytes(100), "x.gif"),
                          (b"\x89PNG\r\n\x1a\n" + bytes(64), "broken.png")):
        res = staff.post(f"/desk/persons/{person_id}/face",
                         {"photo": (io.BytesIO(payload), name)}, content_type="multipart/form-data")
        assert res.status_code == 422
        text = res.get_data(as_text=True)
        assert 'data-state="failed"' in text
        assert "not a" in text and "photo" in text


def test_an_oversized_upload_is_refused(app):
    app.config["MAX_PHOTO_BYTES"] = 1024
    staff = login(app, "staff")
    res = staff.post("/desk/persons", {"name": "Big"})
    person_id = int(res.headers["Location"].rsplit("/", 1)[1])
    res = staff.post(f"/desk/persons/{person_id}/face", {"photo": (io.BytesIO(bytes(4096)), "p.jpg")},
                     content_type="multipart/form-data")
    assert res.status_code == 422 and "larger than" in res.get_data(as_text=True)


def test_a_ticket_of_another_site_is_not_shown(app, web_ctx):
    from central.services.gates import ensure_site
    from central.services.tickets import TicketTypeSpec, define_ticket_type

    with web_ctx.sessions.begin() as db:
        ensure_site(db, "othersite")
        define_ticket_type(db, "othersite", TicketTypeSpec(name="Other", id=9))
        other = issue_ticket(db, "othersite", IssueRequest(ticket_type=9)).id
    staff = login(app, "staff")
    assert staff.get(f"/desk/tickets/{other}").status_code == 404
    # Only the results: the page's CSRF token in <head> may well contain "T1".
    page = staff.get(f"/desk/lookup?by=ticket&q={other}").get_data(as_text=True)
    assert f"T{other}" not in page.split('id="lookup-results"', 1)[1].split("searched for")[0]
