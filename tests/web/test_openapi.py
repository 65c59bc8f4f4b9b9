"""The OpenAPI document describes exactly the routes the JSON API has, with their roles."""

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
        url = "/api/v1" + re.sub(r"{[^}]+}", "1", path).replace("qr.1", "qr.svg")
        for method, op in ops.items():
            if "x-roles" not in op:
                continue
            for role, token in tokens.items():
                res = client.open(url, method=method.upper(), json={}, headers={"Authorization": f"Bearer {token}"})
                if role in op["x-roles"]:
                    assert res.status_code != 403, (method, path, role)
                else:
                    assert res.status_code == 403, (method, path, role, res.status_code)
