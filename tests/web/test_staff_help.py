"""Staff help at the gate: a holder's photo kept with consent (sealed, deleted with the templates), a gate's
request for staff shown with the holder's photo beside the camera's view, admitted once or refused with
the staff member's name in the audit log; end to end in headless Chromium with a running gate agent."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from central.models import AuditEntry, CommandRecord, HelpRequestRecord, HolderPhoto, PassageEventRecord, utcnow
from central.services import passes as pass_service
from central.services import staff_help as help_service
from central.services.gates import register_gate
from protocol import messages as m
from protocol.ids import holder_ref
from tests.web.conftest import login
from tests.web.test_browser import chromium, page, server  # noqa: F401, F811 (fixtures)


def _text(res) -> str:
    return res.get_data(as_text=True)


def a_jpeg(colour=(200, 120, 80)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (640, 480), colour).save(out, "JPEG")
    return out.getvalue()


def holder_with_photo(ctx, site: str, uid: str = "04811122") -> int:
    with ctx.sessions.begin() as db:
        person = pass_service.create_person(db, site, "Holder", actor="staff")
        db.flush()
        pass_service.create_pass(db, site, person_id=person.id, valid_from=utcnow() - timedelta(days=1),
                                 valid_to=utcnow() + timedelta(days=300), card_uid=uid, actor="staff")
        help_service.keep_holder_photo(db, ctx.cipher, person.id, a_jpeg(), actor="staff")
        return person.id


def test_the_photo_is_small_sealed_and_deleted_with_the_holder(web_ctx):
    site = web_ctx.config.site
    person_id = holder_with_photo(web_ctx, site)
    with web_ctx.sessions() as db:
        row = db.get(HolderPhoto, person_id)
        assert b"JFIF" not in row.record  # sealed, never the photo
        photo = help_service.holder_photo(db, web_ctx.cipher, holder_ref(person_id))
    from PIL import Image

    with Image.open(io.BytesIO(photo)) as img:
        assert max(img.size) <= 240
    with web_ctx.sessions.begin() as db:
        pass_service.forget_person(db, person_id, actor="manager")
    with web_ctx.sessions() as db:
        assert db.get(HolderPhoto, person_id) is None


def test_a_request_for_staff_is_answered_once_with_the_name_in_the_audit_log(app, web_ctx):
    site = web_ctx.config.site
    person_id = holder_with_photo(web_ctx, site)
    with web_ctx.sessions.begin() as db:
        register_gate(db, site, "g1", 1)
        help_service.record_help_request(db, web_ctx.cipher, m.HelpRequest(
            id="h-1", site=site, gate="g1", at=utcnow(), credential_kind="annual_pass", credential_ref="P1",
            holder_id=holder_ref(person_id), reason="not_same_person", frame=a_jpeg((10, 10, 200))))
    staff = login(app, "staff")
    html = _text(staff.get("/gates/g1/help/"))
    assert 'data-help="h-1"' in html and "Ticket belongs to another person" in html
    for image in ("photo", "frame"):
        res = staff.get(f"/gates/g1/help/h-1/{image}.jpg")
        assert res.status_code == 200 and res.mimetype == "image/jpeg" and "no-store" in res.headers["Cache-Control"]
    assert staff.get("/gates/g1/help/other/frame.jpg").status_code == 404

    staff.post("/gates/g1/help/h-1", {"decision": "admit"})

    with web_ctx.sessions() as db:
        row = db.get(HelpRequestRecord, "h-1")
        assert (row.status, row.decided_by, row.frame) == ("admitted", "staff", None)  # the view is gone
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "gate.help")).one()
        assert (entry.actor, entry.detail["decision"]) == ("staff", "admitted")
        command = db.scalars(select(CommandRecord).where(CommandRecord.kind == "staff_admit")).one()
        assert m.decode(m.Command, command.payload).help_id == "h-1"
    again = staff.post("/gates/g1/help/h-1", {"decision": "refuse"}, follow_redirects=True)
    assert "already answered" in _text(again)
    assert 'id="no-requests"' in _text(staff.get("/gates/g1/help/panel"))


def test_a_finger_bound_ticket_shows_its_first_entry_view_in_the_holders_place(app, web_ctx):
    site = web_ctx.config.site
    first_view = a_jpeg((0, 200, 0))
    with web_ctx.sessions.begin() as db:
        register_gate(db, site, "g2", 1)
        help_service.record_help_request(db, web_ctx.cipher, m.HelpRequest(
            id="h-2", site=site, gate="g2", at=utcnow(), credential_kind="qr", credential_ref="T8101",
            reason="not_same_person", frame=a_jpeg(), photo=first_view))
        assert first_view not in db.get(HelpRequestRecord, "h-2").photo  # sealed
    staff = login(app, "staff")
    res = staff.get("/gates/g2/help/h-2/photo.jpg")
    assert res.status_code == 200 and res.data == first_view
    staff.post("/gates/g2/help/h-2", {"decision": "refuse"})
    with web_ctx.sessions() as db:
        row = db.get(HelpRequestRecord, "h-2")
        assert (row.status, row.photo, row.frame) == ("refused", None, None)


def test_the_staff_page_is_for_staff_of_the_park_only(app, web_ctx):
    with web_ctx.sessions.begin() as db:
        register_gate(db, web_ctx.config.site, "g1", 1)
    assert app.test_client().get("/gates/g1/help/").status_code in (302, 401)
    assert login(app, "staff").get("/gates/nope/help/").status_code == 404


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.faces
@pytest.mark.slow
def test_staff_admit_a_holder_whose_face_was_not_recognised(server, page, tmp_path, mosquitto, faces_dir):  # noqa: F811
    pytest.importorskip("face_recognition")
    from playwright.sync_api import expect

    from biometrics.face import encode_frame
    from central.bus.ingest_worker import IngestWorker
    from drivers.sim.turnstile_sim import TurnstileSimulator
    from gate_agent.agent import GateAgent
    from gate_agent.display import ConsoleDisplay
    from tests.gate_agent.conftest import file_config
    from tests.support.waiting import poll
    from tests.web.test_browser import log_in

    ctx = server.ctx
    site = ctx.config.site
    obama = (faces_dir / "obama" / "1.jpg").read_bytes()
    with ctx.sessions.begin() as db:
        register_gate(db, site, "g1", 1, hardware={"controller_profile": "tripod-coil", "passage_timeout_s": 2.0})
        person = pass_service.create_person(db, site, "Barack Obama", actor="staff")
        db.flush()
        pass_service.create_pass(db, site, person_id=person.id, valid_from=utcnow() - timedelta(days=1),
                                 valid_to=utcnow() + timedelta(days=300), card_uid="04811122", actor="staff")
        pass_service.bind_template(db, ctx.cipher, person.id, "face", encode_frame(obama)[0].to_bytes(),
                                   actor="staff")
        help_service.keep_holder_photo(db, ctx.cipher, person.id, obama, actor="staff")
    ctx.publisher.flush()
    ingest = IngestWorker(ctx.config, ctx.sessions, cipher=ctx.cipher,
                          worker_id=f"help-{uuid.uuid4().hex[:6]}").start()
    sim = TurnstileSimulator("tripod-coil", transport="tcp").start()
    sim.pass_delay_s = 0.05
    camera = {"files": str(faces_dir / "biden" / "1.jpg"), "fps": 20}  # not the holder at the camera
    agent = GateAgent(file_config(tmp_path, mosquitto, site, "g1", turnstile=sim, devices={"camera": camera}),
                      display=ConsoleDisplay("g1", stream=io.StringIO())).start()
    try:
        poll(lambda: agent.active is not None and agent.store.pass_by_uid("04811122"), timeout=20,
             what="the gate's config and the pass")
        refused = agent.present("annual_pass", "04811122")
        assert refused.reason == "not_same_person" and sim.counters == (0, 0)
        # The park speaks Chinese: the visitor is told staff are on their way.
        assert agent.display.wait_notice(lambda n: n.lines == ("已呼叫工作人员，请稍候",))

        log_in(page, server, "staff")
        page.goto(f"{server.url}/gates/g1/help/")
        request = page.locator(".help-request")
        expect(request).to_have_count(1, timeout=15_000)
        expect(request).to_contain_text("Ticket belongs to another person")
        for image in (".holder-photo", ".camera-frame"):  # both pictures load, side by side
            page.wait_for_function(f"document.querySelector('{image}').naturalWidth > 0")
        expect(page.locator("#recent-refusals tr[data-reason='not_same_person']")).to_have_count(1,
                                                                                                 timeout=15_000)
        page.click(".help-request button.admit")
        expect(page.locator(".flash")).to_contain_text("Admitted once")

        poll(lambda: sim.counters == (1, 0), timeout=10, what="the arm turning for the admitted holder")
        with ctx.sessions() as db:
            entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "gate.help")).one()
            assert (entry.actor, entry.detail["decision"]) == ("staff", "admitted")

        def counted():
            with ctx.sessions() as db:
                return db.scalars(select(PassageEventRecord).where(
                    PassageEventRecord.gate == "g1", PassageEventRecord.passed.is_(True))).all()

        (passage,) = poll(counted, timeout=15, what="the staff admission stored as a passage")
        assert (passage.credential_kind, passage.decision, passage.reason) == ("annual_pass", "granted", "ok")
    finally:
        agent.stop()
        sim.stop()
        ingest.stop()
