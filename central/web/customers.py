"""Customer management (sales): group customers, their contacts and contract prices, suspension, and
their group orders with how many of each group entered. Finance and managers read these pages too;
finance records customers' payments."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from central.i18n import _
from central.models import CUSTOMER_KINDS, PAYMENT_METHODS
from central.services import ServiceError
from central.services import customers as customer_service
from central.services import finance as finance_service
from central.services.gates import get_site
from central.web import queries
from central.web.i18n import site_today
from central.web.stack import commit, db, require, site_id

bp = Blueprint("customers", __name__, url_prefix="/customers")

READERS = ("sales", "finance", "manager")
FIELDS = {"bad_name": "name", "customer_exists": "name", "bad_kind": "kind", "bad_price": "credit_limit",
          "bad_payment_term": "payment_term_days", "bad_note": "note"}
ORDER_FIELDS = {"bad_headcount": "headcount", "bad_guide_name": "guide_name", "bad_guide_phone": "guide_phone",
                "bad_phone": "guide_phone", "bad_visit_date": "visit_date", "past_date": "visit_date",
                "bad_validity": "visit_date", "members_required": "members", "bad_members": "members",
                "bad_id_number": "members", "credit_limit": "form", "customer_suspended": "form",
                "bad_ticket_type": "ticket_type", "no_ticket_type": "ticket_type", "type_inactive": "ticket_type",
                "bad_payment_method": "payment_method", "no_slot": "slot", "quota_full": "slot", "bad_slot": "slot"}


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _customer_or_404(customer_id: int):
    try:
        return customer_service.get_customer(db(), customer_id, site_id())
    except ServiceError:
        abort(404)


def _list_page(form=None, errors: dict | None = None, status: int = 200):
    session = db()
    rows = [(c, customer_service.balance(session, c.id)) for c in customer_service.list_customers(session, site_id())]
    return render_template("customers/index.html", rows=rows, kinds=CUSTOMER_KINDS, form=form or {},
                           errors=errors or {}), status


@bp.route("/")
@require(*READERS)
def index():
    return _list_page()


def _spec(form) -> customer_service.CustomerSpec:
    return customer_service.CustomerSpec(
        name=(form.get("name") or "").strip(), kind=form.get("kind") or "agency",
        credit_limit=(form.get("credit_limit") or "0").strip(),
        payment_term_days=_int(form.get("payment_term_days"), -1) if form.get("payment_term_days") else 30,
        note=form.get("note") or "")


@bp.post("/")
@require("sales", "manager")
def create():
    try:
        customer = customer_service.create_customer(db(), site_id(), _spec(request.form), actor=g.actor)
        commit()
    except ServiceError as exc:
        db().rollback()
        return _list_page(request.form, {FIELDS.get(exc.code, "form"): exc.text}, 422)
    flash(_("Customer %(name)s added.", name=customer.name))
    return redirect(url_for(".customer", customer_id=customer.id))


def _customer_page(customer, form=None, errors: dict | None = None, status: int = 200):
    session = db()
    orders = [(o, customer_service.progress(session, o))
              for o in customer_service.list_orders(session, site_id(), customer.id)]
    return render_template(
        "customers/customer.html", c=customer, contacts=customer_service.contacts(session, customer.id),
        prices=customer_service.contract_prices(session, customer.id),
        types=queries.ticket_types(session, site_id()), balance=customer_service.balance(session, customer.id),
        orders=orders, statements=finance_service.list_statements(session, site_id(), customer.id),
        kinds=CUSTOMER_KINDS, methods=PAYMENT_METHODS, receipt_methods=customer_service.RECEIPT_METHODS,
        today=site_today().isoformat(), form=form or {}, errors=errors or {},
        ticketing=customer_service.settings(session, site_id()).group_ticketing), status


@bp.route("/<int:customer_id>")
@require(*READERS)
def customer(customer_id: int):
    return _customer_page(_customer_or_404(customer_id))


@bp.post("/<int:customer_id>")
@require("sales", "manager")
def update(customer_id: int):
    c = _customer_or_404(customer_id)
    try:
        customer_service.update_customer(db(), c.id, _spec(request.form), actor=g.actor)
        commit()
    except ServiceError as exc:
        db().rollback()
        return _customer_page(_customer_or_404(customer_id), request.form,
                              {"edit_" + FIELDS.get(exc.code, "form"): exc.text}, 422)
    flash(_("Customer %(name)s saved.", name=c.name))
    return redirect(url_for(".customer", customer_id=customer_id))


@bp.post("/<int:customer_id>/contacts")
@require("sales", "manager")
def add_contact(customer_id: int):
    c = _customer_or_404(customer_id)
    form = request.form
    try:
        customer_service.add_contact(db(), c.id, (form.get("name") or "").strip(), phone=form.get("phone") or "",
                                     email=(form.get("email") or "").strip(), duty=form.get("duty") or "",
                                     actor=g.actor)
        commit()
    except ServiceError as exc:
        db().rollback()
        return _customer_page(_customer_or_404(customer_id), form, {"contact": exc.text}, 422)
    flash(_("Contact added."))
    return redirect(url_for(".customer", customer_id=customer_id))


@bp.post("/<int:customer_id>/prices")
@require("sales", "manager")
def add_price(customer_id: int):
    c = _customer_or_404(customer_id)
    form = request.form
    start, end = _day(form.get("valid_from")), _day(form.get("valid_to"))
    type_id = _int(form.get("ticket_type"))
    if start is None or type_id is None or (form.get("valid_to") and end is None):
        return _customer_page(c, form, {"price": _("Choose the ticket type and give the first day as a date.")}, 422)
    try:
        customer_service.set_contract_price(db(), c.id, type_id, (form.get("price") or "").strip(), start, end,
                                            actor=g.actor)
        commit()
    except ServiceError as exc:
        db().rollback()
        return _customer_page(_customer_or_404(customer_id), form, {"price": exc.text}, 422)
    flash(_("Contract price saved."))
    return redirect(url_for(".customer", customer_id=customer_id))


@bp.post("/<int:customer_id>/<any(suspend, resume):action>")
@require("sales", "finance", "manager")
def set_status(customer_id: int, action: str):
    c = _customer_or_404(customer_id)
    fn = customer_service.suspend_customer if action == "suspend" else customer_service.resume_customer
    try:
        _customer, count = fn(db(), c.id, actor=g.actor)
        commit()
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
        return redirect(url_for(".customer", customer_id=customer_id))
    if action == "suspend":
        flash(_("%(name)s suspended: gates refuse its %(n)s unused tickets within seconds.", name=c.name, n=count))
    else:
        flash(_("%(name)s active again: its %(n)s held tickets admit again.", name=c.name, n=count))
    return redirect(url_for(".customer", customer_id=customer_id))


@bp.post("/<int:customer_id>/receipts")
@require("finance", "manager")
def receipt(customer_id: int):
    c = _customer_or_404(customer_id)
    form = request.form
    try:
        customer_service.record_receipt(db(), c.id, (form.get("amount") or "").strip(),
                                        method=form.get("method") or "bank_transfer", reason=form.get("reason") or "",
                                        actor=g.actor)
        commit()
    except ServiceError as exc:
        db().rollback()
        return _customer_page(_customer_or_404(customer_id), form, {"receipt": exc.text}, 422)
    flash(_("Payment recorded."))
    return redirect(url_for(".customer", customer_id=customer_id))


def _members(text: str) -> list[customer_service.Member]:
    """One member a line: a name, and after a comma their ID number where the ticket is real-name."""
    out = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        name, _sep, number = line.replace("，", ",").partition(",")
        out.append(customer_service.Member(name=name.strip(), id_number=number.strip() or None))
    return out


@bp.post("/<int:customer_id>/orders")
@require("sales", "manager")
def create_order(customer_id: int):
    c = _customer_or_404(customer_id)
    form = request.form
    errors: dict[str, str] = {}
    visit_date = _day(form.get("visit_date"))
    if visit_date is None:
        errors["visit_date"] = _("Give the visit date as a date.")
    headcount = _int(form.get("headcount"))
    if headcount is None:
        errors["headcount"] = _("The headcount is a whole number.")
    type_id = _int(form.get("ticket_type"))
    if type_id is None:
        errors["ticket_type"] = _("Choose a ticket type.")
    slot_start = None
    if form.get("slot") and visit_date is not None:
        try:
            at = time.fromisoformat(form["slot"])
        except ValueError:
            errors["slot"] = _("Give the slot's start as a time of day (10:00).")
        else:
            slot_start = datetime.combine(visit_date, at, tzinfo=ZoneInfo(get_site(db(), site_id()).timezone))
    if errors:
        return _customer_page(c, form, errors, 422)
    req = customer_service.GroupOrderRequest(
        customer_id=c.id, ticket_type=type_id, visit_date=visit_date, headcount=headcount,  # type: ignore[arg-type]
        guide_name=(form.get("guide_name") or "").strip(), guide_phone=(form.get("guide_phone") or "").strip(),
        members=_members(form.get("members") or ""), payment_method=form.get("payment_method") or "on_account",
        slot_start=slot_start)
    try:
        result = customer_service.create_group_order(db(), site_id(), req, actor=g.actor)
        commit()
    except ServiceError as exc:
        db().rollback()
        return _customer_page(_customer_or_404(customer_id), form, {ORDER_FIELDS.get(exc.code, "form"): exc.text},
                              422)
    flash(_("Group order G%(id)s booked: %(n)s tickets issued.", id=result.order.id, n=len(result.tickets)))
    return redirect(url_for(".order", order_id=result.order.id))


def _order_or_404(order_id: int):
    try:
        return customer_service.get_order(db(), order_id, site_id())
    except ServiceError:
        abort(404)


@bp.route("/orders/<int:order_id>")
@require(*READERS, "staff")
def order(order_id: int):
    o = _order_or_404(order_id)
    session = db()
    return render_template("customers/order.html", o=o, c=customer_service.get_customer(session, o.customer_id),
                           tickets=customer_service.order_tickets(session, o.id),
                           p=customer_service.progress(session, o))


@bp.post("/orders/<int:order_id>/cancel")
@require("sales", "manager")
def cancel_order(order_id: int):
    o = _order_or_404(order_id)
    try:
        customer_service.cancel_order(db(), o.id, actor=g.actor)
        commit()
        flash(_("Group order G%(id)s cancelled: its unused tickets are refunded.", id=o.id))
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
    return redirect(url_for(".order", order_id=order_id))
