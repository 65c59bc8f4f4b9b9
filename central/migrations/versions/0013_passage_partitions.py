"""passage_events partitioned by month on PostgreSQL; the exactly-once key becomes (event_id, at)

A partitioned table's unique keys must contain the partition key (`at`): the primary key is (id, at)
and the event key (event_id, at). A redelivered event carries the same `at`, so the key still
refuses it (see central.services.partitions). SQLite keeps one table with the same unique key.

On PostgreSQL the rows are copied into the new table once: minutes per ten million passages; run it
in a quiet hour (the gates keep their passages meanwhile).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

MONTHS_AHEAD = 3


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _month_partition(month: date) -> str:
    end = _add_months(month, 1)
    return (f"CREATE TABLE passage_events_y{month.year:04d}m{month.month:02d} PARTITION OF passage_events "
            f"FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') TO ('{end.isoformat()} 00:00:00+00')")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        with op.batch_alter_table("passage_events") as batch:
            batch.drop_constraint("uq_passage_events_event_id", type_="unique")
            batch.create_unique_constraint("uq_passage_events_event_id_at", ["event_id", "at"])
        return
    op.execute("ALTER TABLE passage_events RENAME TO passage_events_plain")
    op.execute("ALTER TABLE passage_events_plain RENAME CONSTRAINT pk_passage_events TO pk_passage_events_plain")
    op.execute("ALTER TABLE passage_events_plain RENAME CONSTRAINT uq_passage_events_event_id "
               "TO uq_passage_events_plain_event_id")
    op.execute("ALTER INDEX ix_passage_events_site_at RENAME TO ix_passage_events_plain_site_at")
    op.execute("ALTER INDEX ix_passage_events_ref RENAME TO ix_passage_events_plain_ref")
    op.execute("CREATE TABLE passage_events (LIKE passage_events_plain INCLUDING DEFAULTS) PARTITION BY RANGE (at)")
    op.execute("ALTER TABLE passage_events ADD CONSTRAINT pk_passage_events PRIMARY KEY (id, at)")
    op.execute("ALTER TABLE passage_events ADD CONSTRAINT uq_passage_events_event_id_at UNIQUE (event_id, at)")
    op.execute("CREATE INDEX ix_passage_events_site_at ON passage_events (site_id, at)")
    op.execute("CREATE INDEX ix_passage_events_ref ON passage_events (credential_ref)")
    op.execute("CREATE TABLE passage_events_default PARTITION OF passage_events DEFAULT")
    this_month = datetime.now(UTC).date().replace(day=1)
    months = {_add_months(this_month, n) for n in range(MONTHS_AHEAD + 1)}
    stored = bind.exec_driver_sql(
        "SELECT DISTINCT date_trunc('month', at AT TIME ZONE 'UTC')::date FROM passage_events_plain "
        "WHERE at >= '2000-01-01' AND at < now() + interval '1 year'").fetchall()
    months |= {row[0] for row in stored}
    for month in sorted(months):
        op.execute(_month_partition(month))
    op.execute("INSERT INTO passage_events SELECT * FROM passage_events_plain")
    op.execute("ALTER SEQUENCE passage_events_id_seq OWNED BY passage_events.id")
    op.execute("DROP TABLE passage_events_plain")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        with op.batch_alter_table("passage_events") as batch:
            batch.drop_constraint("uq_passage_events_event_id_at", type_="unique")
            batch.create_unique_constraint("uq_passage_events_event_id", ["event_id"])
        return
    op.execute("CREATE TABLE passage_events_plain (LIKE passage_events INCLUDING DEFAULTS)")
    op.execute("INSERT INTO passage_events_plain SELECT * FROM passage_events")
    op.execute("ALTER SEQUENCE passage_events_id_seq OWNED BY passage_events_plain.id")
    op.execute("DROP TABLE passage_events")  # and its partitions; detached ones in `archive` stay
    op.execute("ALTER TABLE passage_events_plain RENAME TO passage_events")
    op.execute("ALTER TABLE passage_events ADD CONSTRAINT pk_passage_events PRIMARY KEY (id)")
    op.execute("ALTER TABLE passage_events ADD CONSTRAINT uq_passage_events_event_id UNIQUE (event_id)")
    op.execute("CREATE INDEX ix_passage_events_site_at ON passage_events (site_id, at)")
    op.execute("CREATE INDEX ix_passage_events_ref ON passage_events (credential_ref)")
