"""Face entry at booking: a booked person's selfie template, on the gates on the visit day only

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("booking_persons") as batch:
        batch.add_column(sa.Column("face_entry", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("face_record", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("face_on_gates", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("booking_persons") as batch:
        batch.drop_column("face_on_gates")
        batch.drop_column("face_record")
        batch.drop_column("face_entry")
