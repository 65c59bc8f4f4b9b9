"""sites.claim_deadline_ms: how long a gate waits for the central's answer to a claim

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("claim_deadline_ms", sa.Integer(), nullable=False, server_default="300"))


def downgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("claim_deadline_ms")
