"""A tablet at a gate (768 px wide): no page scrolls sideways, in English and in Chinese."""

from __future__ import annotations

import pytest

from central.models import utcnow
from central.services.gates import record_status, register_gate
from protocol.messages import GateStatus, ReaderHealth
from tests.web.test_browser import chromium, log_in, server  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]
PAGES = {"manager": ["/dashboard/", "/reports/", "/reports/daily", "/ticket-types/", "/gates/", "/gates/east-1"],
         "staff": ["/desk/", "/desk/persons", "/desk/lookup?by=ticket&q=T1"],
         "technician": ["/gates/", "/gates/east-1"]}


@pytest.mark.parametrize("language", ["en-GB", "zh-CN"])
def test_no_page_scrolls_sideways_at_768_px(server, chromium, language):  # noqa: F811
    ctx = server.ctx
    with ctx.sessions.begin() as db:
        register_gate(db, ctx.config.site, "east-1", 1, hardware={"controller_profile": "tripod-coil"})
        db.flush()
        record_status(db, GateStatus(site=ctx.config.site, gate="east-1", online=True, at=utcnow(), mode="normal",
                                     readers=[ReaderHealth(name="qr", ok=False, detail="x" * 200)],
                                     alarms=["controller_unreachable", "door_forced"]))
    wide = []
    for role, paths in PAGES.items():
        context = chromium.new_context(viewport={"width": 768, "height": 1024}, locale=language,
                                       extra_http_headers={"Accept-Language": language})
        page = context.new_page()
        try:
            log_in(page, server, role)
            page.wait_for_load_state("networkidle")
            for path in paths:
                page.goto(server.url + path)
                page.wait_for_load_state("networkidle")
                width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
                if width[0] > width[1]:
                    wide.append((role, path, width))
        finally:
            context.close()
    assert wide == []
