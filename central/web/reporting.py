"""Reports for managers: a date range, every table on one page, CSV per table, a printable day."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for

from central.services import ServiceError
from central.services import reports as report_service
from central.web.stack import report_db, require, site_id

bp = Blueprint("reports", __name__, url_prefix="/reports")

TABLES = {
    "per-day": report_service.visitors_per_day,
    "per-hour": report_service.visitors_per_hour,
    "by-gate": report_service.by_gate,
    "by-ticket-type": report_service.by_ticket_type,
    "reentries": report_service.reentries,
    "denials": report_service.denials_by_reason,
    "conflicts": report_service.conflicts,
    "settlement-channel": report_service.settlement_by_channel,
    "settlement-customer": report_service.settlement_by_customer,
    "repeated-refusals": report_service.repeated_refusals,
    "two-gates": report_service.two_gates_apart,
}


def _day(key: str) -> date | None:
    value = request.args.get(key)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _period():
    return report_service.period(report_db()[0], site_id(), _day("start"), _day("end"))


@bp.route("/")
@require("manager")
def index():
    try:
        p = _period()
    except ServiceError as exc:
        flash(exc.text, "error")
        return redirect(url_for(".index"))
    session, standby = report_db()
    tables = {name: fn(session, p) for name, fn in TABLES.items()}
    return render_template("reports/index.html", p=p, t=tables, standby=standby)


@bp.route("/<name>.csv")
@require("manager")
def csv(name: str):
    fn = TABLES.get(name)
    if fn is None:
        abort(404)
    try:
        p = _period()
    except ServiceError as exc:
        return Response(exc.text, status=400, mimetype="text/plain")
    body = report_service.to_csv(fn(report_db()[0], p))
    filename = f"{site_id()}-{name}-{p.start.isoformat()}-{p.end.isoformat()}.csv"
    return Response("\ufeff" + body, mimetype="text/csv",  # the BOM makes spreadsheet programs read UTF-8
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.route("/daily")
@require("manager")
def daily():
    try:
        p = _period()
    except ServiceError as exc:
        flash(exc.text, "error")
        return redirect(url_for(".index"))
    session, standby = report_db()
    summary = report_service.daily_summary(session, site_id(), p.start)
    return render_template("reports/daily.html", s=summary, standby=standby)
