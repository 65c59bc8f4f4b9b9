"""Live streams cannot starve the web threads: per-session and global caps on /live/stream, under a
real waitress server built like `park-central serve`, with a real broker behind the live hub."""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import replace
from urllib.parse import urlencode

import pytest

from central.cli import make_server
from central.config import ConfigError, WebConfig, load_config
from central.services.users import create_token
from central.web.live import stream_cap
from tests.central.conftest import make_config, prepare
from tests.support.waiting import poll
from tests.web.conftest import password_for, seed
from tests.web.test_browser import chromium, page  # noqa: F401 - the browser fixtures

pytestmark = pytest.mark.mosquitto
TIMEOUT = 20.0  # generous: the point is that they answer at all
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


class Web:
    """A real server in this process: `make_server` (what `park-central serve` runs) on a free port."""

    def __init__(self, ctx) -> None:
        import threading

        self.server = make_server(ctx.config, ctx)
        self.app = self.server.flask_app
        self.app.config["LIVE_KEEPALIVE_S"] = 0.5  # a closed stream is noticed at the next keepalive
        self.port = self.server.effective_port
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)

    def request(self, method: str, path: str, *, headers: dict | None = None, body: str | None = None):
        conn = self.connection()
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        data = res.read()
        conn.close()
        return res, data

    def login(self, role: str) -> str:
        """Log in as a browser would; returns the session cookie."""
        res, data = self.request("GET", "/login")
        cookie = res.getheader("Set-Cookie").split(";")[0]
        token = _CSRF.search(data.decode()).group(1)
        form = urlencode({"username": role, "password": password_for(role), "csrf_token": token})
        res, _ = self.request("POST", "/login", body=form, headers={
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        assert res.status == 302, res.status
        return res.getheader("Set-Cookie").split(";")[0]

    def open_stream(self, cookie: str):
        """GET /live/stream and leave it open: (status, connection, response)."""
        conn = self.connection()
        conn.request("GET", "/live/stream", headers={"Cookie": cookie, "Accept": "text/event-stream"})
        res = conn.getresponse()
        if res.status == 200:
            assert res.readline().startswith(b"retry:")  # the stream is running and holds its thread
        return res.status, conn, res

    def close(self) -> None:
        from waitress import wasyncore

        # Close the sockets from the server's own loop (closing them under its select() is a race);
        # with its map empty, the loop ends.
        self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.server._map))
        self.thread.join(10)
        self.server.task_dispatcher.shutdown()
        hub = self.app.extensions.get("central_web_hub")
        if hub is not None:
            hub.stop()


@pytest.fixture
def web(db_url, tmp_path, mosquitto):
    config = make_config(db_url, tmp_path, mosquitto)
    config = replace(config, web=WebConfig(host="127.0.0.1", port=0, threads=16))
    ctx = prepare(config, mqtt_on=True)
    seed(ctx)
    server = Web(ctx)
    assert server.app.extensions["central_web_hub"].wait_connected(10)
    yield server
    server.close()
    ctx.close()


def test_many_open_dashboards_leave_healthz_pages_and_the_api_answering(web):
    assert web.server.adj.threads == 16  # [web] threads reached waitress
    with web.app.extensions["central"].sessions.begin() as db:
        _token, api_token = create_token(db, "box-office", "staff")
    held = []
    try:
        greedy = web.login("manager")
        answers = []
        for _ in range(6):  # one manager opening tab after tab
            status, conn, res = web.open_stream(greedy)
            answers.append((status, res))
            held.append((conn, res))  # the response holds the socket: keep it, or the stream closes
        assert [s for s, _ in answers] == [200, 200, 200, 429, 429, 429]
        refused = answers[3][1]
        assert int(refused.getheader("Retry-After")) > 0
        assert "already has 3 live dashboards open" in json.loads(refused.read())["detail"]

        statuses = []
        for _ in range(4):  # other managers' sessions, three tabs each
            cookie = web.login("manager")
            for _ in range(3):
                status, conn, res = web.open_stream(cookie)
                statuses.append(status)
                held.append((conn, res))
                if status == 503:
                    last_full = res
        assert statuses.count(200) == stream_cap(16) - 3 == 5  # 8 streams in all
        assert statuses.count(503) == 7
        assert int(last_full.getheader("Retry-After")) > 0
        assert "live streams of this server are in use" in json.loads(last_full.read())["detail"]

        res, data = web.request("GET", "/healthz")
        assert res.status == 200 and json.loads(data)["database"] is True
        res, data = web.request("GET", "/api/v1/occupancy", headers={"Authorization": f"Bearer {api_token}"})
        assert res.status == 200 and "zones" in json.loads(data)
        res, data = web.request("GET", "/dashboard/", headers={"Cookie": greedy})
        assert res.status == 200 and b'id="dashboard"' in data
    finally:
        for conn, res in held:
            res.close()
            conn.close()
    # closed streams give their slots back: a new dashboard is live again
    cookie = web.login("manager")

    def live_again():
        status, conn, res = web.open_stream(cookie)
        res.close()
        conn.close()
        return status == 200

    poll(live_again, timeout=15, every=0.2, what="a stream slot freed by the closed streams")


@pytest.mark.parametrize(("threads", "cap"), [(4, 0), (8, 0), (12, 4), (16, 8), (32, 24), (100, 75)])
def test_streams_never_take_the_threads_pages_need(threads, cap):
    assert stream_cap(threads) == cap
    assert threads - cap >= 8 or cap == 0


def test_web_threads_is_configurable_and_checked(tmp_path):
    path = tmp_path / "central.toml"
    assert load_config(None, env={}).web.threads == 32
    path.write_text("[web]\nthreads = 64\n")
    assert load_config(path, env={}).web.threads == 64
    for bad in ("2", "100000", '"many"'):
        path.write_text(f"[web]\nthreads = {bad}\n")
        with pytest.raises(ConfigError, match="web.threads"):
            load_config(path, env={})


@pytest.mark.browser
def test_a_dashboard_refused_a_stream_says_it_is_not_live_and_still_shows_the_numbers(web, request):
    from playwright.sync_api import expect

    tab = request.getfixturevalue("page")  # headless Chromium (tests.web.test_browser's fixtures)

    web.app.config["LIVE_STREAMS_MAX"] = 0  # every stream refused (503), as when all are in use
    url = f"http://127.0.0.1:{web.port}"
    tab.goto(f"{url}/login")
    tab.fill("input[name=username]", "manager")
    tab.fill("input[name=password]", password_for("manager"))
    tab.click("main button[type=submit]")
    tab.wait_for_url(f"{url}/dashboard/")
    expect(tab.locator("#live-state")).to_contain_text("not live")
    tab.wait_for_selector("#dashboard[data-ready='1']")  # filled from /live/snapshot instead
    expect(tab.locator("#dashboard")).to_have_attribute("data-polls", re.compile(r"[1-9]"))
    expect(tab.locator("#zone-1")).to_have_attribute("data-inside", "0")
