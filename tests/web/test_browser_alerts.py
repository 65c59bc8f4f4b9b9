"""In headless Chromium: a technician on night duty opens Alerts from the menu, reads that a gate is
down, resolves it once the gate is looked after, and the list is empty."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from central.config import AlertsConfig
from central.models import Gate, utcnow
from central.services.gates import register_gate
from central.services.jobs import alert_round
from tests.web.test_browser import chromium, log_in, page, server  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]


def test_a_technician_reads_the_gate_down_alert_and_resolves_it(server, page):  # noqa: F811
    from playwright.sync_api import expect

    ctx = server.ctx
    with ctx.sessions.begin() as db:
        register_gate(db, ctx.config.site, "west-2", 1)
        db.flush()
        gate = db.scalar(select(Gate).where(Gate.site_id == ctx.config.site, Gate.name == "west-2"))
        gate.online, gate.last_seen_at, gate.offline_since = False, utcnow(), utcnow()
    alert_round(ctx.sessions, AlertsConfig())
    page.set_extra_http_headers({"Accept-Language": "en"})
    log_in(page, server, "technician")
    page.click("nav >> text=Alerts")
    row = page.locator("#alerts tr[data-kind=gate_down]")
    expect(row).to_contain_text(f"Gate west-2 of {ctx.config.site} is down: no heartbeat since")
    row.locator("button").click()
    expect(page.locator("#no-alerts")).to_be_visible()
    expect(page.locator("body")).to_contain_text("Alert resolved.")
