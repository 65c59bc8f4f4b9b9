"""The central's web behind a TLS-terminating proxy: `park-central serve` in its own process, HTTPS in front.

Waitress speaks plain HTTP; HTTPS ends at a proxy (nginx, Caddy; here a small TLS terminator of the
test's own on a certificate of the test CA). With `[web] secure_cookies = true` the session cookie is
`Secure; HttpOnly; SameSite=Lax`, so a browser never sends it over plain HTTP, and every answer carries
`Strict-Transport-Security`, so the browser does not try plain HTTP again.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

from central.services.users import create_user
from tests.central.conftest import make_config, prepare
from tests.reliability.conftest import ROOT, _env, stop_process
from tests.security.pki import Pair, TestCA
from tests.support.proxy import pump
from tests.support.services import free_port, wait_port

PASSWORD = "pw-staff-Secret9"


class TlsTerminator:
    """Accept TLS on a port, pass the plain bytes to the backend: what nginx's `proxy_pass` does for us."""

    def __init__(self, server: Pair, backend: tuple[str, int]) -> None:
        self.backend = backend
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.load_cert_chain(server.cert, server.key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        up = socket.create_connection(self.backend)
        threading.Thread(target=self._pipe, args=(up, tls), daemon=True).start()
        self._pipe(tls, up)

    _pipe = staticmethod(pump)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def _write_config(path: Path, config, web_port: int) -> Path:
    c = config
    path.write_text(
        f'database_url = "{c.database_url}"\nsite = "{c.site}"\n'
        f'[mqtt]\nhost = "{c.mqtt.host}"\nport = {c.mqtt.port}\nclient_id = "{c.mqtt.client_id}"\n'
        f'[keys]\nsigning_key_file = "{c.keys.signing_key_file}"\nsigning_key_id = {c.keys.signing_key_id}\n'
        f'template_key = "{c.keys.template_key}"\n'
        f'[web]\nsecret_key = "test-secret-{web_port}"\nhost = "127.0.0.1"\nport = {web_port}\n'
        f'secure_cookies = true\n')
    return path


def _cookie(set_cookie: str) -> tuple[str, set[str]]:
    """('session=...', {'secure', 'httponly', 'samesite=lax', ...}) from one Set-Cookie header."""
    first, *attrs = [p.strip() for p in set_cookie.split(";")]
    return first, {a.lower() for a in attrs}


@pytest.mark.mosquitto
def test_behind_an_https_proxy_the_session_cookie_is_secure_and_hsts_is_sent(db_url, tmp_path, mosquitto):
    config = make_config(db_url, tmp_path, mosquitto)
    ctx = prepare(config, mqtt_on=False)
    with ctx.sessions.begin() as db:
        create_user(db, "desk1", "staff", PASSWORD, sites=[config.site])
    ctx.close()
    web_port = free_port()
    conf = _write_config(tmp_path / "central.toml", config, web_port)
    log = (tmp_path / "serve.log").open("ab")
    serve = subprocess.Popen([sys.executable, "-m", "central.cli", "--config", str(conf), "serve"], cwd=ROOT,
                             env=_env(), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    ca = TestCA(tmp_path / "pki")
    proxy = None
    try:
        assert wait_port("127.0.0.1", web_port, 30), (tmp_path / "serve.log").read_text()[-2000:]
        proxy = TlsTerminator(ca.server(), ("127.0.0.1", web_port))
        tls = ssl.create_default_context(cafile=str(ca.cert))

        def https(method: str, path: str, body: str | None = None, headers: dict | None = None):
            conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=tls, timeout=10)
            try:
                conn.request(method, path, body=body, headers=headers or {})
                res = conn.getresponse()
                return res, res.read().decode()
            finally:
                conn.close()

        res, page = https("GET", "/login")
        assert res.status == 200
        assert res.getheader("Strict-Transport-Security") == "max-age=31536000"
        first, attrs = _cookie(res.getheader("Set-Cookie"))
        assert first.startswith("session=") and {"secure", "httponly", "samesite=lax"} <= attrs, attrs
        token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

        form = urllib.parse.urlencode({"username": "desk1", "password": PASSWORD, "csrf_token": token})
        res, _ = https("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded",
                                                "Cookie": first, "Referer": f"https://127.0.0.1:{proxy.port}/login"})
        assert res.status == 302, "the login over HTTPS did not go through"
        logged_in, attrs = _cookie(res.getheader("Set-Cookie"))
        assert {"secure", "httponly", "samesite=lax"} <= attrs, attrs
        assert res.getheader("Strict-Transport-Security") == "max-age=31536000"

        res, _ = https("GET", "/desk/", headers={"Cookie": logged_in})
        assert res.status == 200  # the secure session works through the proxy
        res, _ = https("GET", "/api/v1/occupancy", headers={"Cookie": logged_in})
        assert res.status == 200 and res.getheader("Strict-Transport-Security")  # JSON answers too
    finally:
        if proxy is not None:
            proxy.close()
        stop_process(serve)


def test_over_plain_http_the_cookie_is_not_marked_secure_and_no_hsts_is_sent(web_ctx):
    """The default (secure_cookies = false, e.g. the demo on localhost): no HSTS pinning a host to HTTPS."""
    from central.app import create_app

    app = create_app(web_ctx.config, context=web_ctx)
    res = app.test_client().get("/login")
    assert "Strict-Transport-Security" not in res.headers
    _first, attrs = _cookie(res.headers["Set-Cookie"])
    assert "secure" not in attrs and {"httponly", "samesite=lax"} <= attrs



def test_behind_a_trusted_proxy_the_app_knows_it_is_served_over_https(web_ctx):
    """With `web.proxy_hops = 1` the proxy's X-Forwarded-Proto/-For count (the scheme for redirects and
    CSRF's Referer check, the visitor's address); with the default 0 such headers are ignored."""
    from dataclasses import replace

    from flask import request

    from central.app import create_app

    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    for hops, expected in ((1, ("https", "203.0.113.7")), (0, ("http", "127.0.0.1"))):
        app = create_app(replace(web_ctx.config, web=replace(web_ctx.config.web, proxy_hops=hops)), context=web_ctx)
        seen: list[tuple[str, str]] = []
        app.add_url_rule("/_probe", "probe", lambda seen=seen: seen.append((request.scheme, request.remote_addr)) or "")
        app.test_client().get("/_probe", headers=forwarded, environ_base={"REMOTE_ADDR": "127.0.0.1"})
        assert seen == [expected]
