"""Issuing through the JSON API: ticket types, signed codes, bulk orders, bookings, QR images."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from protocol.ticket_code import KeyRing, PublicKey


def _keyring(client) -> KeyRing:
    keys = client.get("/api/v1/keys").get_json()["keys"]
    return KeyRing([PublicKey(k["key_id"], base64.b64decode(k["public"])) for k in keys])


def _type(client, **fields) -> int:
    body = {"name": "Day ticket", "entries": 1, "price": "120.00"} | fields
    res = client.post("/api/v1/ticket-types", json=body)
    assert res.status_code == 201, res.get_json()
    return res.get_json()["id"]


def test_an_issued_ticket_code_verifies_with_the_published_public_key(client):
    type_id = _type(client)
    res = client.post("/api/v1/tickets", json={"ticket_type": type_id, "visit_date": "2031-05-01",
                                              "channel": "ota", "channel_ref": "CTRIP-123", "headcount": 3})
    assert res.status_code == 201, res.get_json()
    ticket = res.get_json()
    claims = _keyring(client).verify(ticket["code"])
    assert claims.ref == ticket["ref"] == f"T{ticket['id']}"
    assert claims.ticket_type == type_id and claims.headcount == 3
    assert claims.valid_from == datetime(2031, 4, 30, 16, 0, tzinfo=UTC)  # local midnight in Asia/Shanghai
    assert ticket["channel"] == "ota" and ticket["price"] == "120.00"
    # The same ticket always shows the same code.
    assert client.get(f"/api/v1/tickets/{ticket['id']}").get_json()["code"] == ticket["code"]


def test_a_bulk_order_for_a_travel_agency_issues_every_ticket_at_once(client):
    type_id = _type(client)
    res = client.post("/api/v1/tickets/bulk", json={"count": 40, "ticket": {
        "ticket_type": type_id, "visit_date": "2031-05-02", "channel": "agency", "channel_ref": "Sunny Tours",
        "price": "80"}})
    assert res.status_code == 201, res.get_json()
    tickets = res.get_json()["tickets"]
    assert len({t["id"] for t in tickets}) == 40
    ring = _keyring(client)
    assert {ring.verify(t["code"]).ticket_id for t in tickets} == {t["id"] for t in tickets}
    assert {t["price"] for t in tickets} == {"80.00"}


def test_a_bad_request_is_answered_with_a_json_error_naming_the_problem(client):
    res = client.post("/api/v1/tickets", json={"ticket_type": 999})
    assert res.status_code == 404 and res.get_json()["error"] == "no_ticket_type"
    type_id = _type(client)
    res = client.post("/api/v1/tickets", json={"ticket_type": type_id, "channel": "street"})
    assert res.status_code == 400 and res.get_json()["error"] == "bad_channel"


def test_requests_without_a_valid_token_are_refused(client):
    res = client.get("/api/v1/occupancy", headers={"Authorization": "Bearer nope"})
    assert res.status_code == 401 and res.get_json()["error"] == "bad_token"


def test_a_staff_token_may_sell_but_not_register_gates(client, ctx):
    from central.services.users import create_token

    with ctx.sessions.begin() as db:
        _t, staff = create_token(db, "desk-1", "staff")
    headers = {"Authorization": f"Bearer {staff}"}
    assert client.post("/api/v1/gates", json={"name": "g1", "zone": 1}, headers=headers).status_code == 403
    type_id = _type(client)
    assert client.post("/api/v1/tickets", json={"ticket_type": type_id}, headers=headers).status_code == 201


def test_booking_against_a_slot_quota_is_refused_when_the_slot_is_full(client):
    type_id = _type(client, name="Real-name", real_name=True)
    start = datetime(2031, 6, 1, 2, 0, tzinfo=UTC)
    res = client.post("/api/v1/quotas", json={"slot_start": start.isoformat(),
                                             "slot_end": (start + timedelta(hours=1)).isoformat(), "capacity": 3})
    assert res.status_code == 201
    first = client.post("/api/v1/bookings", json={"ticket_type": type_id, "slot_start": start.isoformat(),
                                                 "id_number": "11010519491231002X", "headcount": 2})
    assert first.status_code == 201, first.get_json()
    booking = first.get_json()
    assert booking["id_last4"] == "002X" and booking["slot_start"] == start.isoformat()
    again = client.post("/api/v1/bookings", json={"ticket_type": type_id, "slot_start": start.isoformat(),
                                                 "id_number": "11010519491231002x"})
    assert again.status_code == 409 and again.get_json()["error"] == "already_booked"
    full = client.post("/api/v1/bookings", json={"ticket_type": type_id, "slot_start": start.isoformat(),
                                                "id_number": "110105194912310038", "headcount": 2})
    assert full.status_code == 409 and full.get_json()["error"] == "quota_full"
    last = client.post("/api/v1/bookings", json={"ticket_type": type_id, "slot_start": start.isoformat(),
                                                "id_number": "110105194912310038"})
    assert last.status_code == 201
    # A refund gives the places back.
    assert client.post(f"/api/v1/tickets/{booking['id']}/refund").status_code == 200
    assert client.post("/api/v1/bookings", json={"ticket_type": type_id, "slot_start": start.isoformat(),
                                                "id_number": "110105194912310046", "headcount": 2}).status_code == 201


def test_the_id_number_is_never_stored(client, ctx):
    from sqlalchemy import text

    type_id = _type(client, real_name=True)
    client.post("/api/v1/tickets", json={"ticket_type": type_id, "id_number": "11010519491231002X"})
    with ctx.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM tickets")).all()
    assert rows and all("11010519491231002X" not in str(tuple(r)) for r in rows)


def test_a_ticket_qr_code_is_served_as_png_and_svg(client):
    type_id = _type(client)
    ticket = client.post("/api/v1/tickets", json={"ticket_type": type_id}).get_json()
    png = client.get(f"/api/v1/tickets/{ticket['id']}/qr.png")
    assert png.status_code == 200 and png.mimetype == "image/png" and png.data[:8] == b"\x89PNG\r\n\x1a\n"
    svg = client.get(f"/api/v1/tickets/{ticket['id']}/qr.svg")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml" and b"<svg" in svg.data[:200]


def test_healthz_reports_the_database(client):
    res = client.get("/healthz")
    assert res.status_code == 200 and res.get_json()["database"] is True
