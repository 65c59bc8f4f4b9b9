"""`park-demo` (`make demo`) end to end: broker, central, gate agents as processes, simulated devices and
visitors; passages must flow from the simulated turnstiles into the central's live counts, and a
SIGTERM must leave nothing running."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.support.services import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


class Browser:
    """Just enough of a browser for the login form (CSRF token, session cookie) and the JSON API."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with self.opener.open(self.base + path, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def login(self, username: str, password: str) -> int:
        _status, page = self.get("/login")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
        form = urllib.parse.urlencode({"csrf_token": token, "username": username, "password": password}).encode()
        try:
            with self.opener.open(self.base + "/login", data=form, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def change_password(self, current: str, new: str) -> int:
        _status, page = self.get("/account/password")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
        form = urllib.parse.urlencode({"csrf_token": token, "current_password": current, "new_password": new,
                                       "confirm_password": new}).encode()
        try:
            with self.opener.open(self.base + "/account/password", data=form, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code


def _wait(what: str, check, timeout: float, proc: subprocess.Popen, output: list[str]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the demo exited ({proc.returncode}) while waiting for {what}:\n" + "".join(output[-40:]))
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"no {what} within {timeout:.0f} s:\n" + "".join(output[-40:]))


def test_demo_moves_live_counts_and_stops_cleanly_on_sigterm(tmp_path):
    port = free_port()
    workdir = tmp_path / "demo"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo", "--duration", "80", "--speed", "high", "--visitors", "800",
         "--port", str(port), "--workdir", str(workdir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        browser = Browser(f"http://127.0.0.1:{port}")
        _wait("/healthz", lambda: browser.get("/healthz")[0] == 200 if _listening(port) else False, 60, proc, output)
        assert browser.get("/api/v1/occupancy")[0] == 401, "live counts need a login"

        admin = workdir / "admin.txt"
        _wait("admin.txt", admin.exists, 30, proc, output)
        assert stat.S_IMODE(admin.stat().st_mode) == 0o600
        username, password = admin.read_text().split()
        assert username == "admin" and len(password) >= 12
        assert any(password in line for line in output), "the login is printed for the user"
        assert browser.login(username, password) == 200
        # The printed password is one-time: nothing but choosing one's own until it is replaced.
        status, body = browser.get("/api/v1/occupancy")
        assert status == 403 and b"password_change_required" in body
        assert browser.change_password(password, "the admin's own passphrase") == 200

        def occupancy() -> dict | None:
            status, body = browser.get("/api/v1/occupancy")
            return json.loads(body) if status == 200 else None

        first = _wait("a zone with visitors inside",
                      lambda: (o := occupancy()) and any(z["inside"] > 0 for z in o["zones"]) and o, 60, proc, output)
        assert {z["name"] for z in first["zones"]} == {"Main Gate Plaza", "Cave Trail", "Summit Temple"}
        _wait("more entries", lambda: (o := occupancy()) and o["entries_today"] > first["entries_today"], 20,
              proc, output)
        print(f"live counts moving {time.monotonic() - started:.1f} s after the start")
    finally:
        code = _stop(proc, reader, output)
    assert code == 0, "".join(output[-40:])
    assert any("stopped" in line for line in output)


def _stop(proc: subprocess.Popen, reader: threading.Thread, output: list[str], *, terminate: bool = True) -> int:
    """SIGTERM, as systemd or Ctrl-C stops the demo (or, `terminate=False`, its own end at --duration): its
    exit code, once nothing of it is left running."""
    if proc.poll() is None and terminate:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("the demo did not stop within 40 s:\n" + "".join(output[-40:]))
    reader.join(5)
    survivors = _group_members(proc.pid)
    if survivors:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not survivors, f"processes left running after the demo stopped: {survivors}"
    return code


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _group_members(pgid: int) -> list[str]:
    """Live processes of the demo's process group (zombies count as gone)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def test_demo_at_high_speed_keeps_selling_and_admitting_day_after_day_on_one_clock(tmp_path):
    """Over several simulated days the central sells, the gates admit and the dashboard's today follow the
    one simulated clock: every day has its passages, nothing fails, the central's day is the visitors' day."""
    from protocol.clock import parse

    port = free_port()
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo", "--duration", "100", "--speed", "30", "--visitors", "300",
         "--port", str(port), "--workdir", str(workdir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    days_seen: list[tuple[str, str]] = []  # (dashboard's day, the clock's day) while the demo runs
    ending = False  # the demo is stopping by itself (--duration)
    try:
        spec = _wait("the clock line", lambda: next((m.group(1) for line in output
                                                     if (m := re.search(r"PARK_CLOCK=(.+)$", line.strip()))), None),
                     60, proc, output)
        sim = parse(spec)
        tz = ZoneInfo("Asia/Shanghai")
        browser = Browser(f"http://127.0.0.1:{port}")
        _wait("/healthz", lambda: browser.get("/healthz")[0] == 200 if _listening(port) else False, 60, proc, output)
        _wait("admin.txt", (workdir / "admin.txt").exists, 30, proc, output)
        username, password = (workdir / "admin.txt").read_text().split()
        assert browser.login(username, password) == 200
        assert browser.change_password(password, "the admin's own passphrase") == 200
        while proc.poll() is None:
            before = sim.now().astimezone(tz).date().isoformat()
            try:
                status, body = browser.get("/live/snapshot")
            except OSError:  # urllib's URLError too
                if any("reached" in line or "stopping" in line for line in output[-20:]):
                    ending = True
                    break  # the demo is stopping at the end of --duration: its web server went first
                raise
            after = sim.now().astimezone(tz).date().isoformat()
            if status == 200:
                day = json.loads(body)["day"]
                days_seen.append((day, before))
                assert day in (before, after), f"the dashboard's today {day} is not the simulated day {before}"
            time.sleep(4)
    finally:
        code = _stop(proc, reader, output, terminate=not ending)
    text = "".join(output)
    assert code == 0, text[-3000:]
    ended = [(m.group(1), int(m.group(2)), int(m.group(3)))
             for m in re.finditer(r"\(([\d-]+)\) ended: (\d+) turnstile passages, (\d+) refused", text)]
    print("days (date, passages, refused):", ended)
    assert len(ended) >= 3, text[-3000:]
    assert [d for d, _, _ in ended] == sorted({d for d, _, _ in ended}), "one simulated day after another"
    # Every whole day admits its visitors: the day's tickets work at its gates, so passages far outnumber
    # refusals (about one arrival in ten is meant to be refused; a day whose tickets the gates did not take
    # would refuse most of them). How many pass in a day is the gates' speed, not the product's behaviour:
    # at 30 simulated minutes a second each refusal holds a gate for ~50 simulated minutes, so a loaded
    # machine admits fewer (CI: 214, 94, 74 a day; a quiet one 120-400). The last day is cut by --duration.
    assert all(passages >= 30 and passages >= 2 * refused for _, passages, refused in ended[:-1]), \
        f"every day admits its visitors: {ended}"
    assert ended[-1][1] > 0, ended
    assert len({day for day, _ in days_seen}) >= 3, f"the dashboard followed the days: {days_seen}"
    logs = [text] + [p.read_text(errors="replace") for p in (workdir / "gates").glob("*/agent.log")]
    assert not [log for log in logs if "Traceback" in log], "no traceback in the demo's or the gates' logs"
    assert "selling more tickets failed" not in text


def test_the_demo_as_a_head_office_over_two_parks_counts_each_parks_own_gates(tmp_path):
    """`make demo ARGS="--parks 2"`: one central over two parks, each with its own gate agents and visitors;
    the head office's live counts list both, and each park counts only its own gates' passages."""
    port = free_port()
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo", "--parks", "2", "--gates", "2", "--duration", "90", "--speed", "high",
         "--visitors", "300", "--port", str(port), "--workdir", str(workdir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        browser = Browser(f"http://127.0.0.1:{port}")
        _wait("/healthz", lambda: browser.get("/healthz")[0] == 200 if _listening(port) else False, 90, proc, output)
        admin = workdir / "admin.txt"
        _wait("admin.txt", admin.exists, 30, proc, output)
        username, password = admin.read_text().split()
        assert browser.login(username, password) == 200
        assert browser.change_password(password, "the head office's own passphrase") == 200

        def both_parks_moving() -> dict | None:
            status, body = browser.get("/api/v1/occupancy")
            parks = {p["site"]: p for p in json.loads(body).get("parks", [])} if status == 200 else {}
            return parks if len(parks) == 2 and all(p["entries_today"] > 0 for p in parks.values()) else None

        parks = _wait("entries at both parks", both_parks_moving, 75, proc, output)
        assert set(parks) == {"demo-park", "demo-north"}
        status, page = browser.get("/parks/")
        assert status == 200 and b"North Lake Park" in page and b"Demo Scenic Park" in page
        assert (workdir / "gates" / "demo-north").is_dir() and (workdir / "gates" / "demo-park").is_dir()
        assert any("All parks:" in line for line in output)
    finally:
        code = _stop(proc, reader, output)
    assert code == 0, "".join(output[-40:])
