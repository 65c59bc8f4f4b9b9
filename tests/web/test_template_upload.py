"""A template upload must be what the gates' devices use: random bytes are refused with a clear
message at the API and the desk page, nothing is stored or sent to gates; a module's template is taken."""

from __future__ import annotations

import base64
import io
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from central.models import BiometricTemplate, SyncChange
from central.services.passes import create_pass, create_person
from central.services.users import create_token
from tests.biometrics.test_template_formats import module_template
from tests.web.conftest import login


def _holder(web_ctx) -> tuple[int, int]:
    now = datetime.now(UTC)
    with web_ctx.sessions.begin() as db:
        person = create_person(db, web_ctx.config.site, "Chen Jing")
        annual_pass = create_pass(db, web_ctx.config.site, person_id=person.id, valid_from=now,
                                  valid_to=now + timedelta(days=365), card_uid="04A1B2C3")
        return person.id, annual_pass.id


def _stored(web_ctx) -> tuple[int, int]:
    """Templates stored, and deltas that carry a template to the gates."""
    with web_ctx.sessions() as db:
        templates = db.scalar(select(func.count()).select_from(BiometricTemplate))
        deltas = db.scalar(select(func.count()).select_from(SyncChange).where(SyncChange.kinds.like("%template%")))
    return templates, deltas


def test_the_api_refuses_random_bytes_as_a_fingerprint_and_takes_a_module_template(app, web_ctx):
    _person_id, pass_id = _holder(web_ctx)
    with web_ctx.sessions.begin() as db:
        _token, token = create_token(db, "enrolment-station", "staff")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/api/v1/passes/{pass_id}/templates"
    junk = base64.b64encode(random.Random(1).randbytes(512)).decode()
    res = client.post(url, json={"kind": "fingerprint", "data": junk, "finger": 2}, headers=headers)
    assert res.status_code == 400
    assert res.get_json()["error"] == "bad_template"
    assert "not an AS608 module template" in res.get_json()["detail"]
    res = client.post(url, json={"kind": "face", "data": junk}, headers=headers)
    assert res.status_code == 400 and "not a face template" in res.get_json()["detail"]
    assert _stored(web_ctx) == (0, 0)

    real = base64.b64encode(module_template()).decode()
    res = client.post(url, json={"kind": "fingerprint", "data": real, "finger": 2}, headers=headers)
    assert res.status_code == 201, res.get_json()
    assert res.get_json()["kind"] == "fingerprint" and res.get_json()["version"] == 1
    assert _stored(web_ctx) == (1, 1)


def test_the_desk_page_refuses_random_bytes_as_a_fingerprint_and_takes_a_module_template(app, web_ctx):
    person_id, _pass_id = _holder(web_ctx)
    staff = login(app, "staff")
    staff.get(f"/desk/persons/{person_id}")
    upload = {"finger": "2", "template": (io.BytesIO(random.Random(2).randbytes(512)), "finger.bin")}
    res = staff.post(f"/desk/persons/{person_id}/fingerprint", upload, content_type="multipart/form-data",
                     follow_redirects=True)
    page = res.get_data(as_text=True)
    assert "not an AS608 module template" in page
    assert "Fingerprint enrolled" not in page
    assert _stored(web_ctx) == (0, 0)

    upload = {"finger": "2", "template": (io.BytesIO(module_template()), "finger.bin")}
    res = staff.post(f"/desk/persons/{person_id}/fingerprint", upload, content_type="multipart/form-data",
                     follow_redirects=True)
    page = res.get_data(as_text=True)
    assert "Fingerprint enrolled" in page
    assert 'data-kind="fingerprint"' in page
    assert _stored(web_ctx) == (1, 1)
