"""staff_sessions and login_failures: server-side login sessions, throttling by user and address

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "staff_sessions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("sid_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_hash", sa.String(length=16), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_why", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["staff_users.id"], name=op.f("fk_staff_sessions_user_id_staff_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_sessions")),
        sa.UniqueConstraint("sid_hash", name=op.f("uq_staff_sessions_sid_hash")),
    )
    with op.batch_alter_table("staff_sessions") as batch:
        batch.create_index("ix_staff_sessions_user", ["user_id", "revoked_at"], unique=False)
    op.create_table(
        "login_failures",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("client_hash", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    with op.batch_alter_table("login_failures") as batch:
        batch.create_index("ix_login_failures_username_at", ["username", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("login_failures") as batch:
        batch.drop_index("ix_login_failures_username_at")
    op.drop_table("login_failures")
    with op.batch_alter_table("staff_sessions") as batch:
        batch.drop_index("ix_staff_sessions_user")
    op.drop_table("staff_sessions")
