"""Years of passages: `passage_events` partitioned by month on PostgreSQL (SQLite keeps one table).

    passage_events                    PARTITION BY RANGE (at)       the table every query names
      passage_events_y2026m12         FOR VALUES FROM ('2026-12-01') TO ('2027-01-01')   UTC months
      passage_events_default          DEFAULT: a passage whose gate clock was far off (never lost)
    archive.passage_events_y2023m11   detached by the retention setting, kept as a plain table

Queries by time (every report: `site_id` and a range of `at`) read only the months they need, so
the daily report costs the same after three years as on the first day. The scheduler creates each
month ahead (`[database] partition_months_ahead`), moving into it any early rows the default
partition caught; with `[database] retention_months` set, it detaches months older than that into
the `archive` schema (out of every report; `pg_dump -t archive.<name>` then `DROP TABLE` to free
the disk, or attach it again to report on it).

Exactly once: a partitioned table's unique key must contain the partition key, so the key is
(event_id, at), on both stores. A redelivered event is the same message (the gate's outbox resends
the bytes it stored), so its `at` is the same and the key refuses it, as `event_id` alone did. Only
two different messages under one id (a broken or forged gate, not a redelivery) could both be kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
PARENT = "passage_events"
DEFAULT = "passage_events_default"
ARCHIVE_SCHEMA = "archive"


def month_start(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"{PARENT}_y{month.year:04d}m{month.month:02d}"


def is_partitioned(session: Session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return False
    return bool(session.scalar(text("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c "
                                    "ON c.oid = p.partrelid WHERE c.relname = :t AND pg_table_is_visible(c.oid))"),
                               {"t": PARENT}))


@dataclass(frozen=True)
class Partition:
    name: str
    start: date | None  # None: the default partition
    rows_estimate: int


def partitions(session: Session) -> list[Partition]:
    """The attached partitions, oldest first (the default last)."""
    rows = session.execute(text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), c.reltuples::bigint FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = :t AND pg_table_is_visible(p.oid) ORDER BY c.relname"), {"t": PARENT})
    out = []
    for name, _bound, estimate in rows:
        start = None if name == DEFAULT else date(int(name[-7:-3]), int(name[-2:]), 1)
        out.append(Partition(name, start, max(0, estimate)))
    return sorted(out, key=lambda p: (p.start is None, p.start or date.min))


def create_month(session: Session, month: date) -> bool:
    """Attach the month's partition if missing, taking over the rows the default partition holds for
    it (a gate whose clock ran ahead). True when it was created."""
    name = partition_name(month)
    if session.scalar(text("SELECT to_regclass(:n)"), {"n": name}) is not None:
        return False
    start, end = month.isoformat(), add_months(month, 1).isoformat()
    bounds = f"FROM ('{start} 00:00:00+00') TO ('{end} 00:00:00+00')"
    session.execute(text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)"))
    session.execute(text(f"WITH moved AS (DELETE FROM {DEFAULT} WHERE at >= :a AND at < :b RETURNING *) "
                         f"INSERT INTO {name} SELECT * FROM moved"),
                    {"a": datetime.fromisoformat(start).replace(tzinfo=UTC),
                     "b": datetime.fromisoformat(end).replace(tzinfo=UTC)})
    session.execute(text(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES {bounds}"))
    return True


def ensure_partitions(session: Session, now: datetime, months_ahead: int = 3) -> list[str]:
    """This month's and the next `months_ahead` months' partitions exist (the scheduler's job)."""
    if not is_partitioned(session):
        return []
    made = []
    this_month = month_start(now)
    for n in range(months_ahead + 1):
        month = add_months(this_month, n)
        if create_month(session, month):
            made.append(partition_name(month))
    if made:
        log.info("passage partitions created: %s", ", ".join(made))
    return made


def retire_partitions(session: Session, now: datetime, retention_months: int) -> list[str]:
    """Detach the months that ended more than `retention_months` ago into the archive schema
    (0: keep every month). Returns the archived tables' names."""
    if retention_months <= 0 or not is_partitioned(session):
        return []
    oldest_kept = add_months(month_start(now), -retention_months)
    retired = []
    session.execute(text(f"CREATE SCHEMA IF NOT EXISTS {ARCHIVE_SCHEMA}"))
    for part in partitions(session):
        if part.start is None or part.start >= oldest_kept:
            continue
        session.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {part.name}"))
        session.execute(text(f"ALTER TABLE {part.name} SET SCHEMA {ARCHIVE_SCHEMA}"))
        retired.append(f"{ARCHIVE_SCHEMA}.{part.name}")
    if retired:
        log.info("passage partitions detached into %s: %s", ARCHIVE_SCHEMA, ", ".join(retired))
    return retired


def partition_job(session: Session, months_ahead: int, retention_months: int, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    ensure_partitions(session, now, months_ahead)
    retire_partitions(session, now, retention_months)


__all__ = ["Partition", "add_months", "create_month", "ensure_partitions", "is_partitioned", "month_start",
           "partition_job", "partition_name", "partitions", "retire_partitions"]
