"""Years of passages: the ingest rate and the daily report's time on an empty database, then with
three years of stored passages (30 million in the full run: a large park's three years).

    a PostgreSQL cluster of our own (initdb; production settings but fsync, the same for both rounds)
    round 0:  migrated, empty: ingest 500-event batches (the ingest's own service), time the daily report
    fill:     N passages spread over the 36 months before this one, into their monthly partitions
    round N:  the same ingest and the same report again, on the same day's new passages

history_ingest_ratio = events/s with history / events/s empty; history_report_ratio = report time with
history / empty. The bar for both: within 20 %. BENCH_HISTORY_PASSAGES overrides N (the full run's 30
million needs about 12 GB of disk and some 20 minutes here).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime, timedelta

from tests.bench.common import Bar, Section, median

SITE = "bench"
GATES = 20
FILL_CHUNK = 1_000_000


def _events(count: int, day_start: datetime):
    from protocol.ids import new_event_id
    from protocol.messages import PassageEvent

    return [PassageEvent(id=new_event_id(), site=SITE, gate=f"g{i % GATES}", zone=1,
                         at=day_start + timedelta(seconds=(i * 7) % 36_000), direction="in" if i % 3 else "out",
                         credential_kind="none", passed=True, mode="free") for i in range(count)]


def _ingest_rate(ctx, count: int, day_start: datetime) -> float:
    from central.services.ingest import ingest_batch

    events = _events(count, day_start)
    t0 = time.perf_counter()
    for start in range(0, count, 500):
        with ctx.sessions.begin() as db:
            ingest_batch(db, events[start:start + 500])
    return count / (time.perf_counter() - t0)


def _report_ms(ctx, day: date, rounds: int) -> float:
    from central.services.reports import daily_summary

    samples = []
    for i in range(rounds + 1):
        with ctx.sessions() as db:
            t0 = time.perf_counter()
            daily_summary(db, SITE, day)
            took = (time.perf_counter() - t0) * 1000
        if i:  # the first warms the caches
            samples.append(took)
    return median(samples)


def _fill(server, total: int, first: datetime, end: datetime) -> float:
    """`total` passages evenly from `first` to `end`, through the parent table (into their partitions)."""
    import psycopg

    span_s = (end - first).total_seconds()
    t0 = time.perf_counter()
    with psycopg.connect(server.libpq(), autocommit=True) as conn:
        for start in range(0, total, FILL_CHUNK):
            n = min(FILL_CHUNK, total - start)
            conn.execute(
                "INSERT INTO passage_events (event_id, site_id, gate, zone, at, direction, credential_kind, "
                "credential_ref, decision, reason, passed, headcount, offline, mode, received_at) "
                "SELECT md5(%(seed)s || g::text), %(site)s, 'g' || (g %% 20), 1 + (g %% 3), "
                "%(first)s + make_interval(secs => (g::float8 * %(step)s)), "
                "CASE WHEN g %% 3 = 0 THEN 'out' ELSE 'in' END, 'qr', 't' || (g %% 500000), "
                "CASE WHEN g %% 40 = 0 THEN 'refused' ELSE 'granted' END, "
                "CASE WHEN g %% 40 = 0 THEN 'used_up' ELSE 'ok' END, g %% 40 <> 0, 1, g %% 50 = 0, 'normal', "
                "%(first)s + make_interval(secs => (g::float8 * %(step)s)) "
                "FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g",
                {"seed": "h", "site": SITE, "first": first, "step": span_s / total, "lo": start, "hi": start + n - 1})
            print(f"   history: {start + n:,} of {total:,} passages ({time.perf_counter() - t0:.0f} s)", flush=True)
        conn.execute("ANALYZE passage_events")
    return time.perf_counter() - t0


def run(quick: bool) -> Section:
    from central.services.gates import ensure_site, ensure_zone, register_gate
    from central.services.partitions import add_months, create_month, month_start
    from tests.central.conftest import make_config, prepare
    from tests.support.pg_pair import PgServer, remove, scratch_dir

    section = Section("history")
    f = section.figures
    total = int(os.environ.get("BENCH_HISTORY_PASSAGES", 200_000 if quick else 30_000_000))
    ingest_n = 5_000 if quick else 40_000
    base = scratch_dir("gates-bench-history-")
    server = PgServer.primary(base, "bench", settings={"fsync": "on", "shared_buffers": "256MB",
                                                      "max_wal_size": "4GB", "checkpoint_timeout": "15min"})
    ctx = None
    try:
        config = make_config(server.url(), base)
        ctx = prepare(config, mqtt_on=False)
        with ctx.sessions.begin() as db:
            ensure_site(db, SITE, name="Bench Park", timezone="Asia/Shanghai")
            ensure_zone(db, SITE, 1, name="Main", capacity=10_000_000)
            for g in range(GATES):
                register_gate(db, SITE, f"g{g}", 1, direction="both")
        # Two days of this week, with the same number of new passages each: the empty round's and the full round's.
        local_today = (datetime.now(UTC) + timedelta(hours=8)).date()
        empty_day, full_day = local_today - timedelta(days=1), local_today - timedelta(days=2)

        def start_of(day: date) -> datetime:
            return datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=8)

        _ingest_rate(ctx, 2_000, start_of(local_today))  # warm-up: connections, caches, the first partition
        _report_ms(ctx, local_today, 1)
        f["history_empty_ingest_events_per_s"] = round(_ingest_rate(ctx, ingest_n, start_of(empty_day)))
        f["history_empty_daily_report_ms"] = round(_report_ms(ctx, empty_day, 5), 1)

        history_end = start_of(full_day) - timedelta(days=1)
        first = add_months(month_start(history_end), -35)
        months = [add_months(first, n) for n in range(36)]
        with ctx.sessions.begin() as db:
            for month in [*months, *(add_months(months[-1], n) for n in (1, 2))]:
                create_month(db, month)
        f["history_fill_s"] = round(_fill(server, total, start_of(first), history_end), 1)
        f["history_passages"] = total
        parts = server.sql("SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i "
                           "JOIN pg_class c ON c.oid = i.inhparent WHERE c.relname = 'passage_events'")
        f["history_disk_gb"] = round(float(parts[0] or 0) / 1e9, 2)

        f["history_full_ingest_events_per_s"] = round(_ingest_rate(ctx, ingest_n, start_of(full_day)))
        f["history_full_daily_report_ms"] = round(_report_ms(ctx, full_day, 5), 1)
        f["history_past_day_report_ms"] = round(_report_ms(ctx, months[18] + timedelta(days=14), 3), 1)
        f["history_ingest_ratio"] = round(f["history_full_ingest_events_per_s"] /
                                          f["history_empty_ingest_events_per_s"], 3)
        f["history_report_ratio"] = round(f["history_full_daily_report_ms"] / f["history_empty_daily_report_ms"], 3)
        section.bars += [Bar("history_ingest_ratio", 0.8, at_least=True, note="(ingest within 20 % of empty)"),
                         Bar("history_report_ratio", 1.2, note="(daily report within 20 % of empty)")]
        section.notes.append(f"{total:,} stored passages over 36 monthly partitions ({f['history_disk_gb']} GB); "
                             f"ingest of {ingest_n:,} events in 500-event batches through central.services.ingest "
                             "(no broker: the database's share); the daily report is of a day of this week holding "
                             "just those passages; history_past_day_report_ms is a day inside the history "
                             f"(~{total // 1095:,} passages)")
    finally:
        if ctx is not None:
            ctx.close()
        server.stop("fast")
        remove(base)
    return section
