"""sites.overnight: what the nightly roll-over does with visitors still inside

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("overnight", sa.String(length=16), nullable=False, server_default="exit_all"))


def downgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("overnight")
