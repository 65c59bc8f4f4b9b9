"""The booking site's back office: the calendar (open days, slots, capacities, closing times), the booking
settings, the blocklist, the report of suspicious patterns (managers), and bookings made at the desk on a
visitor's behalf, with the booking's page to print (staff).

    GET  /bookings/                       manager  the calendar and the settings
    POST /bookings/day | /slot | /settings manager  open or close a day, cap it; add or change a slot; the rules
    GET  /bookings/blocklist, POST add | remove/<id>   manager   documents and phones that may not book
    GET  /bookings/report                 manager  many bookings from one client address or one phone
    GET|POST /bookings/desk               staff    book for a visitor at the desk (no proof of work)
    GET  /bookings/b/<number>             staff    a booking with each person's entry (QR codes to print)
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from central.i18n import _
from central.models import DOCUMENT_TYPES, Ticket
from central.services import ServiceError
from central.services import visitor_bookings as vb
from central.services.gates import get_site
from central.services.tickets import qr_svg, ticket_code
from central.web import queries
from central.web.booking import FormState, _blank, _read_form
from central.web.forms import form_day, form_int
from central.web.i18n import current_language, site_today
from central.web.stack import commit, ctx, current_user, db, has_role, require, site_id
from protocol.clock import park_now

bp = Blueprint("bookings", __name__, url_prefix="/bookings")
CALENDAR_DAYS = 14


def _actor() -> str:
    user = current_user()
    return user.username if user is not None else "staff"




def _clock(value: str | None) -> time | None:
    try:
        return time.fromisoformat(value or "")
    except ValueError:
        return None


def _calendar_page(errors: dict | None = None, form: dict | None = None, status: int = 200):
    session = db()
    first = form_day(request.args.get("from")) or site_today()
    days = vb.calendar(session, site_id(), first=first, days=CALENDAR_DAYS, staff=True)
    page = render_template("bookings/calendar.html", days=days, rules=vb.settings(session, site_id(), fresh=True),
                           types=queries.ticket_types(session, site_id()), errors=errors or {}, form=form or {},
                           first=first, prev=first - timedelta(days=CALENDAR_DAYS),
                           next=first + timedelta(days=CALENDAR_DAYS))
    return page, status


@bp.get("/")
@require("manager")
def calendar():
    return _calendar_page()


@bp.post("/day")
@require("manager")
def day():
    form = request.form
    the_day = form_day(form.get("day"))
    raw_cap = (form.get("day_capacity") or "").strip()
    capacity = form_int(raw_cap)
    if the_day is None:
        return _calendar_page({"day": _("Choose a day.")}, form, 400)
    if raw_cap and capacity is None:
        return _calendar_page({"day_capacity": _("“%(field)s” is a whole number.", field=_("Day capacity"))}, form, 400)
    try:
        vb.set_day(db(), site_id(), the_day, _actor(), is_open=form.get("open") == "yes", capacity=capacity)
        commit()
    except ServiceError as exc:
        db().rollback()
        return _calendar_page({(getattr(exc, "field", None) or "day"): exc.text}, form, 400)
    flash(_("%(day)s saved.", day=the_day.isoformat()))
    return redirect(url_for("bookings.calendar", **{"from": request.args.get("from", "")} if
                            request.args.get("from") else {}))


@bp.post("/slot")
@require("manager")
def slot() -> ResponseReturnValue:
    form = request.form
    errors: dict[str, str] = {}
    the_day, start, end = form_day(form.get("slot_day")), _clock(form.get("slot_start")), _clock(form.get("slot_end"))
    capacity = form_int(form.get("slot_capacity"))
    if the_day is None:
        errors["slot_day"] = _("Choose a day.")
    if start is None:
        errors["slot_start"] = _("Give the time the slot starts, such as 09:00.")
    if end is None:
        errors["slot_end"] = _("Give the time the slot ends, such as 11:00.")
    if capacity is None:
        errors["slot_capacity"] = _("“%(field)s” is a whole number.", field=_("Capacity"))
    closes_at = None
    if (form.get("slot_closes") or "").strip():
        closes = _clock(form.get("slot_closes"))
        if closes is None or the_day is None:
            errors["slot_closes"] = _("Give the time booking closes, such as 08:30, or leave it empty.")
        else:
            closes_at = datetime.combine(the_day, closes, tzinfo=ZoneInfo(get_site(db(), site_id()).timezone))
    if errors:
        return _calendar_page(errors, form, 400)
    assert the_day is not None and start is not None and end is not None and capacity is not None
    try:
        vb.set_slot(db(), site_id(), _actor(), day=the_day, start=start, end=end, capacity=capacity,
                    closes_at=closes_at)
        commit()
    except ServiceError as exc:
        db().rollback()
        return _calendar_page({(getattr(exc, "field", None) or "slot_capacity"): exc.text}, form, 400)
    flash(_("Time slot %(day)s %(start)s saved.", day=the_day.isoformat(), start=start.strftime("%H:%M")))
    return redirect(url_for("bookings.calendar"))


@bp.post("/settings")
@require("manager")
def settings() -> ResponseReturnValue:
    form = request.form
    values: dict[str, int | None] = {}
    errors: dict[str, str] = {}
    for key in ("days_ahead", "party_max", "cancel_before_min", "close_before_min", "retention_days"):
        values[key] = form_int(form.get(key))
        if values[key] is None:
            errors[key] = _("“%(field)s” is a whole number.", field=key)
    ticket_type = form_int(form.get("ticket_type_id")) if form.get("ticket_type_id") else None
    if errors:
        return _calendar_page(errors, form, 400)
    try:
        vb.update_settings(db(), site_id(), _actor(), ticket_type_id=ticket_type,
                           face_entry=form.get("face_entry") == "yes", **values)  # type: ignore[arg-type]
        commit()
    except ServiceError as exc:
        db().rollback()
        return _calendar_page({(getattr(exc, "field", None) or "form"): exc.text}, form, 400)
    flash(_("Booking settings saved."))
    return redirect(url_for("bookings.calendar"))


# --- blocklist and report ------------------------------------------------------------------------


def _blocklist_page(errors: dict | None = None, form: dict | None = None, status: int = 200):
    return render_template("bookings/blocklist.html", entries=vb.blocks(db(), site_id()), errors=errors or {},
                           form=form or {}, doc_types=[(t, vb.DOCUMENT_LABELS[t]) for t in DOCUMENT_TYPES]), status


@bp.get("/blocklist")
@require("manager")
def blocklist():
    return _blocklist_page()


@bp.post("/blocklist")
@require("manager")
def block():
    form = request.form
    try:
        entry = vb.block(db(), site_id(), _actor(), kind=form.get("kind", ""), value=form.get("value", ""),
                         reason=form.get("reason", ""), doc_type=form.get("doc_type", "id_card"))
        masked = entry.masked
        commit()
    except ServiceError as exc:
        db().rollback()
        return _blocklist_page({(getattr(exc, "field", None) or "form"): exc.text}, form, 400)
    flash(_("%(value)s is on the blocklist: it cannot book, and its bookings no longer admit.", value=masked))
    return redirect(url_for("bookings.blocklist"))


@bp.post("/blocklist/<int:block_id>/remove")
@require("manager")
def unblock(block_id: int):
    try:
        vb.unblock(db(), site_id(), block_id, _actor())
        commit()
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
    return redirect(url_for("bookings.blocklist"))


@bp.get("/report")
@require("manager")
def report():
    days = max(1, min(form_int(request.args.get("days")) or 7, 90))
    threshold = max(2, min(form_int(request.args.get("threshold")) or 5, 1000))
    found = vb.suspicious(db(), site_id(), since=park_now() - timedelta(days=days), threshold=threshold)
    return render_template("bookings/report.html", patterns=found, days=days, threshold=threshold)


# --- the desk --------------------------------------------------------------------------------------


def _desk_page(state: FormState, status: int = 200):
    session = db()
    rules = vb.settings(session, site_id())
    days = vb.calendar(session, site_id())
    return render_template("bookings/desk.html", days=days, rules=rules, state=state,
                           doc_types=[(t, vb.DOCUMENT_LABELS[t]) for t in DOCUMENT_TYPES],
                           party_choices=range(1, rules.party_max + 1), chosen=request.values.get("slot", "")), status


@bp.get("/desk")
@require("staff", "manager")
def desk():
    rules = vb.settings(db(), site_id())
    party = max(1, min(form_int(request.args.get("party")) or 1, rules.party_max))
    return _desk_page(_blank(party))


@bp.post("/desk")
@require("staff", "manager")
def desk_book():
    rules = vb.settings(db(), site_id())
    state = _read_form(rules.party_max)
    if request.form.get("resize"):
        kept = state.persons + [{"name": "", "doc_type": "id_card", "doc_number": ""}] * rules.party_max
        return _desk_page(FormState(party=state.party, persons=kept[:state.party], phone=state.phone,
                                    consent=state.consent))
    if state.errors:
        return _desk_page(state, 400)
    quota_id = form_int(request.form.get("slot"))
    persons = [vb.PartyMember(p["name"], p["doc_type"], p["doc_number"]) for p in state.persons]
    req = vb.BookingRequest(quota_id=quota_id or 0, persons=persons, phone=state.phone, consent=state.consent,
                            language=current_language(), channel="desk")
    try:
        booking = vb.make_booking(db(), site_id(), req, actor=_actor())
        number = booking.number
        commit()
    except ServiceError as exc:
        db().rollback()
        state.errors[(getattr(exc, "field", None) or "form")] = exc.text
        return _desk_page(state, 409 if exc.status == 409 else 400)
    flash(_("Booking %(number)s made.", number=vb.display_number(number)))
    return redirect(url_for("bookings.booking", number=number))


@bp.get("/b/<number>")
@require("staff", "manager")
def booking(number: str):
    found = vb.get_booking(db(), site_id(), number)
    if found is None:
        abort(404)
    return render_template("bookings/booking.html", b=found, number=vb.display_number(found.number),
                           doc_labels=vb.DOCUMENT_LABELS)


@bp.get("/b/<number>/qr/<int:position>.svg")
@require("staff", "manager")
def qr(number: str, position: int):
    found = vb.get_booking(db(), site_id(), number)
    person = next((p for p in found.persons if p.position == position), None) if found else None
    ticket = db().get(Ticket, person.ticket_id) if person and person.ticket_id else None
    if ticket is None or found is None or found.status != "booked":
        abort(404)
    return Response(qr_svg(ticket_code(ticket, ctx().signer), scale=4), mimetype="image/svg+xml",
                    headers={"Cache-Control": "no-store"})


@bp.post("/b/<number>/cancel")
@require("staff", "manager")
def cancel(number: str):
    found = vb.get_booking(db(), site_id(), number)
    if found is None:
        abort(404)
    try:
        vb.cancel_booking(db(), site_id(), found, actor=_actor(), staff=True)
        commit()
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
    else:
        flash(_("Booking %(number)s is cancelled: its places are free again.", number=vb.display_number(found.number)))
    return redirect(url_for("bookings.booking", number=found.number))


def bookings_today() -> list[vb.SlotArrivals]:
    """Today's slots with their bookings and arrivals, for the dashboard (managers only)."""
    if not has_role("manager"):
        return []
    return vb.today_by_slot(db(), site_id())


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(bookings_today=bookings_today)


__all__ = ["bp", "init_app"]
