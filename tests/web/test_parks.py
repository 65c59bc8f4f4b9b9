"""Several parks in one central: a park's clerk sees and sells only for that park, a token acts for its
park only, and a head office sees every park, switches between them and watches them all at once."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from central.models import Ticket, utcnow
from central.services.gates import ensure_site, ensure_zone, register_gate
from central.services.ingest import ingest_batch
from central.services.tickets import IssueRequest, TicketTypeSpec, define_ticket_type, issue_ticket
from central.services.users import create_token, create_user, set_user_sites
from protocol.ids import new_event_id
from protocol.messages import PassageEvent
from tests.web.conftest import Browser, login

NORTH = "north"
PASSWORD = "tea by the west lake"


@pytest.fixture
def two_parks(web_ctx):
    """The test park (the central's own) and a second park, North, each with a clerk; a head-office manager."""
    home = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        ensure_site(db, NORTH, name="North Gorge", timezone="Asia/Shanghai")
        ensure_zone(db, NORTH, 1, name="Gorge", capacity=10)
        define_ticket_type(db, NORTH, TicketTypeSpec(name="Gorge ticket", id=2, price="50.00"))
        create_user(db, "clerk-home", "staff", PASSWORD, sites=[home], one_time=False)
        create_user(db, "clerk-north", "staff", PASSWORD, sites=[NORTH], one_time=False)
        create_user(db, "head", "manager", PASSWORD, all_sites=True, one_time=False)
        home_ticket = issue_ticket(db, home, IssueRequest(ticket_type=1, headcount=2)).id
        north_ticket = issue_ticket(db, NORTH, IssueRequest(ticket_type=2, headcount=10)).id
    return home, home_ticket, north_ticket


def _login(app, username: str) -> Browser:
    browser = Browser(app.test_client())
    browser.get("/login")
    res = browser.post("/login", {"username": username, "password": PASSWORD})
    assert res.status_code == 302, res.get_data(as_text=True)
    browser.get("/", follow_redirects=True)
    return browser


def _text(res) -> str:
    return res.get_data(as_text=True)


def test_a_parks_clerk_sees_and_sells_only_for_that_park(app, web_ctx, two_parks):
    home, home_ticket, north_ticket = two_parks
    north = _login(app, "clerk-north")
    assert north.get(f"/desk/tickets/{north_ticket}").status_code == 200
    assert north.get(f"/desk/tickets/{home_ticket}").status_code == 404  # another park's ticket: not there
    assert north.get(f"/api/v1/tickets/{home_ticket}").status_code == 404
    desk = _text(north.get("/desk/"))
    assert "Gorge ticket" in desk and "Day ticket" not in desk  # the sale form offers North's types only
    assert 'id="park-select"' not in desk  # one park: no switch
    north.post("/desk/tickets", {"ticket_type": "2", "visit_date": (utcnow() + timedelta(days=1)).date().isoformat()})
    with web_ctx.sessions() as db:
        sites = [t.site_id for t in db.query(Ticket).order_by(Ticket.id)]
    assert sites == [home, NORTH, NORTH]  # what the North clerk sold is North's
    res = north.post("/parks/switch", {"site": home}, follow_redirects=True)
    assert "You do not work for that park." in _text(res)
    assert north.get(f"/desk/tickets/{home_ticket}").status_code == 404


def test_a_token_for_one_park_acts_for_that_park_only(app, web_ctx, two_parks):
    home, home_ticket, north_ticket = two_parks
    with web_ctx.sessions.begin() as db:
        _token, plaintext = create_token(db, "ota-north", "staff", site_id=NORTH)
        _token, everywhere = create_token(db, "head-office-sync", "manager")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {plaintext}"}
    assert client.get(f"/api/v1/tickets/{north_ticket}", headers=auth).status_code == 200
    assert client.get(f"/api/v1/tickets/{home_ticket}", headers=auth).status_code == 404
    res = client.get(f"/api/v1/occupancy?site={home}", headers=auth)
    assert res.status_code == 403 and res.get_json()["error"] == "site_forbidden"
    res = client.post("/api/v1/tickets", headers=auth, json={"ticket_type": 2})
    assert res.status_code == 201, res.get_json()
    with web_ctx.sessions() as db:
        assert db.get(Ticket, res.get_json()["id"]).site_id == NORTH  # its one park, without asking
    head = {"Authorization": f"Bearer {everywhere}"}
    for site in (home, NORTH):
        assert client.get(f"/api/v1/occupancy?site={site}", headers=head).status_code == 200


def test_the_head_office_switches_parks_and_watches_every_park(app, web_ctx, two_parks):
    home, home_ticket, north_ticket = two_parks
    now = utcnow()
    with web_ctx.sessions.begin() as db:
        register_gate(db, home, "home-gate", 1)
        register_gate(db, NORTH, "gorge-1", 1)
        register_gate(db, NORTH, "gorge-2", 1)
        refs = {t.site_id: t.ref for t in db.query(Ticket)}
        events = [PassageEvent(id=new_event_id(), site=site, gate=gate, zone=1, at=now - timedelta(seconds=30 + i),
                               direction="in", credential_kind="qr", credential_ref=refs[site], decision="granted",
                               reason="ok", passed=True, headcount=headcount, ticket_type=1 if site == home else 2)
                  for i, (site, gate, headcount) in enumerate([(home, "home-gate", 2), (NORTH, "gorge-1", 9),
                                                               (NORTH, "gorge-2", 1)])]
        ingest_batch(db, events)
    head = _login(app, "head")
    page = _text(head.get("/parks/"))
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr data-site="([^"]+)"[^>]*>', page)}
    assert set(rows) == {home, NORTH}
    assert 'data-inside="2"' in rows[home] and 'data-inside="10"' in rows[NORTH]
    assert 'data-gates-online="0"' in rows[NORTH]
    assert 'data-level="full"' in rows[NORTH]  # 10 of 10 inside the gorge
    assert 'id="all-inside">12<' in page
    assert re.search(r'id="all-rate">([^<]*)<', page).group(1) == "2.4"  # 12 people in the last five minutes
    # the dashboard is for one park at a time: the switch picks which
    assert 'id="park-select"' in page
    assert f'<option value="{home}" selected>' in page
    head.post("/parks/switch", {"site": NORTH})
    page = _text(head.get("/gates/"))
    assert "gorge-1" in page and "home-gate" not in page
    assert f'<option value="{NORTH}" selected>' in page
    assert head.get(f"/desk/tickets/{home_ticket}").status_code == 403  # a manager does not sell
    res = head.get("/api/v1/occupancy")
    assert res.get_json()["site"] == NORTH
    with web_ctx.sessions.begin() as db:
        head_office = create_token(db, "head-office-board", "manager")[1]
        north_only = create_token(db, "north-board", "manager", site_id=NORTH)[1]
    client = app.test_client()
    every = client.get("/api/v1/parks", headers={"Authorization": f"Bearer {head_office}"}).get_json()
    assert {p["site"]: p["inside"] for p in every["parks"]} == {home: 2, NORTH: 10}
    assert every["totals"]["inside"] == 12 and every["totals"]["gates"] == 3
    north_view = client.get("/api/v1/parks", headers={"Authorization": f"Bearer {north_only}"}).get_json()
    assert [p["site"] for p in north_view["parks"]] == [NORTH]
    # The live counts: the head office's answer lists every park beside the one asked for; one park's, only it.
    live = client.get("/api/v1/occupancy", headers={"Authorization": f"Bearer {head_office}"}).get_json()
    assert live["site"] == home and {p["site"]: p["inside"] for p in live["parks"]} == {home: 2, NORTH: 10}
    north_live = client.get("/api/v1/occupancy", headers={"Authorization": f"Bearer {north_only}"}).get_json()
    assert north_live["site"] == NORTH and "parks" not in north_live


def test_an_admin_changes_the_parks_a_user_works_for(app, web_ctx, two_parks):
    home, home_ticket, north_ticket = two_parks
    north = _login(app, "clerk-north")
    assert north.get(f"/desk/tickets/{home_ticket}").status_code == 404
    admin = login(app, "admin")
    page = _text(admin.get("/admin/users"))
    assert re.search(r'<tr data-user="clerk-north">.*?<td class="parks">north', page, re.S)
    res = admin.post("/admin/users/clerk-north/sites", {"sites": [home, NORTH]}, follow_redirects=True)
    assert "Parks saved for clerk-north" in _text(res)
    assert 'id="park-select"' in _text(north.get("/desk/"))  # the switch now lists both
    north.post("/parks/switch", {"site": home})
    assert north.get(f"/desk/tickets/{home_ticket}").status_code == 200
    res = admin.post("/admin/users", {"username": "nopark", "role": "staff", "password": PASSWORD})
    assert res.status_code == 422 and 'data-field="sites"' in _text(res)  # every user works for some park
    with web_ctx.sessions.begin() as db:
        set_user_sites(db, "clerk-north", [NORTH])
    assert north.get(f"/desk/tickets/{home_ticket}").status_code == 404  # at once, on the next request
