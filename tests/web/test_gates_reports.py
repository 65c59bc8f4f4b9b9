"""Technician pages (register, validated hardware form, modes) and the manager's reports and CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from central.models import Gate, Ticket
from central.services.ingest import ingest_batch
from central.services.tickets import IssueRequest, issue_ticket
from protocol.ids import new_event_id
from protocol.messages import PassageEvent
from tests.web.conftest import login

# 10:00 in Asia/Shanghai (the test site's zone) on a fixed day
DAY = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def test_technician_registers_a_gate_and_sees_its_password_once(app, web_ctx):
    tech = login(app, "technician")
    res = tech.post("/gates/", {"name": "east-1", "zone": "1", "direction": "in"})
    page = res.get_data(as_text=True)
    assert res.status_code == 200 and 'id="mqtt-password"' in page
    assert 'id="mqtt-password"' not in tech.get("/gates/").get_data(as_text=True)
    res = tech.post("/gates/", {"name": "bad gate/+", "zone": "1"}, follow_redirects=True)
    assert "A gate name is 1 to 64 letters" in res.get_data(as_text=True)


def test_hardware_form_refuses_bad_values_and_saves_good_ones(app, web_ctx):
    tech = login(app, "technician")
    tech.post("/gates/", {"name": "g1", "zone": "1"})
    res = tech.post("/gates/g1/config", {"zone": "40", "direction": "sideways", "unit_id": "300",
                                         "passage_timeout_s": "0", "repeat_scan_s": "nan",
                                         "controller_profile": "../etc/passwd"})
    assert res.status_code == 422
    page = res.get_data(as_text=True)
    for field in ("zone", "direction", "unit_id", "passage_timeout_s", "repeat_scan_s", "controller_profile"):
        assert f'data-field="{field}"' in page, field
    with web_ctx.sessions() as db:
        version = db.query(Gate).filter_by(name="g1").one().config_version
    res = tech.post("/gates/g1/config", {"zone": "2", "direction": "out", "unit_id": "7", "passage_timeout_s": "8",
                                         "repeat_scan_s": "2", "controller_profile": "tripod-coil"})
    assert res.status_code == 302
    with web_ctx.sessions() as db:
        gate = db.query(Gate).filter_by(name="g1").one()
        assert gate.config_version == version + 1
        assert gate.zone_number == 2 and gate.direction == "out"
        assert gate.hardware == {"unit_id": 7, "passage_timeout_s": 8.0, "repeat_scan_s": 2.0,
                                 "controller_profile": "tripod-coil"}
    page = tech.get("/gates/g1/config-state").get_data(as_text=True)
    assert 'data-state="not_sent"' in page  # no broker in this test


def test_modes_per_gate_zone_and_site(app, web_ctx):
    tech = login(app, "technician")
    for name in ("a", "b"):
        tech.post("/gates/", {"name": name, "zone": "2"})
    tech.post("/gates/a/mode", {"mode": "locked"})
    tech.post("/gates/zone-mode", {"zone": "2", "mode": "free"})
    with web_ctx.sessions() as db:
        assert {g.name: g.mode for g in db.query(Gate)} == {"a": "free", "b": "free"}
    tech.post("/gates/emergency", {"state": "on"})
    with web_ctx.sessions() as db:
        assert {g.mode for g in db.query(Gate)} == {"emergency"}
    res = tech.post("/gates/a/mode", {"mode": "party"}, follow_redirects=True)
    assert "A mode is normal, free passage, locked or emergency." in res.get_data(as_text=True)


def _event(gate: str, minutes: int, *, ref: str = "", direction: str = "in", decision: str = "granted",
           reason: str = "ok", kind: str = "qr", headcount: int = 1, ticket_type: int | None = 1) -> PassageEvent:
    return PassageEvent(id=new_event_id(), site="", gate=gate, zone=1, at=DAY + timedelta(minutes=minutes),
                        direction=direction, credential_kind=kind, credential_ref=ref, decision=decision,
                        reason=reason, passed=decision == "granted", headcount=headcount, ticket_type=ticket_type)


def _store(web_ctx, events):
    import msgspec

    site = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        ingest_batch(db, [msgspec.structs.replace(e, site=site) for e in events])


def _credentials(web_ctx) -> tuple[str, str, str]:
    """Gates g1 and g2, a group ticket for 3 and a ticket valid on DAY, and an annual pass: the ingest
    counts only passages it can place."""
    from central.services.gates import register_gate
    from central.services.passes import create_pass, create_person

    site = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        for gate in ("g1", "g2"):
            register_gate(db, site, gate, 1)
        group, single = (issue_ticket(db, site, IssueRequest(ticket_type=1, visit_date=DAY.date(), headcount=n,
                                                                          allow_past=True))
                         for n in (3, 1))
        person = create_person(db, site, "Holder")
        annual = create_pass(db, site, person_id=person.id, valid_from=DAY - timedelta(days=1),
                             valid_to=DAY + timedelta(days=30))
        return group.ref, single.ref, annual.ref


def test_reports_count_passages_by_day_hour_gate_type_and_find_patterns(app, web_ctx):
    group, single, annual = _credentials(web_ctx)
    _store(web_ctx, [
        _event("g1", 0, ref=group, headcount=3),
        _event("g1", 5, ref=single),
        _event("g2", 70, ref=single),  # a re-entry an hour later
        _event("g2", 80, ref=single, direction="out"),
        *[_event("g1", 90 + i, ref="T99", decision="refused", reason="used_up") for i in range(6)],
        _event("g1", 100, ref=annual, kind="annual_pass", ticket_type=None),
        _event("g2", 103, ref=annual, kind="annual_pass", ticket_type=None),  # the same card three minutes later
    ])
    manager = login(app, "manager")
    page = manager.get("/reports/?start=2026-03-02&end=2026-03-02").get_data(as_text=True)
    assert "Ticket already used" in page
    per_hour = list(csv.DictReader(io.StringIO(manager.get("/reports/per-hour.csv?start=2026-03-02").get_data(
        as_text=True).lstrip("\ufeff"))))
    assert {int(r["hour"]): int(r["entries"]) for r in per_hour if int(r["entries"])} == {10: 4, 11: 3}
    per_day = manager.get("/reports/per-day.csv?start=2026-03-01&end=2026-03-03").get_data(as_text=True)
    assert "2026-03-02,7,1,6" in per_day and "2026-03-01,0,0,0" in per_day
    by_gate = manager.get("/reports/by-gate.csv?start=2026-03-02").get_data(as_text=True)
    assert "g1,5,0,6,0" in by_gate
    reentries = manager.get("/reports/reentries.csv?start=2026-03-02").get_data(as_text=True)
    assert "qr,1,1" in reentries
    assert "T99" in manager.get("/reports/repeated-refusals.csv?start=2026-03-02").get_data(as_text=True)
    two = manager.get("/reports/two-gates.csv?start=2026-03-02").get_data(as_text=True)
    assert f"{annual},g1," in two and ",3.0" in two
    daily = manager.get("/reports/daily?start=2026-03-02").get_data(as_text=True)
    assert 'id="d-entries">7<' in daily and 'id="d-refused">6<' in daily


def test_settlement_per_channel_and_group_customer_and_csv_formula_guard(app, web_ctx):
    site = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        for channel, ref, price, n in (("box_office", None, "80", 2), ("agency", "Sunny Travel", "60", 3),
                                       ("agency", "=HYPERLINK(\"x\")", "60", 1)):
            for _ in range(n):
                issue_ticket(db, site, IssueRequest(ticket_type=1, channel=channel, channel_ref=ref, price=price,
                                                    headcount=2, allow_past=True))
        db.query(Ticket).filter_by(channel="box_office").first().status = "refunded"
    manager = login(app, "manager")
    rows = list(csv.DictReader(io.StringIO(manager.get("/reports/settlement-channel.csv").get_data(
        as_text=True).lstrip("\ufeff"))))
    by = {r["channel"]: r for r in rows}
    assert by["box_office"]["amount"] == "160.00" and by["box_office"]["net"] == "80.00"
    assert by["agency"]["tickets"] == "4" and by["agency"]["visitors"] == "8"
    text = manager.get("/reports/settlement-customer.csv").get_data(as_text=True)
    assert "Sunny Travel,3,6,180.00" in text
    assert "'=HYPERLINK" in text  # a spreadsheet must not run it
    res = manager.get("/reports/?start=2026-03-05&end=2026-03-01", follow_redirects=True)
    assert "before its start" in res.get_data(as_text=True)
