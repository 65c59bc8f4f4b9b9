"""The public booking site at /book/ (no login; CSRF on every form): visitors book a slot for their party,
see their booking with each person's entry, find and cancel it.

    GET  /book/                       the open days, each slot's places left (refreshed every 15 s)
    GET  /book/slot/<id>?party=N      the form: each person's name and document, the phone, the consent
    POST /book/slot/<id>              book (a proof of work, rate limits per address, phone and document)
    GET  /book/b/<number>             the booking: number, slot, each person's entry, how to cancel
    GET  /book/b/<number>/qr/<n>.svg  person n's signed QR code (gates verify it offline)
    POST /book/b/<number>/cancel      cancel it (until the site's cut-off)
    GET|POST /book/find               find a booking by its number and the phone or a document number
    GET  /book/privacy                the personal-data notice: what is kept, for how long

A booking page is shown only to the browser that made or found it (its numbers are in the session), so a
guessed number shows nobody's names. Limits (Flask-Limiter, the app's limiter and its storage):
BOOKING_ADDRESS_LIMIT on booking POSTs per client address, BOOKING_PHONE_LIMIT and BOOKING_DOCUMENT_LIMIT on
bookings per phone and per document (keyed by their digests), BOOKING_FIND_LIMIT on look-ups per address;
BOOKING_POW_BITS is the proof of work's difficulty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from limits import parse
from sqlalchemy import select

from central.i18n import _, _l
from central.models import DOCUMENT_TYPES, Booking, Ticket
from central.services import ServiceError
from central.services import proof_of_work as pow_service
from central.services import visitor_bookings as vb
from central.services.gates import get_site
from central.services.tickets import qr_svg, ticket_code
from central.web.forms import read_photo
from central.web.i18n import current_language
from central.web.stack import commit, ctx, db, site_id

bp = Blueprint("book", __name__, url_prefix="/book")

SESSION_KEY = "my_bookings"
MINE_MAX = 10
DEFAULTS = {"BOOKING_ADDRESS_LIMIT": "30/hour;10/minute", "BOOKING_PHONE_LIMIT": "5/day",
            "BOOKING_DOCUMENT_LIMIT": "10/day", "BOOKING_FIND_LIMIT": "60/hour", "BOOKING_POW_BITS": 14,
            "BOOKING_POW_MAX_AGE_S": 1800}
POW_TEXTS = {
    "pow_missing": _l("Your browser did not finish its check: wait until the button can be pressed, then send."),
    "pow_forged": _l("The form's check is not valid: reload the page and try again."),
    "pow_expired": _l("The form waited too long: reload the page and send it again."),
    "pow_wrong": _l("The form's check is not valid: reload the page and try again."),
    "pow_used": _l("This form was already sent: reload the page to book again."),
}
# Face entry: why a selfie cannot be used (the desk's enrolment checks, said to the visitor).
FACE_TEXTS = {
    "too_large": _l("The photo is too large: take or choose a smaller one."),
    "unreadable_image": _l("The photo cannot be read: take or choose a JPEG, PNG or WebP photo."),
    "no_face": _l("No face was found in the photo: the face must be visible, upright and well lit."),
    "several_faces": _l("There are several faces in the photo: take a photo of this person alone."),
    "face_too_small": _l("The face is too small in the photo: move closer, or crop the photo."),
    "too_blurred": _l("The face is too blurred: hold the phone still and take the photo again."),
}


def _conf(key: str):
    return current_app.config.get(key, DEFAULTS[key])


def _secret() -> bytes:
    secret = current_app.secret_key or ""
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def _limiter():
    return current_app.extensions["park_limiter"]


def _over(limit_key: str, *identity: str) -> bool:
    """Take one from each of `limit_key`'s limits for `identity`; True when one of them is spent."""
    strategy = _limiter().limiter
    items = [parse(part) for part in str(_conf(limit_key)).split(";") if part.strip()]
    over = False
    for item in items:
        if not strategy.hit(item, "park-central-book", limit_key, *identity):
            over = True
    return over


def _mine() -> list[str]:
    return list(session.get(SESSION_KEY, []))


def _remember(number: str) -> None:
    mine = [n for n in _mine() if n != number] + [number]
    session[SESSION_KEY] = mine[-MINE_MAX:]


def _client() -> str:
    return request.remote_addr or ""


@dataclass
class FormState:
    """What the visitor typed, sent back with the page when something was wrong."""

    party: int = 1
    persons: list[dict[str, str]] = field(default_factory=list)
    phone: str = ""
    consent: bool = False
    errors: dict[str, str] = field(default_factory=dict)
    photos: set[int] = field(default_factory=set)  # persons who chose a photo (a browser sends it only once)


def _read_form(party_max: int) -> FormState:
    form = request.form
    try:
        party = int(form.get("party", "1"))
    except ValueError:
        party = 1
    state = FormState(party=max(1, min(party, party_max)), phone=form.get("phone", "")[:40],
                      consent=form.get("consent") == "yes")
    for i in range(1, state.party + 1):
        state.persons.append({key: form.get(f"person-{i}-{key}", "")[:400]
                              for key in ("name", "doc_type", "doc_number")})
        upload = request.files.get(f"person-{i}-face")
        if upload is not None and upload.filename:
            state.photos.add(i)
    if party != state.party:
        state.errors["party"] = _("A booking is for 1 to %(n)s people.", n=party_max)
    return state


def _blank(party: int) -> FormState:
    return FormState(party=party, persons=[{"name": "", "doc_type": "id_card", "doc_number": ""}
                                           for _ in range(party)])


# --- pages ------------------------------------------------------------------------------------------


@bp.get("/")
def index():
    session_db = db()
    days = vb.calendar(session_db, site_id())
    rules = vb.settings(session_db, site_id())
    template = "book/places.html" if request.headers.get("HX-Request") else "book/index.html"
    return render_template(template, days=days, rules=rules, site=get_site(session_db, site_id()))


@bp.get("/privacy")
def privacy():
    rules = vb.settings(db(), site_id())
    return render_template("book/privacy.html", rules=rules)


def _slot_or_404(quota_id: int):
    quota = vb.get_slot(db(), site_id(), quota_id)
    if quota is None:
        abort(404)
    return quota


def _form_page(quota, state: FormState, status: int = 200):
    session_db = db()
    rules = vb.settings(session_db, site_id())
    challenge = pow_service.issue(_secret(), int(_conf("BOOKING_POW_BITS")))
    return render_template("book/form.html", quota=quota, slot=vb.slot_view(session_db, site_id(), quota),
                           rules=rules, state=state, face_entry=_face_entry(rules),
                           doc_types=[(t, vb.DOCUMENT_LABELS[t]) for t in DOCUMENT_TYPES], challenge=challenge,
                           party_choices=range(1, rules.party_max + 1)), status


@bp.get("/slot/<int:quota_id>")
def form(quota_id: int):
    quota = _slot_or_404(quota_id)
    rules = vb.settings(db(), site_id())
    try:
        party = max(1, min(int(request.args.get("party", "1")), rules.party_max))
    except ValueError:
        party = 1
    return _form_page(quota, _blank(party))


def _face_entry(rules) -> bool:
    """Face entry is offered where the site has it on and the central holds the template key."""
    return bool(rules.face_entry) and ctx().cipher is not None


def _faces(state: FormState) -> dict[int, bytes]:
    """The checked face template of each person who chose a photo; a photo that cannot be used is said
    at its field (FieldError), in the visitor's language, with the desk's enrolment checks."""
    out: dict[int, bytes] = {}
    if not state.photos:
        return out  # most bookings: no import machinery on their way
    from biometrics import EnrolmentRefused, FaceSupportMissing, enrol_face

    for i in sorted(state.photos):
        name = f"person-{i}-face"
        data, refused = read_photo(request.files[name], int(current_app.config["MAX_PHOTO_BYTES"]))
        if refused == "too_large":
            raise vb.FieldError("too_large", FACE_TEXTS["too_large"], name)
        if refused is not None:
            raise vb.FieldError("unreadable_image", FACE_TEXTS["unreadable_image"], name)
        try:
            out[i] = enrol_face(data).to_bytes()
        except EnrolmentRefused as exc:
            raise vb.FieldError(exc.reason, FACE_TEXTS.get(exc.reason, FACE_TEXTS["unreadable_image"]), name) from None
        except FaceSupportMissing:
            raise vb.FieldError("face_off", _l("Face entry is not available at the moment: book without a photo "
                                               "and enter with your document."), name) from None
    return out


def _check_pow() -> str | None:
    challenge, counter = request.form.get("challenge", ""), request.form.get("pow", "")
    reason = pow_service.verify(_secret(), challenge, counter, int(_conf("BOOKING_POW_MAX_AGE_S")))
    if reason is None:
        # Single use: the challenge's mark lives in the limiter's storage as long as the challenge could.
        storage = _limiter().storage
        if storage.incr(f"park-central-book/pow/{challenge}", int(_conf("BOOKING_POW_MAX_AGE_S")) + 60) > 1:
            reason = "pow_used"
    return reason


@bp.post("/slot/<int:quota_id>")
def submit(quota_id: int):
    quota, fresh = vb.recent_slot(db(), site_id(), quota_id, vb.SLOT_TTL_S)  # for "full", a second old will do
    if quota is None:
        abort(404)
    session_db = db()
    rules = vb.settings(session_db, site_id())
    state = _read_form(rules.party_max)
    if request.form.get("resize"):  # "change the party size": the same page with that many persons
        kept = state.persons + [{"name": "", "doc_type": "id_card", "doc_number": ""}] * rules.party_max
        resized = FormState(party=state.party, persons=kept[:state.party], phone=state.phone, consent=state.consent)
        return _form_page(quota, resized)
    if quota.booked + state.party > quota.capacity:
        # Full at most a second ago: said at once, with the form kept (most of a rush's visitors come
        # here, and this answer costs no check, digest or database round trip). make_booking reads the
        # slot afresh, and its conditional UPDATE decides for those who find places left.
        state.errors["form"] = _("This time slot is fully booked.")
        return _form_page(quota, state, 409)
    if state.errors:
        return _form_page(quota, state, 400)
    if _over("BOOKING_ADDRESS_LIMIT", _client()):
        state.errors["form"] = _("Too many bookings from your connection: wait a little and try again.")
        return _form_page(quota, state, 429)
    reason = _check_pow()
    if reason is not None:
        state.errors["form"] = str(POW_TEXTS[reason])
        return _form_page(quota, state, 400)
    persons = [vb.PartyMember(p["name"], p["doc_type"], p["doc_number"]) for p in state.persons]
    try:
        phone = vb.normalise_phone(state.phone)
        checked = vb.check_party(rules, persons)
        if state.photos and not _face_entry(rules):
            raise vb.FieldError("face_off", vb.FACE_OFF, "party")
        faces = _faces(state)
    except vb.FieldError as exc:
        state.errors[exc.field] = exc.text
        return _form_page(quota, state, 400)
    tel = vb.phone_digest(rules.id_salt, phone)
    docs = [vb.document_digest(rules.id_salt, p.doc_type, p.number) for p in checked]
    if _over("BOOKING_PHONE_LIMIT", tel) or any([_over("BOOKING_DOCUMENT_LIMIT", d) for d in docs]):
        state.errors["form"] = _("Too many bookings for this phone or document: try again tomorrow.")
        return _form_page(quota, state, 429)
    request_ = vb.BookingRequest(quota_id=quota.id, persons=persons, phone=state.phone, consent=state.consent,
                                 language=current_language(), channel="web", client_address=_client(), faces=faces)
    try:
        booking = vb.make_booking(session_db, site_id(), request_, cipher=ctx().cipher, slot=quota if fresh else None)
        number = booking.number
        commit()
    except ServiceError as exc:
        session_db.rollback()
        state.errors[(getattr(exc, "field", None) or "form")] = exc.text
        status = 409 if exc.status == 409 else 400
        return _form_page(_slot_or_404(quota_id), state, status)
    _remember(number)
    return redirect(url_for("book.booking", number=number))


def _my_booking(number: str) -> Booking:
    number = vb.normalise_number(number)
    if number not in _mine():
        abort(404)
    found = vb.get_booking(db(), site_id(), number)
    if found is None:
        abort(404)
    return found


@bp.get("/b/<number>")
def booking(number: str):
    found = _my_booking(number)
    session_db = db()
    rules = vb.settings(session_db, site_id())
    tickets = {t.id: t for t in session_db.scalars(select(Ticket).where(
        Ticket.id.in_([p.ticket_id for p in found.persons if p.ticket_id])))}
    from protocol.clock import park_now

    deadline = vb.cancel_deadline(found, rules)
    return render_template("book/booking.html", b=found, tickets=tickets, number=vb.display_number(found.number),
                           deadline=deadline, can_cancel=found.status == "booked" and park_now() < deadline,
                           doc_labels=vb.DOCUMENT_LABELS)


@bp.get("/b/<number>/qr/<int:position>.svg")
def qr(number: str, position: int):
    found = _my_booking(number)
    person = next((p for p in found.persons if p.position == position), None)
    ticket = db().get(Ticket, person.ticket_id) if person and person.ticket_id else None
    if ticket is None or found.status != "booked":
        abort(404)
    return Response(qr_svg(ticket_code(ticket, ctx().signer), scale=4), mimetype="image/svg+xml",
                    headers={"Cache-Control": "no-store"})


@bp.post("/b/<number>/cancel")
def cancel(number: str):
    found = _my_booking(number)
    try:
        vb.cancel_booking(db(), site_id(), found)
        commit()
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
        return redirect(url_for("book.booking", number=found.number))
    flash(_("Booking %(number)s is cancelled: its places are free again.", number=vb.display_number(found.number)))
    return redirect(url_for("book.booking", number=found.number))


@bp.route("/find", methods=["GET", "POST"])
def find():
    values = {"number": "", "proof": ""}
    error = None
    if request.method == "POST":
        values = {"number": request.form.get("number", "")[:40], "proof": request.form.get("proof", "")[:40]}
        if _over("BOOKING_FIND_LIMIT", _client()):
            error = _("Too many look-ups from your connection: wait a little and try again.")
        else:
            try:
                found = vb.find_booking(db(), site_id(), values["number"], values["proof"])
            except ServiceError as exc:
                error = exc.text
            else:
                _remember(found.number)
                return redirect(url_for("book.booking", number=found.number))
    return render_template("book/find.html", values=values, error=error), 400 if error else 200


def init_limits(app: Flask, limiter) -> None:
    """The booking pages count with the app's Flask-Limiter (its strategy and its configurable storage);
    they take from the limits themselves, so a visitor over one keeps the form and reads why."""
    app.extensions["park_limiter"] = limiter
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)


__all__ = ["bp", "init_limits"]
