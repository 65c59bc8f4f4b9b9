"""Years of passages: passage_events by month on PostgreSQL (one table on SQLite), reports unchanged
across months, each passage still stored once, months made ahead and old months archived."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from central.models import PassageEventRecord
from central.services import reports
from central.services.ingest import ingest_batch
from central.services.partitions import (
    create_month,
    ensure_partitions,
    is_partitioned,
    partition_job,
    partitions,
)
from protocol.ids import new_event_id
from protocol.messages import PassageEvent
from tests.central.conftest import add_gates

# Local (Asia/Shanghai) days the park was open; 30 Nov 23:30 local is 30 Nov 15:30 UTC, 1 Dec 07:30 local
# is 30 Nov 23:30 UTC: the report's days are the park's, the partitions' months are UTC.
DAYS = {date(2026, 9, 20): 3, date(2026, 10, 15): 4, date(2026, 11, 30): 2, date(2026, 12, 1): 5}


def _events(site: str) -> list[PassageEvent]:
    out = []
    for day, count in DAYS.items():
        local_noon = datetime(day.year, day.month, day.day, 7, 30, tzinfo=UTC) - timedelta(hours=8)  # 07:30 local
        for i in range(count):
            out.append(PassageEvent(id=new_event_id(), site=site, gate="east1", zone=1,
                                    at=local_noon + timedelta(minutes=i), direction="in", credential_kind="none",
                                    passed=True, mode="free"))
    return out


def _per_day(ctx) -> dict[date, int]:
    with ctx.sessions() as db:
        p = reports.period(db, ctx.config.site, date(2026, 9, 1), date(2026, 12, 5))
        return {r.day: r.entries for r in reports.visitors_per_day(db, p) if r.entries}


def test_reports_across_months_count_each_passage_once_on_either_store(any_db_url, tmp_path):
    from tests.central.conftest import make_config, prepare

    ctx = prepare(make_config(any_db_url, tmp_path), mqtt_on=False)
    try:
        add_gates(ctx, ctx.config.site, "east1")
        events = _events(ctx.config.site)
        with ctx.sessions.begin() as db:
            assert ingest_batch(db, events).new == len(events)
            if is_partitioned(db):  # the months the migration did not make: made now, rows moved in
                for month in (date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)):
                    create_month(db, month)
        with ctx.sessions.begin() as db:
            again = ingest_batch(db, events[::2])  # redelivered after their rows moved partitions
        assert (again.new, again.duplicates) == (0, len(events[::2]))
        assert _per_day(ctx) == DAYS
        with ctx.sessions() as db:
            assert db.scalar(select(func.count()).select_from(PassageEventRecord)) == len(events)
    finally:
        ctx.close()


@pytest.mark.postgres
def test_passages_land_in_their_month_and_a_wrong_gate_clock_loses_nothing(pg_url, tmp_path):
    from tests.central.conftest import make_config, prepare

    ctx = prepare(make_config(pg_url, tmp_path), mqtt_on=False)
    try:
        add_gates(ctx, ctx.config.site, "east1")
        events = _events(ctx.config.site)
        with ctx.sessions.begin() as db:
            assert is_partitioned(db)
            ingest_batch(db, events)

        def where() -> dict[str, int]:
            with ctx.sessions() as db:
                rows = db.execute(text("SELECT tableoid::regclass::text, count(*) FROM passage_events GROUP BY 1"))
                return dict(rows.all())

        # September to November came before the partitions were made: the default partition kept them.
        assert where() == {"passage_events_default": sum(DAYS.values())}
        with ctx.sessions.begin() as db:
            for month in (date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)):
                assert create_month(db, month)
            assert not create_month(db, date(2026, 11, 1))  # made once
        placed = where()
        assert placed.get("passage_events_default", 0) == 0
        assert placed["passage_events_y2026m09"] == 3 and placed["passage_events_y2026m10"] == 4
        assert placed["passage_events_y2026m11"] == 2 + 5  # 1 Dec 07:30 in the park is still November in UTC
        assert _per_day(ctx) == DAYS
    finally:
        ctx.close()


@pytest.mark.postgres
def test_scheduler_makes_months_ahead_and_archives_months_past_retention(pg_url, tmp_path):
    from tests.central.conftest import make_config, prepare

    ctx = prepare(make_config(pg_url, tmp_path), mqtt_on=False)
    try:
        add_gates(ctx, ctx.config.site, "east1")
        with ctx.sessions.begin() as db:
            ingest_batch(db, _events(ctx.config.site))
            for month in (date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)):
                create_month(db, month)
        with ctx.sessions.begin() as db:
            made = ensure_partitions(db, datetime(2027, 4, 10, tzinfo=UTC), months_ahead=2)
        assert made[-1] == "passage_events_y2027m06"
        with ctx.sessions.begin() as db:
            partition_job(db, 2, 6, now=datetime(2027, 4, 10, tzinfo=UTC))  # keep six months: Oct 2026 on
        with ctx.sessions() as db:
            attached = [p.name for p in partitions(db)]
            archived = db.scalar(text("SELECT count(*) FROM archive.passage_events_y2026m09"))
        assert "passage_events_y2026m09" not in attached and "passage_events_y2026m10" in attached
        assert archived == DAYS[date(2026, 9, 20)]  # detached, not deleted
        assert _per_day(ctx) == {d: n for d, n in DAYS.items() if d.month != 9}
    finally:
        ctx.close()
