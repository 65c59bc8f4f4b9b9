"""The API's edge: every parameter bounded and checked before any work, with a JSON 4xx naming it."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from central.services.users import create_token
from tests.web.conftest import login


@pytest.fixture
def api(app, web_ctx):
    """A test client with a bearer token per role: `api.get(url, role="staff")`."""
    tokens = {}
    with web_ctx.sessions.begin() as db:
        for role in ("admin", "manager", "staff", "technician"):
            tokens[role] = create_token(db, f"{role}-box", role)[1]

    class Api:
        client = app.test_client()

        def open(self, method: str, url: str, role: str = "staff", **kw):
            headers = {"Authorization": f"Bearer {tokens[role]}", **kw.pop("headers", {})}
            return self.client.open("/api/v1" + url, method=method, headers=headers, **kw)

        def get(self, url: str, **kw):
            return self.open("GET", url, **kw)

        def post(self, url: str, **kw):
            return self.open("POST", url, **kw)

        def patch(self, url: str, **kw):
            return self.open("PATCH", url, **kw)

    return Api()


def _refused(res, status: int, error: str | None = None, field: str | None = None) -> dict:
    assert res.status_code == status, (res.status_code, res.get_data(as_text=True)[:300])
    assert res.mimetype == "application/json", res.get_data(as_text=True)[:300]
    body = res.get_json()
    assert body["detail"], body
    if error is not None:
        assert body["error"] == error, body
    if field is not None:
        assert body.get("field") == field, body
    return body


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


# --- QR images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["png", "svg"])
@pytest.mark.parametrize("scale", ["10000", "41", "0", "-1", "abc", "1.5", ""])
def test_a_qr_scale_out_of_bounds_is_refused_before_anything_is_drawn(api, kind, scale):
    """A scale of 10,000 once allocated tens of gigabytes (memory grows with its square)."""
    ticket = api.post("/tickets", json={"ticket_type": 1}).get_json()
    body = _refused(api.get(f"/tickets/{ticket['id']}/qr.{kind}?scale={scale}"), 400, "bad_scale", "scale")
    assert "scale" in body["detail"]


def test_a_qr_image_is_drawn_at_every_scale_in_bounds(api):
    ticket = api.post("/tickets", json={"ticket_type": 1}).get_json()
    modules = 41 + 2 * 4  # version 6 at level M, and a quiet zone of 4 around it
    assert _png_size(api.get(f"/tickets/{ticket['id']}/qr.png").data) == (8 * modules, 8 * modules)
    for scale in (1, 40):
        res = api.get(f"/tickets/{ticket['id']}/qr.png?scale={scale}")
        assert res.status_code == 200 and res.mimetype == "image/png"
        assert _png_size(res.data) == (scale * modules, scale * modules)
    svg = api.get(f"/tickets/{ticket['id']}/qr.svg?scale=40")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml" and b"<svg" in svg.data[:200]


def test_the_service_refuses_a_qr_scale_out_of_bounds_too():
    from central.services import Invalid
    from central.services.tickets import qr_png, qr_svg

    for draw in (qr_png, qr_svg):
        for scale in (0, 41, 10_000):
            with pytest.raises(Invalid) as refused:
                draw("A" * 152, scale=scale)
            assert refused.value.code == "bad_scale"


@pytest.mark.parametrize("limit", ["-1", "0", "1001", "abc", "99999999999999999999"])
def test_the_conflicts_limit_is_bounded(api, limit):
    _refused(api.get(f"/conflicts?limit={limit}", role="manager"), 400, "bad_limit", "limit")


def test_the_conflicts_limit_within_bounds_answers(api):
    for limit in ("1", "1000"):
        res = api.get(f"/conflicts?limit={limit}", role="manager")
        assert res.status_code == 200 and res.get_json() == {"conflicts": []}


# --- tickets whose times no code can carry ------------------------------------------------------


@pytest.mark.parametrize("window", [
    {"visit_date": "2020-01-01"},  # the code counts minutes from 2024-01-01
    {"visit_date": "0001-01-01"},
    {"visit_date": "9999-12-31"},  # the day after does not exist
    {"valid_from": "1970-01-01T00:00:00+00:00", "valid_to": "1970-01-02T00:00:00+00:00"},
], ids=["2020", "year-1", "year-9999", "1970"])
def test_a_sale_for_times_no_code_can_carry_is_refused_and_nothing_is_stored(api, web_ctx, window):
    from sqlalchemy import func, select

    from central.models import Ticket

    _refused(api.post("/tickets", json={"ticket_type": 1} | window), 400, "bad_validity")
    with web_ctx.sessions() as db:
        assert db.scalar(select(func.count(Ticket.id))) == 0


def test_the_desk_refuses_a_sale_for_a_past_year_instead_of_storing_a_ticket_without_a_qr(app, web_ctx):
    from sqlalchemy import func, select

    from central.models import Ticket

    staff = login(app, "staff")
    res = staff.post("/desk/tickets", {"ticket_type": "1", "visit_date": "2020-01-01"}, follow_redirects=True)
    assert res.status_code == 200 and "code cannot carry" in res.get_data(as_text=True)
    with web_ctx.sessions() as db:
        assert db.scalar(select(func.count(Ticket.id))) == 0


def test_a_stored_ticket_no_code_can_carry_is_shown_without_a_code_and_its_qr_is_a_clear_refusal(app, api, web_ctx):
    """Tickets like this were stored before the sale checked the times (the desk sold them)."""
    from central.models import Ticket

    with web_ctx.sessions.begin() as db:
        old = Ticket(site_id=web_ctx.config.site, ticket_type_id=1, status="valid",
                     valid_from=datetime(2020, 1, 1, tzinfo=UTC), valid_to=datetime(2020, 1, 2, tzinfo=UTC))
        db.add(old)
        db.flush()
        ticket_id = old.id
    shown = api.get(f"/tickets/{ticket_id}")
    assert shown.status_code == 200 and shown.get_json()["code"] is None
    assert shown.get_json()["valid_from"].startswith("2020-01-01")
    for kind in ("png", "svg"):
        _refused(api.get(f"/tickets/{ticket_id}/qr.{kind}"), 409, "no_code")
    assert login(app, "staff").get(f"/desk/tickets/{ticket_id}/qr.svg").status_code == 404
