"""Several parks in one central: the parks each staff user works for, a token's park

Existing users keep what they had on a one-park central: each is given every park already in the
database (admins see every park anyway).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(sa.Column("all_sites", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "staff_user_sites",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["staff_users.id"], name=op.f("fk_staff_user_sites_user_id_staff_users"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_staff_user_sites_site_id_sites"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "site_id", name=op.f("pk_staff_user_sites")),
    )
    op.execute("INSERT INTO staff_user_sites (user_id, site_id) SELECT u.id, s.id FROM staff_users u, sites s")
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("site_id", sa.String(length=64), nullable=True))
        batch.create_foreign_key(op.f("fk_api_tokens_site_id_sites"), "sites", ["site_id"], ["id"], ondelete="CASCADE")


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint(op.f("fk_api_tokens_site_id_sites"), type_="foreignkey")
        batch.drop_column("site_id")
    op.drop_table("staff_user_sites")
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("all_sites")
