"""Visitor bookings: the public booking site's parties, documents by digest, calendar days, settings,
the blocklist, and a closing time per slot

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("slot_quotas") as batch:
        batch.add_column(sa.Column("closes_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "booking_settings",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("ticket_type_id", sa.Integer(), nullable=True),
        sa.Column("days_ahead", sa.Integer(), nullable=False),
        sa.Column("party_max", sa.Integer(), nullable=False),
        sa.Column("cancel_before_min", sa.Integer(), nullable=False),
        sa.Column("close_before_min", sa.Integer(), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("face_entry", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_booking_settings_site_id_sites")),
        sa.ForeignKeyConstraint(["ticket_type_id"], ["ticket_types.id"],
                                name=op.f("fk_booking_settings_ticket_type_id_ticket_types")),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_booking_settings")),
    )
    op.create_table(
        "booking_days",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("booked", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_booking_days_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_days")),
        sa.UniqueConstraint("site_id", "day", name="uq_booking_days_site_day"),
    )
    op.create_table(
        "bookings",
        sa.Column("id", BigId, nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("quota_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("slot_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("party", sa.Integer(), nullable=False),
        sa.Column("phone_digest", sa.String(length=64), nullable=False),
        sa.Column("phone_masked", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("consent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_digest", sa.String(length=64), nullable=True),
        sa.Column("client_masked", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["quota_id"], ["slot_quotas.id"], name=op.f("fk_bookings_quota_id_slot_quotas")),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_bookings_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bookings")),
        sa.UniqueConstraint("number", name="uq_bookings_number"),
    )
    op.create_index("ix_bookings_site_day", "bookings", ["site_id", "day"])
    op.create_index("ix_bookings_phone", "bookings", ["site_id", "phone_digest"])
    op.create_index("ix_bookings_client_created", "bookings", ["site_id", "client_digest", "created_at"])
    op.create_table(
        "booking_persons",
        sa.Column("id", BigId, nullable=False),
        sa.Column("booking_id", BigId, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("doc_type", sa.String(length=16), nullable=False),
        sa.Column("doc_digest", sa.String(length=64), nullable=False),
        sa.Column("doc_masked", sa.String(length=40), nullable=False),
        sa.Column("ticket_id", BigId, nullable=True),
        sa.ForeignKeyConstraint(["booking_id"], ["bookings.id"], name=op.f("fk_booking_persons_booking_id_bookings")),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_booking_persons_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_persons")),
    )
    op.create_table(
        "booking_documents",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("doc_digest", sa.String(length=64), nullable=False),
        sa.Column("booking_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(["booking_id"], ["bookings.id"],
                                name=op.f("fk_booking_documents_booking_id_bookings")),
        sa.PrimaryKeyConstraint("site_id", "day", "doc_digest", name=op.f("pk_booking_documents")),
    )
    op.create_table(
        "booking_blocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("masked", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_booking_blocks_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_blocks")),
        sa.UniqueConstraint("site_id", "kind", "digest", name="uq_booking_blocks_site_kind_digest"),
    )


def downgrade() -> None:
    op.drop_table("booking_blocks")
    op.drop_table("booking_documents")
    op.drop_table("booking_persons")
    op.drop_index("ix_bookings_client_created", table_name="bookings")
    op.drop_index("ix_bookings_phone", table_name="bookings")
    op.drop_index("ix_bookings_site_day", table_name="bookings")
    op.drop_table("bookings")
    op.drop_table("booking_days")
    op.drop_table("booking_settings")
    with op.batch_alter_table("slot_quotas") as batch:
        batch.drop_column("closes_at")
