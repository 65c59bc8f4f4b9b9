"""The OpenAPI document describes exactly the routes the JSON API has, with their roles, parameters,
request bodies and limits (taken from the very structs the API decodes), and their refusals."""

from __future__ import annotations

import re

from central.web.openapi import openapi_path


def api_routes(app) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out.add((method.lower(), openapi_path(rule.rule[len("/api/v1"):])))
    return out


def test_every_api_route_is_in_the_document_and_nothing_else(app):
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    routes = api_routes(app)
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "the document names operations the API does not have"


def test_documented_roles_match_the_api(app):
    """Each operation's x-roles is what the API admits: a refused role gets 403, an admitted one does not."""
    from central.services.users import create_token

    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    ctx = app.extensions["central"]
    tokens = {}
    with ctx.sessions.begin() as db:
        for role in ("manager", "staff", "technician"):
            tokens[role] = create_token(db, role, role)[1]
    client = app.test_client()
    for path, ops in doc["paths"].items():
        url = "/api/v1" + re.sub(r"{[^}]+}", "1", path)
        for method, op in ops.items():
            if "x-roles" not in op:
                continue
            for role, token in tokens.items():
                res = client.open(url, method=method.upper(), json={}, headers={"Authorization": f"Bearer {token}"})
                if role in op["x-roles"]:
                    assert res.status_code != 403, (method, path, role)
                else:
                    assert res.status_code == 403, (method, path, role, res.status_code)


def _doc(app) -> dict:
    return app.test_client().get("/api/v1/openapi.json").get_json()


def _resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _prop(doc: dict, schema: dict, name: str) -> dict:
    prop = _resolve(doc, schema)["properties"][name]
    if "anyOf" in prop:  # `X | None`
        prop = next(p for p in prop["anyOf"] if p.get("type") != "null")
    return _resolve(doc, prop)


def test_request_bodies_are_the_structs_the_api_decodes(app):
    doc = _doc(app)
    views = {(m.lower(), r.rule): app.view_functions[r.endpoint] for r in app.url_map.iter_rules()
             if r.rule.startswith("/api/v1/") for m in r.methods - {"HEAD", "OPTIONS"}}
    bodies = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            view = next(v for (m, rule), v in views.items() if m == method and openapi_path(rule) == "/api/v1" + path)
            struct = getattr(view, "api_body", None)
            if struct is None:
                assert "requestBody" not in op, (method, path)
                continue
            bodies += 1
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{struct.__name__}"}, (method, path)
            assert _resolve(doc, schema)["additionalProperties"] is False, "unknown fields are refused"
            assert "413" in op["responses"] and "400" in op["responses"], (method, path)
    assert bodies >= 18


def test_the_document_states_the_limits(app):
    doc = _doc(app)
    person = doc["paths"]["/persons"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert _prop(doc, person, "phone")["maxLength"] == 32
    assert _prop(doc, person, "name")["maxLength"] == 200 and _prop(doc, person, "name")["minLength"] == 1
    assert _resolve(doc, person)["required"] == ["name"]
    ticket = {"$ref": "#/components/schemas/TicketBody"}
    assert (_prop(doc, ticket, "headcount")["minimum"], _prop(doc, ticket, "headcount")["maximum"]) == (1, 255)
    assert set(_prop(doc, ticket, "channel")["enum"]) == {"box_office", "web", "ota", "agency", "group", "other"}
    assert _prop(doc, ticket, "channel_ref")["maxLength"] == 200
    assert _prop(doc, ticket, "zones")["maxItems"] == 32 and _prop(doc, ticket, "zones")["items"]["maximum"] == 32
    price = _resolve(doc, ticket)["properties"]["price"]["anyOf"]
    assert {"type": "integer", "minimum": 0, "maximum": 9_999_999_999} in price
    bulk = {"$ref": "#/components/schemas/BulkBody"}
    assert _prop(doc, bulk, "count")["maximum"] == 10_000 and _prop(doc, bulk, "tickets")["maxItems"] == 10_000
    hardware = _prop(doc, {"$ref": "#/components/schemas/GateBody"}, "hardware")
    assert hardware["additionalProperties"] is False and hardware["properties"]["unit_id"]["maximum"] == 247
    png = {p["name"]: p for p in doc["paths"]["/tickets/{ticket_id}/qr.png"]["get"]["parameters"]}
    assert png["scale"]["schema"]["maximum"] == 40 and png["scale"]["schema"]["minimum"] == 1
    assert png["ticket_id"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    export = doc["paths"]["/persons/{person_id}/export"]["get"]["parameters"][0]
    assert export["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
    assert png["site"]["schema"]["pattern"].startswith("^[A-Za-z0-9_-]{1,64}$")
    assert doc["paths"]["/tickets/{ticket_id}/qr.png"]["get"]["responses"]["200"]["content"].keys() == {"image/png"}
    limit = {p["name"]: p for p in doc["paths"]["/conflicts"]["get"]["parameters"]}["limit"]
    assert limit["schema"]["maximum"] == 1000 and limit["required"] is False
    gate = {p["name"]: p for p in doc["paths"]["/gates/{name}/config"]["get"]["parameters"]}["name"]
    assert gate["schema"]["pattern"].startswith("^[A-Za-z0-9_-]{1,64}$")


def test_every_refusal_is_documented_as_the_error_object(app):
    doc = _doc(app)
    error = {"$ref": "#/components/schemas/Error"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if "x-roles" in op:
                assert {"400", "401", "403", "404"} <= codes, (method, path)
            for code, response in op["responses"].items():
                if code.startswith("4"):
                    assert response["content"]["application/json"]["schema"] == error, (method, path, code)
    assert "409" in doc["paths"]["/tickets/{ticket_id}/refund"]["post"]["responses"]
    assert "409" in doc["paths"]["/bookings"]["post"]["responses"]
