"""Finance: settlement statements per customer and period, box-office shifts, and revenue reports.

Statements

    open     finance opens one for a customer and local days; its lines are counted from the tickets
             billed to the customer (`Ticket.customer_id`) for visits in the period, and may be
             recounted while it is open
    checked  a second look: the lines are frozen
    closed   final: its lines never change again; a correction is a new line (`add_correction`)

A line is a ticket type at one unit price: people ordered, entered (confirmed passages, at most each
ticket's headcount), refunded, no-show (not entered on a visit already over), and the amount billed
(what the tickets were issued at: the contract price, so what a channel's token issued is what it is
billed). Periods of one customer's statements never overlap, so nothing is billed twice.

Shifts

A cashier opens a shift at a window with a float, sells and refunds within it, and closes it with
the cash counted; the report shows sales by ticket type and payment method, refunds, and the
difference between the cash expected and counted. A refund over the site's limit waits for a
supervisor (finance or manager, never the cashier) to approve it.

Every change is audited.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, case, cast, func, literal, select
from sqlalchemy.orm import Session

from central.i18n import _l
from central.models import (
    PAYMENT_METHODS,
    CredentialUsage,
    Customer,
    PassageEventRecord,
    Payment,
    Shift,
    Statement,
    StatementLine,
    Ticket,
    TicketType,
    utcnow,
)
from central.services import Invalid, NotFound, Refused, limits
from central.services import customers as customer_service
from central.services import tickets as ticket_service
from central.services.audit import audit
from central.services.gates import get_site
from central.services.lookup import get_in_site
from central.services.reports import BUCKET_S, MAX_DAYS, Period, _bucket, _local
from protocol.clock import park_now
from protocol.ids import TICKET

MONEY = Decimal("0.01")


def _period(session: Session, site_id: str, start: date, end: date) -> Period:
    site = get_site(session, site_id)
    if not isinstance(start, date) or not isinstance(end, date):
        raise Invalid("bad_period", _l("Give the period's days as dates."))
    if end < start:
        raise Invalid("bad_period", _l("The end of the period is before its start."))
    if (end - start).days >= MAX_DAYS:
        raise Invalid("bad_period", _l("A report covers at most %(n)s days.", n=MAX_DAYS))
    return Period(site_id, ZoneInfo(site.timezone), start, end)


# --- statements --------------------------------------------------------------------------------


def get_statement(session: Session, statement_id: int, site_id: str | None = None) -> Statement:
    return get_in_site(session, Statement, statement_id, site_id, "no_statement", _l("There is no such statement."))


def list_statements(session: Session, site_id: str, customer_id: int | None = None) -> list[Statement]:
    stmt = select(Statement).where(Statement.site_id == site_id)
    if customer_id is not None:
        stmt = stmt.where(Statement.customer_id == customer_id)
    return list(session.scalars(stmt.order_by(Statement.period_start.desc(), Statement.id.desc()).limit(500)))


def _count_lines(session: Session, st: Statement, now: datetime) -> list[StatementLine]:
    p = _period(session, st.site_id, st.period_start, st.period_end)
    tickets = list(session.scalars(select(Ticket).where(
        Ticket.customer_id == st.customer_id, Ticket.site_id == st.site_id,
        Ticket.valid_from >= p.utc_from, Ticket.valid_from < p.utc_to).order_by(Ticket.id)))
    refs = [t.ref for t in tickets]
    used: dict[str, int] = {}
    for i in range(0, len(refs), 1000):
        used.update(session.execute(select(CredentialUsage.ref, CredentialUsage.entries).where(
            CredentialUsage.site_id == st.site_id, CredentialUsage.ref.in_(refs[i:i + 1000]))).all())
    groups: dict[tuple[int, Decimal], StatementLine] = {}
    names = {tt.id: tt.name for tt in session.scalars(select(TicketType).where(TicketType.site_id == st.site_id))}
    for t in tickets:
        unit = (Decimal(t.price) / t.headcount).quantize(MONEY)
        line = groups.get((t.ticket_type_id, unit))
        if line is None:
            line = groups[(t.ticket_type_id, unit)] = StatementLine(
                statement_id=st.id, kind="tickets", ticket_type_id=t.ticket_type_id,
                description=names.get(t.ticket_type_id, str(t.ticket_type_id)), ordered=0, entered=0, refunded=0,
                no_show=0, unit_price=unit, amount=Decimal("0.00"))
        line.ordered += t.headcount
        if t.status == "refunded":
            line.refunded += t.headcount
            continue
        entered = min(used.get(t.ref, 0), t.headcount)
        line.entered += entered
        if t.valid_to < now:
            line.no_show += t.headcount - entered
        line.amount = Decimal(line.amount) + Decimal(t.price)
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0], k[1]))]


def _overlapping(session: Session, customer_id: int, start: date, end: date, but: int | None = None) -> bool:
    stmt = select(Statement.id).where(Statement.customer_id == customer_id, Statement.period_start <= end,
                                      Statement.period_end >= start)
    if but is not None:
        stmt = stmt.where(Statement.id != but)
    return session.scalar(stmt.limit(1)) is not None


def open_statement(session: Session, site_id: str, customer_id: int, start: date, end: date,
                   actor: str | None = None, now: datetime | None = None) -> Statement:
    customer = customer_service.get_customer(session, customer_id, site_id)
    _period(session, site_id, start, end)
    customer = session.get(Customer, customer.id, with_for_update=True) or customer  # one statement at a time
    if _overlapping(session, customer.id, start, end):
        raise Refused("statement_overlaps", _l(
            "%(name)s already has a statement for some of these days.", name=customer.name))
    st = Statement(site_id=site_id, customer_id=customer.id, period_start=start, period_end=end, status="open",
                   opened_by=actor)
    session.add(st)
    session.flush()
    for line in _count_lines(session, st, now or park_now()):
        line.created_by = actor
        session.add(line)
    session.flush()
    session.refresh(st)
    audit(session, actor, "statement.open", f"S{st.id}", customer=f"C{customer.id}", start=start.isoformat(),
          end=end.isoformat(), total=str(total(st)))
    return st


def recount(session: Session, statement_id: int, actor: str | None = None, now: datetime | None = None) -> Statement:
    """Count an open statement's lines again (passages and refunds since); checked or closed: refused."""
    st = session.get(Statement, statement_id, with_for_update=True) or get_statement(session, statement_id)
    if st.status != "open":
        raise Refused("statement_frozen", _l("This statement is %(status)s: its lines no longer change.",
                                             status=status_text(st.status)))
    for line in list(st.lines):
        if line.kind == "tickets":
            session.delete(line)
    session.flush()
    for line in _count_lines(session, st, now or park_now()):
        line.created_by = actor
        session.add(line)
    session.flush()
    session.refresh(st)
    audit(session, actor, "statement.recount", f"S{st.id}", total=str(total(st)))
    return st


STATUS_TEXT = {"open": _l("open"), "checked": _l("checked"), "closed": _l("closed")}


def status_text(status: str) -> str:
    return str(STATUS_TEXT.get(status, status))


def check_statement(session: Session, statement_id: int, actor: str | None = None) -> Statement:
    st = session.get(Statement, statement_id, with_for_update=True) or get_statement(session, statement_id)
    if st.status != "open":
        raise Refused("statement_not_open", _l("Only an open statement can be checked."))
    st.status, st.checked_at, st.checked_by = "checked", utcnow(), actor
    audit(session, actor, "statement.check", f"S{st.id}", total=str(total(st)))
    return st


def close_statement(session: Session, statement_id: int, actor: str | None = None) -> Statement:
    st = session.get(Statement, statement_id, with_for_update=True) or get_statement(session, statement_id)
    if st.status != "checked":
        raise Refused("statement_not_checked", _l("A statement is checked before it is closed."))
    st.status, st.closed_at, st.closed_by = "closed", utcnow(), actor
    audit(session, actor, "statement.close", f"S{st.id}", total=str(total(st)))
    return st


def add_correction(session: Session, statement_id: int, description: str, amount, actor: str | None = None,
                   ) -> StatementLine:
    """A correction: a new line (a credit is a negative amount); the statement's other lines stay as they were."""
    st = get_statement(session, statement_id)
    limits.text("bad_description", "description", description, 500, required=True)
    value = _signed_money(amount)
    if value == 0:
        raise Invalid("bad_amount", _l("A correction's amount is not 0."))
    line = StatementLine(statement_id=st.id, kind="correction", description=description.strip(), ordered=0,
                         entered=0, refunded=0, no_show=0, unit_price=value, amount=value, created_by=actor)
    session.add(line)
    session.flush()
    session.refresh(st)
    audit(session, actor, "statement.correct", f"S{st.id}", line=line.id, amount=str(value), total=str(total(st)))
    return line


def _signed_money(value) -> Decimal:
    text = str(value).strip() if value is not None else ""
    negative = text.startswith("-")
    amount = limits.money(text[1:] if negative else text)
    return -amount if negative else amount


def total(st: Statement) -> Decimal:
    return sum((Decimal(line.amount) for line in st.lines), Decimal("0.00")).quantize(MONEY)


@dataclass(frozen=True)
class StatementView:
    statement: Statement
    customer: Customer
    lines: list[StatementLine]
    ordered: int
    entered: int
    refunded: int
    no_show: int
    total: Decimal
    balance: Decimal  # what the customer owes on account now
    credit_limit: Decimal

    @property
    def available(self) -> Decimal:
        return Decimal(self.credit_limit) - self.balance


def view(session: Session, st: Statement) -> StatementView:
    customer = customer_service.get_customer(session, st.customer_id)
    tickets = [x for x in st.lines if x.kind == "tickets"]
    return StatementView(st, customer, list(st.lines), sum(x.ordered for x in tickets),
                         sum(x.entered for x in tickets), sum(x.refunded for x in tickets),
                         sum(x.no_show for x in tickets), total(st), customer_service.balance(session, customer.id),
                         Decimal(customer.credit_limit))


STATEMENT_COLUMNS = ("kind", "description", "ordered", "entered", "refunded", "no_show", "unit_price", "amount")


def statement_rows(v: StatementView) -> list[list]:
    """The statement as rows: a header, one row per line, the total (for CSV and XLSX)."""
    rows: list[list] = [list(STATEMENT_COLUMNS)]
    for line in v.lines:
        rows.append([line.kind, line.description, line.ordered, line.entered, line.refunded, line.no_show,
                     Decimal(line.unit_price), Decimal(line.amount)])
    rows.append(["total", "", v.ordered, v.entered, v.refunded, v.no_show, "", v.total])
    return rows


def _cell(value) -> str:
    from central.services.reports import _cell as report_cell

    return report_cell(value)


def statement_csv(v: StatementView) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_cell(f"{v.customer.name}"), _cell(v.statement.period_start.isoformat()),
                     _cell(v.statement.period_end.isoformat()), v.statement.status])
    for row in statement_rows(v):
        writer.writerow([_cell(c) for c in row])
    return out.getvalue()


def statement_xlsx(v: StatementView) -> bytes:
    from openpyxl import Workbook
    from openpyxl.worksheet.worksheet import Worksheet

    wb = Workbook()
    ws = wb.active
    if not isinstance(ws, Worksheet):  # a new workbook opens on its one worksheet
        raise RuntimeError("openpyxl made a workbook without a worksheet")
    ws.title = f"S{v.statement.id}"
    ws.append([_cell(v.customer.name), v.statement.period_start, v.statement.period_end, v.statement.status])
    for row in statement_rows(v):
        ws.append([float(c) if isinstance(c, Decimal) else _cell(c) if isinstance(c, str) else c for c in row])
    for cells in ws.iter_rows(min_row=3, min_col=7, max_col=8):
        for cell in cells:
            cell.number_format = "#,##0.00"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# --- box-office shifts -------------------------------------------------------------------------


def get_shift(session: Session, shift_id: int, site_id: str | None = None) -> Shift:
    return get_in_site(session, Shift, shift_id, site_id, "no_shift", _l("There is no such shift."))


def current_shift(session: Session, site_id: str, cashier: str) -> Shift | None:
    return session.scalar(select(Shift).where(Shift.site_id == site_id, Shift.cashier == cashier,
                                              Shift.closed_at.is_(None)))


def list_shifts(session: Session, site_id: str, limit: int = 100) -> list[Shift]:
    return list(session.scalars(select(Shift).where(Shift.site_id == site_id)
                                .order_by(Shift.opened_at.desc()).limit(limit)))


def open_shift(session: Session, site_id: str, cashier: str, window: str, opening_float=0) -> Shift:
    get_site(session, site_id)
    limits.text("bad_window", "window", window, 64, required=True)
    if current_shift(session, site_id, cashier) is not None:
        raise Refused("shift_open", _l("You already have an open shift: close it first."))
    shift = Shift(site_id=site_id, window=window.strip(), cashier=cashier, opening_float=limits.money(opening_float),
                  note="")
    session.add(shift)
    session.flush()
    audit(session, cashier, "shift.open", f"SH{shift.id}", window=shift.window, float=str(shift.opening_float))
    return shift


def _own_open_shift(session: Session, shift_id: int, cashier: str) -> Shift:
    shift = session.get(Shift, shift_id, with_for_update=True) or get_shift(session, shift_id)
    if shift.closed_at is not None:
        raise Refused("shift_closed", _l("This shift is closed."))
    if shift.cashier != cashier:
        raise Refused("not_your_shift", _l("This is another cashier's shift."))
    return shift


def sell_in_shift(session: Session, shift_id: int, request: ticket_service.IssueRequest, quantity: int,
                  method: str, cashier: str, customer_id: int | None = None) -> list[Ticket]:
    """Sell `quantity` tickets in the cashier's open shift, paid by `method` (on account: a customer's)."""
    shift = _own_open_shift(session, shift_id, cashier)
    if method not in PAYMENT_METHODS:
        raise Invalid("bad_payment_method", _l("Choose a payment method from the list."))
    limits.integer("bad_quantity", "count", quantity, 1, 500)
    customer = None
    if method == "on_account":
        if customer_id is None:
            raise Invalid("customer_required", _l("A sale on account names the customer."))
        customer = customer_service.get_customer(session, customer_id, shift.site_id)
        customer = session.get(Customer, customer.id, with_for_update=True) or customer  # one credit check at a time
        if customer.status != "active":
            raise Refused("customer_suspended", _l("%(name)s is suspended: it cannot order.", name=customer.name))
    tickets = ticket_service.issue_tickets(session, shift.site_id, [request] * quantity, actor=cashier)
    amount = sum((Decimal(t.price) for t in tickets), Decimal("0"))
    if customer is not None:
        owed = customer_service.balance(session, customer.id)
        if owed + amount > Decimal(customer.credit_limit):
            raise Refused("credit_limit", _l(
                "This order (%(amount)s) would take what %(name)s owes (%(owed)s) past its credit limit "
                "(%(limit)s).", amount=amount, name=customer.name, owed=owed, limit=customer.credit_limit))
    for t in tickets:
        t.shift_id, t.payment_method = shift.id, method
        if customer is not None:
            t.customer_id = customer.id
        session.add(Payment(site_id=shift.site_id, kind="sale", method=method, amount=t.price, status="done",
                            ticket_id=t.id, shift_id=shift.id, customer_id=t.customer_id, actor=cashier))
    session.flush()
    audit(session, cashier, "shift.sell", f"SH{shift.id}", tickets=len(tickets), method=method, amount=str(amount))
    return tickets


def refund_in_shift(session: Session, shift_id: int, ticket_id: int, cashier: str, reason: str = "") -> Payment:
    """Refund a ticket in the cashier's shift; over the site's limit it waits for a supervisor (`pending`)."""
    shift = _own_open_shift(session, shift_id, cashier)
    ticket = ticket_service.get_ticket(session, ticket_id)
    if ticket.site_id != shift.site_id:
        raise NotFound("no_ticket", _l("There is no such ticket."))
    limits.text("bad_reason", "reason", reason, limits.REASON)
    if ticket.status != "valid":
        ticket_service.refund_ticket(session, ticket_id, actor=cashier, reason=reason)  # says why not
    pending = session.scalar(select(Payment.id).where(Payment.ticket_id == ticket.id, Payment.kind == "refund",
                                                      Payment.status == "pending"))
    if pending is not None:
        raise Refused("refund_pending", _l("A refund of this ticket already waits for approval."))
    limit = Decimal(customer_service.settings(session, shift.site_id).refund_approval_over)
    method = ticket.payment_method or "cash"
    payment = Payment(site_id=shift.site_id, kind="refund", method=method, amount=-Decimal(ticket.price),
                      ticket_id=ticket.id, shift_id=shift.id, customer_id=ticket.customer_id, actor=cashier,
                      reason=reason or "")
    if Decimal(ticket.price) > limit:
        payment.status = "pending"
        session.add(payment)
        session.flush()
        audit(session, cashier, "shift.refund_requested", ticket.ref, shift=f"SH{shift.id}",
              amount=str(ticket.price))
        return payment
    ticket_service.refund_ticket(session, ticket_id, actor=cashier, reason=reason or None)
    payment.status = "done"
    session.add(payment)
    session.flush()
    audit(session, cashier, "shift.refund", ticket.ref, shift=f"SH{shift.id}", amount=str(ticket.price))
    return payment


def pending_refunds(session: Session, site_id: str) -> list[Payment]:
    return list(session.scalars(select(Payment).where(Payment.site_id == site_id, Payment.kind == "refund",
                                                      Payment.status == "pending").order_by(Payment.at)))


def decide_refund(session: Session, payment_id: int, supervisor: str, approve: bool) -> Payment:
    """A supervisor approves (the ticket is refunded) or rejects a refund over the limit; never their own."""
    payment = session.get(Payment, payment_id, with_for_update=True)
    if payment is None or payment.kind != "refund":
        raise NotFound("no_refund", _l("There is no such refund."))
    if payment.status != "pending":
        raise Refused("refund_decided", _l("This refund was already decided."))
    if payment.actor == supervisor:
        raise Refused("own_refund", _l("Another person approves a refund you asked for."))
    if approve:
        assert payment.ticket_id is not None  # a refund is always of a ticket
        ticket_service.refund_ticket(session, payment.ticket_id, actor=supervisor, reason=payment.reason or None)
        payment.status = "done"
        payment.at = utcnow()
    else:
        payment.status = "rejected"
    payment.approved_by = supervisor
    audit(session, supervisor, "refund.approve" if approve else "refund.reject", f"P{payment.id}",
          amount=str(payment.amount))
    return payment


def _cash(session: Session, shift: Shift) -> Decimal:
    moved = session.scalar(select(func.coalesce(func.sum(Payment.amount), 0)).where(
        Payment.shift_id == shift.id, Payment.method == "cash", Payment.status == "done"))
    return (Decimal(shift.opening_float) + Decimal(moved or 0)).quantize(MONEY)


def close_shift(session: Session, shift_id: int, counted_cash, cashier: str, note: str = "") -> Shift:
    """Close the shift with the cash counted in the drawer; the difference to what is expected is kept."""
    shift = _own_open_shift(session, shift_id, cashier)
    counted = limits.money(counted_cash)
    limits.text("bad_note", "note", note, 500)
    shift.expected_cash = _cash(session, shift)
    shift.counted_cash = counted
    shift.closed_at = utcnow()
    shift.note = note or ""
    audit(session, cashier, "shift.close", f"SH{shift.id}", expected=str(shift.expected_cash), counted=str(counted),
          difference=str(counted - Decimal(shift.expected_cash)))
    return shift


@dataclass(frozen=True)
class ShiftLine:
    key: str
    tickets: int
    visitors: int
    amount: Decimal


@dataclass(frozen=True)
class MethodLine:
    method: str
    sales: Decimal
    refunds: Decimal

    @property
    def net(self) -> Decimal:
        return self.sales + self.refunds


@dataclass(frozen=True)
class ShiftReport:
    shift: Shift
    by_type: list[ShiftLine]
    by_method: list[MethodLine]
    refunds: list[Payment]
    pending: list[Payment]
    expected_cash: Decimal
    counted_cash: Decimal | None

    @property
    def difference(self) -> Decimal | None:
        return None if self.counted_cash is None else Decimal(self.counted_cash) - self.expected_cash

    @property
    def total(self) -> Decimal:
        return sum((m.net for m in self.by_method), Decimal("0.00"))


def shift_report(session: Session, shift: Shift) -> ShiftReport:
    rows = session.execute(
        select(TicketType.name, func.count(), func.sum(Ticket.headcount), func.sum(Ticket.price))
        .join(TicketType, TicketType.id == Ticket.ticket_type_id).where(Ticket.shift_id == shift.id)
        .group_by(TicketType.name).order_by(TicketType.name)).all()
    by_type = [ShiftLine(n, int(c), int(v or 0), Decimal(a or 0).quantize(MONEY)) for n, c, v, a in rows]
    methods: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal("0.00"), Decimal("0.00")])
    for method, kind, amount in session.execute(
            select(Payment.method, Payment.kind, func.sum(Payment.amount)).where(
                Payment.shift_id == shift.id, Payment.status == "done").group_by(Payment.method, Payment.kind)):
        methods[method][0 if kind == "sale" else 1] += Decimal(amount or 0)
    by_method = [MethodLine(m, methods[m][0].quantize(MONEY), methods[m][1].quantize(MONEY))
                 for m in PAYMENT_METHODS if m in methods]
    refunds = list(session.scalars(select(Payment).where(Payment.shift_id == shift.id, Payment.kind == "refund")
                                   .order_by(Payment.at)))
    expected = Decimal(shift.expected_cash) if shift.expected_cash is not None else _cash(session, shift)
    return ShiftReport(shift, by_type, by_method, [r for r in refunds if r.status != "pending"],
                       [r for r in refunds if r.status == "pending"], expected, shift.counted_cash)


# --- finance reports ---------------------------------------------------------------------------


DIMENSIONS = ("channel", "ticket_type", "payment_method", "customer")


@dataclass(frozen=True)
class RevenueRow:
    bucket: str  # a local day (2026-12-02) or month (2026-12)
    key: str
    tickets: int
    visitors: int
    gross: Decimal
    refunded: Decimal

    @property
    def net(self) -> Decimal:
        return self.gross - self.refunded

    @property
    def day(self) -> date | None:
        """The bucket as a date (a daily report), for the page's local date format."""
        return date.fromisoformat(self.bucket) if len(self.bucket) == 10 else None


def revenue(session: Session, site_id: str, start: date, end: date, by: str = "channel",
            monthly: bool = False) -> list[RevenueRow]:
    """Tickets issued in the period (local days) by day or month and by one dimension: count, visitors,
    amount, and the amount of those since refunded.

    The database sums per 15-minute UTC bucket and key (as `central.services.reports` does), Python folds
    the buckets into the park's local days or months: at most 96 rows a day per key, however many tickets."""
    if by not in DIMENSIONS:
        raise Invalid("bad_dimension", _l("Choose what to group the revenue by from the list."))
    p = _period(session, site_id, start, end)
    key: Any = {"channel": Ticket.channel, "ticket_type": TicketType.name,
           "payment_method": func.coalesce(Ticket.payment_method, ""),
           "customer": func.coalesce(Customer.name, "")}[by].label("k")
    bucket = _bucket(session, Ticket.issued_at, BUCKET_S).label("b")
    refunded = case((Ticket.status == "refunded", Ticket.price), else_=0)
    rows = session.execute(
        select(bucket, key, func.count(), func.sum(Ticket.headcount), func.sum(Ticket.price), func.sum(refunded))
        .join(TicketType, TicketType.id == Ticket.ticket_type_id)
        .outerjoin(Customer, Customer.id == Ticket.customer_id)
        .where(Ticket.site_id == site_id, Ticket.issued_at >= p.utc_from, Ticket.issued_at < p.utc_to)
        .group_by(bucket, key))
    acc: dict[tuple[str, str], list] = {}
    for b, k, count, visitors, gross, back in rows:
        local = _local(b, BUCKET_S, p.tz).date()
        day = local.strftime("%Y-%m") if monthly else local.isoformat()
        a = acc.setdefault((day, k or ""), [0, 0, Decimal("0"), Decimal("0")])
        a[0] += int(count)
        a[1] += int(visitors or 0)
        a[2] += Decimal(gross or 0)
        a[3] += Decimal(back or 0)
    return [RevenueRow(b, k, a[0], a[1], a[2].quantize(MONEY), a[3].quantize(MONEY))
            for (b, k), a in sorted(acc.items())]


@dataclass(frozen=True)
class UsageRow:
    ticket_type: str
    sold: int  # visitors on the tickets issued
    used: int  # of them, entered (confirmed passages, at most each ticket's headcount)
    refunded: int


def sold_used_refunded(session: Session, site_id: str, start: date, end: date) -> list[UsageRow]:
    """Per ticket type, the visitors on tickets issued in the period: entered, refunded (summed in the database)."""
    p = _period(session, site_id, start, end)
    entries = func.coalesce(CredentialUsage.entries, 0)
    entered = case((entries < Ticket.headcount, entries), else_=Ticket.headcount)
    refunded = case((Ticket.status == "refunded", Ticket.headcount), else_=0)
    rows = session.execute(
        select(TicketType.name, func.sum(Ticket.headcount), func.sum(entered), func.sum(refunded))
        .join(TicketType, TicketType.id == Ticket.ticket_type_id)
        .outerjoin(CredentialUsage, (CredentialUsage.site_id == Ticket.site_id)
                   & (CredentialUsage.ref == (literal(TICKET) + cast(Ticket.id, String))))
        .where(Ticket.site_id == site_id, Ticket.issued_at >= p.utc_from, Ticket.issued_at < p.utc_to)
        .group_by(TicketType.name).order_by(TicketType.name))
    return [UsageRow(n, int(sold or 0), int(used or 0), int(back or 0)) for n, sold, used, back in rows]


def passages_of_period_tickets(session: Session, site_id: str, start: date, end: date) -> int:
    """The other direction: visitors entered by the stored passages of the tickets issued in the period."""
    p = _period(session, site_id, start, end)
    tickets = select(literal(TICKET) + cast(Ticket.id, String)).where(
        Ticket.site_id == site_id, Ticket.issued_at >= p.utc_from, Ticket.issued_at < p.utc_to).scalar_subquery()
    P = PassageEventRecord
    return int(session.scalar(select(func.coalesce(func.sum(P.headcount), 0)).where(
        P.site_id == site_id, P.direction == "in", P.passed.is_(True), P.flag.is_(None),
        P.credential_ref.in_(tickets))) or 0)


@dataclass(frozen=True)
class OwedRow:
    customer_id: int
    customer: str
    status: str
    balance: Decimal
    credit_limit: Decimal
    payment_term_days: int
    overdue: Decimal = Decimal("0.00")  # owed for visits longer ago than the payment term

    @property
    def available(self) -> Decimal:
        return self.credit_limit - self.balance


def owed_by_customers(session: Session, site_id: str, now: datetime | None = None) -> list[OwedRow]:
    """Each customer's balance on account, and the part of it past the payment term (the oldest visits
    are taken as paid first)."""
    now = now or utcnow()
    out = []
    for c in customer_service.list_customers(session, site_id):
        owed = customer_service.balance(session, c.id)
        due_before = now - timedelta(days=c.payment_term_days)
        newer = Decimal(session.scalar(select(func.coalesce(func.sum(Ticket.price), 0)).where(
            Ticket.customer_id == c.id, Ticket.payment_method == "on_account", Ticket.status != "refunded",
            Ticket.valid_from >= due_before)) or 0)
        overdue = max(Decimal("0.00"), owed - newer).quantize(MONEY)
        out.append(OwedRow(c.id, c.name, c.status, owed, Decimal(c.credit_limit), c.payment_term_days, overdue))
    return out


@dataclass
class FinanceReport:
    start: date
    end: date
    monthly: bool
    by: str
    revenue: list[RevenueRow] = field(default_factory=list)
    usage: list[UsageRow] = field(default_factory=list)
    owed: list[OwedRow] = field(default_factory=list)

    @property
    def gross(self) -> Decimal:
        return sum((r.gross for r in self.revenue), Decimal("0.00"))

    @property
    def net(self) -> Decimal:
        return sum((r.net for r in self.revenue), Decimal("0.00"))


def finance_report(session: Session, site_id: str, start: date, end: date, by: str = "channel",
                   monthly: bool = False) -> FinanceReport:
    return FinanceReport(start, end, monthly, by, revenue(session, site_id, start, end, by, monthly),
                         sold_used_refunded(session, site_id, start, end), owed_by_customers(session, site_id))


def local_day_bounds(tz: ZoneInfo, day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=tz)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


__all__ = ["DIMENSIONS", "FinanceReport", "add_correction", "check_statement", "close_shift", "close_statement",
           "current_shift", "decide_refund", "finance_report", "get_shift", "get_statement", "list_shifts",
           "list_statements", "open_shift", "open_statement", "owed_by_customers", "passages_of_period_tickets",
           "pending_refunds", "recount", "refund_in_shift", "revenue", "sell_in_shift", "shift_report",
           "sold_used_refunded", "statement_csv", "statement_xlsx", "view"]
