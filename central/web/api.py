"""The JSON API at /api/v1: ticket types, tickets (single, bulk, QR), bookings, refunds and
revocations, annual passes, occupancy, gates and commands.

Machines authenticate with `Authorization: Bearer <token>` (tokens stored hashed, made with
`park-central token create`); staff with the web UI's session login (a live `staff_sessions` record).
Each endpoint names the roles it admits (`@roles`; admin is admitted everywhere) and what it reads
(`@accepts`: the msgspec structs of `central.web.api_schema`, decoded before the view runs, which the
OpenAPI document is built from). Errors are JSON: `{"error": code, "detail": text}`, plus `"field"`
when one field is to blame; an unexpected exception is a 500 that says nothing of the request, logged
without its message. The site is `?site=` or the configured default.
"""

from __future__ import annotations

import base64
import functools
import logging
import re

import msgspec
from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from central.i18n import _l, force_locale
from central.logs import stack_without_messages
from central.models import AnnualPass, Conflict, Gate, SigningKey, Ticket, TicketType
from central.services import Invalid, ServiceError, limits
from central.services import bookings as booking_service
from central.services import gates as gate_service
from central.services import passes as pass_service
from central.services import privacy as privacy_service
from central.services import tickets as ticket_service
from central.services.occupancy import as_json, occupancy
from central.web import api_schema as schema
from central.web.stack import (
    Forbidden,
    commit,
    current_context,
    database_away,
    gates_served_here,
    may_see_site,
    require,
    site_id,
    visible_sites,
)
from central.web.stack import db as request_db
from protocol.ids import holder_ref

log = logging.getLogger(__name__)
api = Blueprint("api", __name__, url_prefix="/api/v1")

SELLERS = ("manager", "staff")
TECH = ("technician",)
MAX_BODY = 4 * 1024 * 1024  # a bulk order of 10,000 tickets is about 3 MB; anything larger is a 413


class IdConverter(IntegerConverter):
    """A record id in a path (INTEGER: 1 to 2^31-1); anything else matches no route, a 404: no such record."""

    def __init__(self, map, *args, **kwargs) -> None:
        super().__init__(map, min=1, max=limits.MAX_ID)


class BigIdConverter(IntegerConverter):
    """A ticket's id in a path (BIGINT: 1 to 2^63-1)."""

    def __init__(self, map, *args, **kwargs) -> None:
        super().__init__(map, min=1, max=limits.MAX_BIG_ID)


def _converters(state) -> None:
    state.app.url_map.converters.setdefault("id", IdConverter)
    state.app.url_map.converters.setdefault("bigid", BigIdConverter)


api.record_once(_converters)  # before the routes below are added: their rules name the converters


# --- plumbing ----------------------------------------------------------------------------------


@api.errorhandler(ServiceError)
def _service_error(exc: ServiceError):
    # The detail in English for machines, unless the caller asks for Chinese (Accept-Language: zh).
    with force_locale(_api_locale()):
        body = {"error": exc.code, "detail": str(exc.detail)}
    field = getattr(exc, "field", None)
    if field:
        body["field"] = field
    return jsonify(body), exc.status


def _api_locale() -> str:
    return "zh_Hans" if request.accept_languages.best_match(["en", "zh"], default="en") == "zh" else "en"


def _http_error(exc: HTTPException):
    code = (exc.name or "error").lower().replace(" ", "_")
    detail = {404: request.path, 405: request.method}.get(exc.code or 0, exc.description or "")
    return jsonify({"error": code, "detail": detail}), exc.code or 500


@api.errorhandler(HTTPException)
def _api_http_error(exc: HTTPException):
    return _http_error(exc)


@api.app_errorhandler(HTTPException)
def _any_http_error(exc: HTTPException):
    """Routing errors under /api/ (no such route, wrong method) are JSON too; other paths keep theirs."""
    if request.path.startswith((api.url_prefix or "") + "/"):
        return _http_error(exc)
    return exc.get_response()


api.register_error_handler(OperationalError, database_away)  # before the catch-all below: a 503, not a bug


@api.errorhandler(Exception)
def _unexpected(exc: Exception):
    """A bug: answer 500 JSON with nothing of the request, and log where, never what.

    The exception's message can carry what the request carried (psycopg quotes the values of a failed
    row, a service may have formatted a name into it), so the log gets the types and the stack only."""
    log.error("unexpected %s in %s %s\n%s", type(exc).__name__, request.method,
              request.url_rule.rule if request.url_rule else "?", stack_without_messages(exc))
    return jsonify({"error": "internal_error", "detail": "an unexpected error; it was logged"}), 500


def accepts(*, body: type[msgspec.Struct] | None = None, query: type[schema.SiteQuery] = schema.SiteQuery,
            body_required: bool = True):
    """Decode the query string into `query` (as `g.query`) and the JSON body into `body` (the view's
    `body` argument) before the view runs: a value out of its limits is a 400 naming the field.

    The structs are also what `central.web.openapi` documents (`api_body`, `api_query` on the view)."""

    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kwargs):
            g.query = _decode_query(query)
            if body is not None:
                kwargs["body"] = _decode_body(body, body_required)
            return view(*args, **kwargs)

        inner.api_body = body
        inner.api_body_required = body_required
        inner.api_query = query
        return inner

    return wrap


_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_NAMED = re.compile(r"^Object (missing required|contains unknown) field `([^`]*)`")


def _field_error(exc: msgspec.ValidationError, where: str) -> Invalid:
    """`bad_<field>`, `missing` or `unknown_field`, naming the field; msgspec says what and where
    ("Expected `int` <= 255 - at `$.headcount`") without quoting the text of the value."""
    message = str(exc)
    at = _AT.search(message)
    path = at.group(1) if at else ""
    named = _NAMED.match(message)
    if named:
        code = "missing" if named.group(1) == "missing required" else "unknown_field"
        path = f"{path}.{named.group(2)}" if path else named.group(2)
    else:
        code = "bad_" + re.sub(r"\[\d+\]", "", path).rsplit(".", 1)[-1] if path else "bad_field"
    error = Invalid(code if re.fullmatch(r"[a-z0-9_]{1,64}", code) else "bad_field", f"{where}: {message}")
    error.field = path[:200] or None
    return error


def _decode_query(query: type[msgspec.Struct]):
    try:
        # An empty value (`?site=`, as a form sends it) is an absent one.
        return msgspec.convert({k: v for k, v in request.args.items() if v != ""}, query, strict=False)
    except msgspec.ValidationError as exc:
        raise _field_error(exc, "query") from None


def _decode_body(body: type[msgspec.Struct], required: bool):
    request.max_content_length = min(MAX_BODY, request.max_content_length or MAX_BODY)
    raw = request.get_data(cache=True)  # a 413 past MAX_BODY
    if not raw.strip():
        if required:
            raise Invalid("bad_json", "the request body must be a JSON object")
        return body()
    if not request.is_json:
        raise Invalid("bad_json", "send the body as Content-Type: application/json")
    try:
        return msgspec.json.decode(raw, type=body)
    except msgspec.ValidationError as exc:
        raise _field_error(exc, "body") from None
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec lets a bad UTF-8 byte through as the latter
        raise Invalid("bad_json", "the request body is not valid JSON (UTF-8)") from None


def _gates_site() -> str:
    """`_site()` for a change to gates: refused at a head office for a park server's parks."""
    site = _site()
    gates_served_here(site)
    return site


def _site() -> str:
    """The park asked for (`?site=`), else the asker's current one: refused unless the asker works for it."""
    query = g.get("query")
    site = (query.site if query is not None else None) or site_id()
    if not may_see_site(site):
        raise Forbidden("site_forbidden", _l("You do not work for park %(site_id)s.", site_id=site))
    return site


def _iso(at) -> str | None:
    return at.isoformat() if at else None


# --- representations ---------------------------------------------------------------------------


def ticket_type_json(tt: TicketType) -> dict:
    return {"id": tt.id, "name": tt.name, "entries": tt.entries, "same_person": tt.same_person,
            "anti_passback": tt.anti_passback, "min_gap_s": tt.min_gap_s, "zones": tt.zones, "weekdays": tt.weekdays,
            "slot_grace_min": tt.slot_grace_min, "real_name": tt.real_name, "validity_days": tt.validity_days,
            "price": str(tt.price), "min_headcount": tt.min_headcount, "max_headcount": tt.max_headcount,
            "active": tt.active, "staff_check": tt.staff_check, "id_face": tt.id_face,
            "bind_finger": tt.bind_finger}


def ticket_json(t: Ticket, code: str | None = None) -> dict:
    out = {"id": t.id, "ref": t.ref, "ticket_type": t.ticket_type_id, "status": t.status,
           "valid_from": _iso(t.valid_from), "valid_to": _iso(t.valid_to), "slot_start": _iso(t.slot_start),
           "slot_end": _iso(t.slot_end), "headcount": t.headcount, "zones": t.zones, "holder_name": t.holder_name,
           "id_last4": t.id_last4, "channel": t.channel, "channel_ref": t.channel_ref, "price": str(t.price),
           "issued_at": _iso(t.issued_at)}
    if code is not None:
        out["code"] = code
    return out


def pass_json(p: AnnualPass) -> dict:
    return {"id": p.id, "ref": p.ref, "holder": holder_ref(p.person_id), "person_id": p.person_id,
            "holder_name": p.person.name if p.person else None, "card_uid": p.card_uid, "status": p.status,
            "valid_from": _iso(p.valid_from), "valid_to": _iso(p.valid_to), "zones": p.zones,
            "channel": p.channel, "price": str(p.price)}


def gate_json(gate: Gate) -> dict:
    return {"site": gate.site_id, "name": gate.name, "zone": gate.zone_number, "direction": gate.direction,
            "mode": gate.mode, "hardware": gate.hardware, "online": gate.online,
            "last_seen_at": _iso(gate.last_seen_at),
            "config_version": gate.config_version, "config_acked": gate.config_acked, "config_error": gate.config_error,
            "outbox": gate.outbox, "alarms": gate.alarms, "mqtt_username": gate.mqtt_username}


# --- ticket types and tickets ------------------------------------------------------------------


@api.get("/ticket-types")
@require("manager", "staff", "technician")
@accepts()
def list_ticket_types():
    db = request_db()
    rows = db.scalars(select(TicketType).where(TicketType.site_id == _site()).order_by(TicketType.id))
    return jsonify({"ticket_types": [ticket_type_json(t) for t in rows]})


@api.post("/ticket-types")
@require("manager")
@accepts(body=schema.TicketTypeBody)
def define_ticket_type(body: schema.TicketTypeBody):
    spec = ticket_service.TicketTypeSpec(**msgspec.structs.asdict(body))
    db = request_db()
    tt = ticket_service.define_ticket_type(db, _site(), spec, actor=g.actor)
    out = ticket_type_json(tt)
    commit()
    return jsonify(out), 201


def _issue_request(body: schema.TicketBody) -> ticket_service.IssueRequest:
    return ticket_service.IssueRequest(**msgspec.structs.asdict(body))


@api.post("/tickets")
@require(*SELLERS)
@accepts(body=schema.TicketBody)
def issue_ticket(body: schema.TicketBody):
    ctx = current_context()
    db = request_db()
    ticket = ticket_service.issue_ticket(db, _site(), _issue_request(body), actor=g.actor)
    out = ticket_json(ticket, ticket_service.ticket_code(ticket, ctx.signer))
    commit()
    return jsonify(out), 201


@api.post("/tickets/bulk")
@require(*SELLERS)
@accepts(body=schema.BulkBody)
def issue_bulk(body: schema.BulkBody):
    """`{"tickets": [...]}`, or `{"ticket": {...}, "count": N}` for N identical tickets."""
    if body.tickets is not None:
        if body.ticket is not None or body.count is not None:
            raise Invalid("bad_field", "send either tickets, or ticket and count")
        requests_ = [_issue_request(item) for item in body.tickets]
    else:
        if body.ticket is None or body.count is None:
            raise Invalid("missing", "send either tickets, or ticket and count")
        requests_ = [_issue_request(body.ticket)] * body.count
    ctx = current_context()
    db = request_db()
    tickets = ticket_service.issue_tickets(db, _site(), requests_, actor=g.actor)
    out = [ticket_json(t, ticket_service.ticket_code(t, ctx.signer)) for t in tickets]
    commit()
    return jsonify({"count": len(out), "tickets": out}), 201


@api.get("/tickets/<bigid:ticket_id>")
@require(*SELLERS)
@accepts()
def get_ticket(ticket_id: int):
    ctx = current_context()
    db = request_db()
    ticket = ticket_service.get_ticket(db, ticket_id)
    try:
        code = ticket_service.ticket_code(ticket, ctx.signer)
    except ServiceError:  # stored before the issue checks: shown, with no code to print
        code = None
    return jsonify(ticket_json(ticket, code) | {"code": code})


def _ticket_code(ticket_id: int) -> str:
    ctx = current_context()
    db = request_db()
    return ticket_service.ticket_code(ticket_service.get_ticket(db, ticket_id), ctx.signer)


@api.get("/tickets/<bigid:ticket_id>/qr.png")
@require(*SELLERS)
@accepts(query=schema.QrPngQuery)
def ticket_qr_png(ticket_id: int):
    return Response(ticket_service.qr_png(_ticket_code(ticket_id), scale=g.query.scale), mimetype="image/png")


@api.get("/tickets/<bigid:ticket_id>/qr.svg")
@require(*SELLERS)
@accepts(query=schema.QrSvgQuery)
def ticket_qr_svg(ticket_id: int):
    return Response(ticket_service.qr_svg(_ticket_code(ticket_id), scale=g.query.scale), mimetype="image/svg+xml")


def _end_ticket(ticket_id: int, action, body: schema.ReasonBody):
    db = request_db()
    ticket = action(db, ticket_id, actor=g.actor, reason=body.reason)
    out = ticket_json(ticket)
    commit()
    return jsonify(out)


@api.post("/tickets/<bigid:ticket_id>/refund")
@require(*SELLERS)
@accepts(body=schema.ReasonBody, body_required=False)
def refund(ticket_id: int, body: schema.ReasonBody):
    return _end_ticket(ticket_id, ticket_service.refund_ticket, body)


@api.post("/tickets/<bigid:ticket_id>/revoke")
@require("manager")
@accepts(body=schema.ReasonBody, body_required=False)
def revoke(ticket_id: int, body: schema.ReasonBody):
    return _end_ticket(ticket_id, ticket_service.revoke_ticket, body)


@api.get("/keys")
@accepts()
def public_keys():
    """The ticket verification keys (public: anyone may verify a code)."""
    db = request_db()
    keys = db.scalars(select(SigningKey).order_by(SigningKey.key_id))
    return jsonify({"keys": [{"key_id": k.key_id, "public": base64.b64encode(k.public).decode(),
                              "retired_at": _iso(k.retired_at), "grace_s": k.grace_s} for k in keys]})


# --- quotas and bookings -----------------------------------------------------------------------


@api.post("/quotas")
@require("manager")
@accepts(body=schema.QuotaBody)
def define_quota(body: schema.QuotaBody):
    db = request_db()
    quota = booking_service.define_quota(db, _site(), body.slot_start, body.slot_end, body.capacity)
    out = {"id": quota.id, "slot_start": _iso(quota.slot_start), "slot_end": _iso(quota.slot_end),
           "capacity": quota.capacity, "booked": quota.booked}
    commit()
    return jsonify(out), 201


@api.post("/bookings")
@require(*SELLERS)
@accepts(body=schema.BookingBody)
def book(body: schema.BookingBody):
    ctx = current_context()
    db = request_db()
    ticket = booking_service.book_slot(
        db, _site(), ticket_type=body.ticket_type, slot_start=body.slot_start, id_number=body.id_number,
        holder_name=body.holder_name, headcount=body.headcount, channel=body.channel,
        channel_ref=body.channel_ref, price=body.price, actor=g.actor)
    out = ticket_json(ticket, ticket_service.ticket_code(ticket, ctx.signer))
    commit()
    return jsonify(out), 201


# --- persons and annual passes -----------------------------------------------------------------


@api.post("/persons")
@require(*SELLERS)
@accepts(body=schema.PersonBody)
def create_person(body: schema.PersonBody):
    db = request_db()
    person = pass_service.create_person(db, _site(), body.name, phone=body.phone, id_last4=body.id_last4,
                                        actor=g.actor)
    out = {"id": person.id, "holder": person.holder_ref, "name": person.name}
    commit()
    return jsonify(out), 201


@api.delete("/persons/<id:person_id>")
@require("manager")
@accepts()
def forget_person(person_id: int):
    db = request_db()
    pass_service.forget_person(db, person_id, actor=g.actor)
    commit()
    return jsonify({"forgotten": holder_ref(person_id)})


@api.get("/persons/<id:person_id>/export")
@require("staff")
@accepts()
def export_person(person_id: int):
    """Everything the central holds about a person (templates as metadata only); the export is audited."""
    db = request_db()
    out = privacy_service.export_person(db, person_id, actor=g.actor).as_json()
    commit()
    res = jsonify(out)
    res.headers["Cache-Control"] = "no-store"
    res.headers["Content-Disposition"] = f'attachment; filename="person-{holder_ref(person_id)}.json"'
    return res


@api.post("/passes")
@require(*SELLERS)
@accepts(body=schema.PassBody)
def create_pass(body: schema.PassBody):
    db = request_db()
    person_id = body.person_id
    if person_id is None:
        person = pass_service.create_person(db, _site(), body.holder_name or "", phone=body.phone, actor=g.actor)
        person_id = person.id
    annual_pass = pass_service.create_pass(
        db, _site(), person_id=person_id, valid_from=body.valid_from, valid_to=body.valid_to,
        card_uid=body.card_uid, zones=body.zones, channel=body.channel, price=body.price, actor=g.actor)
    out = pass_json(annual_pass)
    commit()
    return jsonify(out), 201


@api.get("/passes/<id:pass_id>")
@require(*SELLERS)
@accepts()
def get_pass(pass_id: int):
    db = request_db()
    return jsonify(pass_json(pass_service.get_pass(db, pass_id)))


def _pass_action(pass_id: int, action, *args, status: int = 200, **kwargs):
    db = request_db()
    result = action(db, pass_id, *args, actor=g.actor, **kwargs)
    out = pass_json(result)
    commit()
    return jsonify(out), status


@api.post("/passes/<id:pass_id>/card")
@require(*SELLERS)
@accepts(body=schema.CardBody)
def bind_card(pass_id: int, body: schema.CardBody):
    return _pass_action(pass_id, pass_service.bind_card, body.card_uid)


@api.post("/passes/<id:pass_id>/suspend")
@require(*SELLERS)
@accepts()
def suspend(pass_id: int):
    return _pass_action(pass_id, pass_service.suspend_pass)


@api.post("/passes/<id:pass_id>/resume")
@require(*SELLERS)
@accepts()
def resume(pass_id: int):
    return _pass_action(pass_id, pass_service.resume_pass)


@api.post("/passes/<id:pass_id>/lost")
@require(*SELLERS)
@accepts()
def lost(pass_id: int):
    return _pass_action(pass_id, pass_service.report_lost)


@api.post("/passes/<id:pass_id>/replace")
@require(*SELLERS)
@accepts(body=schema.CardBody)
def replace(pass_id: int, body: schema.CardBody):
    return _pass_action(pass_id, pass_service.replace_card, body.card_uid, status=201)


@api.post("/passes/<id:pass_id>/renew")
@require(*SELLERS)
@accepts(body=schema.RenewBody)
def renew(pass_id: int, body: schema.RenewBody):
    return _pass_action(pass_id, pass_service.renew_pass, body.valid_to, price=body.price)


@api.post("/passes/<id:pass_id>/templates")
@require(*SELLERS)
@accepts(body=schema.TemplateBody)
def bind_template(pass_id: int, body: schema.TemplateBody):
    """`{"kind": "face"|"fingerprint", "data": base64, "finger": n}`: bound to the pass's holder."""
    ctx = current_context()
    db = request_db()
    annual_pass = pass_service.get_pass(db, pass_id)
    row = pass_service.bind_template(db, ctx.cipher, annual_pass.person_id, body.kind, body.data,
                                     finger=body.finger, actor=g.actor)
    out = {"holder": holder_ref(row.person_id), "kind": row.kind, "finger": row.finger, "version": row.version}
    commit()
    return jsonify(out), 201


# --- occupancy, conflicts ----------------------------------------------------------------------


@api.get("/occupancy")
@require("manager", "staff", "technician")
@accepts()
def get_occupancy():
    """The park's live counts; an asker of several parks (a head office) also gets every park's totals."""
    db = request_db()
    gate_service.get_site(db, _site())
    out = as_json(occupancy(db, _site()))
    sites = visible_sites()
    if len(sites) > 1:
        from central.services.parks import overview

        out["parks"] = [{"site": p.site, "name": p.name, "inside": p.inside, "capacity": p.capacity,
                         "entries_today": p.entries_today, "exits_today": p.exits_today,
                         "full_zones": p.full_zones} for p in overview(db, sites).parks]
    return jsonify(out)


@api.get("/parks")
@require("manager")
@accepts()
def list_parks():
    """Every park the asker works for at a glance (a head office's view), with the totals."""
    from central.services.parks import overview

    view = overview(request_db(), visible_sites())

    def figures(p) -> dict:
        return {"site": p.site, "name": p.name, "inside": p.inside, "capacity": p.capacity,
                "entries_today": p.entries_today, "exits_today": p.exits_today,
                "entries_per_min": p.entries_per_min, "gates_online": p.gates_online, "gates": p.gates,
                "open_alerts": p.open_alerts, "full_zones": p.full_zones}

    totals = {k: v for k, v in figures(view.totals).items() if k not in ("site", "name")}
    return jsonify({"at": _iso(view.at), "parks": [figures(p) for p in view.parks], "totals": totals})


@api.get("/conflicts")
@require("manager")
@accepts(query=schema.ConflictsQuery)
def list_conflicts():
    db = request_db()
    rows = db.scalars(select(Conflict).where(Conflict.site_id == _site()).order_by(Conflict.at.desc())
                      .limit(g.query.limit))
    return jsonify({"conflicts": [conflict_json(c) for c in rows]})


def conflict_json(c: Conflict) -> dict:
    return {"id": c.id, "event_id": c.event_id, "credential_ref": c.credential_ref, "reason": c.reason,
            "gate": c.gate, "other_gate": c.other_gate, "at": _iso(c.at), "offline": c.offline,
            "resolved_at": _iso(c.resolved_at), "resolved_by": c.resolved_by, "resolution": c.resolution,
            "resolution_note": c.resolution_note}


@api.post("/conflicts/<id:conflict_id>/resolve")
@require("manager")
@accepts(body=schema.ConflictDecisionBody)
def resolve_conflict(conflict_id: int, body: schema.ConflictDecisionBody):
    from central.services.conflicts import resolve_conflict as resolve

    conflict = resolve(request_db(), _site(), conflict_id, body.decision, body.note, actor=g.actor)
    out = conflict_json(conflict)
    commit()
    return jsonify(out)


# --- gates -------------------------------------------------------------------------------------


@api.get("/gates")
@require("manager", "technician")
@accepts()
def list_gates():
    db = request_db()
    rows = db.scalars(select(Gate).where(Gate.site_id == _site()).order_by(Gate.name))
    return jsonify({"gates": [gate_json(gate) for gate in rows]})


@api.post("/gates")
@require(*TECH)
@accepts(body=schema.GateBody)
def register_gate(body: schema.GateBody):
    db = request_db()
    gate, creds = gate_service.register_gate(
        db, _gates_site(), body.name, body.zone, direction=body.direction,
        hardware=schema.hardware_dict(body.hardware), actor=g.actor,
        profiles=current_context().config.gates.known_profiles)
    out = gate_json(gate) | {"mqtt_password": creds.password}
    commit()
    return jsonify(out), 201


@api.get("/gates/<name>/config")
@require(*TECH)
@accepts()
def gate_config(name: str):
    from protocol.messages import encode

    db = request_db()
    message = gate_service.build_gate_config(db, gate_service.get_gate(db, _site(), name))
    return Response(encode(message), mimetype="application/json")


@api.patch("/gates/<name>/config")
@require(*TECH)
@accepts(body=schema.GateUpdateBody)
def update_gate(name: str, body: schema.GateUpdateBody):
    db = request_db()
    gate = gate_service.update_gate(db, _gates_site(), name, zone=body.zone, direction=body.direction,
                                    hardware=schema.hardware_dict(body.hardware), actor=g.actor,
                                    profiles=current_context().config.gates.known_profiles)
    out = gate_json(gate)
    commit()
    return jsonify(out)


@api.post("/gates/<name>/mode")
@require(*TECH, "manager")
@accepts(body=schema.ModeBody)
def gate_mode(name: str, body: schema.ModeBody):
    db = request_db()
    gate = gate_service.set_gate_mode(db, _gates_site(), name, body.mode, actor=g.actor)
    out = gate_json(gate)
    commit()
    return jsonify(out)


def _command(gate: str | None, body: schema.CommandBody):
    ctx = current_context()
    db = request_db()
    record, _message, _topic = gate_service.create_command(
        db, _gates_site(), gate, body.kind, mode=body.mode, direction=body.direction, actor=g.actor)
    command_id = record.id
    commit()
    sent = True
    try:
        ctx.publisher.send_command(command_id)
    except Exception:
        sent = False
    return jsonify({"id": command_id, "sent": sent}), 202


@api.post("/gates/<name>/command")
@require(*TECH, "manager")
@accepts(body=schema.CommandBody)
def gate_command(name: str, body: schema.CommandBody):
    return _command(name, body)


@api.post("/site/command")
@require("manager")
@accepts(body=schema.CommandBody)
def site_command(body: schema.CommandBody):
    """A command to every gate of the site at once (emergency: `{"kind": "set_mode", "mode": "emergency"}`)."""
    return _command(None, body)



# --- staff accounts and machine tokens (admin only) --------------------------------------------
# A revoked token gets 401 from its next request on; a deactivated user's sessions end at once
# (central.services.users). Both are audited with the caller as actor.


@api.post("/tokens/<name>/revoke")
@require()
@accepts()
def revoke_tokens(name: str):
    from central.services import users as user_service

    db = request_db()
    revoked = user_service.revoke_tokens(db, name, actor=g.actor)
    out = {"name": name, "revoked": len(revoked)}
    commit()
    return jsonify(out)


@api.post("/users/<name>/deactivate")
@require()
@accepts()
def deactivate_user(name: str):
    from central.services import users as user_service

    db = request_db()
    user = user_service.deactivate_user(db, name, actor=g.actor)
    out = {"username": user.username, "role": user.role, "active": user.active}
    commit()
    return jsonify(out)


@api.post("/users/<name>/reactivate")
@require()
@accepts()
def reactivate_user(name: str):
    from central.services import users as user_service

    db = request_db()
    user = user_service.reactivate_user(db, name, actor=g.actor)
    out = {"username": user.username, "role": user.role, "active": user.active}
    commit()
    return jsonify(out)
