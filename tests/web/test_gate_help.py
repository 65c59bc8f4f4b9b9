"""At the central, for what happens at the gate: a fire at a box shows on every page and whoever ends it
is in the audit log, the end reaching the gates in their config; the site's fire scope and the ticket
types staff must check at the gate go to the gates the same way."""

from __future__ import annotations

from sqlalchemy import select

from central.models import AuditEntry, Gate, Site, utcnow
from central.services.gates import build_gate_config, record_status, register_gate, update_site
from protocol.messages import GateStatus
from tests.web.conftest import login


def _text(res) -> str:
    return res.get_data(as_text=True)


def test_a_fire_at_a_box_shows_everywhere_and_who_ended_it_is_recorded_and_told_to_the_gates(app, web_ctx):
    site = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        register_gate(db, site, "east1", 1)
        register_gate(db, site, "east2", 1)
        db.flush()
        # The fire input latched both boxes themselves: the central's modes are unchanged, the reports say so.
        for gate in ("east1", "east2"):
            record_status(db, GateStatus(site=site, gate=gate, online=True, at=utcnow(), mode="emergency"))
        before = {g.name: g.config_version for g in db.scalars(select(Gate).where(Gate.site_id == site))}
    manager = login(app, "manager")
    for page in ("/gates/", "/reports/", "/ticket-types/"):
        html = _text(manager.get(page))
        assert 'id="emergency-banner"' in html and "east1, east2" in html, page

    started = utcnow()
    manager.post("/gates/emergency", {"state": "off"})

    with web_ctx.sessions() as db:
        ended = db.get(Site, site).emergency_ended_at
        assert ended is not None and ended >= started
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "site.emergency")
                           .order_by(AuditEntry.id.desc())).first()
        assert (entry.actor, entry.detail["state"]) == ("manager", "off")
        for gate in db.scalars(select(Gate).where(Gate.site_id == site)):
            config = build_gate_config(db, gate)
            assert gate.config_version > before[gate.name]  # a new version: the gates apply it now
            assert config.emergency_ended_at == ended and config.mode == "normal"


def test_the_parks_fire_scope_reaches_its_gates(app, web_ctx):
    site = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        gate, _cred = register_gate(db, site, "west1", 1)
        db.flush()
        assert build_gate_config(db, gate).fire_scope == "zone"  # the default: the gates of the zone
        update_site(db, site, actor="manager", fire_scope="site")
        db.flush()
        assert build_gate_config(db, gate).fire_scope == "site"


def test_a_ticket_type_staff_must_check_is_set_on_the_web_and_named_to_the_gates(app, web_ctx):
    site = web_ctx.config.site
    manager = login(app, "manager")
    manager.get("/ticket-types/")
    res = manager.post("/ticket-types/", {"name": "儿童票", "entries": "1", "staff_check": "yes", "id_face": "yes",
                                          "bind_finger": "yes",
                                          "validity_days": "1", "price": "40", "min_headcount": "1",
                                          "max_headcount": "1"})
    assert res.status_code == 302
    html = _text(manager.get("/ticket-types/"))
    assert "staff check at the gate" in html and "ID card with face" in html
    with web_ctx.sessions.begin() as db:
        gate, _cred = register_gate(db, site, "south1", 1)
        db.flush()
        rules = {t.name: t for t in build_gate_config(db, gate).ticket_types}
    assert rules["儿童票"].staff_check is True and rules["儿童票"].id_face is True
    assert rules["儿童票"].bind_finger is True


def test_the_park_asks_id_card_with_face_of_every_id_card_entry(app, web_ctx):
    site = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        gate, _cred = register_gate(db, site, "north1", 1)
        db.flush()
        assert build_gate_config(db, gate).id_face is False
        update_site(db, site, actor="manager", id_face=True)
        db.flush()
        assert build_gate_config(db, gate).id_face is True
