"""The web UI in headless Chromium (Debian's), against a real server, broker and ingest worker:
login, the dashboard moving live as passages are published over MQTT, enrolment with a real photo,
a gate config change reaching a running gate agent, and roles refused in the browser."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import GateStatus, PassageEvent, encode
from tests.support.services import need
from tests.web.conftest import password_for, seed

pytestmark = [pytest.mark.browser, pytest.mark.mosquitto]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chromium():
    need(CHROMIUM.exists(), "Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


class Server:
    """The central's app under waitress on a free port, with its context and live hub."""

    def __init__(self, ctx) -> None:
        from waitress import create_server

        from central.app import create_app

        self.ctx = ctx
        self.app = create_app(ctx.config, context=ctx)
        self.hub = self.app.extensions.get("central_web_hub")
        self._server = create_server(self.app, host="127.0.0.1", port=0, threads=8)
        self.url = f"http://127.0.0.1:{self._server.effective_port}"
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        # The live streams end, then the request threads, then the server: a thread still answering when
        # waitress closes its trigger logs a traceback, and Python 3.11 formats one with `ast` (which is not
        # safe beside another thread's `ast`, as hypothesis uses it in the next test).
        if self.hub is not None:
            self.hub.stop()
        self._server.task_dispatcher.shutdown(timeout=5)
        self._server.close()


@pytest.fixture
def server(db_url, tmp_path, mosquitto):
    from tests.central.conftest import make_config, prepare

    ctx = prepare(make_config(db_url, tmp_path, mosquitto), mqtt_on=True)
    seed(ctx)
    srv = Server(ctx)
    assert srv.hub is not None and srv.hub.wait_connected(10)
    yield srv
    srv.close()
    ctx.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def publisher(mosquitto):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-gate-{new_event_id()[:8]}")
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


def log_in(page, server, role: str, password: str | None = None) -> None:
    page.goto(f"{server.url}/login")
    page.fill("input[name=username]", role)
    page.fill("input[name=password]", password or password_for(role))
    page.click("main button[type=submit]")  # the login form's, not the language switch in the header


def test_login_refuses_a_wrong_password_then_opens_the_dashboard(server, page):
    from playwright.sync_api import expect

    log_in(page, server, "manager", "not-the-password")
    expect(page.locator("#login-error")).to_contain_text("Wrong username or password")
    log_in(page, server, "manager")
    page.wait_for_url(f"{server.url}/dashboard/")
    expect(page.locator("header .who")).to_have_text("manager (manager)")


def test_each_role_is_refused_where_it_does_not_belong(server, page):
    from playwright.sync_api import expect

    page.goto(f"{server.url}/gates/")
    assert "/login?next=" in page.url
    log_in(page, server, "staff")
    page.wait_for_url(f"{server.url}/desk/")
    for path in ("/dashboard/", "/gates/", "/reports/", "/admin/audit"):
        response = page.goto(server.url + path)
        assert response.status == 403, path
        expect(page.locator("h1")).to_contain_text("Forbidden")
    expect(page.locator("header nav")).not_to_contain_text("Gates")


def _passage(site: str, gate: str, zone: int, *, decision: str = "granted", reason: str = "ok",
             direction: str = "in") -> PassageEvent:
    if decision == "granted":  # free passage, the controller's count: the central needs no ticket for it
        return PassageEvent(id=new_event_id(), site=site, gate=gate, zone=zone, at=datetime.now(UTC),
                            direction=direction, credential_kind="none", mode="free", reason="free_passage",
                            passed=True)
    return PassageEvent(id=new_event_id(), site=site, gate=gate, zone=zone, at=datetime.now(UTC), direction=direction,
                        credential_kind="qr", credential_ref="T1", decision=decision, reason=reason, ticket_type=1)


def test_the_dashboard_moves_within_a_second_of_a_passage(server, page, publisher):
    from playwright.sync_api import expect

    from central.bus.ingest_worker import IngestWorker
    from central.services.gates import register_gate, set_zone_capacity

    ctx = server.ctx
    site = ctx.config.site
    with ctx.sessions.begin() as db:
        register_gate(db, site, "east-1", 2)
        set_zone_capacity(db, site, 2, 5)
    ingest = IngestWorker(ctx.config, ctx.sessions, cipher=ctx.cipher, occupancy_interval=0.05).start()
    try:
        log_in(page, server, "manager")
        page.wait_for_selector("#dashboard[data-ready='1']")
        expect(page.locator("#live-state")).to_have_text("live")
        zone = page.locator("#zone-2")
        expect(zone).to_have_attribute("data-inside", "0")

        started = time.monotonic()
        publisher.publish(topics.event(site, "east-1"), encode(_passage(site, "east-1", 2)), qos=1)
        expect(zone).to_have_attribute("data-inside", "1")
        latency = time.monotonic() - started
        expect(zone).to_have_attribute("data-level", "ok")
        expect(page.locator("#t-entries")).to_have_text("1")
        assert latency < 1.5, f"the dashboard took {latency:.2f}s"  # within a second, plus CI slack

        for _ in range(3):
            publisher.publish(topics.event(site, "east-1"), encode(_passage(site, "east-1", 2)), qos=1)
        expect(zone).to_have_attribute("data-inside", "4")
        expect(zone).to_have_attribute("data-level", "warn")  # 4 of 5 = 80 %: amber
        publisher.publish(topics.event(site, "east-1"), encode(_passage(site, "east-1", 2)), qos=1)
        expect(zone).to_have_attribute("data-level", "full")  # 5 of 5: red
        expect(zone.locator(".bar")).to_have_class("bar level-full")
        expect(zone.locator(".count")).to_have_text("5 / 5")

        publisher.publish(topics.event(site, "east-1"),
                          encode(_passage(site, "east-1", 2, decision="refused", reason="used_up")), qos=1)
        expect(page.locator("#denials tr[data-reason='used_up'] td.num")).to_have_text("1")
        expect(page.locator("#denials tr[data-reason='used_up'] td").first).to_have_text("Ticket already used")
        expect(page.locator("#t-refused")).to_have_text("1")

        publisher.publish(topics.event(site, "east-1"), encode(_passage(site, "east-1", 2, direction="out")), qos=1)
        expect(zone).to_have_attribute("data-inside", "4")
        expect(zone).to_have_attribute("data-level", "warn")
        expect(page.locator("#t-exits")).to_have_text("1")
        assert page.evaluate("document.querySelectorAll('#chart canvas').length") == 1
    finally:
        ingest.stop()


def test_gate_tiles_follow_status_and_alarms(server, page, publisher):
    from playwright.sync_api import expect

    from central.services.gates import register_gate

    site = server.ctx.config.site
    with server.ctx.sessions.begin() as db:
        register_gate(db, site, "west-2", 1)
    log_in(page, server, "manager")
    page.wait_for_selector("#dashboard[data-ready='1']")
    tile = page.locator("#gate-west-2")
    expect(tile).to_have_attribute("data-online", "0")
    status = GateStatus(site=site, gate="west-2", online=True, at=datetime.now(UTC), alarms=["cabinet open"])
    publisher.publish(topics.status(site, "west-2"), encode(status), qos=1, retain=True)
    expect(tile).to_have_attribute("data-online", "1")
    expect(tile.locator(".galarms")).to_have_text("cabinet open")


@pytest.mark.faces
def test_staff_enrols_a_holder_with_a_real_photo(server, page, faces_dir):
    from playwright.sync_api import expect

    log_in(page, server, "staff")
    page.goto(f"{server.url}/desk/persons")
    form = page.locator("#enrol-form")
    form.locator("input[name=name]").fill("Barack Obama")
    form.locator("input[name=card_uid]").fill("04:11:22:33")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/desk/persons/*")

    page.set_input_files("#photo-input", str(faces_dir / "group" / "two_people.jpg"))
    page.click("#enrol-face")
    expect(page.locator("#face-error")).to_contain_text("2 faces found")
    expect(page.locator("#face-checks li[data-state='failed']")).to_contain_text("Only one face")

    page.set_input_files("#photo-input", str(faces_dir / "obama" / "1.jpg"))
    page.click("#enrol-face")
    expect(page.locator(".flash")).to_contain_text("Face enrolled")
    expect(page.locator("#face-checks li[data-state='passed']")).to_have_count(5)
    expect(page.locator("#templates li[data-kind='face']")).to_have_count(1)


def test_a_gate_config_change_reaches_a_running_gate_agent(server, page, tmp_path, mosquitto):
    from playwright.sync_api import expect

    from central.services.gates import register_gate
    from drivers.sim.turnstile_sim import TurnstileSimulator
    from gate_agent.agent import GateAgent
    from gate_agent.display import ConsoleDisplay
    from tests.gate_agent.conftest import file_config

    ctx = server.ctx
    site = ctx.config.site
    with ctx.sessions.begin() as db:
        register_gate(db, site, "g1", 1, hardware={"controller_profile": "tripod-coil", "passage_timeout_s": 1.0})
    ctx.publisher.flush()  # the retained config v1, as the central's scheduler would
    sim = TurnstileSimulator("tripod-coil", transport="tcp").start()
    import io

    agent = GateAgent(file_config(tmp_path, mosquitto, site, "g1", turnstile=sim),
                      display=ConsoleDisplay("g1", stream=io.StringIO())).start()
    try:
        deadline = time.monotonic() + 10
        while (agent.active is None or agent.active.cfg.version != 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.active is not None and agent.active.cfg.version == 1

        log_in(page, server, "technician")
        page.goto(f"{server.url}/gates/g1")
        page.fill("input[name=passage_timeout_s]", "3.5")
        page.fill("input[name=unit_id]", "1")
        page.click("#hw-form button[type=submit]")
        expect(page.locator(".flash")).to_contain_text("Config saved and pushed")
        expect(page.locator("#config-state")).to_have_attribute("data-state", "applied")
        assert agent.active.cfg.version == 2
        assert agent.active.cfg.hardware.passage_timeout_s == 3.5

        page.fill("input[name=unit_id]", "900")
        page.click("#hw-form button[type=submit]")
        expect(page.locator("[data-field=unit_id]")).to_contain_text("from 1 to 247")
    finally:
        agent.stop()
        sim.stop()


def test_a_mode_set_at_the_box_shows_on_the_centrals_gate_pages(server, page, tmp_path, mosquitto):
    """A technician locks the gate at the box with `gate-agent set-mode locked`: the central's gates list
    and the gate's page say "at the gate: locked" beside the mode the central set, with no reload of the
    agent and no action at the central (the agent sends its status at once on a mode change)."""
    import io
    import subprocess
    import sys

    from playwright.sync_api import expect

    from central.services.gates import register_gate
    from drivers.sim.turnstile_sim import TurnstileSimulator
    from gate_agent.agent import GateAgent
    from gate_agent.display import ConsoleDisplay
    from tests.gate_agent.conftest import file_config

    ctx = server.ctx
    site = ctx.config.site
    with ctx.sessions.begin() as db:
        register_gate(db, site, "g1", 1, hardware={"controller_profile": "tripod-coil", "passage_timeout_s": 1.0})
    ctx.publisher.flush()
    sim = TurnstileSimulator("tripod-coil", transport="tcp").start()
    fc = file_config(tmp_path, mosquitto, site, "g1", turnstile=sim)
    host, port = sim.tcp_address
    toml = tmp_path / "gate.toml"
    toml.write_text(f'[gate]\nid = "g1"\nsite = "{site}"\n'
                    f'[broker]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
                    f'[store]\npath = "{fc.store_path}"\n[control]\nsocket = "{fc.control_socket}"\n'
                    f'[devices.turnstile]\ntcp = "{host}:{port}"\n')
    from central.bus.ingest_worker import IngestWorker

    ingest = IngestWorker(ctx.config, ctx.sessions, cipher=ctx.cipher).start()
    agent = GateAgent(fc, display=ConsoleDisplay("g1", stream=io.StringIO())).start()
    try:
        deadline = time.monotonic() + 10
        while (agent.active is None or agent.active.cfg.version != 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.active is not None
        done = subprocess.run([sys.executable, "-m", "gate_agent.cli", "set-mode", "locked", "--config", str(toml)],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr

        log_in(page, server, "technician")
        deadline = time.monotonic() + 10
        cell = page.locator("td[data-reported-mode]").first
        while time.monotonic() < deadline:
            page.goto(f"{server.url}/gates/")
            if cell.get_attribute("data-reported-mode") == "locked":
                break
            time.sleep(0.2)
        assert cell.get_attribute("data-mode") == "normal"  # what the central set
        expect(page.locator("td[data-reported-mode='locked'] .badge.warn")).to_contain_text("at the gate: locked")
        page.goto(f"{server.url}/gates/g1")
        expect(page.locator("#reported-mode")).to_have_attribute("data-reported-mode", "locked")
    finally:
        agent.stop()
        ingest.stop()
        sim.stop()
