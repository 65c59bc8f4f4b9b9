"""Face entry on the public booking site: where the park offers it, each person may add a selfie; a photo
the enrolment checks refuse is said at that person's field in the visitor's language, with the form kept;
a usable one gives the person face entry, said on the booking page."""

from __future__ import annotations

import io
from datetime import datetime, time, timedelta

import pytest
from sqlalchemy import select

from central.models import BookingPerson
from central.services import visitor_bookings as vb
from central.services.tickets import TicketTypeSpec, define_ticket_type
from tests.web.test_booking_site import TZ, ZHANG, fill, visitor_browser


@pytest.fixture
def face_park(web_ctx, app):
    site = web_ctx.config.site
    day = (datetime.now(TZ) + timedelta(days=1)).date()
    with web_ctx.sessions.begin() as db:
        define_ticket_type(db, site, TicketTypeSpec(name="Booked visit", id=7, real_name=True))
        vb.update_settings(db, site, "manager", ticket_type_id=7, days_ahead=7, party_max=5, cancel_before_min=60,
                           close_before_min=0, retention_days=30, face_entry=True)
        slot = vb.set_slot(db, site, "manager", day=day, start=time(9), end=time(11), capacity=10).id
    app.config["BOOKING_POW_BITS"] = 8
    return web_ctx, slot


def png(colour=(120, 160, 200)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (400, 400), colour).save(out, "PNG")
    return out.getvalue()


def send(browser, slot, photo: bytes | None, name="Zhang San"):
    page = browser.get(f"/book/slot/{slot}").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page and 'name="person-1-face"' in page
    data = fill(page, slot, [(name, "id_card", ZHANG)])
    if photo is not None:
        data["person-1-face"] = (io.BytesIO(photo), "selfie.jpg")
    return browser.post(f"/book/slot/{slot}", data, content_type="multipart/form-data")


@pytest.mark.parametrize(("language", "said"), [("en", "No face was found in the photo"),
                                                ("zh-CN,zh;q=0.9", "照片中没有找到人脸")])
def test_a_photo_without_a_face_is_said_at_the_persons_field_and_the_form_is_kept(app, face_park, language, said):
    pytest.importorskip("face_recognition")
    ctx, slot = face_park
    res = send(visitor_browser(app, language), slot, png(), name="张三")
    text = res.get_data(as_text=True)
    assert res.status_code == 400 and said in text and 'id="err-person-1-face"' in text
    assert "张三" in text and ZHANG in text  # what was typed is kept
    with ctx.sessions() as db:
        assert db.scalar(select(BookingPerson.id)) is None


def test_not_a_photo_at_all_is_refused_without_a_500(app, face_park):
    ctx, slot = face_park
    res = send(visitor_browser(app, "en"), slot, b"GIF89a not really")
    assert res.status_code == 400 and "cannot be read" in res.get_data(as_text=True)


def test_a_selfie_gives_the_person_face_entry_sealed_at_the_central(app, face_park, faces_dir):
    pytest.importorskip("face_recognition")
    ctx, slot = face_park
    browser = visitor_browser(app, "en")
    photo = (faces_dir / "obama" / "1.jpg").read_bytes()
    res = send(browser, slot, photo)
    assert res.status_code == 302, res.get_data(as_text=True)
    page = browser.get(res.headers["Location"]).get_data(as_text=True)
    assert "Face entry: look into the gate's camera on your visit day" in page
    with ctx.sessions() as db:
        person = db.scalar(select(BookingPerson))
        assert person.face_entry and len(person.face_record) > 512 and not person.face_on_gates
    from biometrics.face import FaceTemplate, encode_frame
    from protocol.ids import ticket_ref

    sealed = FaceTemplate.from_bytes(ctx.cipher.decrypt(person.face_record, ticket_ref(person.ticket_id), "face"))
    assert sealed.distance(encode_frame(str(faces_dir / "obama" / "2.jpg"))[0]) < 0.5  # the same person


def test_without_face_entry_the_form_has_no_photo_field_and_refuses_one(app, web_ctx, face_park):
    ctx, slot = face_park
    with ctx.sessions.begin() as db:
        vb.update_settings(db, ctx.config.site, "manager", ticket_type_id=7, days_ahead=7, party_max=5,
                           cancel_before_min=60, close_before_min=0, retention_days=30, face_entry=False)
    browser = visitor_browser(app, "en")
    page = browser.get(f"/book/slot/{slot}").get_data(as_text=True)
    assert 'name="person-1-face"' not in page
    data = fill(page, slot, [("Zhang San", "id_card", ZHANG)]) | {"person-1-face": (io.BytesIO(png()), "x.png")}
    res = browser.post(f"/book/slot/{slot}", data, content_type="multipart/form-data")
    assert res.status_code == 400 and "does not offer face entry" in res.get_data(as_text=True)
