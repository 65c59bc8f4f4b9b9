"""The public booking site at /book/, as a visitor's browser uses it (no login, CSRF on, a proof of work
solved as the page's script does): book a party, see the booking, find it, cancel it; every bad value
answered in the visitor's language with the form kept, never a 500; the limits against scalpers."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from central.models import SlotQuota
from central.services import proof_of_work
from central.services import visitor_bookings as vb
from central.services.tickets import TicketTypeSpec, define_ticket_type
from tests.web.conftest import Browser

TZ = ZoneInfo("Asia/Shanghai")
ZHANG, LI = "11010519491231002X", "110105198001010032"
CHALLENGE = re.compile(r'name="challenge" value="([^"]+)"')


@pytest.fixture
def park(web_ctx):
    site = web_ctx.config.site
    day = (datetime.now(TZ) + timedelta(days=1)).date()
    with web_ctx.sessions.begin() as db:
        define_ticket_type(db, site, TicketTypeSpec(name="Booked visit", id=7, real_name=True))
        vb.update_settings(db, site, "manager", ticket_type_id=7, days_ahead=7, party_max=5, cancel_before_min=60,
                           close_before_min=0, retention_days=30, face_entry=False)
        slots = {"morning": vb.set_slot(db, site, "manager", day=day, start=time(9), end=time(11), capacity=10).id,
                 "noon": vb.set_slot(db, site, "manager", day=day, start=time(11), end=time(13), capacity=1).id}
    return web_ctx, site, slots


@pytest.fixture
def visitor(app, park):
    app.config["BOOKING_POW_BITS"] = 8  # the check's cost is the bench's business; its rules are tested here
    return lambda language="en-GB,en;q=0.9": visitor_browser(app, language)


def visitor_browser(app, language: str) -> Browser:
    browser = Browser(app.test_client())
    browser.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    return browser


def fill(page_html: str, quota_id: int, persons: list[tuple[str, str, str]], phone="13800138000", consent=True,
         solve=True) -> dict:
    challenge = CHALLENGE.search(page_html).group(1)
    data = {"party": str(len(persons)), "phone": phone, "challenge": challenge,
            "pow": proof_of_work.solve(challenge) if solve else ""}
    if consent:
        data["consent"] = "yes"
    for i, (name, doc_type, number) in enumerate(persons, start=1):
        data |= {f"person-{i}-name": name, f"person-{i}-doc_type": doc_type, f"person-{i}-doc_number": number}
    return data


def book(browser: Browser, quota_id: int, persons, **kw):
    page = browser.get(f"/book/slot/{quota_id}?party={len(persons)}")
    assert page.status_code == 200
    return browser.post(f"/book/slot/{quota_id}", fill(page.get_data(as_text=True), quota_id, persons, **kw))


def test_a_visitor_books_sees_each_persons_entry_finds_and_cancels_and_the_places_return(visitor, park):
    ctx, site, slots = park
    browser = visitor()
    days = browser.get("/book/").get_data(as_text=True)
    assert "10 places left" in days and "1 place left" in days
    done = book(browser, slots["morning"], [("Zhang San", "id_card", ZHANG), ("Ann Lee", "passport", "E12345678")])
    assert done.status_code == 302
    page = browser.get(done.headers["Location"]).get_data(as_text=True)
    number = re.search(r'id="booking-number">([A-Z0-9-]+)<', page).group(1)
    assert "Enter with this ID card" in page and "Enter with this QR code" in page
    assert "110***********002X" in page and ZHANG not in page and "138****8000" in page
    qr = browser.get(f"/book/b/{number.replace('-', '')}/qr/2.svg")
    assert qr.status_code == 200 and qr.mimetype == "image/svg+xml"
    assert "8 places left" in browser.get("/book/").get_data(as_text=True)

    # Another browser knows only the number: it sees nothing until it proves the phone or a document.
    other = visitor()
    assert other.get(f"/book/b/{number}").status_code == 404
    other.get("/book/find")
    wrong = other.post("/book/find", {"number": number, "proof": "13900000000"})
    assert wrong.status_code == 400 and "No booking matches" in wrong.get_data(as_text=True)
    assert number in wrong.get_data(as_text=True)  # the form keeps what was typed
    found = other.post("/book/find", {"number": number.lower(), "proof": "e12345678"})
    assert found.status_code == 302
    other.get(found.headers["Location"])
    cancelled = other.post(f"/book/b/{number.replace('-', '')}/cancel", follow_redirects=True)
    assert "is cancelled" in cancelled.get_data(as_text=True)
    assert "10 places left" in browser.get("/book/").get_data(as_text=True)


def test_the_pages_speak_chinese_to_a_chinese_phone(visitor, park):
    ctx, site, slots = park
    browser = visitor("zh-CN,zh;q=0.9")
    assert "剩余" in browser.get("/book/").get_data(as_text=True)
    bad = book(browser, slots["morning"], [("张三", "id_card", ZHANG[:17] + "3")])
    text = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "校验" in text and ZHANG[:17] + "3" in text and "张三" in text


@pytest.mark.parametrize(("persons", "phone", "consent", "field", "message"), [
    ([("Zhang San", "id_card", ZHANG[:17] + "3")], "13800138000", True, "person-1-doc_number", "last character"),
    ([("x" * 300, "id_card", ZHANG)], "13800138000", True, "person-1-name", "too long"),
    ([("Zhang San", "id_card", ZHANG)], "not a phone", True, "phone", "6 to 15 digits"),
    ([("Zhang San", "id_card", ZHANG)], "13800138000", False, "consent", "consent"),
    ([("Zhang San", "hk_macao", "X1")], "13800138000", True, "person-1-doc_number", "H or M"),
    ([("Zhang San", "id_card", ZHANG), ("Li Si", "id_card", ZHANG)], "13800138000", True, "person-2-doc_number",
     "their own document"),
])
def test_every_bad_value_is_answered_at_its_field_with_the_form_kept(visitor, park, persons, phone, consent, field,
                                                                    message):
    ctx, site, slots = park
    res = book(visitor(), slots["morning"], persons, phone=phone, consent=consent)
    text = res.get_data(as_text=True)
    assert res.status_code == 400
    assert f'id="err-{field}"' in text and message in text
    for name, _type, number in persons:
        assert f'value="{name}"' in text and f'value="{number}"' in text
    if phone:
        assert f'value="{phone}"' in text


def test_a_slot_that_filled_or_closed_meanwhile_is_said_so_with_the_form_kept(visitor, park):
    ctx, site, slots = park
    first, second = visitor(), visitor()
    page = second.get(f"/book/slot/{slots['noon']}").get_data(as_text=True)
    done = book(first, slots["noon"], [("Zhang San", "id_card", ZHANG)])
    assert done.status_code == 302
    full = second.post(f"/book/slot/{slots['noon']}", fill(page, slots["noon"], [("Li Si", "id_card", LI)]))
    assert full.status_code == 409 and "fully booked" in full.get_data(as_text=True)
    assert 'value="Li Si"' in full.get_data(as_text=True)
    # The place given back is bookable at once (the "full" answer's recent read is forgotten).
    assert first.post(done.headers["Location"] + "/cancel").status_code == 302
    again = second.post(f"/book/slot/{slots['noon']}", fill(full.get_data(as_text=True), slots["noon"],
                                                           [("Li Si", "id_card", LI)]))
    assert again.status_code == 302, again.get_data(as_text=True)
    # and the slot is full again for the next one
    page = second.get(f"/book/slot/{slots['noon']}").get_data(as_text=True)
    # Full already when the visitor sends the form: said before anything else is checked, the form kept.
    typo = second.post(f"/book/slot/{slots['noon']}", fill(page, slots["noon"], [("Li Si", "id_card", LI[:17] + "9")]))
    assert typo.status_code == 409 and "fully booked" in typo.get_data(as_text=True)
    assert 'value="Li Si"' in typo.get_data(as_text=True) and LI[:17] + "9" in typo.get_data(as_text=True)
    with ctx.sessions.begin() as db:
        quota = db.get(SlotQuota, slots["morning"])
        quota.closes_at = datetime.now(TZ) - timedelta(minutes=1)
    closed = book(second, slots["morning"], [("Li Si", "id_card", LI)])
    assert closed.status_code == 400 and "has closed" in closed.get_data(as_text=True)


def test_a_form_without_its_check_or_sent_twice_is_refused_and_csrf_is_on(visitor, park, app):
    ctx, site, slots = park
    browser = visitor()
    unsolved = book(browser, slots["morning"], [("Zhang San", "id_card", ZHANG)], solve=False)
    assert unsolved.status_code == 400 and "did not finish its check" in unsolved.get_data(as_text=True)
    page = browser.get(f"/book/slot/{slots['morning']}").get_data(as_text=True)
    data = fill(page, slots["morning"], [("Zhang San", "id_card", ZHANG)])
    assert browser.post(f"/book/slot/{slots['morning']}", data).status_code == 302
    data |= {"person-1-doc_number": LI}
    again = browser.post(f"/book/slot/{slots['morning']}", data)
    assert again.status_code == 400 and "already sent" in again.get_data(as_text=True)
    forged = dict(data, csrf_token="forged")
    assert browser.post(f"/book/slot/{slots['morning']}", forged).status_code == 400


def test_one_address_and_one_phone_are_limited(visitor, park, app):
    ctx, site, slots = park
    app.config["BOOKING_PHONE_LIMIT"] = "2/day"
    app.config["BOOKING_ADDRESS_LIMIT"] = "3/hour"  # each test client comes from 127.0.0.1
    numbers = [vb_id(i) for i in range(4)]
    browser = visitor()
    results = [book(browser, slots["morning"], [("Visitor", "id_card", n)]).status_code for n in numbers[:3]]
    assert results == [302, 302, 429]
    limited = book(visitor(), slots["morning"], [("Visitor", "id_card", numbers[3])], phone="13900139000")
    assert limited.status_code == 429 and "from your connection" in limited.get_data(as_text=True)
    assert 'value="13900139000"' in limited.get_data(as_text=True)
    with ctx.sessions() as db:
        assert db.scalar(select(SlotQuota.booked).where(SlotQuota.id == slots["morning"])) == 2


def vb_id(i: int) -> str:
    first17 = f"1101051980010100{i}"
    return first17 + vb.gb11643_check(first17)


@pytest.mark.postgres
def test_phones_racing_for_one_document_and_for_the_last_place_through_the_app(visitor, park, app):
    """Eight browsers at once (threads, each its own session) against the app on PostgreSQL: four send the
    same ID number for the morning, four others race for noon's last place. One of each wins; every
    other is told why, in its own form."""
    import threading

    ctx, site, slots = park
    if not ctx.config.database_url.startswith("postgresql"):
        pytest.skip("the race is PostgreSQL's")
    app.config["BOOKING_ADDRESS_LIMIT"] = "1000/minute"
    browsers = [visitor() for _ in range(8)]
    forms = []
    for i, browser in enumerate(browsers):
        quota = slots["morning"] if i < 4 else slots["noon"]
        page = browser.get(f"/book/slot/{quota}").get_data(as_text=True)
        number = ZHANG if i < 4 else vb_id(i)
        forms.append((quota, fill(page, quota, [(f"Visitor {i}", "id_card", number)], phone=f"1390000000{i}")))
    start = threading.Barrier(len(browsers))
    answers: list[tuple[int, int, str]] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        quota, data = forms[i]
        start.wait()
        res = browsers[i].post(f"/book/slot/{quota}", data)
        with lock:
            answers.append((i, res.status_code, res.get_data(as_text=True)))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(browsers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    same_doc = [a for a in answers if a[0] < 4]
    last_place = [a for a in answers if a[0] >= 4]
    assert sorted(code for _, code, _ in same_doc) == [302, 400, 400, 400]
    assert all("already holds a booking" in text for _, code, text in same_doc if code != 302)
    assert sorted(code for _, code, _ in last_place) == [302, 409, 409, 409]
    assert all("fully booked" in text for _, code, text in last_place if code != 302)
    with ctx.sessions() as db:
        assert db.get(SlotQuota, slots["noon"]).booked == 1
        assert db.get(SlotQuota, slots["morning"]).booked == 1
