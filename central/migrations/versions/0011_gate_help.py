"""At the gate, for people: the site's fire scope and when its last emergency was ended, ticket types
staff must check at the gate (a child's, senior's or concession ticket), ID card with live face (人证核验)
for the site or a ticket type, staff help at the gate (holders' photos with consent, help requests),
re-entry bound by fingerprint (人票绑定)

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
        batch.add_column(sa.Column("bind_finger", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "holder_photos",
        sa.Column("person_id", sa.Integer(), sa.ForeignKey("persons.id", name="fk_holder_photos_person_id_persons"),
                  primary_key=True),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.Column("consent_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "help_requests",
        sa.Column("id", sa.String(length=128), primary_key=True),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("gate", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("credential_ref", sa.String(length=128), nullable=False),
        sa.Column("holder_ref", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("frame", sa.LargeBinary(), nullable=True),
        sa.Column("photo", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_help_requests_site_gate_at", "help_requests", ["site_id", "gate", "at"])


def downgrade() -> None:
    op.drop_index("ix_help_requests_site_gate_at", table_name="help_requests")
    op.drop_table("help_requests")
    op.drop_table("holder_photos")
    with op.batch_alter_table("ticket_types") as batch:
        batch.drop_column("bind_finger")
        batch.drop_column("id_face")
        batch.drop_column("staff_check")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("id_face")
        batch.drop_column("emergency_ended_at")
        batch.drop_column("fire_scope")
