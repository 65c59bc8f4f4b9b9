"""The pages' language and clock: the user's choice, else the browser's, else the site's; times in the
park's zone, formatted for the reader (Flask-Babel over protocol/locale)."""

from __future__ import annotations

import json
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


def script_texts(res) -> dict:
    """The words a page hands its script (the JSON block with id i18n)."""
    match = re.search(r'<script type="application/json" id="i18n">(.*?)</script>', res.get_data(as_text=True), re.S)
    assert match, "no i18n block"
    return json.loads(match.group(1))


def test_the_dashboards_script_gets_its_words_in_the_pages_language(app) -> None:
    zh = script_texts(login(app, "manager", accept_language="zh-CN").get("/dashboard/"))
    en = script_texts(login(app, "manager", accept_language="en").get("/dashboard/"))
    assert zh["reasons"]["expired"] == "门票已过期" and zh["reasons"]["too_early"] == "时间未到，请稍后再来"
    assert en["reasons"]["expired"] == "Ticket expired"
    assert en["reasons"]["too_early"] == "Too early, please come back later"
    assert zh["modes"]["free"] == "自由通行" and zh["not_live"] == "非实时：每 {seconds} 秒刷新"
    assert en["modes"]["free"] == "free passage" and en["entries"] == "Entries"


def test_times_are_the_parks_and_formatted_for_the_reader(app) -> None:
    from central.web.i18n import local_date, local_dt, local_time, money, number

    at = datetime(2026, 11, 30, 18, 53, 7, tzinfo=UTC)  # 02:53 the next morning in Shanghai
    with app.test_request_context("/", headers={"Accept-Language": "zh-CN"}):
        assert local_dt(at) == "2026年12月1日 02:53:07"
        assert local_date(at) == "2026年12月1日"
        assert local_time(at) == "02:53" and local_dt(at, "minutes") == "2026年12月1日 02:53"
        assert number(12345) == "12,345" and money("80") == "80.00"
    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        assert local_dt(at) == "Dec 1, 2026, 2:53:07\u202fAM"
        assert local_date(at) == "Dec 1, 2026"


# --- what the pages show ---------------------------------------------------------------------------

LATE_UTC = datetime(2026, 11, 30, 18, 53, 7, tzinfo=UTC)  # 02:53:07 on 1 December in Shanghai


def test_the_gate_list_and_the_audit_log_show_the_parks_time(app, web_ctx) -> None:
    from central.models import AuditEntry, Gate
    from central.services.gates import register_gate

    with web_ctx.sessions.begin() as db:
        gate, _creds = register_gate(db, web_ctx.config.site, "east-1", 1)
        gate.last_seen_at = LATE_UTC
        db.add(AuditEntry(at=LATE_UTC, actor="technician", action="gate.mode", target="east-1"))
    en = login(app, "admin", accept_language="en")
    zh = login(app, "admin", accept_language="zh-CN")
    assert "Dec 1, 2026, 2:53:07\u202fAM" in en.get("/gates/").get_data(as_text=True)
    assert "2026年12月1日 02:53:07" in zh.get("/gates/").get_data(as_text=True)
    audit_en = en.get("/admin/audit?action=gate.mode").get_data(as_text=True)
    assert "Dec 1, 2026, 2:53:07\u202fAM" in audit_en and "18:53" not in audit_en
    assert "2026年12月1日 02:53:07" in zh.get("/admin/audit?action=gate.mode").get_data(as_text=True)
    with web_ctx.sessions() as db:
        assert db.get(Gate, gate.id).last_seen_at == LATE_UTC  # stored in UTC, only shown in the park's zone


def test_a_ticket_is_valid_from_the_parks_midnight_as_the_desk_shows_it(app, web_ctx) -> None:
    from datetime import date

    from central.services.tickets import IssueRequest, issue_ticket

    with web_ctx.sessions.begin() as db:
        ticket = issue_ticket(db, web_ctx.config.site, IssueRequest(ticket_type=1, visit_date=date(2026, 12, 1),
                                                                    allow_past=True))
        ticket_id = ticket.id
    en = login(app, "staff", accept_language="en").get(f"/desk/tickets/{ticket_id}").get_data(as_text=True)
    valid = re.search(r'id="ticket-valid">([^<]*)<', en).group(1)
    # Midnight to midnight in Shanghai, not the UTC instants (16:00 the day before).
    assert valid == "Dec 1, 2026, 12:00\u202fAM to Dec 2, 2026, 12:00\u202fAM"
    zh = login(app, "staff", accept_language="zh-CN").get(f"/desk/tickets/{ticket_id}").get_data(as_text=True)
    assert re.search(r'id="ticket-valid">([^<]*)<', zh).group(1) == "2026年12月1日 00:00 至 2026年12月2日 00:00"
    assert 'id="ticket-status">有效<' in zh and "80.00" in zh


def test_a_lock_out_shows_the_parks_time_of_day(app, web_ctx) -> None:
    from central.web import security

    with web_ctx.sessions.begin() as db:
        for _ in range(5):
            result = security.login(db, "staff", "wrong", remote="10.0.0.9", client="desk-1")
    until = result.locked_until
    page = login(app, "admin", accept_language="zh-CN").get("/admin/users").get_data(as_text=True)
    local = until.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).strftime("%H:%M")
    assert f"已锁定至 {local}（来自 1 个地址）" in page


@pytest.mark.parametrize("path, role, zh_words, en_words", [
    ("/desk/", "staff", ["售票与查询", "出票", "票种", "销售渠道", "售票窗口"],
     ["Sell and look up tickets", "Issue", "Ticket type", "box office"]),
    ("/gates/", "technician", ["注册闸机", "紧急开闸：打开所有闸机", "双向"], ["Register a gate", "both"]),
    ("/reports/", "manager", ["每日客流", "按销售渠道结算", "可疑情况"], ["Visitors per day", "Suspicious patterns"]),
    ("/desk/persons", "staff", ["办理新年卡", "登记持卡人并开卡"], ["Enrol a new pass holder"]),
])
def test_each_page_speaks_the_readers_language(app, path, role, zh_words, en_words) -> None:
    zh = login(app, role, accept_language="zh-CN").get(path).get_data(as_text=True)
    en = login(app, role, accept_language="en").get(path).get_data(as_text=True)
    for word in zh_words:
        assert word in zh, word
    for word in en_words:
        assert word in en, word
    assert not any(word in en for word in zh_words)


def test_an_error_page_speaks_the_readers_language_and_the_api_keeps_its_codes(app) -> None:
    clerk = login(app, "staff", accept_language="zh-CN")
    res = clerk.get("/gates/")
    assert res.status_code == 403 and "无权访问" in res.get_data(as_text=True)
    assert "没有这个页面" in clerk.get("/no-such-page").get_data(as_text=True)
    api = clerk.get("/api/v1/no-such-thing")
    assert api.status_code == 404 and api.get_json()["error"] == "not_found"


def test_a_templates_words_follow_a_language_forced_for_part_of_a_request(app) -> None:
    """Templates look the catalogue up once per request and locale: a block forced to another language
    (as the API's errors are) still gets that language's words, and the request's own afterwards."""
    from flask import render_template_string
    from flask_babel import force_locale

    source = '{{ _("Book now") }}|{{ ngettext("%(num)s place left", "%(num)s places left", 2) }}'
    with app.test_request_context("/book/", headers={"Accept-Language": "zh-CN,zh;q=0.9"}):
        chinese = render_template_string(source)
        with force_locale("en"):
            english = render_template_string(source)
        assert render_template_string(source) == chinese
    assert english == "Book now|2 places left"
    assert chinese != english and "Book now" not in chinese and "2" in chinese
