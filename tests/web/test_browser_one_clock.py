"""The dashboard in headless Chromium under a simulated park clock (`protocol.clock`, as in the demo): it
shows the park's date as its today, and when the park's day rolls over it starts the new day by itself."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from protocol import clock, topics
from protocol.ids import new_event_id
from protocol.messages import PassageEvent, encode
from tests.web.test_browser import chromium, log_in, page, publisher, server  # noqa: F401 - the fixtures

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]
SHANGHAI = ZoneInfo("Asia/Shanghai")
SIM_DAY = datetime.now(SHANGHAI).date() + timedelta(days=40)  # never the wall clock's date


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI)


def _entry(site: str) -> PassageEvent:
    return PassageEvent(id=new_event_id(), site=site, gate="east-1", zone=2, at=clock.park_now(), direction="in",
                        credential_kind="none", mode="free", reason="free_passage", passed=True)


@pytest.fixture
def park_clock():
    yield lambda at: clock.install(clock.FixedClock(at))
    clock.install(None)


def test_the_dashboard_lives_the_parks_day_and_starts_the_next_one_after_the_roll_over(
        server, page, publisher, park_clock):  # noqa: F811 - pytest fixtures
    from playwright.sync_api import expect

    from central.bus.ingest_worker import IngestWorker
    from central.services import jobs
    from central.services.gates import register_gate

    ctx = server.ctx
    site = ctx.config.site
    park_clock(_at(SIM_DAY, 10))
    with ctx.sessions.begin() as db:
        register_gate(db, site, "east-1", 2)
        jobs.roll_over(db, site)
    ingest = IngestWorker(ctx.config, ctx.sessions, cipher=ctx.cipher, occupancy_interval=0.05).start()
    try:
        log_in(page, server, "manager")
        dashboard = page.locator("#dashboard")
        expect(dashboard).to_have_attribute("data-day", SIM_DAY.isoformat())
        expect(page.locator("#day")).not_to_be_empty()
        publisher.publish(topics.event(site, "east-1"), encode(_entry(site)), qos=1)
        publisher.publish(topics.event(site, "east-1"), encode(_entry(site)), qos=1)
        expect(page.locator("#t-entries")).to_have_text("2")

        next_day = SIM_DAY + timedelta(days=1)
        park_clock(_at(next_day, 7))  # the demo's clock jumps from 19:00 to the next morning
        with ctx.sessions.begin() as db:
            jobs.roll_over(db, site)
        publisher.publish(topics.event(site, "east-1"), encode(_entry(site)), qos=1)
        expect(dashboard).to_have_attribute("data-day", next_day.isoformat())
        expect(page.locator("#t-entries")).to_have_text("1")  # the new day's first visitor, not the third
    finally:
        ingest.stop()
