"""What the visitor and staff see and hear at the gate: a child ticket named for staff on the screen and
by the SYN6288 voice module (pty simulator), a group counting up, a failing voice module that blocks
nothing and shows on the gate's status, and the kiosk page (its events, and in headless Chromium)."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import pytest

from drivers.sim.voice_sim import VoiceModuleSim
from gate_agent.announcer import Announcer, TicketNote
from gate_agent.display import ConsoleDisplay
from gate_agent.kiosk import KioskDisplay
from protocol import messages as m
from protocol.reasons import Reason
from tests.gate_agent.conftest import RULES, gate_config_for, ticket
from tests.support.services import need

CHILD = m.TicketTypeRules(id=4, name="儿童票", entries=1, staff_check=True)
GROUP = m.TicketTypeRules(id=5, name="团队 ABC 旅行社", entries=1)


@pytest.fixture
def voice_sim():
    with VoiceModuleSim() as sim:
        yield sim


def chinese_gate(gate_factory, signer, site, voice_sim, **devices):
    cfg = gate_config_for(signer, site, "g1", language="zh", ticket_types=[*RULES, CHILD, GROUP])
    return gate_factory("g1", config=cfg, devices={"voice": {"port": voice_sim.device_path}, **devices})


def test_a_child_ticket_is_shown_and_said_for_staff_to_check(gate_factory, signer, site, voice_sim):
    agent, _ = chinese_gate(gate_factory, signer, site, voice_sim)

    handled = agent.present("qr", ticket(signer, 2001, ticket_type=4))

    assert handled.granted and handled.passed == 1
    notice = agent.display.wait_notice(lambda n: n.reason == "ok")
    assert notice.text == "欢迎光临" and notice.lines == ("儿童票：请工作人员核验",)
    assert voice_sim.wait_said(lambda t: t == "欢迎光临，儿童票")


def test_an_adult_ticket_says_only_welcome(gate_factory, signer, site, voice_sim):
    agent, _ = chinese_gate(gate_factory, signer, site, voice_sim)
    agent.present("qr", ticket(signer, 2002, ticket_type=1))
    assert voice_sim.wait_said(lambda t: t == "欢迎光临")
    assert agent.display.wait_notice(lambda n: n.reason == "ok").lines == ()


def test_a_group_counts_up_on_the_screen_as_each_member_passes(gate_factory, signer, site, voice_sim):
    agent, sim = chinese_gate(gate_factory, signer, site, voice_sim)

    handled = agent.present("qr", ticket(signer, 2003, ticket_type=5, headcount=3))

    assert handled.passed == 3 and sim.counters == (3, 0)
    lines = [n.lines for n in agent.display.notices]
    assert lines == [("团队 ABC 旅行社：已入 0 / 3",), ("团队 ABC 旅行社：已入 1 / 3",),
                     ("团队 ABC 旅行社：已入 2 / 3",), ("团队 ABC 旅行社：已入 3 / 3",)]
    assert voice_sim.wait_said(lambda t: t == "欢迎光临 ×3")


def test_a_hung_voice_module_blocks_no_decision_and_is_a_fault_on_the_status(gate_factory, signer, site,
                                                                              voice_sim, probe):
    voice_sim.silent = True
    agent, sim = chinese_gate(gate_factory, signer, site, voice_sim)

    assert agent.present("qr", ticket(signer, 2004)).passed == 1
    assert agent.present("qr", ticket(signer, 2005)).passed == 1  # the next visitor does not wait either

    def voice_fault():
        return [r for s in probe.of("status", m.GateStatus, "g1") for r in s.readers if r.name == "voice" and not r.ok]

    assert "no answer" in probe.wait(voice_fault)[-1].detail
    voice_sim.silent = False
    agent.present("qr", ticket(signer, 2006))
    probe.wait(lambda: [s for s in probe.of("status", m.GateStatus, "g1")
                        if any(r.name == "voice" and r.ok for r in s.readers)])


def test_a_refused_pass_sends_the_visitor_to_staff():
    display = ConsoleDisplay("g1", stream=io.StringIO())
    announcer = Announcer(display, lambda: "en", lambda: "Asia/Shanghai")
    notice = announcer.tell(Reason.NOT_SAME_PERSON)
    assert notice.see_staff and notice.lines == ("Please see staff",)
    # Already said in the reason: not twice.
    assert announcer.tell(Reason.PASS_LOST).lines == ()
    # A final refusal names no ticket type for staff to check: there is nothing to check.
    note = TicketNote(type_name="Child", staff_check=True)
    assert announcer.tell(Reason.USED_UP, ticket=note).lines == ()


# --- the kiosk page -----------------------------------------------------------------------------


@pytest.fixture
def kiosk():
    k = KioskDisplay("127.0.0.1", 0, language=lambda: "zh")
    yield k
    k.close()


def test_the_kiosk_streams_each_decision_to_the_boxs_browser(kiosk):
    announcer = Announcer(kiosk, lambda: "zh", lambda: "Asia/Shanghai")
    with urllib.request.urlopen(kiosk.url + "events", timeout=5) as stream:
        assert stream.readline() == b": connected\n"
        announcer.tell(Reason.OK, ticket=TicketNote(type_name="老年票", staff_check=True))
        lines = [stream.readline() for _ in range(3)]
    assert lines[0] == b"\n" and lines[1] == b"event: notice\n"
    notice = json.loads(lines[2].removeprefix(b"data: "))
    assert (notice["text"], notice["colour"], notice["lines"]) == ("欢迎光临", "green", ["老年票：请工作人员核验"])
    with urllib.request.urlopen(kiosk.url + "notice", timeout=5) as now:
        assert json.loads(now.read())["lines"] == ["老年票：请工作人员核验"]
    with urllib.request.urlopen(kiosk.url, timeout=5) as page:
        assert "请扫描门票、身份证或年卡" in page.read().decode()


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.browser
def test_the_kiosk_page_shows_a_refusal_for_staff_in_chromium(kiosk):
    need(CHROMIUM.exists(), "Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    announcer = Announcer(kiosk, lambda: "zh", lambda: "Asia/Shanghai")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 800, "height": 480})
        page.goto(kiosk.url)
        page.wait_for_selector("text=请扫描门票、身份证或年卡")
        assert kiosk.wait_clients(1)
        announcer.tell(Reason.NOT_SAME_PERSON)
        page.wait_for_selector("#lines .staff:has-text('请咨询工作人员')")
        assert page.inner_text("#text") == "人证不符"
        assert page.evaluate("document.body.className") == "red"
        browser.close()


def test_a_kiosk_address_already_taken_leaves_the_gate_deciding_and_shows_as_a_fault(tmp_path, mosquitto, site):
    import socket

    from gate_agent.agent import GateAgent
    from tests.gate_agent.conftest import file_config

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        cfg = file_config(tmp_path, mosquitto, site, "g1",
                          devices={"display": {"kind": "kiosk", "listen": f"127.0.0.1:{taken.getsockname()[1]}"}})
        agent = GateAgent(cfg)
        faults = [r for r in agent.health.reader_health() if r.name == "display"]
        assert faults and not faults[0].ok and "cannot listen" in faults[0].detail
        agent.store.close()
    finally:
        taken.close()


def test_a_missing_voice_module_shows_on_the_status_before_anything_is_said(gate_factory, probe, signer, site,
                                                                             tmp_path):
    agent, _ = gate_factory("g1", devices={"voice": {"port": str(tmp_path / "no-such-tty")}})

    def voice_fault():
        return [r for s in probe.of("status", m.GateStatus, "g1") for r in s.readers if r.name == "voice" and not r.ok]

    assert "cannot open" in probe.wait(voice_fault)[-1].detail
