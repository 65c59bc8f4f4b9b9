"""Staff see the open alerts in the web UI, in their language and the park's time, and resolve one
(audited); a staff member at the desk is not shown them."""

from __future__ import annotations

from sqlalchemy import select

from central.config import AlertsConfig
from central.models import AuditEntry, Zone
from central.services.jobs import alert_round


def _full_zone(ctx) -> None:
    with ctx.sessions.begin() as db:
        db.scalar(select(Zone).where(Zone.site_id == ctx.config.site, Zone.number == 2)).inside = 49
    alert_round(ctx.sessions, AlertsConfig())


def test_a_manager_sees_the_full_zone_alert_and_resolves_it(web_ctx, as_role):
    _full_zone(web_ctx)
    manager = as_role("manager")
    page = manager.get("/alerts/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f"Zone 2 of {web_ctx.config.site} is at 98 % of its capacity." in html
    assert 'data-kind="zone_full"' in html and 'href="/alerts/"' in html  # and in the menu
    alert_id = int(html.split('data-alert="')[1].split('"')[0])
    done = manager.post(f"/alerts/{alert_id}/resolve", follow_redirects=True)
    assert "Alert resolved." in done.get_data(as_text=True)
    assert "No open alert." in done.get_data(as_text=True)
    with web_ctx.sessions() as db:
        assert db.scalar(select(AuditEntry).where(AuditEntry.action == "alert.resolve")).actor == "manager"
    again = manager.post(f"/alerts/{alert_id}/resolve", follow_redirects=True)
    assert "There is no such open alert." in again.get_data(as_text=True)


def test_the_alerts_page_is_in_chinese_for_a_chinese_reader(web_ctx, app):
    from tests.web.conftest import login

    _full_zone(web_ctx)
    page = login(app, "technician", accept_language="zh-CN").get("/alerts/").get_data(as_text=True)
    assert "告警" in page and "区域 2" in page


def test_resolving_needs_the_forms_token_and_the_role(web_ctx, as_role, app):
    _full_zone(web_ctx)
    assert as_role("staff").get("/alerts/").status_code == 403
    tech = as_role("technician")
    html = tech.get("/alerts/").get_data(as_text=True)
    alert_id = int(html.split('data-alert="')[1].split('"')[0])
    assert tech.client.post(f"/alerts/{alert_id}/resolve").status_code == 400  # no CSRF token
