"""Replication between park servers and the head office: the change outbox, peers' acknowledgements,
what was applied from each origin, and changes that would not apply

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "repl_outbox",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("pos", sa.BigInteger(), nullable=True),
        sa.Column("tbl", sa.String(64), nullable=False),
        sa.Column("op", sa.String(1), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=True),
        sa.Column("row", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")),
    )
    op.create_index("ix_repl_outbox_pos", "repl_outbox", ["pos"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE IF NOT EXISTS repl_pos")
    op.create_table(
        "repl_peers",
        sa.Column("peer", sa.String(64), primary_key=True),
        sa.Column("acked_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mqtt_password_hash", sa.String(256), nullable=True),
    )
    op.create_table(
        "repl_applied",
        sa.Column("origin", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "repl_parked",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("tbl", sa.String(64), nullable=False),
        sa.Column("row", Json, nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS repl_capture() CASCADE")
        op.execute("DROP SEQUENCE IF EXISTS repl_pos")
    for table in ("repl_parked", "repl_applied", "repl_peers", "repl_outbox"):
        op.drop_table(table)
