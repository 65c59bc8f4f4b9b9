"""Fixtures for the web UI: a migrated store with one user per role, the app, and a logged-in client."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from central.services.tickets import TicketTypeSpec, define_ticket_type
from central.services.users import create_user
from tests.central.conftest import make_config, prepare

ROLES = ("admin", "manager", "staff", "technician", "finance", "sales")
_TOKEN = re.compile(r'name="csrf-token" content="([^"]+)"')


def password_for(role: str) -> str:
    return f"pw-{role}-Secret9"


def seed(ctx) -> None:
    with ctx.sessions.begin() as db:
        for role in ROLES:
            create_user(db, role, role, password_for(role), sites=[ctx.config.site])
        define_ticket_type(db, ctx.config.site, TicketTypeSpec(name="Day ticket", id=1, price="80.00"))


@pytest.fixture
def web_ctx(db_url, tmp_path):
    context = prepare(make_config(db_url, tmp_path), mqtt_on=False)
    seed(context)
    yield context
    context.close()


@pytest.fixture
def app(web_ctx):
    from flask.testing import FlaskClient

    from central.app import create_app

    class EnglishBrowser(FlaskClient):
        """The tests read English pages: their client asks for English as a browser set so would."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.environ_base.setdefault("HTTP_ACCEPT_LANGUAGE", "en-GB,en;q=0.9")

    app = create_app(web_ctx.config, context=web_ctx)
    app.config["TESTING"] = True
    app.test_client_class = EnglishBrowser
    return app


def csrf_from(html: str) -> str:
    match = _TOKEN.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@dataclass
class Browser:
    """A Flask test client that knows the page's CSRF token, as a browser would."""

    client: object
    token: str = ""

    def get(self, url: str, **kw):
        res = self.client.get(url, **kw)
        if res.mimetype == "text/html":
            match = _TOKEN.search(res.get_data(as_text=True))
            if match:
                self.token = match.group(1)
        return res

    def post(self, url: str, data: dict | None = None, **kw):
        data = dict(data or {})
        if self.token and "csrf_token" not in data:
            data["csrf_token"] = self.token
        return self.client.post(url, data=data, **kw)


def login(app, role: str | None, accept_language: str | None = None) -> Browser:
    browser = Browser(app.test_client())
    if accept_language is not None:
        browser.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = accept_language
    browser.get("/login")
    if role is not None:
        res = browser.post("/login", {"username": role, "password": password_for(role)})
        assert res.status_code == 302, res.get_data(as_text=True)
        browser.get("/", follow_redirects=True)  # the session is new: so is its CSRF token
    return browser


@pytest.fixture
def as_role(app):
    return lambda role: login(app, role)
