"""The restore drill's mark on a live, busy database: it locks every table one after the other while the
park's writers take them in their own order. A writer that holds one table and then wants one the drill
already holds closes a cycle; the drill must be the one that steps back (the park's passage is
committed, never aborted) and the mark must still come, counting the writer's rows."""

from __future__ import annotations

import threading

import psycopg
import pytest

pytestmark = pytest.mark.postgres


def test_a_writer_crossing_the_drills_locks_commits_and_the_mark_follows(pg_url) -> None:
    from central.migrate import upgrade
    from central.pitr import mark

    upgrade(pg_url)
    libpq = pg_url.replace("postgresql+psycopg://", "postgresql://")
    writer = psycopg.connect(libpq)
    # The ingest's order: the passage first (a table late in the alphabet) ...
    writer.execute("INSERT INTO passage_events (event_id, site_id, gate, zone, at, direction, credential_kind, "
                   "credential_ref, decision, reason, passed, headcount, offline, mode, received_at) VALUES "
                   "('e1', 'p1', 'g1', 1, now(), 'in', 'none', '', 'granted', 'ok', true, 1, false, 'free', now())")
    result: dict = {}

    def drill() -> None:
        try:
            result["counts"] = mark(pg_url, "drill-test", lock_timeout_s=20)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    thread = threading.Thread(target=drill)
    thread.start()
    with psycopg.connect(libpq, autocommit=True) as watch:  # the drill holds the early tables, waits on events
        for _ in range(100):
            if watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                             "AND query LIKE 'LOCK TABLE%'").fetchone()[0]:
                break
            threading.Event().wait(0.05)
    # ... then a count in a table early in the alphabet, which the drill already holds in SHARE mode.
    writer.execute("INSERT INTO denial_counts (site_id, day, zone, reason, count) VALUES ('p1', current_date, 1, "
                   "'used_up', 1)")
    writer.commit()  # not the deadlock's victim: the park's passage is stored
    writer.close()
    thread.join(30)
    assert "error" not in result, result.get("error")
    assert result["counts"]["passage_events"] == 1 and result["counts"]["denial_counts"] == 1
