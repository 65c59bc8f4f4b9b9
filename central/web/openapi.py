"""The OpenAPI 3.1 document of the JSON API at /api/v1, served at /api/v1/openapi.json.

What a request may carry comes from the API itself, so the document cannot drift from the checks:
each view's `@accepts(body=..., query=...)` structs (`central.web.api_schema`) become the request bodies
and query parameters through `msgspec.json.schema_components`, with every limit (maxLength, minimum,
maximum, pattern, enum, required); each view's `@roles(...)` becomes `x-roles`; path parameters come
from the route's converters. Written by hand here: one line per operation with its summary, its
answer's schema and the refusals by state (409) it can meet. `tests/web/test_openapi.py` fails when a
route is missing here or an operation here has no route; `tests/web/test_schemathesis.py` checks the
answers against the document.
"""

from __future__ import annotations

import re

import msgspec
from flask import Blueprint, Flask, current_app, jsonify

from central.services import limits
from central.web import api_schema
from central.web.api import MAX_BODY
from protocol.messages import GateConfig

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")
PREFIX = "/api/v1"
REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict:
    return {"$ref": REF.format(name=name)}


def _obj(required: tuple[str, ...] | bool = True, **props) -> dict:
    """An object with `props`; all of them required unless `required` names some (or is False)."""
    out = {"type": "object", "properties": props}
    names = list(props) if required is True else list(required or ())
    if names:
        out["required"] = names
    return out


def _null(schema: dict) -> dict:
    return {**schema, "type": [schema["type"], "null"]}


S, INT, B, N = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "number"}
T = {"type": "string", "format": "date-time", "description": "ISO 8601 with a UTC offset"}
INTS = {"type": "array", "items": INT}
NULL_S, NULL_T, NULL_INT = _null(S), _null(T), _null(INT)
PRICE = {"type": "string", "pattern": r"^[0-9]{1,10}\.[0-9]{2}$", "description": "a decimal, two places"}
CHANNEL = {"enum": list(api_schema.CHANNELS)}
MODE = {"enum": ["normal", "free", "locked", "emergency"]}
_PARK_FIGURES = dict(inside=INT, capacity=NULL_INT, entries_today=INT, exits_today=INT,
                     entries_per_min={"type": "number"}, gates_online=INT, gates=INT, open_alerts=INT, full_zones=INT)
PARK_TOTALS = {"type": "object", "properties": _PARK_FIGURES, "required": list(_PARK_FIGURES)}
PARK = {"type": "object", "properties": {"site": S, "name": S, **_PARK_FIGURES},
        "required": ["site", "name", *_PARK_FIGURES]}
CONFLICT = _obj(id=INT, event_id=S, credential_ref=S, reason=S, gate=S, other_gate=NULL_S, at=T, offline=B,
                resolved_at=NULL_T, resolved_by=NULL_S, resolution=NULL_S, resolution_note=NULL_S)

ANSWERS = {
    "Error": _obj(("error", "detail"), error={**S, "description": "a stable code: bad_<field>, missing, not_found ..."},
                  detail={**S, "description": "what is wrong, in words"},
                  field={**S, "description": "the offending field, when one is to blame (`ticket.headcount`)"}),
    "TicketType": _obj(id=INT, name=S, entries=NULL_INT, same_person=B, anti_passback=B, min_gap_s=INT, zones=INTS,
                       weekdays=INTS, slot_grace_min=INT, real_name=B, validity_days=INT, price=PRICE,
                       min_headcount=INT, max_headcount=INT, active=B, staff_check=B, id_face=B,
                       bind_finger=B),
    "Ticket": _obj(("id", "ref", "ticket_type", "status", "valid_from", "valid_to", "slot_start", "slot_end",
                    "headcount", "zones", "holder_name", "id_last4", "channel", "channel_ref", "price", "issued_at"),
                   id=INT, ref=S, ticket_type=INT,
                   status={"enum": ["valid", "used", "refunded", "revoked", "expired", "held"]},
                   valid_from=T, valid_to=T, slot_start=NULL_T, slot_end=NULL_T, headcount=INT, zones=INTS,
                   holder_name=NULL_S, id_last4=NULL_S, channel=CHANNEL, channel_ref=NULL_S, price=PRICE,
                   issued_at=T, code={**NULL_S, "description": "the signed code for the QR (on issue and GET); null "
                                                               "for a ticket whose times no code can carry"}),
    "Pass": _obj(id=INT, ref=S, holder=S, person_id=INT, holder_name=NULL_S, card_uid=S,
                 status={"enum": ["active", "suspended", "lost", "expired"]}, valid_from=T, valid_to=T, zones=INTS,
                 channel=CHANNEL, price=PRICE),
    "PersonExport": _obj(
        ("person", "passes", "templates", "passages", "usage", "conflicts", "audit"), exported_at=T,
        person=_obj(id=INT, holder=S, site=S, name=S, phone=NULL_S, id_last4=NULL_S, created_at=T),
        passes={"type": "array", "items": _obj(id=INT, ref=S, card_uid=S, status=S, valid_from=T, valid_to=T,
                                                zones=INTS, channel=S, price=PRICE, created_at=T,
                                                status_changed_at=NULL_T)},
        templates={"type": "array", "items": _obj(kind={"enum": ["face", "fingerprint"]}, finger=INT, version=INT,
                                                   created_at=T)},
        passages={"type": "array", "items": _obj(event_id=S, gate=S, zone=INT, at=T, direction=S,
                                                  credential_kind=S, credential_ref=S, decision=S, reason=S,
                                                  passed=B, headcount=INT, offline=B)},
        usage={"type": "array", "items": _obj(ref=S, entries=INT, exits=INT, last_entry_at=NULL_T, last_gate=NULL_S)},
        conflicts={"type": "array", "items": CONFLICT},
        audit={"type": "array", "items": _obj(at=T, actor=S, action=S, target=S,
                                               detail={"type": ["object", "null"]})}),
    "Gate": _obj(("site", "name", "zone", "direction", "mode", "hardware", "online", "last_seen_at", "config_version",
                  "config_acked", "config_error", "outbox", "alarms", "mqtt_username"),
                 site=S, name=S, zone=INT, direction={"enum": ["in", "out", "both"]}, mode=MODE,
                 hardware={"type": "object"}, online=B, last_seen_at=NULL_T, config_version=INT, config_acked=INT,
                 config_error=NULL_S, outbox=INT, alarms={"type": "array", "items": S}, mqtt_username=NULL_S,
                 mqtt_password={**S, "description": "only in the answer to registration, once"}),
    "Occupancy": _obj(("site", "at", "inside", "entries_today", "exits_today", "capacity", "full_zones", "zones"),
                      site=S, at=T, inside=INT, entries_today=INT, exits_today=INT, capacity=NULL_INT,
                      full_zones=INTS, zones={"type": "array", "items": _obj(
                          zone=INT, name=S, inside=INT, entries_today=INT, exits_today=INT, peak=INT,
                          capacity=NULL_INT, full=B)},
                      parks={"type": "array", "description": "for an asker of several parks (a head office): "
                             "every one of them, the park asked for included", "items": _obj(
                                 site=S, name=S, inside=INT, capacity=NULL_INT, entries_today=INT,
                                 exits_today=INT, full_zones=INT)}),
}
PNG = {"image/png": {"schema": {"type": "string", "format": "binary"}}}
SVG = {"image/svg+xml": {"schema": {"type": "string"}}}

# method, path (Flask syntax), summary, answer (a JSON schema, or {media type: ...}), can be refused by state (409)
OPERATIONS: list[tuple[str, str, str, dict, bool]] = [
    ("get", "/ticket-types", "List the site's ticket types",
     _obj(ticket_types={"type": "array", "items": _ref("TicketType")}), False),
    ("post", "/ticket-types", "Define a ticket type or change its rules", _ref("TicketType"), True),
    ("post", "/tickets", "Issue one ticket (sale)", _ref("Ticket"), True),
    ("post", "/tickets/bulk", "Issue many tickets at once (group, OTA batch)",
     _obj(count=INT, tickets={"type": "array", "items": _ref("Ticket")}), True),
    ("get", "/tickets/<bigid:ticket_id>", "A ticket with its signed code", _ref("Ticket"), False),
    ("get", "/tickets/<bigid:ticket_id>/qr.png", "The ticket's QR code as PNG", PNG, True),
    ("get", "/tickets/<bigid:ticket_id>/qr.svg", "The ticket's QR code as SVG", SVG, True),
    ("post", "/tickets/<bigid:ticket_id>/refund", "Refund an unused ticket", _ref("Ticket"), True),
    ("post", "/tickets/<bigid:ticket_id>/revoke", "Revoke a ticket whatever its use", _ref("Ticket"), True),
    ("get", "/keys", "Public ticket-signing keys (no authentication)",
     _obj(keys={"type": "array", "items": _obj(key_id=INT, public=S, retired_at=NULL_T, grace_s=INT)}), False),
    ("post", "/quotas", "Define the quota of a time slot",
     _obj(id=INT, slot_start=T, slot_end=T, capacity=INT, booked=INT), False),
    ("post", "/bookings", "Book a time slot for an ID number (real-name)", _ref("Ticket"), True),
    ("post", "/persons", "Create a person (annual-pass holder)", _obj(id=INT, holder=S, name=S), False),
    ("delete", "/persons/<id:person_id>", "Delete a person's data and templates on request", _obj(forgotten=S),
     False),
    ("get", "/persons/<id:person_id>/export",
     "Everything held about a person, on their request (templates as metadata only; audited)",
     _ref("PersonExport"), False),
    ("post", "/passes", "Create an annual pass (and its holder)", _ref("Pass"), True),
    ("get", "/passes/<id:pass_id>", "An annual pass", _ref("Pass"), False),
    ("post", "/passes/<id:pass_id>/card", "Bind a card UID", _ref("Pass"), True),
    ("post", "/passes/<id:pass_id>/suspend", "Suspend a pass", _ref("Pass"), True),
    ("post", "/passes/<id:pass_id>/resume", "Resume a suspended pass", _ref("Pass"), True),
    ("post", "/passes/<id:pass_id>/lost", "Report the card lost (the pass ends)", _ref("Pass"), True),
    ("post", "/passes/<id:pass_id>/replace", "A new pass with a new card after a loss", _ref("Pass"), True),
    ("post", "/passes/<id:pass_id>/renew", "Extend a pass", _ref("Pass"), True),
    ("post", "/passes/<id:pass_id>/templates", "Bind a face or fingerprint template (base64)",
     _obj(holder=S, kind={"enum": ["face", "fingerprint"]}, finger=INT, version=INT), True),
    ("get", "/occupancy", "Live occupancy per zone", _ref("Occupancy"), False),
    ("get", "/parks", "Every park the asker works for: people inside against capacity, entries, gates, alerts",
     _obj(at=T, parks={"type": "array", "items": PARK}, totals=PARK_TOTALS), False),
    ("get", "/conflicts", "Passages the central's rules would have refused (offline gates), newest first",
     _obj(conflicts={"type": "array", "items": CONFLICT}), False),
    ("post", "/conflicts/<id:conflict_id>/resolve", "A manager's decision on a conflict, with a note (final)",
     CONFLICT, True),
    ("get", "/gates", "The site's gates with status and config state",
     _obj(gates={"type": "array", "items": _ref("Gate")}), False),
    ("post", "/gates", "Register a gate; the answer holds its MQTT password once", _ref("Gate"), True),
    ("get", "/gates/<name>/config", "The GateConfig message the gate receives", _ref("GateConfig"), False),
    ("patch", "/gates/<name>/config", "Change zone, direction or hardware; pushed to the gate", _ref("Gate"), False),
    ("post", "/gates/<name>/mode", "Set a gate's mode", _ref("Gate"), False),
    ("post", "/gates/<name>/command", "Send a command to a gate (open once ...)", _obj(id=S, sent=B), False),
    ("post", "/site/command", "A command to every gate of the site (emergency)", _obj(id=S, sent=B), False),
    ("get", "/openapi.json", "This document", {"type": "object"}, False),
]

# Staff accounts and machine tokens, admin only (central/web/api.py's section of the same name).
_ACCOUNT = _obj(username=S, role=S, active=B)
OPERATIONS += [
    ("post", "/tokens/<name>/revoke", "Revoke every active token of this name; each gets 401 from now on",
     _obj(name=S, revoked=INT), True),
    ("post", "/users/<name>/deactivate", "Deactivate a staff user: no more logins, their sessions end at once",
     _ACCOUNT, True),
    ("post", "/users/<name>/reactivate", "Let a deactivated staff user log in again", _ACCOUNT, True),
]
# Group customers and finance (central/web/api_finance.py).
_MONEY_S = {**S, "pattern": r"^-?[0-9]+\.[0-9]{2}$", "description": "a decimal, two places"}
ANSWERS["Customer"] = _obj(("id", "name", "kind", "status", "credit_limit", "payment_term_days", "note"),
                           id=INT, name=S, kind={"enum": ["agency", "ota", "company", "school", "government"]},
                           status={"enum": ["active", "suspended"]}, credit_limit=PRICE, payment_term_days=INT,
                           note=S, balance=_MONEY_S, tickets_changed=INT,
                           contract_prices={"type": "array", "items": _obj(
                               ticket_type=INT, price=PRICE, valid_from=S, valid_to=NULL_S)})
ANSWERS["GroupOrder"] = _obj(id=INT, customer_id=INT, ticket_type=INT, visit_date=S, headcount=INT, guide_name=S,
                             guide_phone=S, ticketing={"enum": ["group", "members"]}, unit_price=PRICE, amount=PRICE,
                             status={"enum": ["booked", "cancelled"]}, idempotency_key=NULL_S, entered=INT,
                             refunded=INT, left=INT, tickets={"type": "array", "items": _ref("Ticket")})
_LINE_ANSWER = _obj(id=INT, kind={"enum": ["tickets", "correction"]}, ticket_type=NULL_INT, description=S, ordered=INT,
                    entered=INT, refunded=INT, no_show=INT, unit_price=_MONEY_S, amount=_MONEY_S)
ANSWERS["Statement"] = _obj(id=INT, customer_id=INT, start=S, end=S, status={"enum": ["open", "checked", "closed"]},
                            ordered=INT, entered=INT, refunded=INT, no_show=INT, total=_MONEY_S, balance=_MONEY_S,
                            credit_limit=PRICE, lines={"type": "array", "items": _LINE_ANSWER})
ANSWERS["Shift"] = _obj(id=INT, window=S, cashier=S, opened_at=T, closed_at=NULL_T, opening_float=PRICE,
                        expected_cash=_MONEY_S, counted_cash=_null(_MONEY_S), difference=_null(_MONEY_S),
                        by_type={"type": "array", "items": _obj(ticket_type=S, tickets=INT, visitors=INT,
                                                                 amount=PRICE)},
                        by_method={"type": "array", "items": _obj(method=S, sales=PRICE, refunds=_MONEY_S,
                                                                   net=_MONEY_S)},
                        pending_refunds=INT)
OPERATIONS += [
    ("get", "/customers", "The site's group customers with what each owes on account",
     _obj(customers={"type": "array", "items": _ref("Customer")}), False),
    ("post", "/customers", "Add a group customer (travel agency, OTA, company, school, government unit)",
     _ref("Customer"), True),
    ("get", "/customers/<id:customer_id>", "A customer with its balance and contract prices", _ref("Customer"), False),
    ("post", "/customers/<id:customer_id>/prices", "Set a contract price per ticket type and period",
     _obj(ticket_type=INT, price=PRICE, valid_from=S, valid_to=NULL_S), False),
    ("post", "/customers/<id:customer_id>/suspend", "Suspend a customer: gates refuse its unused tickets",
     _ref("Customer"), False),
    ("post", "/customers/<id:customer_id>/resume", "Resume a customer: its held tickets admit again",
     _ref("Customer"), False),
    ("post", "/group-orders", "Book a group and issue its tickets at the contract price; a retry with the same "
     "idempotency key answers 200 with the first order and issues nothing", _ref("GroupOrder"), True),
    ("get", "/group-orders/<id:order_id>", "A group order, its tickets and how many of the group entered",
     _ref("GroupOrder"), False),
    ("get", "/statements", "Settlement statements (a channel's token: its own)",
     _obj(statements={"type": "array", "items": _ref("Statement")}), False),
    ("post", "/statements", "Open a statement for a customer and period", _ref("Statement"), True),
    ("get", "/statements/<id:statement_id>", "A statement with its lines", _ref("Statement"), False),
    ("post", "/statements/<id:statement_id>/recount", "Count an open statement again", _ref("Statement"), True),
    ("post", "/statements/<id:statement_id>/check", "Mark an open statement as checked", _ref("Statement"), True),
    ("post", "/statements/<id:statement_id>/close", "Close a checked statement: it never changes again",
     _ref("Statement"), True),
    ("post", "/statements/<id:statement_id>/corrections", "Add a correction as a new line", _ref("Statement"), False),
    ("get", "/shifts", "Box-office shifts with their reports", _obj(shifts={"type": "array", "items": _ref("Shift")}),
     False),
    ("post", "/shifts", "Open a shift at a window (the caller is the cashier)", _ref("Shift"), True),
    ("get", "/shifts/<id:shift_id>", "A shift's report (a cashier: their own)", _ref("Shift"), False),
    ("post", "/shifts/<id:shift_id>/sell", "Sell tickets in the caller's open shift",
     _obj(count=INT, tickets={"type": "array", "items": _ref("Ticket")}), True),
    ("post", "/shifts/<id:shift_id>/refund", "Refund a ticket in the shift; over the limit it waits for approval",
     _obj(ticket_id=INT, amount=_MONEY_S, status={"enum": ["done", "pending"]}), True),
    ("post", "/shifts/<id:shift_id>/close", "Close the shift with the cash counted", _ref("Shift"), True),
]
ALSO_OK = {("post", "/group-orders"): "the same idempotency key again: the first order, nothing issued"}

ACCOUNT_PATHS = ("/tokens/", "/users/")  # their <name> is a token's or user's name, not a gate's

CREATED = {("post", p) for p in ("/ticket-types", "/tickets", "/tickets/bulk", "/quotas", "/bookings", "/persons",
                                 "/passes", "/passes/<id:pass_id>/replace", "/passes/<id:pass_id>/templates",
                                 "/gates", "/customers", "/customers/<id:customer_id>/prices", "/group-orders",
                                 "/statements", "/statements/<id:statement_id>/corrections", "/shifts",
                                 "/shifts/<id:shift_id>/sell")}
PATH_PARAMS = {
    "id": {"type": "integer", "minimum": 1, "maximum": limits.MAX_ID},
    "bigid": {"type": "integer", "minimum": 1, "maximum": limits.MAX_BIG_ID},
    "default": {"type": "string", "pattern": api_schema.NAME_PATTERN, "description": "a gate's name"},
    "account": {"type": "string", "minLength": 1, "maxLength": 128, "description": "a token's or user's name"},
}


def openapi_path(flask_path: str) -> str:
    """`/tickets/<bigid:ticket_id>` -> `/tickets/{ticket_id}`."""
    return re.sub(r"<(?:[^>:]+:)?([^>]+)>", r"{\1}", flask_path)


def _views(app: Flask) -> dict[tuple[str, str], object]:
    out: dict[tuple[str, str], object] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(PREFIX + "/"):
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                out[(method.lower(), rule.rule[len(PREFIX):])] = app.view_functions[rule.endpoint]
    return out


def _content(answer: dict) -> dict:
    """`answer` is a JSON schema, or already a map of media types (`image/png`) to their schemas."""
    if all("/" in key for key in answer):
        return answer
    return {"application/json": {"schema": answer}}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _query_parameters(struct: type, components: dict) -> list[dict]:
    schema = components[struct.__name__]
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        if "anyOf" in prop:  # `X | None`: absent is the null
            prop = next(p for p in prop["anyOf"] if p.get("type") != "null")
            description = prop.pop("description", description)
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        out.append(param)
    return out


def document(app: Flask | None = None) -> dict:
    app = app or current_app
    views = _views(app)
    structs = {api_schema.SiteQuery, GateConfig}
    for view in views.values():
        structs.update(s for s in (getattr(view, "api_body", None), getattr(view, "api_query", None)) if s)
    _, components = msgspec.json.schema_components(sorted(structs, key=lambda s: s.__name__), ref_template=REF)
    paths: dict[str, dict] = {}
    for method, path, summary, answer, refusable in OPERATIONS:
        view = views.get((method, path))
        op_path = openapi_path(path)
        plain = "account" if path.startswith(ACCOUNT_PATHS) else "default"
        converters = dict((name, kind or plain) for kind, name in re.findall(r"<(?:([^>:]+):)?([^>]+)>", path))
        params = [{"name": name, "in": "path", "required": True, "schema": PATH_PARAMS[converters[name]]}
                  for name in re.findall(r"{([^}]+)}", op_path)]
        query = getattr(view, "api_query", None)
        if query is not None:
            params += _query_parameters(query, components)
        ok = "202" if path.endswith("command") else "201" if (method, path) in CREATED else "200"
        responses = {ok: {"description": "done", "content": _content(answer)}}
        if (method, path) in ALSO_OK:
            responses["200"] = {"description": ALSO_OK[(method, path)], "content": _content(answer)}
        if query is not None:
            responses["400"] = _error("invalid request: the field is named")
        roles = getattr(view, "api_roles", None)
        if roles is not None:
            responses["401"] = _error("no or bad credentials")
            responses["403"] = _error("the role may not do this")
            responses["404"] = _error("no such record, or no such site")
        if refusable:
            responses["409"] = _error("refused by state (already used, quota full, card in use ...)")
        body = getattr(view, "api_body", None)
        if body is not None:
            responses["413"] = _error(f"the body is larger than {MAX_BODY} bytes")
        op = {"operationId": getattr(view, "__name__", path), "summary": summary, "parameters": params,
              "responses": dict(sorted(responses.items()))}
        if roles is None:
            op["security"] = []
        else:
            op["x-roles"] = ["admin", *roles]
        if body is not None:
            op["requestBody"] = {"required": bool(getattr(view, "api_body_required", True)),
                                 "content": {"application/json": {"schema": _ref(body.__name__)}}}
        paths.setdefault(op_path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Scenic gates central API", "version": "1",
                 "description": "Tickets, bookings, annual passes, occupancy and gates. Machines send "
                                "`Authorization: Bearer <token>` (`park-central token create`); staff in the "
                                "browser use their session and the X-CSRFToken header. Admin may call every "
                                "operation; `x-roles` lists the other roles each one admits. Every refusal is "
                                "an `Error` object; unknown body fields are refused, unknown query parameters "
                                "ignored."},
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}, {"session": []}],
        "components": {"schemas": components | ANSWERS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "session"}}},
        "paths": paths,
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(document())
