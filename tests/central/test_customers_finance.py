"""Group customers and finance on the real store: contract prices, credit, suspension at the gates,
groups entering in parts, statements closed and corrected, shifts with a cash difference, and reports
that add up to the passages stored."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import msgspec
import pytest
from sqlalchemy import func, select

from central.models import AuditEntry, PassageEventRecord, StatementLine, SyncChange, Ticket
from central.services import Invalid, Refused
from central.services import customers as cs
from central.services import finance as fin
from central.services.ingest import ingest_batch
from central.services.tickets import IssueRequest, TicketTypeSpec, define_ticket_type
from protocol.ids import new_event_id
from protocol.messages import Delta, PassageEvent, decode
from protocol.rules import Credential, SitePolicy, Usage, ZoneState, decide
from tests.central.conftest import add_gates

TZ = ZoneInfo("Asia/Shanghai")


def today() -> date:
    return datetime.now(TZ).date()


@pytest.fixture
def park(ctx):
    """A park with a day ticket (rack price 100), a real-name ticket and a gate."""
    site = ctx.config.site
    with ctx.sessions.begin() as db:
        define_ticket_type(db, site, TicketTypeSpec(name="Day", id=1, price="100.00"))
        define_ticket_type(db, site, TicketTypeSpec(name="Named", id=2, price="120.00", real_name=True))
    add_gates(ctx, site, "g1")
    return ctx


def _customer(db, site, name="ABC Travel", credit="10000", kind="agency"):
    return cs.create_customer(db, site, cs.CustomerSpec(name=name, kind=kind, credit_limit=credit), actor="sales1")


def _order(customer, headcount=30, ticket_type=1, day=None, **kw):
    return cs.GroupOrderRequest(customer_id=customer.id, ticket_type=ticket_type, visit_date=day or today(),
                                headcount=headcount, guide_name="Wang Li", guide_phone="13800000000", **kw)


def _enter(ctx, ticket, n, gate="g1"):
    """`n` confirmed passages of the ticket at the gate, through the central's ingest."""
    now = datetime.now(TZ)
    events = [PassageEvent(id=new_event_id(), site=ctx.config.site, gate=gate, zone=1, at=now, direction="in",
                           credential_kind="qr", credential_ref=ticket.ref, passed=True, headcount=1,
                           ticket_type=ticket.ticket_type_id) for _ in range(n)]
    with ctx.sessions.begin() as db:
        ingest_batch(db, events)


def test_a_contract_price_applies_within_its_period_and_the_rack_price_outside(park):
    site = park.config.site
    with park.sessions.begin() as db:
        c = _customer(db, site)
        cs.set_contract_price(db, c.id, 1, "70.00", today() - timedelta(days=1), today() + timedelta(days=5))
        inside = cs.create_group_order(db, site, _order(c, 10))
        outside = cs.create_group_order(db, site, _order(c, 10, day=today() + timedelta(days=9)))
        assert inside.order.unit_price == Decimal("70.00")
        assert inside.order.amount == Decimal("700.00")
        assert [t.price for t in inside.tickets] == [Decimal("700.00")]  # one group ticket, 10 passages
        assert inside.tickets[0].headcount == 10 and inside.tickets[0].customer_id == c.id
        assert outside.order.unit_price == Decimal("100.00")  # the rack price where no contract applies
        assert cs.balance(db, c.id) == Decimal("1700.00")


def test_a_credit_limit_refuses_an_order_over_it_and_a_receipt_makes_room(park):
    site = park.config.site
    with park.sessions.begin() as db:
        c = _customer(db, site, credit="2500")
        cs.create_group_order(db, site, _order(c, 20))  # 2000 owed
        with pytest.raises(Refused) as refused:
            cs.create_group_order(db, site, _order(c, 6))  # 600 more: 2600 > 2500
        assert refused.value.code == "credit_limit"
        assert db.scalar(select(func.count()).select_from(Ticket).where(Ticket.customer_id == c.id)) == 1
        cs.record_receipt(db, c.id, "1000", actor="fin1")
        assert cs.balance(db, c.id) == Decimal("1000.00")
        assert cs.create_group_order(db, site, _order(c, 6)).created
        cash = cs.create_group_order(db, site, _order(c, 50, payment_method="bank_card"))  # paid, not on account
        assert cash.created and cs.balance(db, c.id) == Decimal("1600.00")


def test_a_retry_with_the_same_idempotency_key_issues_nothing_more(park):
    site = park.config.site
    with park.sessions.begin() as db:
        c = _customer(db, site)
        first = cs.create_group_order(db, site, _order(c, 12, idempotency_key="ota-order-77"))
        again = cs.create_group_order(db, site, _order(c, 12, idempotency_key="ota-order-77"))
        assert not again.created and again.order.id == first.order.id
        assert [t.id for t in again.tickets] == [t.id for t in first.tickets]
        with pytest.raises(Refused) as other:
            cs.create_group_order(db, site, _order(c, 13, idempotency_key="ota-order-77"))
        assert other.value.code == "idempotency_mismatch"
        assert cs.balance(db, c.id) == Decimal("1200.00")


def test_one_ticket_per_member_where_the_site_says_so_and_members_required_for_real_name(park):
    site = park.config.site
    with park.sessions.begin() as db:
        c = _customer(db, site)
        cs.update_settings(db, site, group_ticketing="members")
        result = cs.create_group_order(db, site, _order(c, 3))
        assert [t.headcount for t in result.tickets] == [1, 1, 1]
        with pytest.raises(Invalid) as missing:
            cs.create_group_order(db, site, _order(c, 2, ticket_type=2))
        assert missing.value.code == "members_required"
        named = cs.create_group_order(db, site, _order(c, 2, ticket_type=2, members=[
            cs.Member("Li Na", "110101199001011234"), cs.Member("Zhao Lei", "110101199202022345")]))
        assert all(t.id_digest for t in named.tickets)
        assert named.order.members == [{"name": "Li Na", "id_last4": "1234"}, {"name": "Zhao Lei", "id_last4": "2345"}]


def test_a_group_enters_in_parts_and_the_central_counts_it(park):
    site = park.config.site
    with park.sessions.begin() as db:
        c = _customer(db, site)
        result = cs.create_group_order(db, site, _order(c, 30))
        ticket = result.tickets[0]
        order_id = result.order.id
    _enter(park, ticket, 12)
    with park.sessions() as db:
        p = cs.progress(db, cs.get_order(db, order_id))
        assert (p.headcount, p.entered, p.left) == (30, 12, 18)
    _enter(park, ticket, 18)
    with park.sessions() as db:
        p = cs.progress(db, cs.get_order(db, order_id))
        assert (p.entered, p.left) == (30, 0)


def test_a_suspended_customers_unused_tickets_are_refused_at_gates_with_the_reason(park):
    site = park.config.site
    with park.sessions.begin() as db:
        c = _customer(db, site)
        ticket = cs.create_group_order(db, site, _order(c, 5)).tickets[0]
        seq_before = db.scalar(select(func.max(SyncChange.seq)).where(SyncChange.site_id == site)) or 0
        _, held = cs.suspend_customer(db, c.id, actor="sales1")
        assert held == 1
        with pytest.raises(Refused) as refused:
            cs.create_group_order(db, site, _order(c, 5))
        assert refused.value.code == "customer_suspended"
        change = db.scalar(select(SyncChange).where(SyncChange.site_id == site, SyncChange.seq > seq_before))
        delta = decode(Delta, change.payload)
        assert [(ch.ticket_id, ch.status) for ch in delta.changes] == [(ticket.id, "held")]
        # What a gate decides on that change (the same rules as at the central): refused, with the reason.
        ch = delta.changes[0]
        verdict = decide(credential=Credential(kind="qr", ref=ticket.ref, ticket_type=1, status=ch.status,
                                               valid_from=ch.valid_from, valid_to=ch.valid_to, headcount=5),
                         rules=None, usage=Usage(), zone=ZoneState(zone=1), direction="in",
                         now=datetime.now(TZ), site=SitePolicy())
        assert not verdict.granted and verdict.reason == "customer_suspended"
        cs.resume_customer(db, c.id, actor="sales1")
        assert db.get(Ticket, ticket.id).status == "valid"


def test_a_statement_is_opened_checked_closed_and_then_corrected_with_a_new_line(park):
    site = park.config.site
    with park.sessions.begin() as db:
        c = _customer(db, site)
        cs.set_contract_price(db, c.id, 1, "80.00", today() - timedelta(days=30))
        group = cs.create_group_order(db, site, _order(c, 20)).tickets[0]
        cs.update_settings(db, site, group_ticketing="members")
        singles = cs.create_group_order(db, site, _order(c, 4)).tickets
        from central.services.tickets import refund_ticket
        refund_ticket(db, singles[0].id, actor="sales1")
    _enter(park, group, 15)
    with park.sessions.begin() as db:
        st = fin.open_statement(db, site, c.id, today() - timedelta(days=1), today() + timedelta(days=1),
                                actor="fin1")
        v = fin.view(db, st)
        assert (v.ordered, v.entered, v.refunded) == (24, 15, 1)
        assert v.total == Decimal("1840.00")  # 23 people at the contract price 80
        with pytest.raises(Refused):
            fin.open_statement(db, site, c.id, today(), today(), actor="fin1")  # never billed twice
        fin.check_statement(db, st.id, actor="fin1")
        with pytest.raises(Refused):
            fin.recount(db, st.id, actor="fin1")
        fin.close_statement(db, st.id, actor="fin2")
        statement_id = st.id
        lines_before = [(x.id, x.amount) for x in st.lines]
    _enter(park, singles[1], 1)  # a passage after closing changes nothing on a closed statement
    with park.sessions.begin() as db:
        fin.add_correction(db, statement_id, "Guide's ticket not billed", "-80.00", actor="fin2")
    with park.sessions() as db:
        st = fin.get_statement(db, statement_id)
        assert [(x.id, x.amount) for x in st.lines if x.kind == "tickets"] == lines_before
        assert [x.amount for x in st.lines if x.kind == "correction"] == [Decimal("-80.00")]
        assert fin.total(st) == Decimal("1760.00")
        actions = set(db.scalars(select(AuditEntry.action).where(AuditEntry.target == f"S{statement_id}")))
        assert {"statement.open", "statement.check", "statement.close", "statement.correct"} <= actions
        assert db.scalar(select(func.count()).select_from(StatementLine)
                         .where(StatementLine.statement_id == statement_id)) == 2
        v = fin.view(db, st)
        text = fin.statement_csv(v)
        assert "ABC Travel" in text and "-80.00" in text and "1760.00" in text
        import io

        from openpyxl import load_workbook
        ws = load_workbook(io.BytesIO(fin.statement_xlsx(v))).active
        assert ws.cell(ws.max_row, 8).value == 1760.0


def test_a_shift_closes_with_a_cash_difference_and_a_large_refund_waits_for_a_supervisor(park):
    site = park.config.site
    with park.sessions.begin() as db:
        cs.update_settings(db, site, refund_approval_over="150")
        shift = fin.open_shift(db, site, "cashier1", "Window 3", opening_float="200")
        cash = fin.sell_in_shift(db, shift.id, IssueRequest(ticket_type=1), 3, "cash", "cashier1")
        fin.sell_in_shift(db, shift.id, IssueRequest(ticket_type=1), 2, "wechat_pay", "cashier1")
        big = fin.sell_in_shift(db, shift.id, IssueRequest(ticket_type=1, headcount=2, price="200"), 1, "alipay",
                                "cashier1")[0]
        done = fin.refund_in_shift(db, shift.id, cash[0].id, "cashier1", reason="changed plans")
        assert done.status == "done"
        waiting = fin.refund_in_shift(db, shift.id, big.id, "cashier1", reason="rain")
        assert waiting.status == "pending" and db.get(Ticket, big.id).status == "valid"
        with pytest.raises(Refused):
            fin.decide_refund(db, waiting.id, "cashier1", approve=True)  # not their own
        fin.decide_refund(db, waiting.id, "fin1", approve=True)
        assert db.get(Ticket, big.id).status == "refunded"
        closed = fin.close_shift(db, shift.id, "390.00", "cashier1")  # expected 200 + 300 - 100 = 400
        report = fin.shift_report(db, closed)
        assert report.expected_cash == Decimal("400.00") and report.difference == Decimal("-10.00")
        methods = {m.method: (m.sales, m.refunds) for m in report.by_method}
        assert methods == {"cash": (Decimal("300.00"), Decimal("-100.00")),
                           "wechat_pay": (Decimal("200.00"), Decimal("0.00")),
                           "alipay": (Decimal("200.00"), Decimal("-200.00"))}
        assert [(r.tickets, r.visitors) for r in report.by_type] == [(6, 7)]
        with pytest.raises(Refused):
            fin.sell_in_shift(db, shift.id, IssueRequest(ticket_type=1), 1, "cash", "cashier1")


def test_the_reports_add_up_to_the_tickets_and_passages_stored(park):
    site = park.config.site
    with park.sessions.begin() as db:
        c = _customer(db, site)
        group = cs.create_group_order(db, site, _order(c, 10)).tickets[0]
        shift = fin.open_shift(db, site, "cashier1", "W1")
        sold = fin.sell_in_shift(db, shift.id, IssueRequest(ticket_type=1), 4, "cash", "cashier1")
        fin.sell_in_shift(db, shift.id, IssueRequest(ticket_type=1), 2, "bank_card", "cashier1")
        fin.refund_in_shift(db, shift.id, sold[3].id, "cashier1")
    _enter(park, group, 7)
    _enter(park, sold[0], 1)
    _enter(park, sold[1], 1)
    with park.sessions() as db:
        stored = db.execute(select(func.count(), func.sum(Ticket.price), func.sum(Ticket.headcount))
                            .where(Ticket.site_id == site)).one()
        refunded = db.scalar(select(func.sum(Ticket.price)).where(Ticket.site_id == site, Ticket.status == "refunded"))
        for by in fin.DIMENSIONS:
            rows = fin.revenue(db, site, today(), today(), by=by)
            assert sum(r.tickets for r in rows) == stored[0], by
            assert sum(r.gross for r in rows) == stored[1], by
            assert sum(r.visitors for r in rows) == stored[2], by
            assert sum(r.refunded for r in rows) == refunded, by
        monthly = fin.revenue(db, site, today().replace(day=1), today(), by="payment_method", monthly=True)
        assert {r.key: r.gross for r in monthly} == {"on_account": Decimal("1000.00"), "cash": Decimal("400.00"),
                                                    "bank_card": Decimal("200.00")}
        usage = fin.sold_used_refunded(db, site, today(), today())
        passages = db.scalar(select(func.sum(PassageEventRecord.headcount)).where(
            PassageEventRecord.site_id == site, PassageEventRecord.passed.is_(True)))
        assert sum(u.used for u in usage) == passages == 9
        assert fin.passages_of_period_tickets(db, site, today(), today()) == passages
        assert sum(u.sold for u in usage) == 16 and sum(u.refunded for u in usage) == 1
        owed = {o.customer: o.balance for o in fin.owed_by_customers(db, site)}
        assert owed == {"ABC Travel": Decimal("1000.00")}


def test_bad_input_gets_a_clear_refusal_naming_the_field(park):
    site = park.config.site
    with park.sessions.begin() as db:
        with pytest.raises(Invalid) as bad:
            cs.create_customer(db, site, cs.CustomerSpec(name="X", kind="pirate"))
        assert bad.value.code == "bad_kind"
        c = _customer(db, site)
        with pytest.raises(Invalid) as phone:
            cs.create_group_order(db, site, cs.GroupOrderRequest(
                customer_id=c.id, ticket_type=1, visit_date=today(), headcount=3, guide_name="Wang",
                guide_phone=""))
        assert phone.value.code == "bad_guide_phone"
        with pytest.raises(Invalid):
            fin.open_statement(db, site, c.id, today(), today() - timedelta(days=1))
    assert msgspec  # imported for decode's types


def test_a_group_booked_into_a_time_slot_takes_its_places_and_gives_them_back_when_cancelled(park):
    from central.models import SlotQuota
    from central.services.bookings import define_quota

    site = park.config.site
    start = datetime.combine(today() + timedelta(days=1), datetime.min.time(), tzinfo=TZ).replace(hour=10)
    with park.sessions.begin() as db:
        c = _customer(db, site)
        quota = define_quota(db, site, start, start + timedelta(hours=1), 40)
        result = cs.create_group_order(db, site, _order(c, 30, day=start.date(), slot_start=start))
        assert result.tickets[0].slot_start == start and db.get(SlotQuota, quota.id).booked == 30
        with pytest.raises(Refused) as full:
            cs.create_group_order(db, site, _order(c, 11, day=start.date(), slot_start=start))
        assert full.value.code == "quota_full"
        cs.cancel_order(db, result.order.id, actor="sales1")
        assert db.get(SlotQuota, quota.id).booked == 0
        assert cs.balance(db, c.id) == Decimal("0.00")


def test_a_refund_at_the_desk_lowers_what_the_customer_owes(park):
    from central.services.tickets import refund_ticket

    site = park.config.site
    with park.sessions.begin() as db:
        c = _customer(db, site, credit="1000")
        ticket = cs.create_group_order(db, site, _order(c, 10)).tickets[0]
        assert cs.balance(db, c.id) == Decimal("1000.00")
        refund_ticket(db, ticket.id, actor="staff1", reason="rain")
        assert cs.balance(db, c.id) == Decimal("0.00")
        assert cs.create_group_order(db, site, _order(c, 10)).created  # the credit is free again


def test_what_is_owed_past_the_payment_term_is_overdue_and_receipts_pay_the_oldest_first(park):
    site = park.config.site
    with park.sessions.begin() as db:
        c = cs.create_customer(db, site, cs.CustomerSpec(name="Slow Payer", credit_limit="10000",
                                                         payment_term_days=10))
        cs.create_group_order(db, site, _order(c, 10))  # 1000, visiting today
        cs.create_group_order(db, site, _order(c, 5, day=today() + timedelta(days=3)))  # 500
        later = datetime.now(TZ) + timedelta(days=12)  # 12 days on: today's visit is past the term
        row = {o.customer: o for o in fin.owed_by_customers(db, site, now=later)}["Slow Payer"]
        assert (row.balance, row.overdue) == (Decimal("1500.00"), Decimal("1000.00"))
        cs.record_receipt(db, c.id, "600", actor="fin1")
        row = {o.customer: o for o in fin.owed_by_customers(db, site, now=later)}["Slow Payer"]
        assert (row.balance, row.overdue) == (Decimal("900.00"), Decimal("400.00"))
        assert {o.customer: o.overdue for o in fin.owed_by_customers(db, site)}["Slow Payer"] == Decimal("0.00")
