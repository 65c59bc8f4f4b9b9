"""Passages stored per gate, park day and zone: the stored side of the live counts' light path

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gate_day_counts",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("gate", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("zone", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("shard", sa.String(length=32), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("exits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "gate", "day", "zone", "shard", name=op.f("pk_gate_day_counts")),
    )


def downgrade() -> None:
    op.drop_table("gate_day_counts")
