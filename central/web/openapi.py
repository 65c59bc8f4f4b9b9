"""The OpenAPI 3.1 document of the JSON API at /api/v1, served at /api/v1/openapi.json.

Hand-maintained next to `central/api.py`: one line per operation (method, path, roles, summary,
request body, answer). `tests/web/test_openapi.py` fails when a route of the API is missing here or
an operation here has no route, so the two cannot drift apart silently.
"""

from __future__ import annotations

import re

from flask import Blueprint, jsonify

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

SELLERS = ("manager", "staff")


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: tuple[str, ...] = (), **props) -> dict:
    out = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


S, INT, B, N = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "number"}
T = {"type": "string", "format": "date-time", "description": "ISO 8601 with a UTC offset"}
D = {"type": "string", "format": "date"}
INTS = {"type": "array", "items": INT}
NULL_S = {"type": ["string", "null"]}

SCHEMAS = {
    "Error": _obj(("error",), error=S, detail=S),
    "TicketType": _obj(("id", "name"), id=INT, name=S, entries={"type": ["integer", "null"]}, same_person=B,
                       anti_passback=B, min_gap_s=INT, zones=INTS, weekdays=INTS, slot_grace_min=INT, real_name=B,
                       validity_days=INT, price=S, active=B),
    "TicketRequest": _obj(("ticket_type",), ticket_type=INT, visit_date=D, valid_from=T, valid_to=T, headcount=INT,
                          holder_name=S, id_number={**S, "description": "digested at once, never stored"},
                          channel={"enum": ["box_office", "web", "ota", "agency", "group", "other"]},
                          channel_ref=S, price=S, zones=INTS),
    "Ticket": _obj(("id", "ref", "status"), id=INT, ref=S, ticket_type=INT,
                   status={"enum": ["valid", "used", "refunded", "revoked", "expired"]}, valid_from=T, valid_to=T,
                   slot_start=T, slot_end=T, headcount=INT, zones=INTS, holder_name=NULL_S, id_last4=NULL_S,
                   channel=S, channel_ref=NULL_S, price=S, issued_at=T,
                   code={**S, "description": "the signed code for the QR (on issue and GET)"}),
    "Pass": _obj(("id", "ref", "status"), id=INT, ref=S, holder=S, person_id=INT, holder_name=NULL_S, card_uid=S,
                 status={"enum": ["active", "suspended", "lost", "expired"]}, valid_from=T, valid_to=T, zones=INTS,
                 channel=S, price=S),
    "PersonExport": _obj(
        ("person", "passes", "templates", "passages", "audit"), exported_at=T,
        person=_obj(id=INT, holder=S, site=S, name=S, phone=NULL_S, id_last4=NULL_S, created_at=T),
        passes={"type": "array", "items": _obj(id=INT, ref=S, card_uid=S, status=S, valid_from=T, valid_to=T,
                                                zones=INTS, channel=S, price=S, created_at=T, status_changed_at=T)},
        templates={"type": "array", "items": _obj(kind={"enum": ["face", "fingerprint"]}, finger=INT, version=INT,
                                                   created_at=T)},
        passages={"type": "array", "items": _obj(event_id=S, gate=S, zone=INT, at=T, direction=S,
                                                  credential_kind=S, credential_ref=S, decision=S, reason=S,
                                                  passed=B, headcount=INT, offline=B)},
        usage={"type": "array", "items": _obj(ref=S, entries=INT, exits=INT, last_entry_at=T, last_gate=NULL_S)},
        conflicts={"type": "array", "items": _obj(event_id=S, credential_ref=S, reason=S, gate=S,
                                                   other_gate=NULL_S, at=T, offline=B)},
        audit={"type": "array", "items": _obj(at=T, actor=S, action=S, target=S, detail={"type": "object"})}),
    "Gate": _obj(("site", "name"), site=S, name=S, zone=INT, direction={"enum": ["in", "out", "both"]},
                 mode={"enum": ["normal", "free", "locked", "emergency"]}, hardware={"type": "object"}, online=B,
                 last_seen_at=T, config_version=INT, config_acked=INT, config_error=NULL_S, outbox=INT,
                 alarms={"type": "array", "items": S}, mqtt_username=NULL_S,
                 mqtt_password={**S, "description": "only in the answer to registration, once"}),
    "Occupancy": _obj(("site", "zones"), site=S, at=T, inside=INT, entries_today=INT, exits_today=INT,
                      capacity={"type": ["integer", "null"]}, full_zones=INTS,
                      zones={"type": "array", "items": _obj(
                          zone=INT, name=S, inside=INT, entries_today=INT, exits_today=INT, peak=INT,
                          capacity={"type": ["integer", "null"]}, full=B)}),
    "Command": _obj(("kind",), kind={"enum": ["open_once", "set_mode", "resync", "test_devices"]},
                    mode={"enum": ["normal", "free", "locked", "emergency"]}, direction={"enum": ["in", "out"]}),
}

# method, path (Flask syntax), roles (admin always), summary, request body schema or None, answer schema or None
OPERATIONS: list[tuple[str, str, tuple[str, ...] | None, str, dict | None, dict | None]] = [
    ("get", "/ticket-types", ("manager", "staff", "technician"), "List the site's ticket types", None,
     _obj(ticket_types={"type": "array", "items": _ref("TicketType")})),
    ("post", "/ticket-types", ("manager",), "Define a ticket type or change its rules", _ref("TicketType"),
     _ref("TicketType")),
    ("post", "/tickets", SELLERS, "Issue one ticket (sale)", _ref("TicketRequest"), _ref("Ticket")),
    ("post", "/tickets/bulk", SELLERS, "Issue many tickets of one kind (group, OTA batch)",
     _obj(("ticket", "count"), ticket=_ref("TicketRequest"), count=INT),
     _obj(count=INT, tickets={"type": "array", "items": _ref("Ticket")})),
    ("get", "/tickets/<id:ticket_id>", SELLERS, "A ticket with its signed code", None, _ref("Ticket")),
    ("get", "/tickets/<id:ticket_id>/qr.png", SELLERS, "The ticket's QR code as PNG", None, None),
    ("get", "/tickets/<id:ticket_id>/qr.svg", SELLERS, "The ticket's QR code as SVG", None, None),
    ("post", "/tickets/<id:ticket_id>/refund", SELLERS, "Refund an unused ticket", _obj(reason=S), _ref("Ticket")),
    ("post", "/tickets/<id:ticket_id>/revoke", ("manager",), "Revoke a ticket whatever its use", _obj(reason=S),
     _ref("Ticket")),
    ("get", "/keys", None, "Public ticket-signing keys (no authentication)", None,
     _obj(keys={"type": "array", "items": _obj(key_id=INT, public=S, retired_at=T)})),
    ("post", "/quotas", ("manager",), "Define the quota of a time slot",
     _obj(("slot_start", "slot_end", "capacity"), slot_start=T, slot_end=T, capacity=INT), None),
    ("post", "/bookings", SELLERS, "Book a time slot for an ID number (real-name)",
     _obj(("ticket_type", "slot_start", "id_number"), ticket_type=INT, slot_start=T, id_number=S, holder_name=S,
          headcount=INT, channel=S, channel_ref=S, price=S), _ref("Ticket")),
    ("post", "/persons", SELLERS, "Create a person (annual-pass holder)",
     _obj(("name",), name=S, phone=S, id_last4=S), None),
    ("delete", "/persons/<id:person_id>", ("manager",), "Delete a person's data and templates on request", None,
     _obj(forgotten=S)),
    ("get", "/persons/<id:person_id>/export", ("staff",),
     "Everything held about a person, on their request (templates as metadata only; audited)", None,
     _ref("PersonExport")),
    ("post", "/passes", SELLERS, "Create an annual pass (and its holder)",
     _obj(("valid_from", "valid_to"), person_id=INT, holder_name=S, phone=S, valid_from=T, valid_to=T, card_uid=S,
          zones=INTS, channel=S, price=S), _ref("Pass")),
    ("get", "/passes/<id:pass_id>", SELLERS, "An annual pass", None, _ref("Pass")),
    ("post", "/passes/<id:pass_id>/card", SELLERS, "Bind a card UID", _obj(("card_uid",), card_uid=S), _ref("Pass")),
    ("post", "/passes/<id:pass_id>/suspend", SELLERS, "Suspend a pass", None, _ref("Pass")),
    ("post", "/passes/<id:pass_id>/resume", SELLERS, "Resume a suspended pass", None, _ref("Pass")),
    ("post", "/passes/<id:pass_id>/lost", SELLERS, "Report the card lost (the pass ends)", None, _ref("Pass")),
    ("post", "/passes/<id:pass_id>/replace", SELLERS, "A new pass with a new card after a loss",
     _obj(("card_uid",), card_uid=S), _ref("Pass")),
    ("post", "/passes/<id:pass_id>/renew", SELLERS, "Extend a pass", _obj(("valid_to",), valid_to=T, price=S),
     _ref("Pass")),
    ("post", "/passes/<id:pass_id>/templates", SELLERS, "Bind a face or fingerprint template (base64)",
     _obj(("kind", "data"), kind={"enum": ["face", "fingerprint"]}, data=S, finger=INT), None),
    ("get", "/occupancy", ("manager", "staff", "technician"), "Live occupancy per zone", None, _ref("Occupancy")),
    ("get", "/conflicts", ("manager",), "Passages the central's rules would have refused (offline gates)", None,
     _obj(conflicts={"type": "array", "items": _obj(event_id=S, credential_ref=S, reason=S, gate=S,
                                                      other_gate=NULL_S, at=T, offline=B)})),
    ("get", "/gates", ("manager", "technician"), "The site's gates with status and config state", None,
     _obj(gates={"type": "array", "items": _ref("Gate")})),
    ("post", "/gates", ("technician",), "Register a gate; the answer holds its MQTT password once",
     _obj(("name", "zone"), name=S, zone=INT, direction=S, hardware={"type": "object"}), _ref("Gate")),
    ("get", "/gates/<name>/config", ("technician",), "The GateConfig message the gate receives", None,
     {"type": "object"}),
    ("patch", "/gates/<name>/config", ("technician",), "Change zone, direction or hardware; pushed to the gate",
     _obj(zone=INT, direction=S,
          hardware=_obj(controller_profile=S, unit_id=INT, passage_timeout_s=N, repeat_scan_s=N)),
     _ref("Gate")),
    ("post", "/gates/<name>/mode", ("technician", "manager"), "Set a gate's mode",
     _obj(("mode",), mode={"enum": ["normal", "free", "locked", "emergency"]}), _ref("Gate")),
    ("post", "/gates/<name>/command", ("technician", "manager"), "Send a command to a gate (open once ...)",
     _ref("Command"), _obj(id=S, sent=B)),
    ("post", "/site/command", ("manager",), "A command to every gate of the site (emergency)", _ref("Command"),
     _obj(id=S, sent=B)),
    ("get", "/openapi.json", None, "This document", None, {"type": "object"}),
]


CREATED = {("post", p) for p in ("/ticket-types", "/tickets", "/tickets/bulk", "/quotas", "/bookings", "/persons",
                                 "/passes", "/passes/<id:pass_id>/templates", "/gates")}


def openapi_path(flask_path: str) -> str:
    """`/tickets/<id:ticket_id>` -> `/tickets/{ticket_id}`."""
    return re.sub(r"<(?:[^>:]+:)?([^>]+)>", r"{\1}", flask_path)


def document() -> dict:
    paths: dict[str, dict] = {}
    for method, path, roles, summary, body, answer in OPERATIONS:
        op_path = openapi_path(path)
        params = [{"name": name, "in": "path", "required": True,
                   "schema": INT if f"<id:{name}>" in path else S}
                  for name in re.findall(r"{([^}]+)}", op_path)]
        params.append({"name": "site", "in": "query", "required": False, "schema": S,
                       "description": "the site; the configured default when absent"})
        ok = "202" if path.endswith("command") else "201" if (method, path) in CREATED else "200"
        op = {"summary": summary, "parameters": params, "responses": {
            ok: {"description": "done", **({"content": {"application/json": {"schema": answer}}} if answer else {})},
            "400": {"description": "invalid request", "content": {"application/json": {"schema": _ref("Error")}}},
            "401": {"description": "no or bad credentials"},
            "403": {"description": "the role may not do this"},
            "404": {"description": "no such record"},
            "409": {"description": "refused by state"}}}
        if roles is None:
            op["security"] = []
        else:
            op["x-roles"] = ["admin", *roles]
        if body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        paths.setdefault(op_path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Scenic gates central API", "version": "1",
                 "description": "Tickets, bookings, annual passes, occupancy and gates. Machines send "
                                "`Authorization: Bearer <token>` (`park-central token create`); staff in the "
                                "browser use their session and the X-CSRFToken header. Admin may call every "
                                "operation; `x-roles` lists the other roles each one admits."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}, {"session": []}],
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "session"}}},
        "paths": paths,
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
