"""Group customers and finance: customers, contacts, contract prices, group orders, box-office shifts,
payments, settlement statements; tickets know their customer, group order, shift and payment method;
API tokens may be scoped to a customer and a site

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Money = sa.Numeric(12, 2)


def upgrade() -> None:
    op.create_table(
        "finance_settings",
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id", name="fk_finance_settings_site_id_sites"),
                  nullable=False),
        sa.Column("group_ticketing", sa.String(16), nullable=False),
        sa.Column("refund_approval_over", Money, nullable=False),
        sa.PrimaryKeyConstraint("site_id", name="pk_finance_settings"),
    )
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id", name="fk_customers_site_id_sites"),
                  nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("credit_limit", Money, nullable=False),
        sa.Column("payment_term_days", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
        sa.UniqueConstraint("site_id", "name", name="uq_customers_site_name"),
    )
    op.create_table(
        "customer_contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey(
            "customers.id", ondelete="CASCADE", name="fk_customer_contacts_customer_id_customers"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("email", sa.String(200), nullable=False),
        sa.Column("duty", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_customer_contacts"),
    )
    op.create_table(
        "contract_prices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey(
            "customers.id", ondelete="CASCADE", name="fk_contract_prices_customer_id_customers"), nullable=False),
        sa.Column("ticket_type_id", sa.Integer(), sa.ForeignKey(
            "ticket_types.id", name="fk_contract_prices_ticket_type_id_ticket_types"), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("price", Money, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_contract_prices"),
    )
    op.create_index("ix_contract_prices_customer_type", "contract_prices", ["customer_id", "ticket_type_id"])
    op.create_table(
        "group_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id", name="fk_group_orders_site_id_sites"),
                  nullable=False),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey(
            "customers.id", name="fk_group_orders_customer_id_customers"), nullable=False),
        sa.Column("ticket_type_id", sa.Integer(), sa.ForeignKey(
            "ticket_types.id", name="fk_group_orders_ticket_type_id_ticket_types"), nullable=False),
        sa.Column("visit_date", sa.Date(), nullable=False),
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("slot_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("headcount", sa.Integer(), nullable=False),
        sa.Column("guide_name", sa.String(200), nullable=False),
        sa.Column("guide_phone", sa.String(32), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("ticketing", sa.String(16), nullable=False),
        sa.Column("unit_price", Money, nullable=False),
        sa.Column("amount", Money, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_group_orders"),
        sa.UniqueConstraint("customer_id", "idempotency_key", name="uq_group_orders_customer_key"),
    )
    op.create_table(
        "shifts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id", name="fk_shifts_site_id_sites"),
                  nullable=False),
        sa.Column("window", sa.String(64), nullable=False),
        sa.Column("cashier", sa.String(128), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opening_float", Money, nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expected_cash", Money, nullable=True),
        sa.Column("counted_cash", Money, nullable=True),
        sa.Column("note", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_shifts"),
    )
    op.create_index("uq_shifts_open_cashier", "shifts", ["site_id", "cashier"], unique=True,
                    postgresql_where=sa.text("closed_at IS NULL"), sqlite_where=sa.text("closed_at IS NULL"))
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("customer_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("group_order_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("shift_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("payment_method", sa.String(16), nullable=True))
        batch.create_foreign_key("fk_tickets_customer_id_customers", "customers", ["customer_id"], ["id"])
        batch.create_foreign_key("fk_tickets_group_order_id_group_orders", "group_orders", ["group_order_id"], ["id"])
        batch.create_foreign_key("fk_tickets_shift_id_shifts", "shifts", ["shift_id"], ["id"])
    op.create_index("ix_tickets_customer_valid_from", "tickets", ["customer_id", "valid_from"])
    op.create_table(
        "payments",
        sa.Column("id", BigId, nullable=False),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id", name="fk_payments_site_id_sites"),
                  nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("amount", Money, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ticket_id", BigId, sa.ForeignKey("tickets.id", name="fk_payments_ticket_id_tickets"),
                  nullable=True),
        sa.Column("shift_id", sa.Integer(), sa.ForeignKey("shifts.id", name="fk_payments_shift_id_shifts"),
                  nullable=True),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey(
            "customers.id", name="fk_payments_customer_id_customers"), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("approved_by", sa.String(128), nullable=True),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_payments"),
    )
    op.create_index("ix_payments_site_at", "payments", ["site_id", "at"])
    op.create_table(
        "statements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.String(64), sa.ForeignKey("sites.id", name="fk_statements_site_id_sites"),
                  nullable=False),
        sa.Column("customer_id", sa.Integer(), sa.ForeignKey(
            "customers.id", name="fk_statements_customer_id_customers"), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(128), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_by", sa.String(128), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_statements"),
    )
    op.create_table(
        "statement_lines",
        sa.Column("id", BigId, nullable=False),
        sa.Column("statement_id", sa.Integer(), sa.ForeignKey(
            "statements.id", ondelete="CASCADE", name="fk_statement_lines_statement_id_statements"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ticket_type_id", sa.Integer(), sa.ForeignKey(
            "ticket_types.id", name="fk_statement_lines_ticket_type_id_ticket_types"), nullable=True),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("ordered", sa.Integer(), nullable=False),
        sa.Column("entered", sa.Integer(), nullable=False),
        sa.Column("refunded", sa.Integer(), nullable=False),
        sa.Column("no_show", sa.Integer(), nullable=False),
        sa.Column("unit_price", Money, nullable=False),
        sa.Column("amount", Money, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_statement_lines"),
    )
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("customer_id", sa.Integer(), nullable=True))
        # (the token's park, api_tokens.site_id, comes with migration 0014)
        batch.create_foreign_key("fk_api_tokens_customer_id_customers", "customers", ["customer_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint("fk_api_tokens_customer_id_customers", type_="foreignkey")
        batch.drop_column("customer_id")
    op.drop_table("statement_lines")
    op.drop_table("statements")
    op.drop_index("ix_payments_site_at", table_name="payments")
    op.drop_table("payments")
    op.drop_index("ix_tickets_customer_valid_from", table_name="tickets")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_constraint("fk_tickets_shift_id_shifts", type_="foreignkey")
        batch.drop_constraint("fk_tickets_group_order_id_group_orders", type_="foreignkey")
        batch.drop_constraint("fk_tickets_customer_id_customers", type_="foreignkey")
        batch.drop_column("payment_method")
        batch.drop_column("shift_id")
        batch.drop_column("group_order_id")
        batch.drop_column("customer_id")
    op.drop_index("uq_shifts_open_cashier", table_name="shifts")
    op.drop_table("shifts")
    op.drop_table("group_orders")
    op.drop_index("ix_contract_prices_customer_type", table_name="contract_prices")
    op.drop_table("contract_prices")
    op.drop_table("customer_contacts")
    op.drop_table("customers")
    op.drop_table("finance_settings")
