"""The staff desk: sell and look up tickets, refund, enrol annual-pass holders (photo or camera,
card, fingerprint), suspend, report lost, renew, and delete a person's data on request."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from central.i18n import _, _l
from central.models import CHANNELS
from central.services import ServiceError
from central.services import passes as pass_service
from central.services import staff_help as help_service
from central.services import tickets as ticket_service
from central.services.gates import get_site
from central.web import queries
from central.web.forms import form_day, form_int, read_photo
from central.web.i18n import site_today
from central.web.stack import commit, ctx, db, require, signed_in, site_id
from protocol.errors import CodeError
from protocol.ids import pass_ref, ticket_ref
from protocol.ticket_code import KeyRing, PublicKey

bp = Blueprint("desk", __name__, url_prefix="/desk")

# The checks `biometrics.enrol_face` makes, in its order, and the refusal reason each one gives.
FACE_CHECKS = [
    ("unreadable_image", _l("The file is a readable photo")),
    ("no_face", _l("A face is found")),
    ("several_faces", _l("Only one face is in the photo")),
    ("face_too_small", _l("The face is large enough")),
    ("too_blurred", _l("The face is sharp enough")),
]
PASS_DONE = {"suspend": _l("Pass %(ref)s suspended."), "resume": _l("Pass %(ref)s resumed."),
             "lost": _l("Pass %(ref)s reported lost: its card admits nobody from now on."),
             "renew": _l("Pass %(ref)s renewed."), "card": _l("Card bound to pass %(ref)s."),
             "replace": _l("A new card replaces the lost one of pass %(ref)s.")}


def _actor() -> str:
    return signed_in().username


def _fail(exc: ServiceError) -> None:
    flash(exc.text, "error")




def _site_tz() -> ZoneInfo:
    return ZoneInfo(get_site(db(), site_id()).timezone)


# --- tickets -----------------------------------------------------------------------------------


# Which form field a service refusal is about, so the message stands beside it.
SALE_FIELDS = {"bad_headcount": "headcount", "past_date": "visit_date", "bad_validity": "visit_date",
               "id_number_required": "id_number", "bad_id_number": "id_number", "bad_price": "price",
               "bad_name": "holder_name", "bad_channel_ref": "channel_ref", "bad_channel": "channel",
               "bad_ticket_type": "ticket_type", "no_ticket_type": "ticket_type", "type_inactive": "ticket_type",
               "quota_full": "visit_date", "too_many": "quantity"}


def _sell_page(form=None, errors: dict | None = None, status: int = 200):
    """The desk's sale form; after a refusal, with what was typed and the message beside its field."""
    session = db()
    return render_template("desk/index.html", types=queries.ticket_types(session, site_id()), channels=CHANNELS,
                           recent=queries.recent_tickets(session, site_id()), today=site_today().isoformat(),
                           zones=queries.zones(session, site_id()), form=form or {}, errors=errors or {}), status


@bp.route("/")
@require("staff")
def index():
    return _sell_page()


@bp.post("/tickets")
@require("staff")
def issue() -> ResponseReturnValue:
    form = request.form
    errors: dict[str, str] = {}
    type_id = form_int(form.get("ticket_type"))
    if type_id is None:
        errors["ticket_type"] = _("Choose a ticket type.")
    visit_date = form_day(form.get("visit_date"))
    if form.get("visit_date") and visit_date is None:
        errors["visit_date"] = _("Give the visit date as a date.")
    headcount = form_int(form.get("headcount") or "1")
    if headcount is None:
        errors["headcount"] = _("The headcount is a whole number.")
    quantity = form_int(form.get("quantity") or "1")
    if quantity is None or not 1 <= quantity <= 500:
        errors["quantity"] = _("Sell 1 to 500 tickets at once.")
    if errors or type_id is None or headcount is None or quantity is None:  # each None is in errors
        return _sell_page(form, errors, 422)
    req = ticket_service.IssueRequest(
        ticket_type=type_id, visit_date=visit_date, headcount=headcount, holder_name=form.get("holder_name") or None,
        id_number=form.get("id_number") or None, channel=form.get("channel") or "box_office",
        channel_ref=form.get("channel_ref") or None, price=form.get("price") or None,
        allow_past=form.get("allow_past") == "yes")
    try:
        tickets = ticket_service.issue_tickets(db(), site_id(), [req] * quantity, actor=_actor())
        commit()
    except ServiceError as exc:
        db().rollback()
        return _sell_page(form, {SALE_FIELDS.get(exc.code, "form"): exc.text, "code": exc.code}, 422)
    if len(tickets) == 1:
        flash(_("Ticket %(ref)s issued.", ref=tickets[0].ref))
        return redirect(url_for(".ticket", ticket_id=tickets[0].id))
    flash(_("%(n)s tickets issued: %(first)s to %(last)s.", n=len(tickets), first=tickets[0].ref,
            last=tickets[-1].ref))
    return redirect(url_for(".index"))


def _ticket_id_from_code(text: str) -> int | None:
    from sqlalchemy import select

    from central.models import SigningKey

    keys = [PublicKey(k.key_id, k.public) for k in db().scalars(select(SigningKey))]
    try:
        return KeyRing(keys).verify(text).ticket_id
    except CodeError:
        return None


@bp.route("/lookup")
@require("staff")
def lookup():
    by = request.args.get("by", "code")
    q = (request.args.get("q") or "").strip()
    tickets, message = [], None
    if q:
        if by == "id_number":
            tickets = queries.tickets_for_id_number(db(), site_id(), q)
        else:
            number = form_int(q[1:] if q[:1] in "Tt" else q) if by == "ticket" else _ticket_id_from_code(q)
            if number is not None:
                try:
                    ticket = ticket_service.get_ticket(db(), number)
                    if ticket.site_id == site_id():
                        tickets = [ticket]
                except ServiceError:
                    pass
            elif by == "code":
                message = _("This is not a valid ticket code of this park.")
        if not tickets and message is None:
            message = _("No ticket found.")
    template = "desk/_results.html" if request.headers.get("HX-Request") else "desk/lookup.html"
    return render_template(template, tickets=tickets, q=q, by=by, message=message)


@bp.route("/tickets/<int:ticket_id>")
@require("staff")
def ticket(ticket_id: int):
    try:
        t = ticket_service.get_ticket(db(), ticket_id)
    except ServiceError:
        abort(404)
    if t.site_id != site_id():
        abort(404)
    return render_template("desk/ticket.html", t=t)


@bp.route("/tickets/<int:ticket_id>/qr.svg")
@require("staff")
def ticket_qr(ticket_id: int):
    try:
        t = ticket_service.get_ticket(db(), ticket_id)
    except ServiceError:
        abort(404)
    if t.site_id != site_id() or t.status not in ("valid", "used"):
        abort(404)
    try:
        svg = ticket_service.qr_svg(ticket_service.ticket_code(t, ctx().signer))
    except ServiceError:  # times no code can carry (a ticket stored before the issue checks)
        abort(404)
    return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "no-store"})


@bp.post("/tickets/<int:ticket_id>/<any(refund, revoke):action>")
@require("staff")
def end_ticket(ticket_id: int, action: str):
    fn = ticket_service.refund_ticket if action == "refund" else ticket_service.revoke_ticket
    try:
        fn(db(), ticket_id, actor=_actor(), reason=request.form.get("reason") or None)
        commit()
        flash(_("Ticket %(ref)s refunded: gates refuse it within seconds.", ref=ticket_ref(ticket_id))
              if action == "refund" else
              _("Ticket %(ref)s revoked: gates refuse it within seconds.", ref=ticket_ref(ticket_id)))
    except ServiceError as exc:
        db().rollback()
        _fail(exc)
    return redirect(url_for(".ticket", ticket_id=ticket_id))


# --- persons and annual passes -----------------------------------------------------------------


PERSON_FIELDS = {"bad_name": "name", "bad_phone": "phone", "bad_id_last4": "id_last4", "bad_card_uid": "card_uid",
                 "card_in_use": "card_uid", "bad_validity": "valid_to", "bad_price": "price", "bad_channel": "channel"}


def _persons_page(form=None, errors: dict | None = None, status: int = 200):
    q = request.args.get("q", "")
    uid = request.args.get("card", "").strip()
    by_card, card_error = [], None
    if uid:
        try:
            by_card = queries.passes_by_card(db(), site_id(), pass_service.normalise_uid(uid))
        except ServiceError as exc:
            card_error = exc.text
    found = queries.search_persons(db(), site_id(), q)
    today = site_today()
    return render_template("desk/persons.html", persons=found, q=q, card=uid, by_card=by_card, card_error=card_error,
                           channels=CHANNELS, today=today.isoformat(),
                           next_year=(today + timedelta(days=365)).isoformat(), form=form or {},
                           errors=errors or {}), status


@bp.route("/persons")
@require("staff")
def persons():
    return _persons_page()


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=_site_tz())


@bp.post("/persons")
@require("staff")
def create_person() -> ResponseReturnValue:
    form = request.form
    session = db()
    errors: dict[str, str] = {}
    valid_from, valid_to = form_day(form.get("valid_from")), form_day(form.get("valid_to"))
    if form.get("valid_from") and valid_from is None:
        errors["valid_from"] = _("Give the start as a date.")
    if form.get("valid_to") and valid_to is None:
        errors["valid_to"] = _("Give the end as a date.")
    if errors:
        return _persons_page(form, errors, 422)
    try:
        person = pass_service.create_person(session, site_id(), (form.get("name") or "").strip(),
                                            phone=form.get("phone") or None, id_last4=form.get("id_last4") or None,
                                            actor=_actor())
        if valid_from and valid_to:
            pass_service.create_pass(session, site_id(), person_id=person.id, valid_from=_local_midnight(valid_from),
                                     valid_to=_local_midnight(valid_to), card_uid=form.get("card_uid") or "",
                                     channel=form.get("channel") or "box_office", price=form.get("price") or 0,
                                     actor=_actor())
        commit()
    except ServiceError as exc:
        session.rollback()
        return _persons_page(form, {PERSON_FIELDS.get(exc.code, "form"): exc.text}, 422)
    flash(_("%(name)s enrolled (holder %(ref)s). Add the face photo or fingerprint below.", name=person.name,
            ref=person.holder_ref))
    return redirect(url_for(".person", person_id=person.id))


def _person_or_404(person_id: int):
    try:
        person = pass_service.get_person(db(), person_id)
    except ServiceError:
        abort(404)
    if person.site_id != site_id():
        abort(404)
    return person


@bp.route("/persons/<int:person_id>")
@require("staff")
def person(person_id: int):
    p = _person_or_404(person_id)
    return render_template("desk/person.html", p=p, passes=queries.passes_of(db(), person_id),
                           templates=queries.templates_of(db(), person_id), checks=None,
                           face_ready=ctx().cipher is not None)


def _photo_bytes() -> tuple[bytes | None, str | None]:
    """The uploaded photo, or why it was refused (missing, too large, not an image)."""
    upload = request.files.get("photo")
    if upload is None or not upload.filename:
        return None, _("Choose a photo or take one with the camera.")
    data, kind = read_photo(upload, current_app.config["MAX_PHOTO_BYTES"])
    if kind == "too_large":
        return None, _("The photo is larger than %(n)s MB.", n=current_app.config["MAX_PHOTO_BYTES"] // (1024 * 1024))
    if kind == "format":
        return None, _("The file is not a JPEG, PNG or WebP photo.")
    if kind == "unreadable":
        return None, _("The file is not a photo that can be read.")
    return data, None


@bp.post("/persons/<int:person_id>/face")
@require("staff")
def enrol_face(person_id: int):
    p = _person_or_404(person_id)
    data, refusal = _photo_bytes()
    failed, message = None, None
    if refusal or data is None:
        failed, message = "unreadable_image", refusal
    else:
        from biometrics import EnrolmentRefused, FaceSupportMissing
        from biometrics import enrol_face as enrol

        try:
            template = enrol(data)
        except EnrolmentRefused as exc:
            failed, message = exc.reason, exc.message
        except FaceSupportMissing as exc:
            failed, message = "unreadable_image", str(exc)
        else:
            try:
                pass_service.bind_template(db(), ctx().cipher, person_id, "face", template.to_bytes(), actor=_actor())
                if request.form.get("keep_photo") == "yes":  # the holder's consent, asked at the desk
                    help_service.keep_holder_photo(db(), ctx().cipher, person_id, data, actor=_actor())
                commit()
            except ServiceError as exc:
                db().rollback()
                failed, message = "bind", exc.text
    checks = _checklist(failed)
    status = 200
    if failed is None:
        flash(_("Face enrolled for %(name)s: gates recognise the holder within seconds.", name=p.name))
    else:
        status = 422
    return render_template("desk/person.html", p=p, passes=queries.passes_of(db(), person_id),
                           templates=queries.templates_of(db(), person_id), checks=checks, face_error=message,
                           face_ready=ctx().cipher is not None), status


def _checklist(failed: str | None) -> list[tuple[str, str]]:
    """Each enrolment check as passed, failed or not reached."""
    out, reached = [], True
    for reason, label in FACE_CHECKS:
        if not reached:
            out.append((label, "skipped"))
        elif reason == failed:
            out.append((label, "failed"))
            reached = False
        else:
            out.append((label, "passed"))
    if failed == "bind":
        out.append((_l("The template is stored"), "failed"))
    return out


@bp.post("/persons/<int:person_id>/fingerprint")
@require("staff")
def enrol_fingerprint(person_id: int):
    """A fingerprint template captured at an enrolment station (the AS608 module's character file)."""
    _person_or_404(person_id)
    upload = request.files.get("template")
    data = upload.read(4096) if upload else b""
    finger = form_int(request.form.get("finger"), 1)
    try:
        pass_service.bind_template(db(), ctx().cipher, person_id, "fingerprint", data, finger=finger or 0,
                                   actor=_actor())
        commit()
        flash(_("Fingerprint enrolled."))
    except ServiceError as exc:
        db().rollback()
        _fail(exc)
    return redirect(url_for(".person", person_id=person_id))


@bp.post("/persons/<int:person_id>/forget")
@require("staff")
def forget(person_id: int):
    _person_or_404(person_id)
    if request.form.get("confirm") != "yes":
        flash(_("Tick the box to confirm the deletion."), "error")
        return redirect(url_for(".person", person_id=person_id))
    try:
        pass_service.forget_person(db(), person_id, actor=_actor())
        commit()
    except ServiceError as exc:
        db().rollback()
        _fail(exc)
        return redirect(url_for(".person", person_id=person_id))
    flash(_("The holder's personal data and biometric templates are deleted; gates forget them within seconds."))
    return redirect(url_for(".persons"))


@bp.post("/passes/<int:pass_id>/<any(suspend, resume, lost, renew, card, replace):action>")
@require("staff")
def pass_action(pass_id: int, action: str):
    session = db()
    try:
        annual_pass = pass_service.get_pass(session, pass_id)
    except ServiceError:
        abort(404)
    if annual_pass.site_id != site_id():
        abort(404)
    person_id = annual_pass.person_id
    try:
        if action == "suspend":
            pass_service.suspend_pass(session, pass_id, actor=_actor())
        elif action == "resume":
            pass_service.resume_pass(session, pass_id, actor=_actor())
        elif action == "lost":
            pass_service.report_lost(session, pass_id, actor=_actor())
        elif action == "card":
            pass_service.bind_card(session, pass_id, request.form.get("card_uid", ""), actor=_actor())
        elif action == "replace":
            pass_service.replace_card(session, pass_id, request.form.get("card_uid", ""), actor=_actor())
        else:
            new_end = form_day(request.form.get("valid_to"))
            if new_end is None:
                flash(_("Give the new end date."), "error")
                return redirect(url_for(".person", person_id=person_id))
            pass_service.renew_pass(session, pass_id, _local_midnight(new_end), price=request.form.get("price") or None,
                                    actor=_actor())
        commit()
        flash(str(PASS_DONE[action]) % {"ref": pass_ref(pass_id)})
    except ServiceError as exc:
        session.rollback()
        _fail(exc)
    return redirect(url_for(".person", person_id=person_id))

