"""The central's programs as an operator runs them: a killed ingest worker loses nothing, a
provisioned gate gets onto a broker that enforces passwords and ACLs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from central.models import PassageEventRecord, Zone
from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import PassageEvent, encode
from tests.central.conftest import add_gates, make_config, prepare

pytestmark = pytest.mark.mosquitto
ROOT = Path(__file__).resolve().parents[2]


def _write_config(config, path: Path) -> Path:
    path.write_text(f"""
database_url = "{config.database_url}"
site = "{config.site}"
[mqtt]
host = "{config.mqtt.host}"
port = {config.mqtt.port}
client_id = "{config.mqtt.client_id}"
{f'username = "{config.mqtt.username}"' if config.mqtt.username else ""}
{f'password = "{config.mqtt.password}"' if config.mqtt.password else ""}
[keys]
signing_key_file = "{config.keys.signing_key_file}"
signing_key_id = {config.keys.signing_key_id}
[ingest]
batch_size = 200
batch_ms = 20
group = "{config.ingest.group}"
""")
    return path


def _cli(config_path: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "central.cli", "--config", str(config_path), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, **kw)


def _start_worker(config_path: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "central.cli", "--config", str(config_path), "ingest",
                             "--worker-id", "w1"], cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _count(ctx) -> int:
    with ctx.sessions() as db:
        return db.scalar(select(func.count()).select_from(PassageEventRecord))


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_killed_ingest_worker_loses_nothing_when_it_comes_back(db_url, tmp_path, mosquitto):
    config = make_config(db_url, tmp_path, mosquitto)
    ctx = prepare(config, mqtt_on=False)
    add_gates(ctx, config.site, "g1")
    config_path = _write_config(config, tmp_path / "central.toml")
    log = tmp_path / "worker.log"
    worker = _start_worker(config_path, log)
    site = config.site
    gate = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"g-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    gate.max_inflight_messages_set(200)
    gate.connect(mosquitto.host, mosquitto.port)
    gate.loop_start()

    def send(n: int) -> None:
        infos = [gate.publish(topics.event(site, "g1"), encode(PassageEvent(
            id=new_event_id(), site=site, gate="g1", zone=1, at=datetime.now(UTC), direction="in",
            credential_kind="none", passed=True, mode="free")), qos=1) for _ in range(n)]
        for info in infos:
            info.wait_for_publish(30)

    try:
        # The worker is ready once a first event is stored.
        deadline = time.monotonic() + 20
        while _count(ctx) == 0 and time.monotonic() < deadline:
            send(1)
            time.sleep(0.3)
        sent = _count(ctx)
        assert sent > 0, log.read_text()
        _wait(lambda: _count(ctx) == sent, 10, "probe events")
        send(1500)
        sent += 1500
        _wait(lambda: _count(ctx) >= sent // 3, 30, "some events stored")
        worker.send_signal(signal.SIGKILL)  # mid-stream: some messages are stored but not acknowledged
        worker.wait(10)
        stored_at_kill = _count(ctx)
        send(1000)  # while the worker is down: the broker keeps them in its persistent session
        sent += 1000
        worker = _start_worker(config_path, log)
        _wait(lambda: _count(ctx) == sent, 60, "every event after the restart")
        time.sleep(0.5)  # nothing more may arrive: no duplicates counted
        assert _count(ctx) == sent
        with ctx.sessions() as db:
            zone = db.scalar(select(Zone).where(Zone.site_id == site, Zone.number == 1))
            assert zone.entries_today == sent == zone.inside
        assert stored_at_kill < sent
    finally:
        gate.disconnect()
        gate.loop_stop()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        ctx.close()


def test_a_provisioned_gate_may_publish_only_under_its_own_topic(db_url, tmp_path, mosquitto_factory):
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    config = make_config(db_url, tmp_path)
    config = config.with_overrides(mqtt=config.mqtt.__class__(host="127.0.0.1", port=1, username="central",
                                                              password="central-secret", client_id="c1"))
    ctx = prepare(config, mqtt_on=False)
    ctx.close()
    config_path = _write_config(config, tmp_path / "central.toml")
    out = _cli(config_path, "provision-gate", config.site, "south1", "--zone", "1", "--output",
               str(tmp_path / "gate.toml"))
    assert out.returncode == 0, out.stderr
    assert oct((tmp_path / "gate.toml").stat().st_mode & 0o777) == "0o600"
    gate_cfg = tomllib.loads((tmp_path / "gate.toml").read_text())
    assert gate_cfg["gate"] == {"id": "south1", "site": config.site}
    out = _cli(config_path, "acl", "--passwords", str(passwd), "--acl", str(acl))
    assert out.returncode == 0, out.stderr
    # As root, Mosquitto would drop to the mosquitto user, who may not read files under pytest's tmp.
    run_as = "user root\n" if os.geteuid() == 0 else ""
    broker = mosquitto_factory(extra_config=f"{run_as}allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n")

    def connect(username: str, password: str) -> tuple[mqtt.Client, int]:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"x{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
        client.username_pw_set(username, password)
        result = {}
        client.on_connect = lambda _c, _u, _f, rc, _p: result.setdefault("rc", rc)
        client.connect(broker.host, broker.port)
        client.loop_start()
        _wait(lambda: "rc" in result, 10, "CONNACK")
        return client, result["rc"]

    user, password = gate_cfg["broker"]["username"], gate_cfg["broker"]["password"]
    _bad, rc = connect(user, "wrong")
    assert rc.is_failure
    _bad.loop_stop()
    central, rc = connect("central", "central-secret")
    assert not rc.is_failure
    received = []
    central.on_message = lambda _c, _u, msg: received.append(msg.topic)
    central.subscribe(topics.all_of_kind("#"), 1)
    time.sleep(0.3)
    gate, rc = connect(user, password)
    assert not rc.is_failure
    gate.publish(topics.event(config.site, "south1"), b"own", qos=1).wait_for_publish(10)
    gate.publish(topics.event(config.site, "other"), b"forged", qos=1).wait_for_publish(10)
    _wait(lambda: topics.event(config.site, "south1") in received, 10, "the gate's own event")
    time.sleep(0.3)
    assert received == [topics.event(config.site, "south1")]
    for client in (gate, central):
        client.disconnect()
        client.loop_stop()
