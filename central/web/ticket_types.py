"""The manager's ticket types: define each kind of ticket and its entry rules, as gates then apply them.

What a manager sets here is what every gate does (`protocol.rules` at the gate and at the central):
single or several entries or unlimited ones within the validity, re-entry only after an exit, the
shortest gap, the same person, the zones and weekdays, the real-name rule, the grace after a time slot,
the days of validity, the price, and how many people one ticket may carry (a group ticket type).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from central.i18n import _
from central.services import ServiceError
from central.services import tickets as ticket_service
from central.services.limits import HEADCOUNT
from central.web import queries
from central.web.stack import commit, db, require, signed_in, site_id

bp = Blueprint("ticket_types", __name__, url_prefix="/ticket-types")
WEEKDAYS = range(7)
# Which form field a refusal is about.
FIELDS = {"bad_name": "name", "bad_entries": "entries", "bad_zone": "zones", "bad_weekday": "weekdays",
          "bad_rules": "form", "bad_price": "price", "bad_headcount": "max_headcount", "bad_type_id": "form"}


def _page(form=None, errors: dict | None = None, status: int = 200, editing=None):
    session = db()
    return render_template("ticket_types/index.html", types=queries.ticket_types(session, site_id()),
                           zones=queries.zones(session, site_id()), weekdays=WEEKDAYS, form=form or {},
                           errors=errors or {}, editing=editing, max_headcount=HEADCOUNT), status


@bp.route("/")
@require("manager")
def index():
    editing = None
    type_id = request.args.get("edit", type=int)
    if type_id is not None:
        editing = next((t for t in queries.ticket_types(db(), site_id()) if t.id == type_id), None)
    return _page(editing=editing)


def _number(form, key: str, errors: dict, default: int, name) -> int:
    raw = (form.get(key) or "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        errors[key] = _("“%(field)s” is a whole number.", field=name)
        return default


@bp.post("/")
@require("manager")
def save() -> ResponseReturnValue:
    form = request.form
    errors: dict[str, str] = {}
    unlimited = form.get("unlimited") == "yes"
    entries = None if unlimited else _number(form, "entries", errors, 1, _("Entries"))
    spec_values: dict[str, Any] = dict(  # TicketTypeSpec's fields, built once every field is checked
        name=(form.get("name") or "").strip(), entries=entries, same_person=form.get("same_person") == "yes",
        anti_passback=form.get("anti_passback") == "yes",
        min_gap_s=_number(form, "min_gap_min", errors, 0, _("Shortest gap between entries (minutes)")) * 60,
        zones=[int(z) for z in form.getlist("zones") if z.isdigit()],
        weekdays=[int(d) for d in form.getlist("weekdays") if d.isdigit()],
        slot_grace_min=_number(form, "slot_grace_min", errors, 15, _("Grace after the slot (minutes)")),
        real_name=form.get("real_name") == "yes",
        staff_check=form.get("staff_check") == "yes",
        id_face=form.get("id_face") == "yes",
        bind_finger=form.get("bind_finger") == "yes",
        validity_days=_number(form, "validity_days", errors, 1, _("Days of validity")),
        price=(form.get("price") or "0").strip(),
        min_headcount=_number(form, "min_headcount", errors, 1, _("Fewest people on one ticket")),
        max_headcount=_number(form, "max_headcount", errors, HEADCOUNT, _("Most people on one ticket")))
    type_id = form.get("id", type=int)
    if errors:
        return _page(form, errors, 422)
    try:
        spec = ticket_service.TicketTypeSpec(id=type_id, **spec_values)
        tt = ticket_service.define_ticket_type(db(), site_id(), spec, actor=signed_in().username)
        commit()
    except ServiceError as exc:
        db().rollback()
        return _page(form, {FIELDS.get(exc.code, "form"): exc.text}, 422)
    flash(_("Ticket type %(name)s saved: gates apply its rules with their next config.", name=tt.name))
    return redirect(url_for(".index"))


__all__ = ["bp"]
