"""The box office (cashiers): open a shift at a window, sell and refund within it, close it with the
cash counted, and read the shift's report."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from central.i18n import _
from central.models import PAYMENT_METHODS
from central.services import ServiceError
from central.services import customers as customer_service
from central.services import finance as finance_service
from central.services import tickets as ticket_service
from central.web import queries
from central.web.i18n import site_today
from central.web.stack import commit, db, require, site_id

bp = Blueprint("shifts", __name__, url_prefix="/shifts")

SALE_FIELDS = {"bad_headcount": "headcount", "past_date": "visit_date", "bad_validity": "visit_date",
               "bad_payment_method": "method", "customer_required": "customer", "no_customer": "customer",
               "credit_limit": "customer", "customer_suspended": "customer", "bad_quantity": "quantity",
               "id_number_required": "form", "no_ticket_type": "ticket_type", "bad_ticket_type": "ticket_type",
               "type_inactive": "ticket_type", "bad_price": "form"}


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _page(form=None, errors: dict | None = None, status: int = 200):
    session = db()
    shift = finance_service.current_shift(session, site_id(), g.actor)
    report = finance_service.shift_report(session, shift) if shift else None
    return render_template("finance/box_office.html", shift=shift, r=report,
                           types=queries.ticket_types(session, site_id()), methods=PAYMENT_METHODS,
                           customers=[c for c in customer_service.list_customers(session, site_id())
                                      if c.status == "active"],
                           today=site_today().isoformat(), form=form or {}, errors=errors or {}), status


@bp.route("/")
@require("staff")
def index():
    return _page()


@bp.post("/open")
@require("staff")
def open_shift():
    form = request.form
    try:
        finance_service.open_shift(db(), site_id(), g.actor, (form.get("window") or "").strip(),
                                   (form.get("opening_float") or "0").strip())
        commit()
    except ServiceError as exc:
        db().rollback()
        return _page(form, {"open": exc.text}, 422)
    flash(_("Shift opened."))
    return redirect(url_for(".index"))


def _shift_id() -> int | None:
    shift = finance_service.current_shift(db(), site_id(), g.actor)
    return shift.id if shift else None


@bp.post("/sell")
@require("staff")
def sell():
    form = request.form
    shift_id = _shift_id()
    if shift_id is None:
        return _page(form, {"open": _("Open a shift first.")}, 422)
    type_id, quantity = _int(form.get("ticket_type")), _int(form.get("quantity") or "1")
    headcount = _int(form.get("headcount") or "1")
    visit_date = None
    if form.get("visit_date"):
        try:
            visit_date = date.fromisoformat(form["visit_date"])
        except ValueError:
            return _page(form, {"visit_date": _("Give the visit date as a date.")}, 422)
    if type_id is None or quantity is None or headcount is None:
        return _page(form, {"form": _("Choose a ticket type; the headcount and quantity are whole numbers.")}, 422)
    req = ticket_service.IssueRequest(ticket_type=type_id, visit_date=visit_date, headcount=headcount,
                                      channel="box_office")
    try:
        tickets = finance_service.sell_in_shift(db(), shift_id, req, quantity, form.get("method") or "cash", g.actor,
                                                customer_id=_int(form.get("customer")))
        commit()
    except ServiceError as exc:
        db().rollback()
        return _page(form, {SALE_FIELDS.get(exc.code, "form"): exc.text}, 422)
    flash(_("%(n)s tickets sold: %(first)s to %(last)s.", n=len(tickets), first=tickets[0].ref, last=tickets[-1].ref)
          if len(tickets) > 1 else _("Ticket %(ref)s sold.", ref=tickets[0].ref))
    return redirect(url_for(".index"))


@bp.post("/refund")
@require("staff")
def refund():
    form = request.form
    shift_id = _shift_id()
    if shift_id is None:
        return _page(form, {"open": _("Open a shift first.")}, 422)
    text = (form.get("ticket") or "").strip()
    ticket_id = _int(text[1:] if text[:1] in "Tt" else text)
    if ticket_id is None:
        return _page(form, {"refund": _("Give the ticket number (T123).")}, 422)
    try:
        payment = finance_service.refund_in_shift(db(), shift_id, ticket_id, g.actor, form.get("reason") or "")
        commit()
    except ServiceError as exc:
        db().rollback()
        return _page(form, {"refund": exc.text}, 422)
    flash(_("The refund is over the limit: it waits for a supervisor's approval.") if payment.status == "pending"
          else _("Ticket refunded: gates refuse it within seconds."))
    return redirect(url_for(".index"))


@bp.post("/close")
@require("staff")
def close():
    form = request.form
    shift_id = _shift_id()
    if shift_id is None:
        return _page(form, {"open": _("Open a shift first.")}, 422)
    try:
        shift = finance_service.close_shift(db(), shift_id, (form.get("counted_cash") or "").strip(), g.actor,
                                            form.get("note") or "")
        commit()
    except ServiceError as exc:
        db().rollback()
        return _page(form, {"close": exc.text}, 422)
    report = finance_service.shift_report(db(), shift)
    return render_template("finance/shift.html", r=report)
