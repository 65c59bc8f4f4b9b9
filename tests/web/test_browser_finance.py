"""Sales, finance and a cashier do their rounds in Chinese in headless Chromium: the customer pages, a
group order with how many entered, a statement, the revenue reports and the box office show no English
left, and the Chinese renders as glyphs. Screenshots go to the test's folder (and $SCREENSHOT_DIR)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.web.test_browser import server  # noqa: F401  (the live server fixture)
from tests.web.test_browser_i18n import (  # noqa: F401  (chromium: the module's browser)
    browser_in,
    chromium,
    english_left,
    log_in,
    renders_cjk_glyphs,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]


@pytest.fixture
def agency(server):  # noqa: F811
    """A travel agency with a contract price, a group order of 30 that 12 have entered, a statement, a shift."""
    from central.services import customers as cs
    from central.services import finance as fin
    from central.services.gates import register_gate
    from central.services.ingest import ingest_batch
    from central.services.tickets import IssueRequest
    from protocol.ids import new_event_id
    from protocol.messages import PassageEvent

    ctx, site = server.ctx, server.ctx.config.site
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    with ctx.sessions.begin() as db:
        register_gate(db, site, "east-1", 1)
        c = cs.create_customer(db, site, cs.CustomerSpec(name="Huangshan CITS", kind="agency", credit_limit="20000"))
        cs.add_contact(db, c.id, "Zhou Min", phone="0559 1234567", duty="bookings")
        cs.set_contract_price(db, c.id, 1, "60.00", today)
        result = cs.create_group_order(db, site, cs.GroupOrderRequest(
            customer_id=c.id, ticket_type=1, visit_date=today, headcount=30, guide_name="Wang Li",
            guide_phone="13800000000"))
        ticket = result.tickets[0]
        ingest_batch(db, [PassageEvent(id=new_event_id(), site=site, gate="east-1", zone=1,
                                       at=datetime.now(ZoneInfo("UTC")), direction="in", credential_kind="qr",
                                       credential_ref=ticket.ref, passed=True, ticket_type=1) for _ in range(12)])
        st = fin.open_statement(db, site, c.id, today, today, actor="finance")
        fin.add_correction(db, st.id, "Guide free of charge", "-60", actor="finance")
        shift = fin.open_shift(db, site, "staff", "Window 1", "100")
        fin.sell_in_shift(db, shift.id, IssueRequest(ticket_type=1), 2, "wechat_pay", "staff")
        server.paths = {"customer": f"/customers/{c.id}", "order": f"/customers/orders/{result.order.id}",
                        "statement": f"/finance/statements/{st.id}"}
    return server


def data_of(server) -> list[str]:  # noqa: F811
    return [server.ctx.config.site, "Day ticket", "Test Park", "Huangshan CITS", "Zhou Min", "bookings", "Wang Li",
            "Guide free of charge", "Window 1", "finance", "sales", "staff",
            "XLSX"]  # the spreadsheet format's name, as CSV


def test_sales_finance_and_a_cashier_see_no_english_in_chinese(chromium, agency, tmp_path):  # noqa: F811
    rounds = [("sales", ["/customers/", agency.paths["customer"], agency.paths["order"]]),
              ("finance", ["/finance/", agency.paths["statement"], "/finance/reports", "/finance/reports?by=customer"]),
              ("staff", ["/shifts/"])]
    for role, paths in rounds:
        context = browser_in(chromium, "zh-CN")
        try:
            page = context.new_page()
            log_in(page, agency, role)
            for path in paths:
                page.goto(agency.url + path)
                assert page.locator("html").get_attribute("lang") == "zh-Hans"
                if path == agency.paths["order"]:
                    assert "已入园 12 / 30 人" in page.locator("#group-progress").inner_text()
                left = english_left(page, data_of(agency))
                assert not left, f"{role} {path}: English left on the Chinese page: {left}"
                screenshot(page, tmp_path, f"zh-{role}-{path.strip('/').replace('/', '-').replace('?', '-')}")
            assert renders_cjk_glyphs(page)
        finally:
            context.close()
