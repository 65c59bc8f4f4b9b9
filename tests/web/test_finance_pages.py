"""The finance and customer pages as sales, finance and a cashier use them, in English and Chinese."""

from __future__ import annotations

import io
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from openpyxl import load_workbook
from sqlalchemy import func, select

from central.models import Customer, GroupOrder, Payment, Ticket
from tests.web.conftest import login


def _today() -> str:
    return datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()


def _customer_id(web_ctx, name: str) -> int:
    with web_ctx.sessions() as db:
        return db.scalar(select(Customer.id).where(Customer.name == name))


def _book(sales, customer_id, **kw):
    data = {"ticket_type": "1", "visit_date": _today(), "headcount": "30", "guide_name": "Wang Li",
            "guide_phone": "13800000000", "payment_method": "on_account", **kw}
    return sales.post(f"/customers/{customer_id}/orders", data)


def test_sales_adds_an_agency_with_a_contract_price_and_books_a_group_that_is_refused_over_credit(app, web_ctx):
    sales = login(app, "sales")
    bad = sales.post("/customers/", {"name": "ABC Travel", "kind": "agency", "credit_limit": "lots"})
    assert bad.status_code == 422
    page = bad.get_data(as_text=True)
    assert 'id="err-credit_limit"' in page and 'value="ABC Travel"' in page  # the form keeps what was typed
    res = sales.post("/customers/", {"name": "ABC Travel", "kind": "agency", "credit_limit": "3000",
                                     "payment_term_days": "30"})
    assert res.status_code == 302
    cid = _customer_id(web_ctx, "ABC Travel")
    sales.get(f"/customers/{cid}")
    assert sales.post(f"/customers/{cid}/prices", {"ticket_type": "1", "valid_from": _today(),
                                                   "price": "60.00"}).status_code == 302
    res = _book(sales, cid)
    assert res.status_code == 302
    order_page = sales.get(res.headers["Location"]).get_data(as_text=True)
    assert "Group ABC Travel: 0 of 30 in" in order_page and "1,800.00" in order_page
    over = _book(sales, cid, headcount="25", guide_name="Zhou")  # 1500 more: 3300 > 3000
    assert over.status_code == 422
    text = over.get_data(as_text=True)
    assert "past its credit limit" in text and 'value="Zhou"' in text
    with web_ctx.sessions() as db:
        assert db.scalar(select(GroupOrder.id).where(GroupOrder.guide_name == "Zhou")) is None


def test_suspending_a_customer_holds_its_tickets_and_says_so(app, web_ctx):
    sales = login(app, "sales")
    sales.post("/customers/", {"name": "Sun School", "kind": "school", "credit_limit": "9000"})
    cid = _customer_id(web_ctx, "Sun School")
    sales.get(f"/customers/{cid}")
    _book(sales, cid, headcount="40")
    res = sales.post(f"/customers/{cid}/suspend")
    assert res.status_code == 302
    page = sales.get(res.headers["Location"]).get_data(as_text=True)
    assert "gates refuse its 1 unused tickets" in page
    with web_ctx.sessions() as db:
        assert db.scalars(select(Ticket.status).where(Ticket.customer_id == cid)).all() == ["held"]
    assert "Book a group" not in page  # a suspended customer cannot order


def test_finance_settles_a_statement_closes_it_and_corrects_it_with_a_new_line(app, web_ctx):
    sales = login(app, "sales")
    sales.post("/customers/", {"name": "Blue Sky", "kind": "company", "credit_limit": "9000"})
    cid = _customer_id(web_ctx, "Blue Sky")
    sales.get(f"/customers/{cid}")
    _book(sales, cid, headcount="12")
    fin = login(app, "finance")
    fin.get("/finance/")
    res = fin.post("/finance/statements", {"customer": str(cid), "start": _today(), "end": _today()})
    assert res.status_code == 302
    url = res.headers["Location"]
    sid = int(re.search(r"/statements/(\d+)", url).group(1))
    page = fin.get(url).get_data(as_text=True)
    assert 'id="statement-total">960.00' in page
    assert fin.post(f"/finance/statements/{sid}/close").status_code == 302  # not checked yet: refused, flashed
    assert "checked before it is closed" in fin.get(url).get_data(as_text=True)
    fin.post(f"/finance/statements/{sid}/check")
    fin.post(f"/finance/statements/{sid}/close")
    bad = fin.post(f"/finance/statements/{sid}/corrections", {"description": "Discount", "amount": "ten"})
    assert bad.status_code == 422 and 'value="Discount"' in bad.get_data(as_text=True)
    fin.post(f"/finance/statements/{sid}/corrections", {"description": "Discount", "amount": "-60"})
    page = fin.get(url).get_data(as_text=True)
    assert 'id="statement-total">900.00' in page and "Discount" in page
    csv = fin.get(f"/finance/statements/{sid}.csv")
    assert csv.mimetype == "text/csv" and "-60.00" in csv.get_data(as_text=True)
    ws = load_workbook(io.BytesIO(fin.get(f"/finance/statements/{sid}.xlsx").data)).active
    assert ws.cell(ws.max_row, 8).value == 900.0
    zh = login(app, "finance", accept_language="zh-CN,zh;q=0.9").get(url).get_data(as_text=True)
    assert "结算单" in zh and "已结账" in zh and "更正" in zh


def test_a_cashier_closes_a_shift_with_a_cash_difference_after_a_supervisor_approves_a_refund(app, web_ctx):
    staff = login(app, "staff")
    staff.get("/shifts/")
    assert staff.post("/shifts/open", {"window": "Window 1", "opening_float": "100"}).status_code == 302
    staff.get("/shifts/")
    assert staff.post("/shifts/sell", {"ticket_type": "1", "quantity": "3", "method": "cash",
                                       "visit_date": _today()}).status_code == 302
    staff.post("/shifts/sell", {"ticket_type": "1", "quantity": "1", "method": "wechat_pay", "headcount": "8",
                                "visit_date": _today()})
    with web_ctx.sessions() as db:
        cash_ticket = db.scalar(select(func.min(Ticket.id)).where(Ticket.payment_method == "cash"))
    fin = login(app, "finance")
    fin.post("/finance/settings", {"group_ticketing": "group", "refund_approval_over": "50"})
    staff.post("/shifts/refund", {"ticket": f"T{cash_ticket}", "reason": "rain"})
    assert "waits for a supervisor" in staff.get("/shifts/").get_data(as_text=True)
    page = fin.get("/finance/").get_data(as_text=True)
    assert "Refunds waiting for approval" in page and f"T{cash_ticket}" in page
    with web_ctx.sessions() as db:
        pid = db.scalar(select(Payment.id).where(Payment.status == "pending"))
    assert fin.post(f"/finance/refunds/{pid}/approve").status_code == 302
    res = staff.post("/shifts/close", {"counted_cash": "275.00"})  # expected 100 + 240 - 80 = 260
    assert res.status_code == 200
    page = res.get_data(as_text=True)
    assert 'id="expected-cash">260.00' in page and 'id="cash-difference" class="bad">15.00' in page
    assert "WeChat Pay" in page and "Day ticket" in page


def test_finance_reports_show_revenue_by_each_dimension(app, web_ctx):
    sales = login(app, "sales")
    sales.post("/customers/", {"name": "Red OTA", "kind": "ota", "credit_limit": "9000"})
    cid = _customer_id(web_ctx, "Red OTA")
    sales.get(f"/customers/{cid}")
    _book(sales, cid, headcount="10")
    fin = login(app, "finance")
    for by in ("channel", "ticket_type", "payment_method", "customer"):
        page = fin.get(f"/finance/reports?by={by}").get_data(as_text=True)
        assert 'id="revenue-gross">800.00' in page, by
    assert "Red OTA" in fin.get("/finance/reports?by=customer&per=month").get_data(as_text=True)
    csv = fin.get("/finance/reports.csv?by=payment_method").get_data(as_text=True)
    assert "on_account" in csv and "800.00" in csv
    bad = fin.get("/finance/reports?start=2026-01-01&end=2025-01-01", follow_redirects=True)
    assert bad.status_code == 200 and "before its start" in bad.get_data(as_text=True)


def test_a_group_is_booked_into_a_time_slot_from_the_page_and_refused_when_it_is_full(app, web_ctx):
    from datetime import timedelta

    from central.services.bookings import define_quota

    tz = ZoneInfo("Asia/Shanghai")
    tomorrow = datetime.now(tz).date() + timedelta(days=1)
    start = datetime.combine(tomorrow, datetime.min.time(), tzinfo=tz).replace(hour=14)
    with web_ctx.sessions.begin() as db:
        define_quota(db, web_ctx.config.site, start, start + timedelta(hours=1), 25)
    sales = login(app, "sales")
    sales.post("/customers/", {"name": "Slot Travel", "kind": "agency", "credit_limit": "9000"})
    cid = _customer_id(web_ctx, "Slot Travel")
    sales.get(f"/customers/{cid}")
    res = _book(sales, cid, headcount="20", visit_date=tomorrow.isoformat(), slot="14:00")
    assert res.status_code == 302
    full = _book(sales, cid, headcount="10", visit_date=tomorrow.isoformat(), slot="14:00")
    assert full.status_code == 422 and 'id="err-slot"' in full.get_data(as_text=True)
    bad = _book(sales, cid, headcount="10", visit_date=tomorrow.isoformat(), slot="2 pm")
    assert bad.status_code == 422 and 'value="2 pm"' in bad.get_data(as_text=True)


def test_the_desk_shows_a_group_ticket_with_a_link_to_its_order(app, web_ctx):
    sales = login(app, "sales")
    sales.post("/customers/", {"name": "Link Travel", "kind": "agency", "credit_limit": "9000"})
    cid = _customer_id(web_ctx, "Link Travel")
    sales.get(f"/customers/{cid}")
    order_url = _book(sales, cid, headcount="15").headers["Location"]
    with web_ctx.sessions() as db:
        ticket_id = db.scalar(select(Ticket.id).where(Ticket.customer_id == cid))
    staff = login(app, "staff")
    page = staff.get(f"/desk/tickets/{ticket_id}").get_data(as_text=True)
    assert 'id="ticket-group"' in page and order_url.split("/customers")[-1] in page and "on account" in page
    assert "Group Link Travel: 0 of 15 in" in staff.get(order_url).get_data(as_text=True)
