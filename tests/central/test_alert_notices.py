"""The central's own alerts reach a person without Prometheus: a stopped gate raises one notice on the
park's chat webhook and by e-mail, the notice is not repeated while the gate stays down, and a
recovery notice follows when it returns. Real parts: a gate agent, the ingest, Mosquitto, PostgreSQL,
an HTTP server standing in for the chat service and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import io
import json
import queue
import threading
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from central.bus.ingest_worker import IngestWorker
from central.config import AlertsConfig
from central.models import Alert, Gate, Site, Zone
from central.services.jobs import alert_round
from gate_agent.agent import ConsoleDisplay, GateAgent
from tests.central.conftest import add_gates
from tests.gate_agent.conftest import file_config
from tests.support.services import free_port
from tests.support.waiting import poll


class Webhook:
    """A chat service's incoming webhook: takes JSON posts; answers `status` (500 to play an outage)."""

    def __init__(self) -> None:
        self.posts: queue.Queue[dict] = queue.Queue()
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.status == 200:
                    hook.posts.put(json.loads(body))
                self.send_response(hook.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/park"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def all(self) -> list[dict]:
        out = []
        while not self.posts.empty():
            out.append(self.posts.get_nowait())
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """A real SMTP server (aiosmtpd) keeping what it is sent."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[tuple[list[str], str]] = []
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
                box.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.close()


def _english(ctx, site: str) -> None:
    with ctx.sessions.begin() as db:
        db.get(Site, site).language = "en"


def _gate(ctx, site: str, name: str) -> Gate:
    with ctx.sessions() as db:
        return db.scalar(select(Gate).where(Gate.site_id == site, Gate.name == name))


def test_a_stopped_gate_reaches_the_webhook_and_mail_once_and_its_return_sends_the_recovery(
        live_config, live_ctx, mosquitto, tmp_path, webhook, mailbox):
    site = live_config.site
    _english(live_ctx, site)
    add_gates(live_ctx, site, "north")
    alerts = AlertsConfig(webhooks=(webhook.url,), smtp_host="127.0.0.1", smtp_port=mailbox.port,
                          mail_from="central@park.example", mail_to=("duty@park.example",))
    worker = IngestWorker(live_config, live_ctx.sessions, worker_id=uuid.uuid4().hex[:6]).start()
    fc = file_config(tmp_path, mosquitto, site, "north")
    try:
        agent = GateAgent(fc, display=ConsoleDisplay("north", stream=io.StringIO())).start()
        poll(lambda: _gate(live_ctx, site, "north").online, 20, what="the gate's first heartbeat stored")
        assert alert_round(live_ctx.sessions, alerts) == []  # all well: nothing sent
        agent.stop()  # the technician stops the gate: its last status says offline
        poll(lambda: not _gate(live_ctx, site, "north").online, 20, what="the gate's offline status stored")

        sent = alert_round(live_ctx.sessions, alerts)
        assert len(sent) == 1 and not sent[0].recovery
        [post] = webhook.all()
        assert "Gate north of " + site + " is down" in post["text"]
        [(to, mail)] = mailbox.messages
        assert to == ["duty@park.example"] and "Gate north of" in mail and "is down" in mail
        assert alert_round(live_ctx.sessions, alerts) == []  # still down: not told twice
        assert webhook.all() == [] and len(mailbox.messages) == 1

        agent = GateAgent(fc, display=ConsoleDisplay("north", stream=io.StringIO())).start()
        poll(lambda: _gate(live_ctx, site, "north").online, 20, what="the gate back online")
        sent = alert_round(live_ctx.sessions, alerts)
        assert [n.recovery for n in sent] == [True]
        [post] = webhook.all()
        assert post["text"] == f"Recovered: gate north of {site} is back."
        assert len(mailbox.messages) == 2 and "Recovered: gate north" in mailbox.messages[1][1]
        with live_ctx.sessions() as db:
            row = db.scalar(select(Alert).where(Alert.site_id == site, Alert.kind == "gate_down"))
            assert row.resolved_by == "system" and row.notified_at and row.recovery_notified_at
        agent.stop()
    finally:
        worker.stop()


def test_a_notice_the_webhook_did_not_take_is_sent_again_at_the_next_check(live_ctx, live_config, webhook):
    site = live_config.site
    _english(live_ctx, site)
    with live_ctx.sessions.begin() as db:
        db.scalar(select(Zone).where(Zone.site_id == site, Zone.number == 2)).inside = 48  # of 50
    alerts = AlertsConfig(webhooks=(webhook.url,), webhook_style="wecom")
    webhook.status = 500
    assert alert_round(live_ctx.sessions, alerts) == []
    webhook.status = 200
    assert len(alert_round(live_ctx.sessions, alerts)) == 1
    [post] = webhook.all()
    assert post == {"msgtype": "text", "text": {"content": f"Zone 2 of {site} is at 96 % of its capacity."}}
    with live_ctx.sessions.begin() as db:
        db.scalar(select(Zone).where(Zone.site_id == site, Zone.number == 2)).inside = 30
    alert_round(live_ctx.sessions, alerts)
    assert webhook.all()[0]["text"]["content"].startswith("Recovered: zone 2")


def test_the_alerts_speak_the_parks_language(live_ctx, live_config, webhook):
    site = live_config.site  # a new site's language is Chinese
    with live_ctx.sessions.begin() as db:
        db.scalar(select(Zone).where(Zone.site_id == site, Zone.number == 2)).inside = 50
    alert_round(live_ctx.sessions, replace(AlertsConfig(), webhooks=(webhook.url,)))
    [post] = webhook.all()
    assert "区域 2" in post["text"] and "承载量" in post["text"]


def test_passages_stored_seconds_after_they_happen_raise_the_ingest_lag_alert(live_config, live_ctx, mosquitto,
                                                                              webhook):
    from datetime import timedelta

    from central.models import utcnow
    from tests.central.test_metrics import _event, _publish

    site = live_config.site
    _english(live_ctx, site)
    add_gates(live_ctx, site, "south")
    worker = IngestWorker(live_config, live_ctx.sessions, worker_id=uuid.uuid4().hex[:6]).start()
    try:
        # As a backed-up ingest stores them: 9 s after the gate's clock; an offline gate's replay is not lag.
        late = [_event(site, "south", 1, passed=True, kind="none", mode="free", at=utcnow() - timedelta(seconds=9))
                for _ in range(5)]
        offline = _event(site, "south", 1, passed=True, kind="none", mode="free", offline=True,
                         at=utcnow() - timedelta(minutes=5))
        _publish(mosquitto, site, "south", [*late, offline])
        assert worker.wait_idle(timeout=30)
    finally:
        worker.stop()
    alert_round(live_ctx.sessions, AlertsConfig(webhooks=(webhook.url,)))
    [post] = webhook.all()
    assert post["text"].startswith(f"The central stores passages of {site} 9 s after they happen")
