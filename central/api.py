"""The JSON API at /api/v1: ticket types, tickets (single, bulk, QR), bookings, refunds and
revocations, annual passes, occupancy, gates and commands.

Machines authenticate with `Authorization: Bearer <token>` (tokens stored hashed, made with
`park-central token create`); staff with the web UI's session login (a live `staff_sessions` record).
Each endpoint names the roles it admits; admin is admitted everywhere. Errors are JSON:
`{"error": code, "detail": text}`. The site is `?site=` or the configured default.
"""

from __future__ import annotations

import base64
import binascii
import functools
from datetime import date, datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request, session
from sqlalchemy import select

from central.models import AnnualPass, Conflict, Gate, SigningKey, Ticket, TicketType
from central.services import Invalid, ServiceError
from central.services import bookings as booking_service
from central.services import gates as gate_service
from central.services import passes as pass_service
from central.services import privacy as privacy_service
from central.services import tickets as ticket_service
from central.services.occupancy import as_json, occupancy
from central.services.users import session_user, token_for

api = Blueprint("api", __name__, url_prefix="/api/v1")

SELLERS = ("manager", "staff")
TECH = ("technician",)


# --- plumbing ----------------------------------------------------------------------------------


def _ctx():
    from central.app import current_context

    return current_context()


class _Unauthorised(ServiceError):
    status = 401


class _Forbidden(ServiceError):
    status = 403


@api.errorhandler(ServiceError)
def _service_error(exc: ServiceError):
    return jsonify({"error": exc.code, "detail": exc.detail}), exc.status


@api.errorhandler(404)
def _not_found(_exc):
    return jsonify({"error": "not_found", "detail": request.path}), 404


@api.errorhandler(405)
def _method(_exc):
    return jsonify({"error": "method_not_allowed", "detail": request.method}), 405


def roles(*allowed: str):
    """Admit a bearer token or a logged-in staff user whose role is in `allowed` (or admin)."""

    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kwargs):
            role, actor = _authenticate()
            if role != "admin" and role not in allowed:
                raise _Forbidden("forbidden", f"role {role} may not do this")
            g.actor = actor
            g.role = role
            return view(*args, **kwargs)

        return inner

    return wrap


def _authenticate() -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    with _ctx().sessions.begin() as db:
        if header.startswith("Bearer "):
            token = token_for(db, header[7:].strip())
            if token is None:
                raise _Unauthorised("bad_token", "unknown or revoked token")
            return token.role, f"token:{token.name}"
        user = session_user(db, session.get("sid"))  # a live server-side session (central.services.users)
        if user is not None:
            return user.role, user.username
    raise _Unauthorised("login_required", "send Authorization: Bearer <token> or log in")


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise Invalid("bad_json", "the request body must be a JSON object")
    return data


def _site() -> str:
    return request.args.get("site") or _ctx().config.site


def _time(value, key: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        raise Invalid("bad_time", f"{key}: not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise Invalid("bad_time", f"{key}: needs a UTC offset")
    return at


def _day(value, key: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise Invalid("bad_date", f"{key}: not a YYYY-MM-DD date") from None


def _int(data: dict, key: str, default=None, required: bool = False):
    value = data.get(key, default)
    if value is None:
        if required:
            raise Invalid("missing", f"{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("bad_field", f"{key} must be an integer")
    return value


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _after_commit() -> None:
    _ctx().publisher.flush()


# --- representations ---------------------------------------------------------------------------


def ticket_type_json(tt: TicketType) -> dict:
    return {"id": tt.id, "name": tt.name, "entries": tt.entries, "same_person": tt.same_person,
            "anti_passback": tt.anti_passback, "min_gap_s": tt.min_gap_s, "zones": tt.zones, "weekdays": tt.weekdays,
            "slot_grace_min": tt.slot_grace_min, "real_name": tt.real_name, "validity_days": tt.validity_days,
            "price": str(tt.price), "active": tt.active}


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
    return {"id": p.id, "ref": p.ref, "holder": f"H{p.person_id}", "person_id": p.person_id,
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

_TYPE_FIELDS = ("name", "id", "entries", "same_person", "anti_passback", "min_gap_s", "zones", "weekdays",
                "slot_grace_min", "real_name", "validity_days", "price")


@api.get("/ticket-types")
@roles("manager", "staff", "technician")
def list_ticket_types():
    with _ctx().sessions() as db:
        rows = db.scalars(select(TicketType).where(TicketType.site_id == _site()).order_by(TicketType.id))
        return jsonify({"ticket_types": [ticket_type_json(t) for t in rows]})


@api.post("/ticket-types")
@roles("manager")
def define_ticket_type():
    data = _body()
    unknown = set(data) - set(_TYPE_FIELDS)
    if unknown:
        raise Invalid("bad_field", f"unknown fields: {', '.join(sorted(unknown))}")
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise Invalid("missing", "name is required")
    try:
        spec = ticket_service.TicketTypeSpec(**data)
    except TypeError as exc:
        raise Invalid("bad_field", str(exc)) from None
    with _ctx().sessions.begin() as db:
        tt = ticket_service.define_ticket_type(db, _site(), spec, actor=g.actor)
        out = ticket_type_json(tt)
    _after_commit()
    return jsonify(out), 201


def _issue_request(data: dict) -> ticket_service.IssueRequest:
    if not isinstance(data, dict):
        raise Invalid("bad_json", "each ticket is a JSON object")
    zones = data.get("zones") or []
    if not isinstance(zones, list) or not all(isinstance(z, int) for z in zones):
        raise Invalid("bad_zone", "zones is a list of zone numbers")
    return ticket_service.IssueRequest(
        ticket_type=_int(data, "ticket_type", required=True), visit_date=_day(data.get("visit_date"), "visit_date"),
        valid_from=_time(data.get("valid_from"), "valid_from"), valid_to=_time(data.get("valid_to"), "valid_to"),
        headcount=_int(data, "headcount", 1), holder_name=data.get("holder_name"), id_number=data.get("id_number"),
        channel=data.get("channel", "box_office"), channel_ref=data.get("channel_ref"), price=data.get("price"),
        zones=zones,
    )


@api.post("/tickets")
@roles(*SELLERS)
def issue_ticket():
    request_ = _issue_request(_body())
    ctx = _ctx()
    with ctx.sessions.begin() as db:
        ticket = ticket_service.issue_ticket(db, _site(), request_, actor=g.actor)
        out = ticket_json(ticket, ticket_service.ticket_code(ticket, ctx.signer))
    _after_commit()
    return jsonify(out), 201


@api.post("/tickets/bulk")
@roles(*SELLERS)
def issue_bulk():
    """`{"tickets": [...]}`, or `{"ticket": {...}, "count": N}` for N identical tickets."""
    data = _body()
    if "tickets" in data:
        if not isinstance(data["tickets"], list):
            raise Invalid("bad_field", "tickets is a list")
        requests_ = [_issue_request(item) for item in data["tickets"]]
    else:
        count = _int(data, "count", required=True)
        if not 1 <= count <= ticket_service.MAX_BULK:
            raise Invalid("bad_count", f"count is 1-{ticket_service.MAX_BULK}")
        requests_ = [_issue_request(data.get("ticket"))] * count
    ctx = _ctx()
    with ctx.sessions.begin() as db:
        tickets = ticket_service.issue_tickets(db, _site(), requests_, actor=g.actor)
        out = [ticket_json(t, ticket_service.ticket_code(t, ctx.signer)) for t in tickets]
    _after_commit()
    return jsonify({"count": len(out), "tickets": out}), 201


@api.get("/tickets/<int:ticket_id>")
@roles(*SELLERS)
def get_ticket(ticket_id: int):
    ctx = _ctx()
    with ctx.sessions() as db:
        ticket = ticket_service.get_ticket(db, ticket_id)
        return jsonify(ticket_json(ticket, ticket_service.ticket_code(ticket, ctx.signer)))


@api.get("/tickets/<int:ticket_id>/qr.<kind>")
@roles(*SELLERS)
def ticket_qr(ticket_id: int, kind: str):
    if kind not in ("png", "svg"):
        raise Invalid("bad_format", "qr.png or qr.svg")
    ctx = _ctx()
    with ctx.sessions() as db:
        code = ticket_service.ticket_code(ticket_service.get_ticket(db, ticket_id), ctx.signer)
    scale = request.args.get("scale", type=int)
    if kind == "png":
        return Response(ticket_service.qr_png(code, scale=scale or 8), mimetype="image/png")
    return Response(ticket_service.qr_svg(code, scale=scale or 4), mimetype="image/svg+xml")


def _end_ticket(ticket_id: int, action):
    data = request.get_json(silent=True) or {}
    with _ctx().sessions.begin() as db:
        ticket = action(db, ticket_id, actor=g.actor, reason=data.get("reason"))
        out = ticket_json(ticket)
    _after_commit()
    return jsonify(out)


@api.post("/tickets/<int:ticket_id>/refund")
@roles(*SELLERS)
def refund(ticket_id: int):
    return _end_ticket(ticket_id, ticket_service.refund_ticket)


@api.post("/tickets/<int:ticket_id>/revoke")
@roles("manager")
def revoke(ticket_id: int):
    return _end_ticket(ticket_id, ticket_service.revoke_ticket)


@api.get("/keys")
def public_keys():
    """The ticket verification keys (public: anyone may verify a code)."""
    with _ctx().sessions() as db:
        keys = db.scalars(select(SigningKey).order_by(SigningKey.key_id))
        return jsonify({"keys": [{"key_id": k.key_id, "public": base64.b64encode(k.public).decode(),
                                  "retired_at": _iso(k.retired_at), "grace_s": k.grace_s} for k in keys]})


# --- quotas and bookings -----------------------------------------------------------------------


@api.post("/quotas")
@roles("manager")
def define_quota():
    data = _body()
    with _ctx().sessions.begin() as db:
        quota = booking_service.define_quota(db, _site(), _time(data.get("slot_start"), "slot_start"),
                                             _time(data.get("slot_end"), "slot_end"),
                                             _int(data, "capacity", required=True))
        out = {"id": quota.id, "slot_start": _iso(quota.slot_start), "slot_end": _iso(quota.slot_end),
               "capacity": quota.capacity, "booked": quota.booked}
    return jsonify(out), 201


@api.post("/bookings")
@roles(*SELLERS)
def book():
    data = _body()
    slot_start = _time(data.get("slot_start"), "slot_start")
    if slot_start is None or not data.get("id_number"):
        raise Invalid("missing", "slot_start and id_number are required")
    ctx = _ctx()
    with ctx.sessions.begin() as db:
        ticket = booking_service.book_slot(
            db, _site(), ticket_type=_int(data, "ticket_type", required=True), slot_start=slot_start,
            id_number=str(data["id_number"]), holder_name=data.get("holder_name"),
            headcount=_int(data, "headcount", 1), channel=data.get("channel", "web"),
            channel_ref=data.get("channel_ref"), price=data.get("price"), actor=g.actor)
        out = ticket_json(ticket, ticket_service.ticket_code(ticket, ctx.signer))
    _after_commit()
    return jsonify(out), 201


# --- persons and annual passes -----------------------------------------------------------------


@api.post("/persons")
@roles(*SELLERS)
def create_person():
    data = _body()
    with _ctx().sessions.begin() as db:
        person = pass_service.create_person(db, _site(), str(data.get("name") or ""), phone=data.get("phone"),
                                            id_last4=data.get("id_last4"), actor=g.actor)
        out = {"id": person.id, "holder": person.holder_ref, "name": person.name}
    return jsonify(out), 201


@api.delete("/persons/<int:person_id>")
@roles("manager")
def forget_person(person_id: int):
    with _ctx().sessions.begin() as db:
        pass_service.forget_person(db, person_id, actor=g.actor)
    _after_commit()
    return jsonify({"forgotten": f"H{person_id}"})


@api.get("/persons/<int:person_id>/export")
@roles("staff")
def export_person(person_id: int):
    """Everything the central holds about a person (templates as metadata only); the export is audited."""
    with _ctx().sessions.begin() as db:
        out = privacy_service.export_person(db, person_id, actor=g.actor).as_json()
    res = jsonify(out)
    res.headers["Cache-Control"] = "no-store"
    res.headers["Content-Disposition"] = f'attachment; filename="person-H{person_id}.json"'
    return res


@api.post("/passes")
@roles(*SELLERS)
def create_pass():
    data = _body()
    with _ctx().sessions.begin() as db:
        person_id = data.get("person_id")
        if person_id is None:
            person = pass_service.create_person(db, _site(), str(data.get("holder_name") or ""),
                                                phone=data.get("phone"), actor=g.actor)
            person_id = person.id
        valid_from = _time(data.get("valid_from"), "valid_from")
        valid_to = _time(data.get("valid_to"), "valid_to")
        if valid_from is None or valid_to is None:
            raise Invalid("missing", "valid_from and valid_to are required")
        annual_pass = pass_service.create_pass(
            db, _site(), person_id=int(person_id), valid_from=valid_from, valid_to=valid_to,
            card_uid=str(data.get("card_uid") or ""), zones=data.get("zones") or [],
            channel=data.get("channel", "box_office"), price=data.get("price", 0), actor=g.actor)
        out = pass_json(annual_pass)
    _after_commit()
    return jsonify(out), 201


@api.get("/passes/<int:pass_id>")
@roles(*SELLERS)
def get_pass(pass_id: int):
    with _ctx().sessions() as db:
        return jsonify(pass_json(pass_service.get_pass(db, pass_id)))


def _pass_action(pass_id: int, action, *args, status: int = 200, **kwargs):
    with _ctx().sessions.begin() as db:
        result = action(db, pass_id, *args, actor=g.actor, **kwargs)
        out = pass_json(result)
    _after_commit()
    return jsonify(out), status


@api.post("/passes/<int:pass_id>/card")
@roles(*SELLERS)
def bind_card(pass_id: int):
    return _pass_action(pass_id, pass_service.bind_card, str(_body().get("card_uid") or ""))


@api.post("/passes/<int:pass_id>/suspend")
@roles(*SELLERS)
def suspend(pass_id: int):
    return _pass_action(pass_id, pass_service.suspend_pass)


@api.post("/passes/<int:pass_id>/resume")
@roles(*SELLERS)
def resume(pass_id: int):
    return _pass_action(pass_id, pass_service.resume_pass)


@api.post("/passes/<int:pass_id>/lost")
@roles(*SELLERS)
def lost(pass_id: int):
    return _pass_action(pass_id, pass_service.report_lost)


@api.post("/passes/<int:pass_id>/replace")
@roles(*SELLERS)
def replace(pass_id: int):
    return _pass_action(pass_id, pass_service.replace_card, str(_body().get("card_uid") or ""), status=201)


@api.post("/passes/<int:pass_id>/renew")
@roles(*SELLERS)
def renew(pass_id: int):
    data = _body()
    valid_to = _time(data.get("valid_to"), "valid_to")
    if valid_to is None:
        raise Invalid("missing", "valid_to is required")
    return _pass_action(pass_id, pass_service.renew_pass, valid_to, price=data.get("price"))


@api.post("/passes/<int:pass_id>/templates")
@roles(*SELLERS)
def bind_template(pass_id: int):
    """`{"kind": "face"|"fingerprint", "data": base64, "finger": n}`: bound to the pass's holder."""
    data = _body()
    try:
        template = base64.b64decode(str(data.get("data") or ""), validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("bad_template", "data must be base64") from None
    ctx = _ctx()
    with ctx.sessions.begin() as db:
        annual_pass = pass_service.get_pass(db, pass_id)
        row = pass_service.bind_template(db, ctx.cipher, annual_pass.person_id, str(data.get("kind")), template,
                                         finger=_int(data, "finger", 0), actor=g.actor)
        out = {"holder": f"H{row.person_id}", "kind": row.kind, "finger": row.finger, "version": row.version}
    _after_commit()
    return jsonify(out), 201


# --- occupancy, conflicts ----------------------------------------------------------------------


@api.get("/occupancy")
@roles("manager", "staff", "technician")
def get_occupancy():
    with _ctx().sessions() as db:
        gate_service.get_site(db, _site())
        return jsonify(as_json(occupancy(db, _site())))


@api.get("/conflicts")
@roles("manager")
def list_conflicts():
    limit = min(request.args.get("limit", 100, type=int), 1000)
    with _ctx().sessions() as db:
        rows = db.scalars(select(Conflict).where(Conflict.site_id == _site()).order_by(Conflict.at.desc()).limit(limit))
        return jsonify({"conflicts": [
            {"event_id": c.event_id, "credential_ref": c.credential_ref, "reason": c.reason, "gate": c.gate,
             "other_gate": c.other_gate, "at": _iso(c.at), "offline": c.offline} for c in rows]})


# --- gates -------------------------------------------------------------------------------------


@api.get("/gates")
@roles("manager", "technician")
def list_gates():
    with _ctx().sessions() as db:
        rows = db.scalars(select(Gate).where(Gate.site_id == _site()).order_by(Gate.name))
        return jsonify({"gates": [gate_json(gate) for gate in rows]})


@api.post("/gates")
@roles(*TECH)
def register_gate():
    data = _body()
    with _ctx().sessions.begin() as db:
        gate, creds = gate_service.register_gate(
            db, _site(), str(data.get("name") or ""), _int(data, "zone", required=True),
            direction=data.get("direction", "both"), hardware=data.get("hardware"), actor=g.actor,
            profiles=_ctx().config.gates.known_profiles)
        out = gate_json(gate) | {"mqtt_password": creds.password}
    _after_commit()
    return jsonify(out), 201


@api.get("/gates/<name>/config")
@roles(*TECH)
def gate_config(name: str):
    from protocol.messages import encode

    with _ctx().sessions() as db:
        message = gate_service.build_gate_config(db, gate_service.get_gate(db, _site(), name))
    return Response(encode(message), mimetype="application/json")


@api.patch("/gates/<name>/config")
@roles(*TECH)
def update_gate(name: str):
    data = _body()
    with _ctx().sessions.begin() as db:
        gate = gate_service.update_gate(db, _site(), name, zone=_int(data, "zone"), direction=data.get("direction"),
                                        hardware=data.get("hardware"), actor=g.actor,
                                        profiles=_ctx().config.gates.known_profiles)
        out = gate_json(gate)
    _after_commit()
    return jsonify(out)


@api.post("/gates/<name>/mode")
@roles(*TECH, "manager")
def gate_mode(name: str):
    with _ctx().sessions.begin() as db:
        gate = gate_service.set_gate_mode(db, _site(), name, str(_body().get("mode")), actor=g.actor)
        out = gate_json(gate)
    _after_commit()
    return jsonify(out)


def _command(gate: str | None):
    data = _body()
    ctx = _ctx()
    with ctx.sessions.begin() as db:
        record, _message, _topic = gate_service.create_command(
            db, _site(), gate, str(data.get("kind")), mode=data.get("mode"), direction=data.get("direction", "in"),
            actor=g.actor)
        command_id = record.id
    sent = True
    try:
        ctx.publisher.send_command(command_id)
    except Exception:
        sent = False
    return jsonify({"id": command_id, "sent": sent}), 202


@api.post("/gates/<name>/command")
@roles(*TECH, "manager")
def gate_command(name: str):
    return _command(name)


@api.post("/site/command")
@roles("manager")
def site_command():
    """A command to every gate of the site at once (emergency: `{"kind": "set_mode", "mode": "emergency"}`)."""
    return _command(None)


# --- staff accounts and machine tokens (admin only) --------------------------------------------
# A revoked token gets 401 from its next request on; a deactivated user's sessions end at once
# (central.services.users). Both are audited with the caller as actor.


@api.post("/tokens/<name>/revoke")
@roles()
def revoke_tokens(name: str):
    from central.services import users as user_service

    with _ctx().sessions.begin() as db:
        revoked = user_service.revoke_tokens(db, name, actor=g.actor)
        out = {"name": name, "revoked": len(revoked)}
    return jsonify(out)


@api.post("/users/<name>/deactivate")
@roles()
def deactivate_user(name: str):
    from central.services import users as user_service

    with _ctx().sessions.begin() as db:
        user = user_service.deactivate_user(db, name, actor=g.actor)
        out = {"username": user.username, "role": user.role, "active": user.active}
    return jsonify(out)


@api.post("/users/<name>/reactivate")
@roles()
def reactivate_user(name: str):
    from central.services import users as user_service

    with _ctx().sessions.begin() as db:
        user = user_service.reactivate_user(db, name, actor=g.actor)
        out = {"username": user.username, "role": user.role, "active": user.active}
    return jsonify(out)
