"""A manager, a desk clerk and a technician do their rounds in Chinese in headless Chromium (Debian's,
with Debian's CJK fonts): no English label is left on the dashboard, the desk, the gates page or the
reports, the Chinese renders as glyphs (not boxes), and the same pages read in English for a browser
that asks for English. Screenshots go to the test's folder (and to $SCREENSHOT_DIR when set)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from protocol.controllers import SHIPPED_PROFILES
from protocol.i18n import LOCALEDIR
from protocol.ids import new_event_id
from protocol.messages import PassageEvent
from tests.support.services import need
from tests.web.conftest import password_for
from tests.web.test_browser import ARGS, CHROMIUM, server  # noqa: F401  (the live server fixture)

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]

# Latin-script words a Chinese page keeps: product and format names, units, the switch's "English".
PROPER_NOUNS = {"qr", "id", "rfid", "uid", "csv", "api", "mqtt", "modbus", "usb", "jpeg", "png", "webp", "px",
                "english"}
CODE = re.compile(r"\S*[\d_/@]\S*")  # ticket numbers, ids, times, codes like used_up, paths
WORD = re.compile(r"[A-Za-z]+")


def catalogue_words() -> set[str]:
    """Every English word of the catalogue's msgids: what a page left untranslated would show."""
    from babel.messages.pofile import read_po

    with open(LOCALEDIR / "messages.pot", "rb") as fp:
        catalog = read_po(fp)
    words: set[str] = set()
    for m in catalog:
        for msgid in (m.id,) if isinstance(m.id, str) else m.id:
            text = re.sub(r"%\(\w+\)s|\{\w+\}|<[^>]+>", " ", msgid or "")
            words |= {w.lower() for w in WORD.findall(text) if len(w) > 1}
    return words - PROPER_NOUNS


def english_left(page, data: list[str]) -> list[str]:
    """The English words a reader sees on `page` (visible text, title, placeholders, labels for screen
    readers), once data (names, ticket types), codes and the proper nouns above are taken out."""
    seen = page.evaluate("""() => [document.title, document.body.innerText,
        ...[...document.querySelectorAll('[placeholder],[title],[aria-label],[data-confirm],img[alt]')]
           .flatMap(e => [e.getAttribute('placeholder'), e.getAttribute('title'), e.getAttribute('aria-label'),
                          e.getAttribute('data-confirm'), e.getAttribute('alt')]).filter(Boolean)].join('\\n')""")
    for value in sorted(data, key=len, reverse=True):
        seen = seen.replace(value, " ")
    seen = CODE.sub(" ", seen)
    words = catalogue_words()
    left = {w for w in WORD.findall(seen) if len(w) > 1 and w.lower() not in PROPER_NOUNS}  # not "A-Z"
    # A catalogue word is a text someone forgot to wrap; any other Latin word is one that never reached
    # the catalogue (a library's default label): both are English on a Chinese page.
    return sorted(f"{w} (in the catalogue)" if w.lower() in words else w for w in left)


def renders_cjk_glyphs(page) -> bool:
    """Two different Chinese characters draw differently: with no CJK font both are the same box."""
    return page.evaluate("""() => {
        const draw = (ch) => { const c = document.createElement('canvas'); c.width = 40; c.height = 40;
            const x = c.getContext('2d'); x.font = '32px ' + getComputedStyle(document.body).fontFamily;
            x.fillText(ch, 2, 34); return c.toDataURL(); };
        return draw('闸') !== draw('机') && draw('闸') !== draw('\\u0378');
    }""")


@pytest.fixture(scope="module")
def chromium():
    need(CHROMIUM.exists(), "Debian's chromium is not installed (apt-get install chromium)")
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout \
        if shutil.which("fc-list") else ""
    need(bool(fonts.strip()), "no CJK font: Chinese pages render as boxes (apt-get install fonts-noto-cjk)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def browser_in(chromium, locale: str):
    """A browser whose user chose `locale` (its Accept-Language and navigator.language)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale=locale)
    context.set_default_timeout(10_000)
    return context


@pytest.fixture
def park(server):  # noqa: F811
    """A day at the park so far: a gate reporting, tickets sold at two channels, passages and a refusal."""
    from central.services.gates import register_gate
    from central.services.ingest import ingest_batch
    from central.services.tickets import IssueRequest, issue_ticket

    ctx, site = server.ctx, server.ctx.config.site
    now = datetime.now(UTC)
    with ctx.sessions.begin() as db:
        gate, _creds = register_gate(db, site, "east-1", 1)
        gate.last_seen_at, gate.online = now, True
        tickets = [issue_ticket(db, site, IssueRequest(ticket_type=1, holder_name="Li Lei", channel=channel,
                                                       channel_ref="CITS-7" if channel == "agency" else None))
                   for channel in ("box_office", "agency")]

        def passage(minutes: int, **kw) -> PassageEvent:
            fields = {"direction": "in", "credential_kind": "qr", "credential_ref": "T1", "decision": "granted",
                      "reason": "ok", "passed": True, "ticket_type": 1} | kw
            return PassageEvent(id=new_event_id(), site=site, gate="east-1", zone=1,
                                at=now - timedelta(minutes=minutes), **fields)

        ingest_batch(db, [passage(3), passage(2, direction="out"),
                          passage(1, decision="refused", reason="used_up", passed=False)])
        server.ticket_path = f"/desk/tickets/{tickets[0].id}"
    return server


def screenshot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("SCREENSHOT_DIR"):
        Path(os.environ["SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(os.environ["SCREENSHOT_DIR"]) / path.name)


def log_in(page, server, role: str) -> None:  # noqa: F811
    page.goto(f"{server.url}/login")
    page.fill("input[name=username]", role)
    page.fill("input[name=password]", password_for(role))
    page.click("main button[type=submit]")
    page.wait_for_load_state()


# Data on these pages that is not the product's wording: who, what was sold to whom, the zones.
def data_of(server) -> list[str]:  # noqa: F811
    return [server.ctx.config.site, "Day ticket", "Li Lei", "Test Park", "Main", "Cave", "east-1", "CITS-7",
            "manager", "staff", "technician",
            # controller model ids: what the technician types into provision-gate --controller
            *(part for model in SHIPPED_PROFILES for part in model.split("-"))]


def rounds(server) -> list[tuple[str, list[str]]]:  # noqa: F811
    """Who visits what: a manager's, a desk clerk's and a technician's pages."""
    return [("manager", ["/dashboard/", "/parks/", "/reports/", "/reports/daily", "/reports/conflicts"]),
            ("staff", ["/desk/", "/desk/persons", server.ticket_path]),
            ("technician", ["/gates/", "/gates/east-1"])]


def test_a_manager_a_desk_clerk_and_a_technician_see_no_english_in_chinese(chromium, park, tmp_path):
    from playwright.sync_api import expect

    for role, paths in rounds(park):
        context = browser_in(chromium, "zh-CN")  # each one's own browser
        try:
            page = context.new_page()
            log_in(page, park, role)
            for path in paths:
                page.goto(park.url + path)
                if path == "/dashboard/":
                    page.wait_for_selector("#dashboard[data-ready='1']")
                    expect(page.locator("#live-state")).to_have_text("实时")
                    expect(page.locator("#denials tr[data-reason='used_up'] td").first).to_have_text("门票已使用")
                    expect(page.locator("#gate-east-1 .gstate")).to_have_text("在线")
                assert page.locator("html").get_attribute("lang") == "zh-Hans"
                left = english_left(page, data_of(park))
                assert not left, f"{role} {path}: English left on the Chinese page: {left}"
                screenshot(page, tmp_path, f"zh-{role}-{path.strip('/').replace('/', '-') or 'home'}")
            assert renders_cjk_glyphs(page), "Chinese draws as boxes: no CJK font in the browser"
        finally:
            context.close()


def test_the_header_switch_turns_an_english_browser_to_chinese_and_it_stays(chromium, park, tmp_path):
    from playwright.sync_api import expect

    context = browser_in(chromium, "en-US")
    try:
        page = context.new_page()
        log_in(page, park, "staff")
        page.wait_for_url(f"{park.url}/desk/")
        expect(page.locator("h1")).to_have_text("Sell and look up tickets")
        page.click("form.language button[value=zh_Hans]")
        expect(page.locator("h1")).to_have_text("售票与查询")
        assert page.url == f"{park.url}/desk/"  # back where the clerk was
        assert not english_left(page, data_of(park))
        screenshot(page, tmp_path, "zh-switched-desk")
        page.goto(f"{park.url}/desk/persons")  # the choice is the user's: every page follows it
        expect(page.locator("h1")).to_have_text("年卡与持卡人")
        expect(page.locator("form.language button[value=zh_Hans]")).to_be_disabled()
    finally:
        context.close()


def test_the_same_pages_read_in_english_for_an_english_browser(chromium, park, tmp_path):
    from playwright.sync_api import expect

    for role, paths in rounds(park):
        context = browser_in(chromium, "en-GB")
        try:
            page = context.new_page()
            log_in(page, park, role)
            for path in paths:
                page.goto(park.url + path)
                if path == "/dashboard/":
                    page.wait_for_selector("#dashboard[data-ready='1']")
                    expect(page.locator("#live-state")).to_have_text("live")
                    expect(page.locator("#denials tr[data-reason='used_up'] td").first).to_have_text(
                        "Ticket already used")
                assert page.locator("html").get_attribute("lang") == "en"
                text = page.evaluate("document.body.innerText")
                assert not re.search(r"[\u4e00-\u9fff]", text.replace("中文", "")), f"{role} {path}: Chinese left"
                screenshot(page, tmp_path, f"en-{role}-{path.strip('/').replace('/', '-') or 'home'}")
        finally:
            context.close()
