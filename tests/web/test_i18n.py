"""The pages' language and clock: the user's choice, else the browser's, else the site's; times in the
park's zone, formatted for the reader (Flask-Babel over protocol/locale)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from central.models import StaffUser
from central.services.gates import update_site
from tests.web.conftest import Browser, login

HTML_LANG = re.compile(r'<html lang="([^"]+)"')


def page_lang(res) -> str:
    match = HTML_LANG.search(res.get_data(as_text=True))
    assert match, "no <html lang>"
    return match.group(1)


def stored_language(web_ctx, username: str) -> str | None:
    with web_ctx.sessions() as db:
        return db.scalar(select(StaffUser.language).where(StaffUser.username == username))


@pytest.mark.parametrize("header, lang", [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh-Hans"), ("zh-TW", "zh-Hans"), ("zh", "zh-Hans"), ("de,zh-HK;q=0.5", "zh-Hans"),
    ("en-US,en;q=0.9", "en"), ("en-GB", "en"),
])
def test_the_page_language_follows_the_browser(app, header, lang) -> None:
    res = app.test_client().get("/login", headers={"Accept-Language": header})
    assert res.status_code == 200
    assert page_lang(res) == lang


def test_a_browser_asking_for_neither_language_gets_the_sites_default(app, web_ctx) -> None:
    client = app.test_client()
    assert page_lang(client.get("/login", headers={"Accept-Language": "fr-FR"})) == "zh-Hans"  # sites.language "zh"
    with web_ctx.sessions.begin() as db:
        update_site(db, web_ctx.config.site, language="en")
    assert page_lang(client.get("/login", headers={"Accept-Language": "fr-FR"})) == "en"


def test_a_users_choice_beats_the_browser_and_outlasts_the_session(app, web_ctx) -> None:
    clerk = login(app, "staff", accept_language="zh-CN,zh;q=0.9")
    desk = clerk.get("/desk/")
    assert page_lang(desk) == "zh-Hans"
    res = clerk.post("/language", {"language": "en", "next": "/desk/?x=1"})
    assert res.status_code == 302 and res.headers["Location"].endswith("/desk/?x=1")
    assert stored_language(web_ctx, "staff") == "en"
    assert page_lang(clerk.get("/desk/")) == "en"
    # Another browser, still asking for Chinese, with no cookie of the switch: the user's record decides.
    tablet = login(app, "staff", accept_language="zh-CN")
    tablet.client.delete_cookie("lang")
    assert page_lang(tablet.get("/desk/")) == "en"
    # A user who never chose gets their browser's language.
    assert page_lang(login(app, "manager", accept_language="zh-CN").get("/dashboard/")) == "zh-Hans"


def test_the_switch_on_the_login_page_remembers_the_choice_in_a_cookie(app) -> None:
    visitor = Browser(app.test_client())
    visitor.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert page_lang(visitor.get("/login")) == "en"
    res = visitor.post("/language", {"language": "zh_Hans", "next": "/login"})
    assert res.status_code == 302 and res.headers["Location"].endswith("/login")
    cookie = visitor.client.get_cookie("lang")
    assert cookie is not None and cookie.value == "zh_Hans" and cookie.http_only
    assert page_lang(visitor.get("/login")) == "zh-Hans"


def test_the_switch_needs_the_forms_token(app, web_ctx) -> None:
    clerk = login(app, "staff")
    res = clerk.client.post("/language", data={"language": "zh_Hans"})
    assert res.status_code == 400
    assert stored_language(web_ctx, "staff") is None


def test_an_unknown_language_or_a_foreign_target_changes_nothing(app, web_ctx) -> None:
    clerk = login(app, "staff")
    res = clerk.post("/language", {"language": "fr", "next": "https://elsewhere.example/"})
    assert res.status_code == 302 and res.headers["Location"] == "/"
    assert stored_language(web_ctx, "staff") is None and clerk.client.get_cookie("lang") is None
    res = clerk.post("/language", {"language": "en", "next": "//elsewhere.example/x"})
    assert res.headers["Location"] == "/"


def test_refusal_reasons_on_the_dashboard_are_in_the_pages_language(app) -> None:
    zh = login(app, "manager", accept_language="zh-CN").get("/dashboard/").get_data(as_text=True)
    en = login(app, "manager", accept_language="en").get("/dashboard/").get_data(as_text=True)
    assert "门票已过期" in zh and "时间未到，请稍后再来" in zh and "Ticket expired" not in zh
    assert "Ticket expired" in en and "Too early, please come back later" in en


def test_times_are_the_parks_and_formatted_for_the_reader(app) -> None:
    from central.web.i18n import local_date, local_dt, local_time, money, number

    at = datetime(2026, 11, 30, 18, 53, 7, tzinfo=UTC)  # 02:53 the next morning in Shanghai
    with app.test_request_context("/", headers={"Accept-Language": "zh-CN"}):
        assert local_dt(at) == "2026年12月1日 02:53:07"
        assert local_date(at) == "2026年12月1日"
        assert local_time(at) == "02:53"
        assert number(12345) == "12,345" and money("80") == "80.00"
    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        assert local_dt(at) == "Dec 1, 2026, 2:53:07\u202fAM"
        assert local_date(at) == "Dec 1, 2026"
