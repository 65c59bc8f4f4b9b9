"""Who may open what: every page route for every role, CSRF, lock-out, session fixation, cookies."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from central.models import AuditEntry
from tests.web.conftest import ROLES, Browser, login, password_for

# Every blueprint is a staff page unless listed here: a new page is guarded by default, or this test fails.
PUBLIC_BLUEPRINTS = {"web", "auth", "i18n", "api", "openapi", "book"}
APP_ENDPOINTS = {"static", "healthz", "prometheus_metrics"}
DUMMY = {"ticket_id": "1", "person_id": "1", "pass_id": "1", "name": "nogate",
         "username": "nobody", "token_id": "999", "customer_id": "1", "order_id": "1", "statement_id": "1",
         "shift_id": "1", "payment_id": "1", "number": "1", "alert_id": "999",
         "block_id": "1", "quota_id": "1", "position": "1", "conflict_id": "1",
         "help_id": "nohelp"}


def guarded_routes(app):
    """(method, url, roles) for every page route of the web UI, arguments filled with dummies."""
    out = []
    for rule in app.url_map.iter_rules():
        if "." not in rule.endpoint:  # the app's own routes: static files, the probes
            assert rule.endpoint in APP_ENDPOINTS, f"{rule.rule} is neither a page nor a known probe"
            continue
        blueprint = rule.endpoint.split(".")[0]
        if blueprint in PUBLIC_BLUEPRINTS:
            continue
        view = app.view_functions[rule.endpoint]
        assert hasattr(view, "roles"), f"{rule.rule} has no role guard"
        url = re.sub(r"<any\(([^,)]+)[^)]*\):\w+>", r"\1", rule.rule)  # the first choice of any(...)
        for arg in rule.arguments:
            if arg in DUMMY:
                url = re.sub(rf"<(?:[^>:]+:)?{arg}>", DUMMY[arg], url)
        for method in sorted(rule.methods & {"GET", "POST"}):
            out.append((method, url, view.roles))
    return out


def allowed(role: str, roles: tuple[str, ...]) -> bool:
    return role == "admin" or role in roles


def test_every_page_is_guarded_and_each_role_is_refused_where_it_does_not_belong(app):
    routes = guarded_routes(app)
    assert len(routes) > 30
    anonymous = login(app, None)
    for method, url, _roles in routes:
        res = anonymous.get(url) if method == "GET" else anonymous.post(url)
        assert res.status_code in (302, 401), (method, url, res.status_code)
        if res.status_code == 302:
            assert "/login" in res.headers["Location"]
    for role in ROLES:
        browser = login(app, role)
        for method, url, roles in routes:
            if url == "/live/stream" and allowed(role, roles):
                continue  # a stream that stays open; its guard is checked by the refused roles
            res = browser.get(url) if method == "GET" else browser.post(url)
            if allowed(role, roles):
                assert res.status_code not in (401, 403), (role, method, url)
                assert res.status_code < 500, (role, method, url, res.status_code)
                assert "/login" not in res.headers.get("Location", ""), (role, method, url)
            else:
                assert res.status_code == 403, (role, method, url, res.status_code)


def test_the_expected_roles_reach_their_start_pages(app):
    homes = {"admin": "/dashboard/", "manager": "/dashboard/", "staff": "/desk/", "technician": "/gates/",
             "finance": "/finance/", "sales": "/customers/"}
    for role, home in homes.items():
        browser = Browser(app.test_client())
        browser.get("/login")
        res = browser.post("/login", {"username": role, "password": password_for(role)})
        assert res.headers["Location"] == home


def test_a_post_without_the_csrf_token_is_refused(app):
    staff = login(app, "staff")
    res = staff.client.post("/desk/tickets", data={"ticket_type": "1"})
    assert res.status_code == 400
    assert "security token" in res.get_data(as_text=True)
    res = staff.client.post("/desk/tickets", data={"ticket_type": "1", "csrf_token": "forged"})
    assert res.status_code == 400
    assert staff.post("/desk/tickets", {"ticket_type": "1"}).status_code == 302


def test_an_htmx_request_carries_the_token_in_a_header(app):
    staff = login(app, "staff")
    res = staff.client.post("/desk/tickets", data={"ticket_type": "1"}, headers={"X-CSRFToken": staff.token})
    assert res.status_code == 302


def test_the_login_form_itself_needs_the_token(app):
    client = app.test_client()
    res = client.post("/login", data={"username": "admin", "password": password_for("admin")})
    assert res.status_code == 400


def test_five_failures_from_one_address_lock_that_account_there_for_fifteen_minutes(app, web_ctx):
    browser = login(app, None)
    for _ in range(5):
        res = browser.post("/login", {"username": "manager", "password": "wrong"})
        assert res.status_code == 401
    res = browser.post("/login", {"username": "manager", "password": password_for("manager")})
    assert res.status_code == 401
    assert "locked" in res.get_data(as_text=True)
    other = login(app, "staff")  # another account is not affected
    assert other.get("/desk/").status_code == 200
    with web_ctx.sessions() as db:
        failures = db.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "auth.failed", AuditEntry.target == "manager"))
        assert failures == 5
        assert db.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "auth.locked")) == 1
    admin = login(app, "admin")
    page = admin.get("/admin/users").get_data(as_text=True)
    assert "locked until" in page
    assert admin.post("/admin/users/manager/unlock").status_code == 302
    assert login(app, "manager").get("/dashboard/").status_code == 200


def test_login_starts_a_new_session(app):
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["sid"] = "planted-by-attacker"
        sess["planted"] = True
    browser = Browser(client)
    browser.get("/login")
    before = client.get_cookie("session").value
    res = browser.post("/login", {"username": "staff", "password": password_for("staff")})
    assert res.status_code == 302
    after = client.get_cookie("session").value
    assert after != before
    with client.session_transaction() as sess:
        assert sess["sid"] != "planted-by-attacker"
        assert "planted" not in sess
        assert "user_id" in sess


def test_session_cookie_is_httponly_and_samesite(app):
    client = app.test_client()
    browser = Browser(client)
    browser.get("/login")
    res = browser.post("/login", {"username": "staff", "password": password_for("staff")})
    cookie = res.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert app.config["SESSION_COOKIE_SECURE"] in (False, True)


def test_secure_cookie_when_served_over_https(monkeypatch, web_ctx):
    from central.app import create_app

    monkeypatch.setenv("PARK_CENTRAL_SECURE_COOKIES", "1")
    app = create_app(web_ctx.config, context=web_ctx)
    browser = Browser(app.test_client())
    browser.get("/login")
    res = browser.post("/login", {"username": "staff", "password": password_for("staff")})
    assert "Secure" in res.headers["Set-Cookie"]


def test_logout_ends_the_session(app):
    staff = login(app, "staff")
    assert staff.post("/logout").status_code == 302
    assert staff.get("/desk/").status_code == 302


def test_next_never_leads_off_site(app):
    browser = Browser(app.test_client())
    browser.get("/login")
    res = browser.post("/login?next=https://evil.example/", {"username": "staff", "password": password_for("staff")})
    assert res.headers["Location"] == "/desk/"
    browser = Browser(app.test_client())
    browser.get("/login")
    res = browser.post("/login?next=/desk/persons", {"username": "staff", "password": password_for("staff")})
    assert res.headers["Location"] == "/desk/persons"


def test_pages_carry_security_headers(app):
    res = login(app, "staff").get("/desk/")
    assert res.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in res.headers["Content-Security-Policy"]
    assert res.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("role", ["manager", "technician"])
def test_the_desk_refuses_other_roles(app, role):
    assert login(app, role).get("/desk/persons").status_code == 403


API_DUMMY = {"ticket_id": "1", "person_id": "1", "pass_id": "1", "name": "nogate", "customer_id": "1",
             "order_id": "1", "statement_id": "1", "shift_id": "1"}


def api_routes(app):
    """(method, url, roles) for every guarded operation of the JSON API, arguments filled with dummies."""
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        view = app.view_functions[rule.endpoint]
        roles = getattr(view, "roles", None)
        if roles is None:
            continue  # open to all: the public keys, the OpenAPI document
        url = rule.rule
        for arg in rule.arguments:
            url = re.sub(rf"<(?:[^>:]+:)?{arg}>", API_DUMMY.get(arg, "1"), url)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, url, roles))
    return out


def test_every_api_operation_keeps_to_the_role_matrix(app):
    """The README's role matrix for the API: each role, logged in, is refused (403) exactly where it does
    not belong, and is never answered 401, 403 or 500 where it does."""
    routes = api_routes(app)
    assert any(url == "/api/v1/group-orders" for _m, url, _r in routes)
    for role in ROLES:
        browser = login(app, role)
        for method, url, roles in routes:
            res = browser.client.open(url, method=method, json={} if method != "GET" else None,
                                      headers={"X-CSRFToken": browser.token})
            if allowed(role, roles):
                assert res.status_code not in (401, 403), (role, method, url, res.get_json())
                assert res.status_code < 500, (role, method, url, res.status_code)
            else:
                assert res.status_code == 403, (role, method, url, res.status_code)
