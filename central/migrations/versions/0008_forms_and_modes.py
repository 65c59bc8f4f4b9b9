"""What staff set is what gates do: a ticket type's headcount range, the mode a gate reports, generated
passwords changed at first login

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ticket_types") as batch:
        batch.add_column(sa.Column("min_headcount", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("max_headcount", sa.Integer(), nullable=False, server_default="255"))
    with op.batch_alter_table("gates") as batch:
        batch.add_column(sa.Column("reported_mode", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("mode_before_emergency", sa.String(length=16), nullable=True))
    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("must_change_password")
    with op.batch_alter_table("gates") as batch:
        batch.drop_column("mode_before_emergency")
        batch.drop_column("reported_mode")
    with op.batch_alter_table("ticket_types") as batch:
        batch.drop_column("max_headcount")
        batch.drop_column("min_headcount")
