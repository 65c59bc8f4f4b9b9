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
@pytest.mark.parametrize("scale", ["10000", "41", "0", "-1", "abc", "1.5", "1e3"])
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
    assert res.status_code == 422 and "cannot be valid at these times" in res.get_data(as_text=True)
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


# --- request bodies, paths and the query string ---------------------------------------------------

HUGE = "@1e400@"  # sent as the bare JSON number 1e400
_TYPE = {"name": "Day"}
_TICKET = {"ticket_type": 1}
_PASS = {"holder_name": "Li Lei", "valid_from": "2031-01-01T00:00:00+08:00", "valid_to": "2032-01-01T00:00:00+08:00"}
_SLOT = {"slot_start": "2031-06-01T10:00:00+08:00", "slot_end": "2031-06-01T11:00:00+08:00"}

BAD_REQUESTS = [
    # (method, url, role, body, error, field)
    ("post", "/persons", "staff", {"name": "x" * 201}, "bad_name", "name"),
    ("post", "/persons", "staff", {"name": ""}, "bad_name", "name"),
    ("post", "/persons", "staff", {"name": "Li\x00Lei"}, "bad_name", "name"),
    ("post", "/persons", "staff", {"name": "Li\nLei"}, "bad_name", "name"),
    ("post", "/persons", "staff", {"name": 5}, "bad_name", "name"),
    ("post", "/persons", "staff", {"name": "Li Lei", "phone": "1" * 33}, "bad_phone", "phone"),
    ("post", "/persons", "staff", {"name": "Li Lei", "phone": "call me"}, "bad_phone", "phone"),
    ("post", "/persons", "staff", {"name": "Li Lei", "id_last4": "12345"}, "bad_id_last4", "id_last4"),
    ("post", "/persons", "staff", {"name": "Li Lei", "nickname": "Lei"}, "unknown_field", "nickname"),
    ("post", "/persons", "staff", {}, "missing", "name"),
    ("post", "/persons", "staff", [], "bad_field", None),
    ("post", "/ticket-types", "manager", _TYPE | {"price": HUGE}, "bad_price", "price"),
    ("post", "/ticket-types", "manager", _TYPE | {"price": "1e400"}, "bad_price", "price"),
    ("post", "/ticket-types", "manager", _TYPE | {"price": "abc"}, "bad_price", "price"),
    ("post", "/ticket-types", "manager", _TYPE | {"price": -1}, "bad_price", "price"),
    ("post", "/ticket-types", "manager", _TYPE | {"price": "NaN"}, "bad_price", "price"),
    ("post", "/ticket-types", "manager", _TYPE | {"price": "Infinity"}, "bad_price", "price"),
    ("post", "/ticket-types", "manager", _TYPE | {"price": 80.5}, "bad_price", "price"),
    ("post", "/ticket-types", "manager", _TYPE | {"price": "80.005"}, "bad_price", "price"),
    ("post", "/ticket-types", "manager", _TYPE | {"price": "12345678901"}, "bad_price", "price"),
    ("post", "/ticket-types", "manager", _TYPE | {"same_person": "yes"}, "bad_same_person", "same_person"),
    ("post", "/ticket-types", "manager", _TYPE | {"entries": 2**40}, "bad_entries", "entries"),
    ("post", "/ticket-types", "manager", _TYPE | {"min_gap_s": 10**12}, "bad_min_gap_s", "min_gap_s"),
    ("post", "/ticket-types", "manager", _TYPE | {"zones": [33]}, "bad_zones", "zones[0]"),
    ("post", "/ticket-types", "manager", _TYPE | {"zones": list(range(1, 33)) * 2}, "bad_zones", "zones"),
    ("post", "/ticket-types", "manager", _TYPE | {"id": 70000}, "bad_id", "id"),
    ("post", "/ticket-types", "manager", {"name": "x" * 201}, "bad_name", "name"),
    ("post", "/tickets", "staff", _TICKET | {"headcount": 0}, "bad_headcount", "headcount"),
    ("post", "/tickets", "staff", _TICKET | {"headcount": 256}, "bad_headcount", "headcount"),
    ("post", "/tickets", "staff", _TICKET | {"headcount": "3"}, "bad_headcount", "headcount"),
    ("post", "/tickets", "staff", _TICKET | {"holder_name": "x" * 201}, "bad_holder_name", "holder_name"),
    ("post", "/tickets", "staff", _TICKET | {"channel_ref": "x" * 201}, "bad_channel_ref", "channel_ref"),
    ("post", "/tickets", "staff", _TICKET | {"id_number": "1" * 33}, "bad_id_number", "id_number"),
    ("post", "/tickets", "staff", _TICKET | {"id_number": "12345"}, "bad_id_number", "id_number"),
    ("post", "/tickets", "staff", _TICKET | {"price": HUGE}, "bad_price", "price"),
    ("post", "/tickets", "staff", _TICKET | {"valid_from": "yesterday"}, "bad_valid_from", "valid_from"),
    ("post", "/tickets", "staff", _TICKET | {"valid_from": "2031-01-01T00:00:00"}, "bad_valid_from", "valid_from"),
    ("post", "/tickets", "staff", _TICKET | {"visit_date": "2031-02-30"}, "bad_visit_date", "visit_date"),
    ("post", "/tickets", "staff", {"ticket_type": 70000}, "bad_ticket_type", "ticket_type"),
    ("post", "/tickets", "staff", {"ticket_type": True}, "bad_ticket_type", "ticket_type"),
    ("post", "/tickets/bulk", "staff", {"ticket": _TICKET, "count": 10_001}, "bad_count", "count"),
    ("post", "/tickets/bulk", "staff", {"ticket": _TICKET, "count": 0}, "bad_count", "count"),
    ("post", "/tickets/bulk", "staff", {"tickets": []}, "bad_tickets", "tickets"),
    ("post", "/tickets/bulk", "staff", {"tickets": [_TICKET | {"headcount": 0}]}, "bad_headcount",
     "tickets[0].headcount"),
    ("post", "/tickets/bulk", "staff", {"tickets": [_TICKET], "count": 2}, "bad_field", None),
    ("post", "/tickets/bulk", "staff", {"ticket": _TICKET}, "missing", None),
    ("post", "/quotas", "manager", _SLOT | {"capacity": -1}, "bad_capacity", "capacity"),
    ("post", "/quotas", "manager", _SLOT | {"capacity": 2**31}, "bad_capacity", "capacity"),
    ("post", "/quotas", "manager", {"slot_start": "1970-01-01T10:00:00+08:00",
                                    "slot_end": "1970-01-01T11:00:00+08:00", "capacity": 5}, "bad_slot", None),
    ("post", "/bookings", "staff", {"ticket_type": 1, "slot_start": _SLOT["slot_start"], "id_number": "1101\n05"},
     "bad_id_number", "id_number"),
    ("post", "/passes", "staff", _PASS | {"person_id": 0}, "bad_person_id", "person_id"),
    ("post", "/passes", "staff", _PASS | {"person_id": "1"}, "bad_person_id", "person_id"),
    ("post", "/passes", "staff", _PASS | {"person_id": 2**70}, "bad_person_id", "person_id"),
    ("post", "/passes", "staff", _PASS | {"card_uid": "ZZ"}, "bad_card_uid", "card_uid"),
    ("post", "/passes", "staff", _PASS | {"price": "1e400"}, "bad_price", "price"),
    ("post", "/passes", "staff", _PASS | {"phone": "1" * 33}, "bad_phone", "phone"),
    ("post", "/passes", "staff", {"holder_name": "Li Lei"}, "missing", "valid_from"),
    ("post", "/passes/1/templates", "staff", {"kind": "face", "data": "!!"}, "bad_data", "data"),
    ("post", "/passes/1/templates", "staff", {"kind": "iris", "data": "AAAA"}, "bad_kind", "kind"),
    ("post", "/passes/1/templates", "staff", {"kind": "fingerprint", "data": "AAAA", "finger": 11}, "bad_finger",
     "finger"),
    ("post", "/tickets/1/refund", "staff", {"reason": "x" * 501}, "bad_reason", "reason"),
    ("post", "/gates", "technician", {"name": "bad gate/+", "zone": 1}, "bad_name", "name"),
    ("post", "/gates", "technician", {"name": "g" * 65, "zone": 1}, "bad_name", "name"),
    ("post", "/gates", "technician", {"name": "g2", "zone": 40}, "bad_zone", "zone"),
    ("post", "/gates", "technician", {"name": "g2", "zone": 1, "hardware": {"unit_id": 300}}, "bad_unit_id",
     "hardware.unit_id"),
    ("post", "/gates", "technician", {"name": "g2", "zone": 1, "hardware": {"relay": 1}}, "unknown_field",
     "hardware.relay"),
    ("patch", "/gates/g1/config", "technician", {"direction": "sideways"}, "bad_direction", "direction"),
    ("patch", "/gates/g1/config", "technician", {"hardware": {"passage_timeout_s": 0}}, "bad_passage_timeout_s",
     "hardware.passage_timeout_s"),
    ("post", "/gates/g1/mode", "technician", {"mode": "fast"}, "bad_mode", "mode"),
    ("post", "/gates/g1/command", "technician", {"kind": "explode"}, "bad_kind", "kind"),
    ("post", "/site/command", "manager", {"kind": "set_mode", "mode": "party"}, "bad_mode", "mode"),
]


@pytest.mark.parametrize(("method", "url", "role", "body", "error", "field"), BAD_REQUESTS,
                         ids=[f"{m} {u} {e} {i}" for i, (m, u, _r, _b, e, _f) in enumerate(BAD_REQUESTS)])
def test_a_request_out_of_bounds_is_refused_with_a_400_naming_the_field(api, method, url, role, body, error, field):
    import json

    api.post("/gates", role="technician", json={"name": "g1", "zone": 1})
    raw = json.dumps(body).replace(f'"{HUGE}"', "1e400")  # the JSON number, which no float holds
    _refused(api.open(method.upper(), url, role=role, data=raw, content_type="application/json"), 400, error, field)


@pytest.mark.parametrize("url", ["/tickets/0", "/tickets/-1", "/tickets/abc", "/tickets/99999999999999999999999",
                                 "/passes/99999999999999999999999", "/persons/99999999999999999999999/export",
                                 "/persons/0/export", "/tickets/1/qr.gif", "/nothing-here"])
def test_a_malformed_or_unknown_record_id_is_a_json_404(api, url):
    _refused(api.get(url), 404)


@pytest.mark.parametrize("name", ["bad%20name", "a" * 65, "g%00", "g%0A"])
def test_a_malformed_gate_name_in_the_path_is_a_json_400(api, name):
    _refused(api.get(f"/gates/{name}/config", role="technician"), 400, "bad_gate_name")
    _refused(api.post(f"/gates/{name}/mode", role="technician", json={"mode": "locked"}), 400, "bad_gate_name")


@pytest.mark.parametrize("site", ["bad/site", "x" * 65, "a%00b", ""])
def test_a_malformed_site_is_a_json_400(api, site):
    res = api.get(f"/occupancy?site={site}")
    if site == "":
        assert res.status_code == 200  # absent: the configured site
    else:
        _refused(res, 400, "bad_site", "site")


def test_a_wrong_method_and_a_body_that_is_not_json_are_json_errors(api):
    _refused(api.open("PUT", "/tickets"), 405, "method_not_allowed")
    _refused(api.post("/persons", data="name=Li", content_type="application/x-www-form-urlencoded"), 400, "bad_json")
    _refused(api.post("/persons", data="{not json", content_type="application/json"), 400, "bad_json")
    _refused(api.post("/persons", data=b'{"name": "\xff"}', content_type="application/json"), 400, "bad_json")


def test_a_body_past_the_limit_is_a_json_413(api):
    res = api.post("/persons", data=b'{"name": "' + b"x" * (5 * 1024 * 1024) + b'"}', content_type="application/json")
    _refused(res, 413)


def test_the_api_only_process_answers_json_for_unknown_routes_and_methods(web_ctx):
    from central.app import create_app

    client = create_app(web_ctx.config, context=web_ctx, web=False).test_client()
    _refused(client.get("/api/v1/nothing-here"), 404, "not_found")
    _refused(client.get("/api/v1/tickets/-1"), 404, "not_found")
    _refused(client.delete("/api/v1/keys"), 405, "method_not_allowed")


def test_good_requests_still_pass(api):
    typed = api.post("/ticket-types", role="manager", json=_TYPE | {"price": "80.50", "zones": [1, 2]})
    assert typed.status_code == 201 and typed.get_json()["price"] == "80.50"
    assert api.post("/ticket-types", role="manager", json=_TYPE | {"price": 80}).status_code == 201
    ticket = api.post("/tickets", json=_TICKET | {"holder_name": "李雷", "channel": "ota", "channel_ref": "CTRIP-1"})
    assert ticket.status_code == 201 and ticket.get_json()["holder_name"] == "李雷"
    assert api.post(f"/tickets/{ticket.get_json()['id']}/refund").status_code == 200
    person = api.post("/persons", json={"name": "Li Lei", "phone": "+86 (138) 0000-0001", "id_last4": "002X"})
    assert person.status_code == 201
    made = api.post("/passes", json=_PASS | {"person_id": person.get_json()["id"], "card_uid": "04:a2:b3:c4",
                                            "price": "300"})
    assert made.status_code == 201 and made.get_json()["card_uid"] == "04A2B3C4"
    assert api.post("/gates", role="technician", json={"name": "east_1", "zone": 2, "direction": "in",
                                                        "hardware": {"unit_id": 3}}).status_code == 201
    gate = api.patch("/gates/east_1/config", role="technician", json={"hardware": {"passage_timeout_s": 5}})
    assert gate.status_code == 200 and gate.get_json()["hardware"] == {"passage_timeout_s": 5.0}


def test_an_unexpected_error_is_a_json_500_that_tells_nothing(api, monkeypatch):
    from central.services import passes

    def broken(*_a, **_k):
        raise RuntimeError("no room for Li Lei, +86 138 0000 0001")

    monkeypatch.setattr(passes, "create_person", broken)
    res = api.post("/persons", json={"name": "Li Lei", "phone": "+86 138 0000 0001"})
    assert res.status_code == 500 and res.mimetype == "application/json"
    body = res.get_json()
    assert body["error"] == "internal_error"
    assert "Li Lei" not in res.get_data(as_text=True) and "138" not in res.get_data(as_text=True)


@pytest.mark.postgres
@pytest.mark.parametrize(("body", "error"), [
    ({"name": "Li Lei", "phone": "1" * 33}, "bad_phone"),  # String(32): a 500 with the row in the log
    ({"name": "x" * 201}, "bad_name"),
    ({"name": "Li\x00Lei"}, "bad_name"),  # PostgreSQL text cannot hold NUL
])
def test_on_postgresql_a_value_the_column_cannot_hold_is_a_400_not_a_500(api, body, error):
    _refused(api.post("/persons", json=body), 400, error)


@pytest.mark.postgres
@pytest.mark.parametrize("url", ["/passes/2147483648", "/persons/2147483648/export", "/tickets/9223372036854775807",
                                 "/tickets/9223372036854775808"])
def test_on_postgresql_an_id_past_its_column_is_a_404_not_a_500(api, url):
    """Found by Schemathesis: PostgreSQL casts the parameter to the column's INTEGER and fails."""
    _refused(api.get(url), 404)
