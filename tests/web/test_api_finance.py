"""The finance API as a channel and finance use it: a token scoped to its customer and site, retries
that never issue twice, what the token issued is what its statement bills, shifts over the API."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from central.services import customers as cs
from central.services.users import create_token


@pytest.fixture
def channel(app, web_ctx):
    """An OTA with a contract price of 75 for the day ticket (rack 80), its token, and tokens per role."""
    site = web_ctx.config.site
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    with web_ctx.sessions.begin() as db:
        ota = cs.create_customer(db, site, cs.CustomerSpec(name="Fly OTA", kind="ota", credit_limit="5000"))
        other = cs.create_customer(db, site, cs.CustomerSpec(name="Other Agency", kind="agency", credit_limit="5000"))
        cs.set_contract_price(db, ota.id, 1, "75.00", today - timedelta(days=10))
        _, scoped = create_token(db, "fly-ota", "sales", customer_id=ota.id)
        tokens = {role: create_token(db, f"t-{role}", role)[1] for role in ("finance", "staff", "sales")}
    client = app.test_client()

    def call(method, url, token, **kw):
        return client.open(url, method=method, headers={"Authorization": f"Bearer {token}", **kw.pop("headers", {})},
                           **kw)

    return {"call": call, "ota": ota.id, "other": other.id, "scoped": scoped, "tokens": tokens, "today": today}


def _order(channel, headcount=20, **kw):
    return {"ticket_type": 1, "visit_date": channel["today"].isoformat(), "headcount": headcount,
            "guide_name": "Chen Jing", "guide_phone": "13900001111", **kw}


def test_a_channel_retry_with_the_same_idempotency_key_never_issues_twice(channel):
    call, token = channel["call"], channel["scoped"]
    first = call("POST", "/api/v1/group-orders", token, json=_order(channel), headers={"Idempotency-Key": "fly-1"})
    assert first.status_code == 201, first.get_json()
    body = first.get_json()
    assert body["customer_id"] == channel["ota"] and body["unit_price"] == "75.00" and body["amount"] == "1500.00"
    assert len(body["tickets"]) == 1 and body["tickets"][0]["headcount"] == 20 and body["tickets"][0]["code"]
    again = call("POST", "/api/v1/group-orders", token, json=_order(channel), headers={"Idempotency-Key": "fly-1"})
    assert again.status_code == 200
    assert again.get_json()["id"] == body["id"]
    assert again.get_json()["tickets"][0]["id"] == body["tickets"][0]["id"]
    owed = call("GET", f"/api/v1/customers/{channel['ota']}", token).get_json()["balance"]
    assert owed == "1500.00"


def test_a_channel_token_orders_only_for_its_customer_and_site(channel):
    call, token = channel["call"], channel["scoped"]
    res = call("POST", "/api/v1/group-orders", token, json=_order(channel, customer_id=channel["other"]))
    assert res.status_code == 403 and res.get_json()["error"] == "wrong_customer"
    res = call("POST", "/api/v1/group-orders?site=elsewhere", token, json=_order(channel))
    assert res.status_code == 403 and res.get_json()["error"] in ("site_forbidden", "wrong_site")
    assert call("GET", f"/api/v1/customers/{channel['other']}", token).status_code == 403
    listed = call("GET", "/api/v1/customers", token).get_json()["customers"]
    assert [c["name"] for c in listed] == ["Fly OTA"]
    assert call("POST", "/api/v1/customers", token, json={"name": "Mine now"}).status_code == 403


def test_an_order_over_the_credit_limit_is_refused_in_the_callers_language(channel):
    call, token = channel["call"], channel["scoped"]
    res = call("POST", "/api/v1/group-orders", token, json=_order(channel, headcount=100))  # 7500 > 5000
    assert res.status_code == 409 and res.get_json()["error"] == "credit_limit"
    assert "credit limit" in res.get_json()["detail"]
    res = call("POST", "/api/v1/group-orders", token, json=_order(channel, headcount=100),
               headers={"Accept-Language": "zh-CN"})
    assert "信用额度" in res.get_json()["detail"]


def test_what_the_token_issued_is_what_its_statement_bills(channel):
    call, token, fin = channel["call"], channel["scoped"], channel["tokens"]["finance"]
    issued = []
    for i, n in enumerate((12, 8, 30)):
        res = call("POST", "/api/v1/group-orders", token, json=_order(channel, headcount=n, idempotency_key=f"k{i}"))
        issued.append(Decimal(res.get_json()["amount"]))
    call("POST", "/api/v1/group-orders", token, json=_order(channel, headcount=12, idempotency_key="k0"))  # a retry
    day = channel["today"].isoformat()
    res = call("POST", "/api/v1/statements", fin, json={"customer_id": channel["ota"], "start": day, "end": day})
    assert res.status_code == 201, res.get_json()
    st = res.get_json()
    assert Decimal(st["total"]) == sum(issued) == Decimal("3750.00")
    assert st["ordered"] == 50 and st["lines"][0]["unit_price"] == "75.00"
    for step in ("check", "close"):
        assert call("POST", f"/api/v1/statements/{st['id']}/{step}", fin).status_code == 200
    assert call("POST", f"/api/v1/statements/{st['id']}/recount", fin).status_code == 409
    res = call("POST", f"/api/v1/statements/{st['id']}/corrections", fin,
               json={"description": "Guide free of charge", "amount": "-75.00"})
    assert res.status_code == 201 and res.get_json()["total"] == "3675.00"
    mine = call("GET", "/api/v1/statements", token).get_json()["statements"]
    assert [s["id"] for s in mine] == [st["id"]]
    assert call("GET", f"/api/v1/statements?customer_id={channel['other']}", token).status_code == 403


def test_a_cashier_runs_a_shift_over_the_api(channel):
    call, staff, fin = channel["call"], channel["tokens"]["staff"], channel["tokens"]["finance"]
    shift = call("POST", "/api/v1/shifts", staff, json={"window": "W2", "opening_float": "100"}).get_json()
    sold = call("POST", f"/api/v1/shifts/{shift['id']}/sell", staff, json={"ticket_type": 1, "quantity": 2,
                                                                           "method": "cash"})
    assert sold.status_code == 201 and sold.get_json()["count"] == 2
    call("POST", f"/api/v1/shifts/{shift['id']}/sell", staff, json={"ticket_type": 1, "method": "alipay"})
    closed = call("POST", f"/api/v1/shifts/{shift['id']}/close", staff, json={"counted_cash": "255"}).get_json()
    assert closed["expected_cash"] == "260.00" and closed["difference"] == "-5.00"
    assert {m["method"]: m["net"] for m in closed["by_method"]} == {"cash": "160.00", "alipay": "80.00"}
    assert call("GET", "/api/v1/shifts", fin).get_json()["shifts"][0]["difference"] == "-5.00"
