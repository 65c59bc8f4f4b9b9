"""The park's own clock: the server runs in UTC, the park is at UTC+8 (Asia/Shanghai).

The central (`park-central serve`) and a gate agent each run under libfaketime at a chosen instant
around both midnights, the park's (16:00 UTC) and UTC's. At the desk a clerk sells with the form's
default date; the test checks the date the form offers, the validity stored, the date printed on the
ticket page, and what the gate (at the same instant) admits. The reported finding: at 02:53 in
Shanghai (18:53 UTC) the desk sold for the UTC date, a ticket already over when it was printed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.central.conftest import make_config, prepare
from tests.deploy.installs import healthy
from tests.gate_agent.conftest import turnstile_factory  # noqa: F401  (a fixture)
from tests.support.services import free_port, need
from tests.support.waiting import poll
from tests.web.conftest import password_for, seed

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


class Desk:
    """A clerk's browser: the login form, the sale form as it is offered, the ticket page."""

    def __init__(self, base: str) -> None:
        import http.cookiejar
        import urllib.request

        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.opener.addheaders = [("Accept-Language", "en-GB")]

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=20) as resp:
            return resp.read().decode()

    def post(self, path: str, form: dict) -> tuple[str, str]:
        import urllib.parse

        page = self.get(path if path != "/login" else "/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode({"csrf_token": token, **form}).encode()
        with self.opener.open(self.base + path, data=data, timeout=20) as resp:
            return resp.geturl(), resp.read().decode()

    def sell_with_the_default_date(self) -> tuple[str, str, str]:
        """(the date the form offers, the ticket page, the ticket's id)."""
        page = self.get("/desk/")
        offered = re.search(r'name="visit_date" value="([^"]+)"', page).group(1)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        import urllib.parse

        data = urllib.parse.urlencode({"csrf_token": token, "ticket_type": "1", "visit_date": offered}).encode()
        with self.opener.open(self.base + "/desk/tickets", data=data, timeout=20) as resp:
            url, ticket_page = resp.geturl(), resp.read().decode()
        ticket_id = re.search(r"/desk/tickets/(\d+)$", url).group(1)
        return offered, ticket_page, ticket_id


def _faked(at: str, *argv: str) -> list[str]:
    return ["faketime", at, *argv]


def _spawn(argv: list[str], log) -> subprocess.Popen:
    """`faketime` forks the program and may die first: the program gets a process group of its own, and
    `_end` stops the whole group (a bare terminate() left servers running after the test)."""
    return subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _end(proc: subprocess.Popen, timeout: float = 15) -> None:
    import os
    import signal
    import time as clock

    def group_alive() -> bool:
        proc.poll()  # reap faketime: a zombie would keep the group alive
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    if group_alive():
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = clock.monotonic() + timeout
    while group_alive() and clock.monotonic() < deadline:
        clock.sleep(0.1)
    if group_alive():
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout)


@pytest.fixture
def central_at(db_url, tmp_path, mosquitto):
    """Start `park-central serve` at a faked instant; yields a function (instant -> (base url, context))."""
    need(shutil.which("faketime") is not None, "libfaketime is not installed (apt-get install faketime)")
    ctx = prepare(make_config(db_url, tmp_path, mosquitto), mqtt_on=False)
    seed(ctx)
    procs: list[subprocess.Popen] = []

    def start(at: str) -> tuple[str, object]:
        for _attempt in range(3):
            base = launch(at)
            if base is not None:
                return base, ctx
        raise AssertionError("the central under faketime lost its port three times")

    def launch(at: str) -> str | None:
        """The central's base URL once it serves; None when another process took its free port first
        (the suite runs in parallel: a port free when picked may be bound before the central binds it)."""
        for proc in procs:
            _end(proc)
        procs.clear()
        port = free_port()
        c = ctx.config
        toml = tmp_path / f"central-{port}.toml"
        toml.write_text(
            f'database_url = "{c.database_url}"\nsite = "{c.site}"\n'
            f'[mqtt]\nhost = "{c.mqtt.host}"\nport = {c.mqtt.port}\nclient_id = "c{uuid.uuid4().hex[:6]}"\n'
            f'[keys]\nsigning_key_file = "{c.keys.signing_key_file}"\nsigning_key_id = {c.keys.signing_key_id}\n'
            f'template_key = "{c.keys.template_key}"\n[web]\nport = {port}\nsecret_key = "s{port}"\n')
        log_path = tmp_path / f"central-{port}.log"
        log = log_path.open("wb")
        procs.append(_spawn(_faked(at, sys.executable, "-m", "central.cli", "--config", str(toml), "serve"), log))
        base = f"http://127.0.0.1:{port}"

        def lost_port() -> bool:
            return b"Address already in use" in log_path.read_bytes()

        poll(lambda: healthy(base) or lost_port(), 60, what="the central under faketime")
        return None if lost_port() else base

    yield start
    for proc in procs:
        _end(proc)
    ctx.close()


def _desk(base: str) -> Desk:
    desk = Desk(base)
    desk.post("/login", {"username": "staff", "password": password_for("staff")})
    return desk


def _stored_validity(ctx, ticket_id: str) -> tuple[datetime, datetime]:
    from central.models import Ticket

    with ctx.sessions() as db:
        t = db.get(Ticket, int(ticket_id))
        return t.valid_from.astimezone(UTC), t.valid_to.astimezone(UTC)


@pytest.mark.parametrize("instant, park_day, printed", [
    ("2026-12-01 18:53:00", "2026-12-02", "Dec 2, 2026"),  # 02:53 in Shanghai: the reported case
    ("2026-12-01 15:50:00", "2026-12-01", "Dec 1, 2026"),  # 23:50 in Shanghai, ten minutes before its midnight
    ("2026-12-01 16:10:00", "2026-12-02", "Dec 2, 2026"),  # 00:10 in Shanghai
    ("2026-12-01 23:50:00", "2026-12-02", "Dec 2, 2026"),  # UTC's midnight is 08:00 in Shanghai: the same day
    ("2026-12-02 00:10:00", "2026-12-02", "Dec 2, 2026"),
])
def test_the_desk_sells_for_the_parks_date_whatever_the_servers(central_at, instant, park_day, printed):
    base, ctx = central_at(instant)
    offered, ticket_page, ticket_id = _desk(base).sell_with_the_default_date()
    assert offered == park_day
    start, end = _stored_validity(ctx, ticket_id)
    midnight = datetime.combine(date.fromisoformat(park_day), time(0), tzinfo=ZoneInfo("Asia/Shanghai"))
    assert (start, end) == (midnight.astimezone(UTC), (midnight + timedelta(days=1)).astimezone(UTC))
    assert printed in ticket_page  # the ticket page prints the park's date


def test_a_gate_at_the_same_instant_admits_the_ticket_sold_and_refuses_yesterdays(central_at, tmp_path, mosquitto,
                                                                                 turnstile_factory):  # noqa: F811
    """At 23:50 in Shanghai a ticket is sold for that day; at 00:10 the next day a gate refuses it and
    admits one sold for the new day: the park's midnight, not UTC's, ends a day ticket."""
    from central.services.gates import register_gate
    from drivers.sim.serial_sim import QrScannerSim

    base, ctx = central_at("2026-12-01 15:50:00")
    with ctx.sessions.begin() as db:
        register_gate(db, ctx.config.site, "east1", 1, hardware={"controller_profile": "tripod-coil",
                                                                 "passage_timeout_s": 2.0})
    _offered, _page, late_id = _desk(base).sell_with_the_default_date()
    base, ctx = central_at("2026-12-01 16:10:00")  # ten minutes after the park's midnight
    _offered, _page, new_id = _desk(base).sell_with_the_default_date()
    from central.models import Ticket
    from central.services.tickets import ticket_code

    with ctx.sessions() as db:
        codes = {i: ticket_code(db.get(Ticket, int(i)), ctx.signer) for i in (late_id, new_id)}
    sim = turnstile_factory()
    scanner = QrScannerSim()
    host, port = sim.tcp_address
    gate_dir = tmp_path / "gate"
    gate_dir.mkdir()
    (gate_dir / "gate.toml").write_text(
        f'[gate]\nid = "east1"\nsite = "{ctx.config.site}"\nlanguage = "en"\nheartbeat_s = 1\n'
        f'[broker]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
        f'[store]\npath = "{gate_dir / "gate.db"}"\n'
        f'[devices.turnstile]\ntcp = "{host}:{port}"\ntimeout_s = 0.3\n[devices.qr]\nport = "{scanner.device_path}"\n')
    log = (gate_dir / "agent.log").open("wb")
    gate = _spawn(_faked("2026-12-01 16:10:30", sys.executable, "-m", "gate_agent.cli", "run", "--config",
                         str(gate_dir / "gate.toml")), log)
    try:
        poll(lambda: "config version" in (gate_dir / "agent.log").read_text(), 60, what="the gate configured")
        scanner.scan(codes[late_id])
        poll(lambda: _decisions(gate_dir / "gate.db") == 1, 20, what="the gate's decision on yesterday's ticket")
        assert sim.counters == (0, 0)  # the park's yesterday's day ticket: refused
        scanner.scan(codes[new_id])
        poll(lambda: sim.counters[0] == 1, 20, what="today's ticket admitted")
    finally:
        _end(gate)
        scanner.close()


def _decisions(store: Path) -> int:
    """Decisions the gate recorded (its outbox counter), read from its store without writing."""
    import sqlite3

    if not store.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0
    return row[0] if row else 0
