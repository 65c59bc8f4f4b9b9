"""A person's data on request: `GET /api/v1/persons/<id>/export` returns everything the central holds
about them (templates as metadata only), for admin and staff alone, and the export is audited."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from central.app import create_app
from central.models import AnnualPass, AuditEntry, BiometricTemplate, Person
from central.services.ingest import ingest_batch
from central.services.passes import bind_template, create_pass, create_person
from central.services.users import create_token
from protocol import messages as m
from protocol.ids import new_event_id
from tests.central.conftest import add_gates, make_config, prepare
from tests.support.templates import face_bytes, fingerprint_bytes

FACE = face_bytes(37)  # distinctive: any leak of it is findable
FACE_AGAIN = face_bytes(38)
FINGER = fingerprint_bytes(53)


@pytest.fixture
def central(db_url, tmp_path):
    ctx = prepare(make_config(db_url, tmp_path), mqtt_on=False)
    add_gates(ctx, ctx.config.site, "east1")
    app = create_app(ctx.config, context=ctx, web=False)
    yield ctx, app
    ctx.close()


def _client(app, ctx, role: str):
    with ctx.sessions.begin() as db:
        _token, plaintext = create_token(db, f"{role}-desk", role)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {plaintext}"
    return client


def _event(site: str, ref: str, *, passed: bool, reason: str = "ok", minutes: int = 0) -> m.PassageEvent:
    return m.PassageEvent(id=new_event_id(), site=site, gate="east1", zone=1,
                          at=datetime.now(UTC) - timedelta(minutes=minutes), direction="in",
                          credential_kind="annual_pass", credential_ref=ref,
                          decision="granted" if passed else "refused", reason=reason, passed=passed)


def test_a_holder_gets_everything_the_central_holds_about_them_and_never_their_templates(central):
    ctx, app = central
    site = ctx.config.site
    start = datetime.now(UTC) - timedelta(days=1)
    with ctx.sessions.begin() as db:
        person = create_person(db, site, "Li Lei", phone="+86 138 0000 0001", id_last4="0020", actor="desk1")
        annual = create_pass(db, site, person_id=person.id, valid_from=start, valid_to=start + timedelta(days=365),
                             card_uid="04:A1:B2:C3", zones=[1], price="380.00", actor="desk1")
        bind_template(db, ctx.cipher, person.id, "face", FACE, actor="desk1")
        bind_template(db, ctx.cipher, person.id, "fingerprint", FINGER, finger=2, actor="desk1")
        bind_template(db, ctx.cipher, person.id, "face", FACE_AGAIN, actor="desk1")  # re-enrolled: version 2
        other = create_person(db, site, "Han Meimei", phone="+86 139 0000 0002", actor="desk1")
        other_pass = create_pass(db, site, person_id=other.id, valid_from=start, valid_to=start + timedelta(days=30),
                                 card_uid="04990000", actor="desk1")
        person_id, ref, other_ref = person.id, annual.ref, other_pass.ref
        records = list(db.scalars(select(BiometricTemplate.record).where(BiometricTemplate.person_id == person_id)))
    with ctx.sessions.begin() as db:
        ingest_batch(db, [_event(site, ref, passed=True, minutes=30),
                          _event(site, ref, passed=False, reason="anti_passback", minutes=20),
                          _event(site, other_ref, passed=True, minutes=10)])

    res = _client(app, ctx, "staff").get(f"/api/v1/persons/{person_id}/export")
    assert res.status_code == 200, res.get_json()
    assert res.headers["Cache-Control"] == "no-store" and "attachment" in res.headers["Content-Disposition"]
    doc = res.get_json()
    assert doc["person"] | {"created_at": None} == {
        "id": person_id, "holder": f"H{person_id}", "site": site, "name": "Li Lei", "phone": "+86 138 0000 0001",
        "id_last4": "0020", "created_at": None}
    [p] = doc["passes"]
    assert (p["ref"], p["card_uid"], p["status"], p["zones"], p["price"]) == (ref, "04A1B2C3", "active", [1], "380.00")
    assert datetime.fromisoformat(p["valid_from"]) == start
    assert sorted((t["kind"], t["finger"], t["version"]) for t in doc["templates"]) == \
        [("face", 0, 2), ("fingerprint", 2, 1)]
    assert all(set(t) == {"kind", "finger", "version", "created_at"} for t in doc["templates"])
    assert [(e["credential_ref"], e["passed"], e["reason"]) for e in doc["passages"]] == \
        [(ref, True, "ok"), (ref, False, "anti_passback")]
    assert doc["usage"] == [{"ref": ref, "entries": 1, "exits": 0, "last_entry_at": doc["usage"][0]["last_entry_at"],
                             "last_gate": "east1"}]
    actions = [(a["action"], a["target"]) for a in doc["audit"]]
    assert actions == [("person.create", f"H{person_id}"), ("pass.create", ref),
                       ("template.bind", f"H{person_id}"), ("template.bind", f"H{person_id}"),
                       ("template.bind", f"H{person_id}")]

    # Nothing of the templates in any form, nor anything of the other holder.
    body = res.get_data()
    for secret in (FACE, FACE_AGAIN, FINGER, *records):
        for form in (secret, base64.b64encode(secret), base64.urlsafe_b64encode(secret), secret.hex().encode(),
                     secret[:16].hex().encode(), base64.b64encode(secret[:48])):
            assert form not in body
    for foreign in (b"Han Meimei", b"0499", other_ref.encode(), b"+86 139"):
        assert foreign not in body

    # The export is itself in the audit log: who took it, about whom (no personal data in the entry).
    with ctx.sessions() as db:
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "person.export")).one()
    assert (entry.actor, entry.target, entry.detail) == ("token:staff-desk", f"H{person_id}",
                                                         {"passes": 1, "passages": 2})
    again = _client(app, ctx, "admin").get(f"/api/v1/persons/{person_id}/export").get_json()
    assert ("person.export", f"H{person_id}") in [(a["action"], a["target"]) for a in again["audit"]]


def test_the_export_is_refused_to_other_roles_and_without_credentials(central):
    ctx, app = central
    with ctx.sessions.begin() as db:
        person_id = create_person(db, ctx.config.site, "Li Lei").id
    for role in ("manager", "technician"):
        res = _client(app, ctx, role).get(f"/api/v1/persons/{person_id}/export")
        assert res.status_code == 403 and res.get_json()["error"] == "forbidden", role
        assert b"Li Lei" not in res.get_data()
    assert app.test_client().get(f"/api/v1/persons/{person_id}/export").status_code == 401
    assert _client(app, ctx, "staff").get("/api/v1/persons/999999/export").status_code == 404
    with ctx.sessions() as db:
        assert db.scalars(select(AuditEntry).where(AuditEntry.action == "person.export")).all() == []


def test_after_deletion_on_request_there_is_nothing_left_to_export(central):
    ctx, app = central
    site = ctx.config.site
    start = datetime.now(UTC) - timedelta(days=1)
    with ctx.sessions.begin() as db:
        person = create_person(db, site, "Li Lei", phone="+86 138 0000 0001")
        create_pass(db, site, person_id=person.id, valid_from=start, valid_to=start + timedelta(days=365),
                    card_uid="04A1B2C3")
        bind_template(db, ctx.cipher, person.id, "face", FACE)
        person_id = person.id
    assert _client(app, ctx, "manager").delete(f"/api/v1/persons/{person_id}").status_code == 200
    assert _client(app, ctx, "staff").get(f"/api/v1/persons/{person_id}/export").status_code == 404
    with ctx.sessions() as db:
        assert db.scalars(select(BiometricTemplate).where(BiometricTemplate.person_id == person_id)).all() == []
        person = db.get(Person, person_id)
        assert (person.name, person.phone, person.id_last4) == ("", None, None)
        # The pass stays for the revenue reports, ended and with no card: nothing links it to anyone.
        [(card, status)] = db.execute(select(AnnualPass.card_uid, AnnualPass.status)
                                      .where(AnnualPass.person_id == person_id)).all()
        assert (card, status) == ("", "expired")
