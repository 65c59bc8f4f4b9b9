"""Reports for managers: a date range, every table on one page, CSV per table, a printable day."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for

from central.i18n import _
from central.models import CONFLICT_DECISIONS
from central.services import ServiceError
from central.services import conflicts as conflict_service
from central.services import reports as report_service
from central.web.i18n import label
from central.web.stack import commit, db, report_db, require, site_id

bp = Blueprint("reports", __name__, url_prefix="/reports")

# Each report table: rows (dataclasses) for the site's period.
TABLES: dict[str, Callable[..., Sequence[Any]]] = {
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


CONFLICT_STATES = ("open", "resolved", "all")


def _conflicts_page(status: int = 200, **extra):
    state = request.args.get("state", "open")
    if state not in CONFLICT_STATES:
        state = "open"
    before = request.args.get("before", type=int)
    page = conflict_service.list_conflicts(db(), site_id(), state=state,
                                           before_id=before if before and before > 0 else None)
    return render_template("reports/conflicts.html", page=page, state=state, decisions=CONFLICT_DECISIONS,
                           **({"form": {}, "errors": {}, "failed": None} | extra)), status


@bp.get("/conflicts")
@require("manager")
def conflicts():
    """Conflicts from offline gates, open ones first to be decided; resolved ones with who, when, what."""
    return _conflicts_page()


@bp.post("/conflicts/<int:conflict_id>/resolve")
@require("manager")
def resolve_conflict(conflict_id: int):
    form = request.form
    try:
        conflict = conflict_service.resolve_conflict(db(), site_id(), conflict_id, form.get("decision", ""),
                                                     form.get("note", ""), actor=g.actor)
        commit()
    except ServiceError as exc:
        db().rollback()
        field = {"bad_decision": "decision", "bad_note": "note"}.get(exc.code, "form")
        return _conflicts_page(status=422, form=form, errors={field: exc.text}, failed=conflict_id)
    flash(_("Conflict %(credential)s resolved: %(decision)s.", credential=conflict.credential_ref,
            decision=label("conflict_decision", conflict.resolution or "")))
    return redirect(url_for(".conflicts"))
