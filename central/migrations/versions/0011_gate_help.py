"""At the gate, for people: the site's fire scope and when its last emergency was ended, ticket types
staff must check at the gate (a child's, senior's or concession ticket), ID card with live face (人证核验)
for the site or a ticket type

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("fire_scope", sa.String(length=8), nullable=False, server_default="zone"))
        batch.add_column(sa.Column("emergency_ended_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("id_face", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("ticket_types") as batch:
        batch.add_column(sa.Column("staff_check", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("id_face", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("ticket_types") as batch:
        batch.drop_column("id_face")
        batch.drop_column("staff_check")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("id_face")
        batch.drop_column("emergency_ended_at")
        batch.drop_column("fire_scope")
