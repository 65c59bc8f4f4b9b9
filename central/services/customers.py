"""Group customers: travel agencies, OTAs, companies, schools and government units; their contacts,
contract prices, credit, suspension; and their group orders.

    customer        kind, status (active | suspended), credit limit, payment term
    contract price  per ticket type and local days; the ticket type's rack price where none applies
    group order     a visit day (and slot), headcount, guide; one group ticket (one code, N passages)
                    or one ticket per member, as the site sets (`FinanceSettings.group_ticketing`);
                    a real-name ticket type always gives one ticket per member, with their ID numbers
    credit          what a customer owes on account (`balance`) plus a new order may not pass its limit

Suspending a customer holds its tickets not yet used up: their status becomes `held`, a delta tells
the gates, which refuse them with `customer_suspended`; resuming gives them back (`valid`). Tickets a
customer's orders produced carry `customer_id`, so a statement bills exactly what was issued.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from central.i18n import _l
from central.models import (
    CUSTOMER_KINDS,
    GROUP_TICKETING,
    PAYMENT_METHODS,
    ContractPrice,
    CredentialUsage,
    Customer,
    CustomerContact,
    FinanceSettings,
    GroupOrder,
    Payment,
    SlotQuota,
    Ticket,
)
from central.services import Invalid, NotFound, Refused, limits
from central.services import tickets as ticket_service
from central.services.audit import audit
from central.services.gates import get_site
from central.services.lookup import get_in_site
from central.services.sync import record_delta, ticket_change
from protocol.clock import park_now

KIND_CHANNEL = {"agency": "agency", "ota": "ota", "company": "group", "school": "group", "government": "group"}
MAX_MEMBERS = limits.HEADCOUNT
MONEY = Decimal("0.01")


def settings(session: Session, site_id: str) -> FinanceSettings:
    """The site's finance settings (made with the defaults on first use)."""
    row = session.get(FinanceSettings, site_id)
    if row is None:
        get_site(session, site_id)
        row = FinanceSettings(site_id=site_id, group_ticketing="group", refund_approval_over=Decimal("500.00"))
        session.add(row)
        session.flush()
    return row


def update_settings(session: Session, site_id: str, *, group_ticketing: str | None = None,
                    refund_approval_over=None, actor: str | None = None) -> FinanceSettings:
    row = settings(session, site_id)
    if group_ticketing is not None:
        if group_ticketing not in GROUP_TICKETING:
            raise Invalid("bad_group_ticketing", _l("Choose how a group order becomes tickets from the list."))
        row.group_ticketing = group_ticketing
    if refund_approval_over is not None:
        row.refund_approval_over = limits.money(refund_approval_over)
    audit(session, actor, "finance.settings", site_id, group_ticketing=row.group_ticketing,
          refund_approval_over=str(row.refund_approval_over))
    return row


# --- customers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerSpec:
    name: str
    kind: str = "agency"
    credit_limit: Decimal | str | int = 0
    payment_term_days: int = 30
    note: str = ""


def _check_customer(spec: CustomerSpec) -> None:
    limits.text("bad_name", "name", spec.name, limits.NAME, required=True)
    if spec.kind not in CUSTOMER_KINDS:
        raise Invalid("bad_kind", _l("Choose the kind of customer from the list."))
    limits.integer("bad_payment_term", "payment_term_days", spec.payment_term_days, 0, 366)
    limits.text("bad_note", "note", spec.note, 500)


def create_customer(session: Session, site_id: str, spec: CustomerSpec, actor: str | None = None) -> Customer:
    get_site(session, site_id)
    _check_customer(spec)
    name = spec.name.strip()
    if session.scalar(select(Customer.id).where(Customer.site_id == site_id, Customer.name == name)):
        raise Refused("customer_exists", _l("There is already a customer named %(name)s.", name=name))
    customer = Customer(site_id=site_id, name=name, kind=spec.kind, status="active",
                        credit_limit=limits.money(spec.credit_limit), payment_term_days=spec.payment_term_days,
                        note=spec.note or "")
    session.add(customer)
    session.flush()
    audit(session, actor, "customer.create", f"C{customer.id}", kind=spec.kind,
          credit_limit=str(customer.credit_limit))
    return customer


def update_customer(session: Session, customer_id: int, spec: CustomerSpec, actor: str | None = None) -> Customer:
    customer = get_customer(session, customer_id)
    _check_customer(spec)
    name = spec.name.strip()
    clash = session.scalar(select(Customer.id).where(Customer.site_id == customer.site_id, Customer.name == name,
                                                     Customer.id != customer.id))
    if clash:
        raise Refused("customer_exists", _l("There is already a customer named %(name)s.", name=name))
    customer.name, customer.kind, customer.note = name, spec.kind, spec.note or ""
    customer.credit_limit = limits.money(spec.credit_limit)
    customer.payment_term_days = spec.payment_term_days
    audit(session, actor, "customer.update", f"C{customer.id}", kind=spec.kind,
          credit_limit=str(customer.credit_limit), payment_term_days=spec.payment_term_days)
    return customer


def get_customer(session: Session, customer_id: int, site_id: str | None = None) -> Customer:
    return get_in_site(session, Customer, customer_id, site_id, "no_customer", _l("There is no such customer."))


def list_customers(session: Session, site_id: str) -> list[Customer]:
    return list(session.scalars(select(Customer).where(Customer.site_id == site_id).order_by(Customer.name)))


def add_contact(session: Session, customer_id: int, name: str, phone: str = "", email: str = "", duty: str = "",
                actor: str | None = None) -> CustomerContact:
    customer = get_customer(session, customer_id)
    limits.text("bad_name", "name", name, limits.NAME, required=True)
    phone = limits.phone(phone) or ""
    limits.text("bad_email", "email", email, 200)
    if email and "@" not in email:
        raise Invalid("bad_email", _l("An e-mail address has an @."))
    limits.text("bad_duty", "duty", duty, 100)
    contact = CustomerContact(customer_id=customer.id, name=name.strip(), phone=phone, email=email or "",
                              duty=duty or "")
    session.add(contact)
    session.flush()
    audit(session, actor, "customer.contact", f"C{customer.id}", contact=contact.id)  # no names: personal data
    return contact


def contacts(session: Session, customer_id: int) -> list[CustomerContact]:
    return list(session.scalars(select(CustomerContact).where(CustomerContact.customer_id == customer_id)
                                .order_by(CustomerContact.id)))


def set_contract_price(session: Session, customer_id: int, ticket_type: int, price, valid_from: date,
                       valid_to: date | None = None, actor: str | None = None) -> ContractPrice:
    """A customer's price for a ticket type from `valid_from` (to `valid_to`, both local days, included)."""
    customer = get_customer(session, customer_id)
    tt = ticket_service.get_ticket_type(session, ticket_type)
    if tt.site_id != customer.site_id:
        raise Invalid("bad_ticket_type", _l("Ticket type %(id)s belongs to another park.", id=tt.name))
    if not isinstance(valid_from, date) or (valid_to is not None and not isinstance(valid_to, date)):
        raise Invalid("bad_period", _l("Give the contract's days as dates."))
    if valid_to is not None and valid_to < valid_from:
        raise Invalid("bad_period", _l("The end of the period is before its start."))
    row = ContractPrice(customer_id=customer.id, ticket_type_id=tt.id, valid_from=valid_from, valid_to=valid_to,
                        price=limits.money(price))
    session.add(row)
    session.flush()
    audit(session, actor, "customer.contract_price", f"C{customer.id}", ticket_type=tt.id, price=str(row.price),
          valid_from=valid_from.isoformat(), valid_to=valid_to.isoformat() if valid_to else None)
    return row


def contract_prices(session: Session, customer_id: int) -> list[ContractPrice]:
    return list(session.scalars(select(ContractPrice).where(ContractPrice.customer_id == customer_id)
                                .order_by(ContractPrice.ticket_type_id, ContractPrice.valid_from)))


def price_for(session: Session, customer: Customer, ticket_type: int, day: date) -> Decimal:
    """The customer's contract price for the type on that local day; the rack price where none applies.

    Where periods overlap, the one that starts latest (the newest agreement) wins."""
    price = session.scalar(
        select(ContractPrice.price)
        .where(ContractPrice.customer_id == customer.id, ContractPrice.ticket_type_id == ticket_type,
               ContractPrice.valid_from <= day,
               (ContractPrice.valid_to.is_(None)) | (ContractPrice.valid_to >= day))
        .order_by(ContractPrice.valid_from.desc(), ContractPrice.id.desc()).limit(1))
    if price is not None:
        return Decimal(price)
    return Decimal(ticket_service.get_ticket_type(session, ticket_type).price)


def balance(session: Session, customer_id: int) -> Decimal:
    """What the customer owes on account: its tickets sold on account and not refunded (however the
    refund was made: at a shift, at the desk, by cancelling the order), less the payments received."""
    owed = session.scalar(select(func.coalesce(func.sum(Ticket.price), 0)).where(
        Ticket.customer_id == customer_id, Ticket.payment_method == "on_account", Ticket.status != "refunded"))
    received = session.scalar(select(func.coalesce(func.sum(Payment.amount), 0)).where(
        Payment.customer_id == customer_id, Payment.status == "done", Payment.kind == "receipt"))
    return (Decimal(owed or 0) - Decimal(received or 0)).quantize(MONEY)


RECEIPT_METHODS = ("bank_transfer", "cash", "bank_card", "wechat_pay", "alipay")


def record_receipt(session: Session, customer_id: int, amount, method: str = "bank_transfer", reason: str = "",
                   actor: str | None = None) -> Payment:
    """Money a customer paid against what it owes on account (finance)."""
    customer = get_customer(session, customer_id)
    value = limits.money(amount)
    if value <= 0:
        raise Invalid("bad_price", _l("A payment is more than 0."))
    if method not in RECEIPT_METHODS:
        raise Invalid("bad_method", _l("Choose how the customer paid from the list."))
    limits.text("bad_reason", "reason", reason, limits.REASON)
    row = Payment(site_id=customer.site_id, kind="receipt", method=method, amount=value, status="done",
                  customer_id=customer.id, actor=actor, reason=reason or "")
    session.add(row)
    session.flush()
    audit(session, actor, "customer.receipt", f"C{customer.id}", amount=str(value), method=method)
    return row


def _set_status(session: Session, customer_id: int, status: str, actor: str | None) -> tuple[Customer, int]:
    customer = get_customer(session, customer_id)
    customer = session.get(Customer, customer.id, with_for_update=True) or customer
    if customer.status == status:
        return customer, 0
    now = park_now()
    customer.status = status
    customer.status_changed_at = now
    old, new = ("valid", "held") if status == "suspended" else ("held", "valid")
    tickets = list(session.scalars(select(Ticket).where(Ticket.customer_id == customer.id, Ticket.status == old,
                                                        Ticket.valid_to >= now).with_for_update()))
    for t in tickets:
        t.status = new
        t.status_changed_at = now
    session.flush()
    record_delta(session, customer.site_id, [ticket_change(t) for t in tickets])
    audit(session, actor, f"customer.{'suspend' if status == 'suspended' else 'resume'}", f"C{customer.id}",
          tickets=len(tickets))
    return customer, len(tickets)


def suspend_customer(session: Session, customer_id: int, actor: str | None = None) -> tuple[Customer, int]:
    """Suspend a customer: no new orders, and gates refuse its unused tickets (`customer_suspended`)."""
    return _set_status(session, customer_id, "suspended", actor)


def resume_customer(session: Session, customer_id: int, actor: str | None = None) -> tuple[Customer, int]:
    return _set_status(session, customer_id, "active", actor)


# --- group orders ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    name: str
    id_number: str | None = None


@dataclass(frozen=True)
class GroupOrderRequest:
    customer_id: int
    ticket_type: int
    visit_date: date
    headcount: int
    guide_name: str
    guide_phone: str
    members: list[Member] = field(default_factory=list)
    slot_start: datetime | None = None
    slot_end: datetime | None = None
    payment_method: str = "on_account"
    idempotency_key: str | None = None


@dataclass(frozen=True)
class OrderResult:
    order: GroupOrder
    tickets: list[Ticket]
    created: bool  # False: the same idempotency key was seen before, nothing new was issued


def _check_order(req: GroupOrderRequest) -> None:
    limits.integer("bad_headcount", "headcount", req.headcount, 1, limits.BULK)
    limits.text("bad_guide_name", "guide_name", req.guide_name, limits.NAME, required=True)
    if not limits.phone(req.guide_phone):
        raise Invalid("bad_guide_phone", _l("Give the guide's phone number."))
    if not isinstance(req.visit_date, date):
        raise Invalid("bad_visit_date", _l("The visit date is a date."))
    if req.payment_method not in PAYMENT_METHODS:
        raise Invalid("bad_payment_method", _l("Choose a payment method from the list."))
    limits.text("bad_idempotency_key", "idempotency_key", req.idempotency_key, 128)
    if len(req.members) > MAX_MEMBERS:
        raise Invalid("bad_members", _l("A group order lists at most %(n)s members.", n=MAX_MEMBERS))
    for m in req.members:
        limits.text("bad_members", "members", m.name, limits.NAME, required=True)


def _take_slot(session: Session, site_id: str, req: GroupOrderRequest) -> SlotQuota:
    """The group's places in its time slot (where the site uses slots), taken with one conditional UPDATE."""
    if not isinstance(req.slot_start, datetime) or req.slot_start.tzinfo is None:
        raise Invalid("bad_slot", _l("The slot start needs its UTC offset (such as +08:00)."))
    quota = session.scalar(select(SlotQuota).where(SlotQuota.site_id == site_id,
                                                   SlotQuota.slot_start == req.slot_start))
    if quota is None:
        raise NotFound("no_slot", _l("There is no time slot to book at that time."))
    taken = session.execute(
        update(SlotQuota).where(SlotQuota.id == quota.id, SlotQuota.booked + req.headcount <= SlotQuota.capacity)
        .values(booked=SlotQuota.booked + req.headcount).returning(SlotQuota.id)).first()
    if taken is None:
        raise Refused("quota_full", _l("This time slot is fully booked."))
    return quota


def order_tickets(session: Session, order_id: int) -> list[Ticket]:
    return list(session.scalars(select(Ticket).where(Ticket.group_order_id == order_id).order_by(Ticket.id)))


def create_group_order(session: Session, site_id: str, req: GroupOrderRequest,
                       actor: str | None = None) -> OrderResult:
    """Book a group visit and issue its tickets in the caller's transaction (all or none).

    The same `idempotency_key` from the same customer returns the first order and issues nothing; the
    same key with a different order is refused. An order on account that would take what the customer
    owes past its credit limit is refused (`credit_limit`)."""
    customer = get_customer(session, req.customer_id, site_id)
    _check_order(req)
    if req.idempotency_key:
        earlier = session.scalar(select(GroupOrder).where(GroupOrder.customer_id == customer.id,
                                                          GroupOrder.idempotency_key == req.idempotency_key))
        if earlier is not None:
            if (earlier.ticket_type_id, earlier.visit_date, earlier.headcount) != (
                    req.ticket_type, req.visit_date, req.headcount):
                raise Refused("idempotency_mismatch", _l(
                    "This idempotency key was already used for another order."))
            return OrderResult(earlier, order_tickets(session, earlier.id), False)
    customer = session.get(Customer, customer.id, with_for_update=True) or customer  # credit checks one at a time
    if customer.status != "active":
        raise Refused("customer_suspended", _l("%(name)s is suspended: it cannot order.", name=customer.name))
    tt = ticket_service.get_ticket_type(session, req.ticket_type)
    if tt.site_id != site_id:
        raise Invalid("bad_ticket_type", _l("Ticket type %(id)s belongs to another park.", id=tt.name))
    if tt.real_name:
        if len(req.members) != req.headcount or any(not m.id_number for m in req.members):
            raise Invalid("members_required", _l(
                "%(name)s is a real-name ticket: list every member with their ID number.", name=tt.name))
    elif req.members and len(req.members) != req.headcount:
        raise Invalid("bad_members", _l("List every member of the group, or none (%(n)s people).", n=req.headcount))
    mode = "members" if tt.real_name else settings(session, site_id).group_ticketing
    if mode == "group" and not tt.min_headcount <= req.headcount <= tt.max_headcount:
        raise Invalid("bad_headcount", _l("A %(type)s ticket is for %(low)s to %(high)s people.", type=tt.name,
                                          low=tt.min_headcount, high=tt.max_headcount))
    unit = price_for(session, customer, tt.id, req.visit_date).quantize(MONEY)
    amount = (unit * req.headcount).quantize(MONEY)
    if req.payment_method == "on_account":
        owed = balance(session, customer.id)
        if owed + amount > Decimal(customer.credit_limit):
            raise Refused("credit_limit", _l(
                "This order (%(amount)s) would take what %(name)s owes (%(owed)s) past its credit limit "
                "(%(limit)s).", amount=amount, name=customer.name, owed=owed, limit=customer.credit_limit))
    quota = _take_slot(session, site_id, req) if req.slot_start is not None else None
    channel = KIND_CHANNEL.get(customer.kind, "group")
    base = ticket_service.IssueRequest(ticket_type=tt.id, visit_date=req.visit_date, channel=channel,
                                       channel_ref=customer.name[:limits.REF],
                                       slot_start=quota.slot_start if quota else None,
                                       slot_end=quota.slot_end if quota else None)
    if mode == "group":
        requests = [replace(base, headcount=req.headcount, price=amount)]
    else:
        members = req.members or [Member(name="") for _ in range(req.headcount)]
        requests = [replace(base, headcount=1, price=unit, holder_name=m.name or None, id_number=m.id_number or None)
                    for m in members]
    order = GroupOrder(site_id=site_id, customer_id=customer.id, ticket_type_id=tt.id, visit_date=req.visit_date,
                       slot_start=quota.slot_start if quota else None, slot_end=quota.slot_end if quota else None,
                       headcount=req.headcount,
                       guide_name=req.guide_name.strip(), guide_phone=req.guide_phone,
                       members=[{"name": m.name, "id_last4": (m.id_number or "")[-4:].upper()} for m in req.members],
                       ticketing=mode, unit_price=unit, amount=amount, status="booked",
                       idempotency_key=req.idempotency_key or None, created_by=actor)
    session.add(order)
    session.flush()
    tickets = ticket_service.issue_tickets(session, site_id, requests, actor=actor)
    for t in tickets:
        t.customer_id, t.group_order_id, t.payment_method = customer.id, order.id, req.payment_method
        t.quota_id = quota.id if quota else None  # a refund gives the places back
        session.add(Payment(site_id=site_id, kind="sale", method=req.payment_method, amount=t.price, status="done",
                            ticket_id=t.id, customer_id=customer.id, actor=actor))
    session.flush()
    audit(session, actor, "group_order.create", f"G{order.id}", customer=f"C{customer.id}", headcount=req.headcount,
          tickets=len(tickets), amount=str(amount), method=req.payment_method)
    return OrderResult(order, tickets, True)


def get_order(session: Session, order_id: int, site_id: str | None = None) -> GroupOrder:
    return get_in_site(session, GroupOrder, order_id, site_id, "no_group_order", _l("There is no such group order."))


def list_orders(session: Session, site_id: str, customer_id: int | None = None, limit: int = 200) -> list[GroupOrder]:
    stmt = select(GroupOrder).where(GroupOrder.site_id == site_id)
    if customer_id is not None:
        stmt = stmt.where(GroupOrder.customer_id == customer_id)
    return list(session.scalars(stmt.order_by(GroupOrder.visit_date.desc(), GroupOrder.id.desc()).limit(limit)))


@dataclass(frozen=True)
class GroupProgress:
    headcount: int
    entered: int
    refunded: int

    @property
    def left(self) -> int:
        return max(0, self.headcount - self.refunded - self.entered)


def progress(session: Session, order: GroupOrder) -> GroupProgress:
    """How many of the group have entered (confirmed passages, at most the headcount of each ticket)."""
    tickets = order_tickets(session, order.id)
    refs = {t.ref: t for t in tickets}
    used = {r: e for r, e in session.execute(select(CredentialUsage.ref, CredentialUsage.entries).where(
        CredentialUsage.site_id == order.site_id, CredentialUsage.ref.in_(list(refs))))} if refs else {}
    entered = sum(min(used.get(ref, 0), t.headcount) for ref, t in refs.items())
    refunded = sum(t.headcount for t in tickets if t.status == "refunded")
    return GroupProgress(order.headcount, entered, refunded)


def cancel_order(session: Session, order_id: int, actor: str | None = None) -> GroupOrder:
    """Cancel a group order: its unused tickets are refunded (on account: the balance goes down)."""
    order = get_order(session, order_id)
    if order.status == "cancelled":
        raise Refused("order_cancelled", _l("This group order is already cancelled."))
    refunded = 0
    for t in order_tickets(session, order.id):
        if t.status in ("valid", "held"):
            if t.status == "held":
                t.status = "valid"
            ticket_service.refund_ticket(session, t.id, actor=actor, reason="group order cancelled")
            session.add(Payment(site_id=order.site_id, kind="refund", method=t.payment_method or "on_account",
                                amount=-Decimal(t.price), status="done", ticket_id=t.id,
                                customer_id=order.customer_id, actor=actor, reason="group order cancelled"))
            refunded += 1
    order.status = "cancelled"
    session.flush()
    audit(session, actor, "group_order.cancel", f"G{order.id}", refunded=refunded)
    return order


__all__ = ["CustomerSpec", "GroupOrderRequest", "GroupProgress", "Member", "OrderResult", "add_contact", "balance",
           "cancel_order", "contacts", "contract_prices", "create_customer", "create_group_order", "get_customer",
           "get_order", "list_customers", "list_orders", "order_tickets", "price_for", "progress", "record_receipt",
           "resume_customer", "set_contract_price", "settings", "suspend_customer", "update_customer",
           "update_settings"]
