"""One clock for the park (`protocol.clock`): with a simulated clock in effect, as in the demo, the central
sells for the simulated day, stores and counts passages dated by it, closes that day at its midnight and
shows it as the dashboard's today, whatever the wall clock says."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from central.models import DailyReport, Site, Zone
from central.services import jobs
from central.services.ingest import ingest_batch
from central.services.tickets import IssueRequest, issue_tickets
from protocol import clock
from protocol.ids import new_event_id
from protocol.messages import PassageEvent
from tests.central.conftest import add_gates

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Forty days from the wall clock's today, so nothing here can pass by reading the real date.
SIM_DAY = datetime.now(SHANGHAI).date() + timedelta(days=40)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


@pytest.fixture
def park_clock():
    """Set the park's clock to a local time (as the demo's simulated clock does), wall clock afterwards."""
    def set_to(at: datetime) -> None:
        clock.install(clock.FixedClock(at))
    yield set_to
    clock.install(None)


def test_under_a_simulated_clock_the_desk_and_the_dashboard_live_the_simulated_day(app, web_ctx, as_role, park_clock):
    park_clock(_at(SIM_DAY, 10, 30))
    desk = as_role("staff")
    page = desk.get("/desk/").get_data(as_text=True)
    assert f'name="visit_date" value="{SIM_DAY.isoformat()}"' in page, "the sale form proposes the park's today"
    with web_ctx.sessions.begin() as db:
        ticket = issue_tickets(db, web_ctx.config.site, [IssueRequest(ticket_type=1)], actor="tests")[0]
        assert ticket.valid_from.astimezone(SHANGHAI).date() == SIM_DAY
        assert ticket.issued_at.astimezone(SHANGHAI).date() == SIM_DAY, "the day's sales report counts it"
    snapshot = as_role("manager").get("/live/snapshot").get_json()
    assert snapshot["day"] == SIM_DAY.isoformat()


def test_passages_dated_by_the_simulated_clock_count_and_its_midnight_closes_the_day(web_ctx, park_clock):
    site = web_ctx.config.site
    add_gates(web_ctx, site, "g1")
    park_clock(_at(SIM_DAY, 9))
    with web_ctx.sessions.begin() as db:
        jobs.roll_over(db, site)  # the park's business day opens: the simulated one
        assert db.get(Site, site).business_date == SIM_DAY
    park_clock(_at(SIM_DAY, 11))
    with web_ctx.sessions.begin() as db:
        events = [PassageEvent(id=new_event_id(), site=site, gate="g1", zone=1, at=clock.park_now(), direction="in",
                               credential_kind="none", passed=True, mode="free") for _ in range(3)]
        result = ingest_batch(db, events)  # received by the park's clock too: not "from the future"
        assert not result.flagged and result.passages == 3
    park_clock(_at(SIM_DAY, 18, 59))
    with web_ctx.sessions.begin() as db:
        assert jobs.roll_over(db, site) == []
    park_clock(_at(SIM_DAY + timedelta(days=1), 7))  # the demo's clock skips the night
    with web_ctx.sessions.begin() as db:
        assert len(jobs.roll_over(db, site)) == 2
    with web_ctx.sessions() as db:
        report = db.scalar(select(DailyReport).where(DailyReport.site_id == site, DailyReport.zone == 1))
        assert (report.day, report.entries) == (SIM_DAY, 3)
        zone = db.scalar(select(Zone).where(Zone.site_id == site, Zone.number == 1))
        assert zone.entries_today == 0
        assert db.get(Site, site).business_date == SIM_DAY + timedelta(days=1)
