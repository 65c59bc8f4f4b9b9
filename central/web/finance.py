"""Finance: settlement statements (open, check, close, correct; printable, CSV, XLSX), refunds waiting
for a supervisor, box-office shift reports, revenue reports, and the finance settings."""

from __future__ import annotations

from datetime import date, timedelta

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for

from central.i18n import _
from central.models import GROUP_TICKETING
from central.services import ServiceError
from central.services import customers as customer_service
from central.services import finance as finance_service
from central.web.i18n import site_today
from central.web.stack import commit, db, require, site_id

bp = Blueprint("finance", __name__, url_prefix="/finance")

READERS = ("finance", "manager")
SUPERVISORS = ("finance", "manager")


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


def _index_page(form=None, errors: dict | None = None, status: int = 200):
    session = db()
    today = site_today()
    first = today.replace(day=1)
    last_month_end = first - timedelta(days=1)
    return render_template(
        "finance/index.html", statements=finance_service.list_statements(session, site_id()),
        customers=customer_service.list_customers(session, site_id()),
        names={c.id: c.name for c in customer_service.list_customers(session, site_id())},
        pending=finance_service.pending_refunds(session, site_id()),
        shifts=finance_service.list_shifts(session, site_id(), 30),
        settings=customer_service.settings(session, site_id()), ticketing=GROUP_TICKETING,
        default_start=last_month_end.replace(day=1).isoformat(), default_end=last_month_end.isoformat(),
        form=form or {}, errors=errors or {}), status


@bp.route("/")
@require(*READERS)
def index():
    return _index_page()


@bp.post("/statements")
@require("finance")
def open_statement():
    form = request.form
    start, end, customer_id = _day(form.get("start")), _day(form.get("end")), _int(form.get("customer"))
    if start is None or end is None or customer_id is None:
        return _index_page(form, {"statement": _("Choose the customer and give the period's days as dates.")}, 422)
    try:
        st = finance_service.open_statement(db(), site_id(), customer_id, start, end, actor=g.actor)
        commit()
    except ServiceError as exc:
        db().rollback()
        return _index_page(form, {"statement": exc.text}, 422)
    flash(_("Statement S%(id)s opened.", id=st.id))
    return redirect(url_for(".statement", statement_id=st.id))


def _statement_or_404(statement_id: int):
    try:
        return finance_service.get_statement(db(), statement_id, site_id())
    except ServiceError:
        abort(404)


def _statement_page(st, errors: dict | None = None, form=None, status: int = 200):
    return render_template("finance/statement.html", v=finance_service.view(db(), st), errors=errors or {},
                           form=form or {}), status


@bp.route("/statements/<int:statement_id>")
@require(*READERS)
def statement(statement_id: int):
    return _statement_page(_statement_or_404(statement_id))


@bp.post("/statements/<int:statement_id>/<any(recount, check, close):action>")
@require("finance")
def statement_action(statement_id: int, action: str):
    st = _statement_or_404(statement_id)
    fn = {"recount": finance_service.recount, "check": finance_service.check_statement,
          "close": finance_service.close_statement}[action]
    try:
        fn(db(), st.id, actor=g.actor)
        commit()
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
        return redirect(url_for(".statement", statement_id=statement_id))
    flash({"recount": _("Statement S%(id)s counted again.", id=st.id),
           "check": _("Statement S%(id)s checked.", id=st.id),
           "close": _("Statement S%(id)s closed: it never changes again.", id=st.id)}[action])
    return redirect(url_for(".statement", statement_id=statement_id))


@bp.post("/statements/<int:statement_id>/corrections")
@require("finance")
def correction(statement_id: int):
    st = _statement_or_404(statement_id)
    form = request.form
    try:
        finance_service.add_correction(db(), st.id, (form.get("description") or "").strip(),
                                       (form.get("amount") or "").strip(), actor=g.actor)
        commit()
    except ServiceError as exc:
        db().rollback()
        return _statement_page(_statement_or_404(statement_id), {"correction": exc.text}, form, 422)
    flash(_("Correction added as a new line."))
    return redirect(url_for(".statement", statement_id=statement_id))


def _filename(st, ext: str) -> str:
    return f"statement-S{st.id}-{st.period_start.isoformat()}-{st.period_end.isoformat()}.{ext}"


@bp.route("/statements/<int:statement_id>.csv")
@require(*READERS)
def statement_csv(statement_id: int):
    st = _statement_or_404(statement_id)
    body = finance_service.statement_csv(finance_service.view(db(), st))
    return Response("\ufeff" + body, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{_filename(st, "csv")}"'})


@bp.route("/statements/<int:statement_id>.xlsx")
@require(*READERS)
def statement_xlsx(statement_id: int):
    st = _statement_or_404(statement_id)
    body = finance_service.statement_xlsx(finance_service.view(db(), st))
    return Response(body, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f'attachment; filename="{_filename(st, "xlsx")}"'})


@bp.post("/refunds/<int:payment_id>/<any(approve, reject):action>")
@require(*SUPERVISORS)
def decide_refund(payment_id: int, action: str):
    try:
        payment = finance_service.decide_refund(db(), payment_id, g.actor, approve=action == "approve")
        commit()
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
        return redirect(url_for(".index"))
    flash(_("Refund approved: the ticket is refunded.") if payment.status == "done" else _("Refund rejected."))
    return redirect(url_for(".index"))


@bp.route("/shifts/<int:shift_id>")
@require(*READERS)
def shift(shift_id: int):
    try:
        s = finance_service.get_shift(db(), shift_id, site_id())
    except ServiceError:
        abort(404)
    return render_template("finance/shift.html", r=finance_service.shift_report(db(), s))


@bp.route("/reports")
@require(*READERS)
def reports():
    today = site_today()
    monthly = request.args.get("per") == "month"
    start = _day(request.args.get("start")) or (today.replace(day=1) if monthly else today)
    end = _day(request.args.get("end")) or today
    by = request.args.get("by") if request.args.get("by") in finance_service.DIMENSIONS else "channel"
    try:
        report = finance_service.finance_report(db(), site_id(), start, end, by=by, monthly=monthly)
    except ServiceError as exc:
        flash(exc.text, "error")
        return redirect(url_for(".reports"))
    return render_template("finance/reports.html", rep=report, dimensions=finance_service.DIMENSIONS)


@bp.route("/reports.csv")
@require(*READERS)
def reports_csv():
    from central.services.reports import to_csv

    today = site_today()
    monthly = request.args.get("per") == "month"
    start = _day(request.args.get("start")) or today
    end = _day(request.args.get("end")) or today
    by = request.args.get("by") if request.args.get("by") in finance_service.DIMENSIONS else "channel"
    try:
        rows = finance_service.revenue(db(), site_id(), start, end, by=by, monthly=monthly)
    except ServiceError as exc:
        return Response(exc.text, status=400, mimetype="text/plain")
    return Response("\ufeff" + to_csv(rows), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{site_id()}-revenue-{by}-{start}-{end}.csv"'})


@bp.post("/settings")
@require("finance")
def save_settings():
    form = request.form
    try:
        customer_service.update_settings(db(), site_id(), group_ticketing=form.get("group_ticketing") or None,
                                         refund_approval_over=(form.get("refund_approval_over") or "").strip() or None,
                                         actor=g.actor)
        commit()
    except ServiceError as exc:
        db().rollback()
        return _index_page(form, {"settings": exc.text}, 422)
    flash(_("Finance settings saved."))
    return redirect(url_for(".index"))
