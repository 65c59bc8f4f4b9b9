"""passage_events.flag and alerts (the central checks what gates report before it counts it);
parked_messages.size and sha256 (parked payloads are kept truncated)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("passage_events") as batch:
        batch.add_column(sa.Column("flag", sa.String(length=64), nullable=True))
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("gate", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=256), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts") as batch:
        batch.create_index("uq_alerts_open", ["site_id", "gate", "kind"], unique=True,
                           postgresql_where=sa.text("resolved_at IS NULL"),
                           sqlite_where=sa.text("resolved_at IS NULL"))
        batch.create_index("ix_alerts_site_resolved", ["site_id", "resolved_at"], unique=False)
    with op.batch_alter_table("parked_messages") as batch:
        batch.add_column(sa.Column("size", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("sha256", sa.String(length=64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("parked_messages") as batch:
        batch.drop_column("sha256")
        batch.drop_column("size")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_index("ix_alerts_site_resolved")
        batch.drop_index("uq_alerts_open")
    op.drop_table("alerts")
    with op.batch_alter_table("passage_events") as batch:
        batch.drop_column("flag")
