"""Fixtures for the central: a migrated store (SQLite or PostgreSQL), a context, an app, a client
with an admin token, and helpers to listen on the test broker."""

from __future__ import annotations

import queue
import uuid
from dataclasses import replace

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central.config import CentralConfig, IngestConfig, KeysConfig, MqttConfig
from central.context import CentralContext
from central.migrate import upgrade
from central.services.gates import ensure_site, ensure_zone, register_gate
from central.services.users import create_token


def make_config(db_url: str, tmp_path, broker=None) -> CentralConfig:
    from biometrics.protect import generate_key

    site = "park" + uuid.uuid4().hex[:8]
    mqtt_cfg = MqttConfig(host=broker.host, port=broker.port, client_id=f"c{uuid.uuid4().hex[:8]}") if broker \
        else MqttConfig(host="127.0.0.1", port=1, client_id="nobroker")
    return CentralConfig(
        database_url=db_url, site=site, mqtt=mqtt_cfg,
        keys=KeysConfig(signing_key_file=str(tmp_path / "signing.key"), signing_key_id=3, template_key=generate_key()),
        ingest=IngestConfig(batch_size=500, batch_ms=30, group=f"g{uuid.uuid4().hex[:8]}"),
    )


def prepare(config: CentralConfig, mqtt_on: bool) -> CentralContext:
    upgrade(config.database_url)
    ctx = CentralContext.create(config, mqtt=mqtt_on)
    with ctx.sessions.begin() as db:
        ensure_site(db, config.site, name="Test Park", timezone="Asia/Shanghai")
        ensure_zone(db, config.site, 1, name="Main", capacity=100_000)
        ensure_zone(db, config.site, 2, name="Cave", capacity=50)
    return ctx


def add_gates(ctx: CentralContext, site: str, *names: str, zone: int = 1, direction: str = "both") -> None:
    """Register gates the test's events come from: the ingest counts only what registered gates report."""
    with ctx.sessions.begin() as db:
        for name in names:
            register_gate(db, site, name, zone, direction=direction)


@pytest.fixture
def config(db_url, tmp_path) -> CentralConfig:
    return make_config(db_url, tmp_path)


@pytest.fixture
def ctx(config):
    context = prepare(config, mqtt_on=False)
    yield context
    context.close()


@pytest.fixture
def live_config(db_url, tmp_path, mosquitto) -> CentralConfig:
    return make_config(db_url, tmp_path, mosquitto)


@pytest.fixture
def live_ctx(live_config):
    context = prepare(live_config, mqtt_on=True)
    assert context.link.wait_connected(10)
    yield context
    context.close()


def _client_for(app_ctx):
    from central.app import create_app

    app = create_app(app_ctx.config, context=app_ctx, web=False)
    with app_ctx.sessions.begin() as db:
        _token, plaintext = create_token(db, "tests", "admin")
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {plaintext}"
    return client


@pytest.fixture
def client(ctx):
    return _client_for(ctx)


@pytest.fixture
def live_client(live_ctx):
    return _client_for(live_ctx)


class Listener:
    """A plain MQTT client on the test broker that collects what arrives on some topics."""

    def __init__(self, broker, *topic_filters: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"l{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        subscribed = queue.Queue()
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *_a: subscribed.put(True)
        self.client.on_connect = lambda c, *_a: [c.subscribe(t, 1) for t in topic_filters]
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        for _ in topic_filters:
            subscribed.get(timeout=10)

    def get(self, timeout: float = 10.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def listen(mosquitto):
    made: list[Listener] = []

    def make(*topic_filters: str) -> Listener:
        made.append(Listener(mosquitto, *topic_filters))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


__all__ = ["add_gates", "make_config", "prepare", "replace"]
