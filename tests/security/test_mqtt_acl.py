"""Mosquitto with the passwords and ACL `park-central acl` writes: a gate's credentials reach only its own topics.

`tests/central/test_worker_processes.py` shows a forged event on another gate's topic is not delivered
(MQTT 3 silently drops it). Here, over MQTT 5, the broker says so: PUBACK 0x87 Not authorized for
another gate's event, nothing of another gate's config or commands delivered (Mosquitto's acl_file
grants the SUBSCRIBE and filters delivery), CONNACK failure for a wrong password or none.
"""

from __future__ import annotations

import os
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central.config import MqttConfig
from central.services.gates import register_gate
from central.services.mosquitto import write_mosquitto_files
from protocol import topics
from tests.central.conftest import make_config, prepare

pytestmark = pytest.mark.mosquitto
NOT_AUTHORIZED = 0x87


class Client:
    def __init__(self, broker, username: str, password: str) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        self.c.username_pw_set(username, password)
        self.connack = None
        self.suback: dict[int, list] = {}
        self.puback: dict[int, int] = {}
        self.received: list[str] = []
        self._event = threading.Condition()
        self.c.on_connect = lambda _c, _u, _f, rc, _p: self._set(lambda: setattr(self, "connack", rc))
        self.c.on_subscribe = lambda _c, _u, mid, codes, _p: self._set(lambda: self.suback.__setitem__(mid, codes))
        self.c.on_publish = lambda _c, _u, mid, rc, _p: self._set(lambda: self.puback.__setitem__(mid, rc.value))
        self.c.on_message = lambda _c, _u, msg: self._set(lambda: self.received.append(msg.topic))
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        self.wait(lambda: self.connack is not None)

    def _set(self, change) -> None:
        with self._event:
            change()
            self._event.notify_all()

    def wait(self, predicate, timeout: float = 10):
        with self._event:
            assert self._event.wait_for(predicate, timeout), "no answer from the broker"

    def publish(self, topic: str) -> int:
        info = self.c.publish(topic, b"{}", qos=1)
        self.wait(lambda: info.mid in self.puback)
        return self.puback[info.mid]

    def subscribe(self, topic: str) -> int:
        _rc, mid = self.c.subscribe(topic, qos=1)
        self.wait(lambda: mid in self.suback)
        return self.suback[mid][0].value

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_a_gate_may_publish_and_read_only_its_own_topics_and_a_wrong_password_is_refused(db_url, tmp_path,
                                                                                         mosquitto_factory):
    config = make_config(db_url, tmp_path)
    config = config.with_overrides(mqtt=MqttConfig(host="127.0.0.1", port=1, username="central",
                                                   password="central-secret", client_id="c1"))
    ctx = prepare(config, mqtt_on=False)
    site = config.site
    with ctx.sessions.begin() as db:
        _a, cred_a = register_gate(db, site, "east1", 1)
        _b, cred_b = register_gate(db, site, "east2", 1)
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    with ctx.sessions() as db:
        assert write_mosquitto_files(db, config, passwd, acl) == 2
    ctx.close()
    assert cred_a.password not in passwd.read_text()  # hashes only
    run_as = "user root\n" if os.geteuid() == 0 else ""
    broker = mosquitto_factory(extra_config=f"{run_as}allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n")
    clients: list[Client] = []
    try:
        central = Client(broker, "central", "central-secret")
        clients.append(central)
        assert central.subscribe(topics.all_events(site)) == 1
        gate_a = Client(broker, cred_a.username, cred_a.password)
        clients.append(gate_a)
        assert not gate_a.connack.is_failure

        assert gate_a.publish(topics.event(site, "east1")) == 0  # its own event: accepted ...
        central.wait(lambda: topics.event(site, "east1") in central.received)  # ... and delivered
        assert gate_a.publish(topics.status(site, "east1")) < 0x80  # 0x10: accepted, nobody subscribed
        assert gate_a.publish(topics.counts(site, "east1")) < 0x80  # its own counts of the day
        for foreign in (topics.event(site, "east2"), topics.status(site, "east2"), topics.config(site, "east2"),
                        topics.counts(site, "east2"), topics.counts("othersite", "east1"),
                        topics.deltas(site), topics.occupancy(site), topics.event("othersite", "east1")):
            assert gate_a.publish(foreign) == NOT_AUTHORIZED, foreign
        assert gate_a.subscribe(topics.config(site, "east1")) == 1  # its own config (QoS 1 granted)
        assert gate_a.subscribe(topics.deltas(site)) == 1  # the site's shared topics
        # Mosquitto's acl_file may grant the SUBSCRIBE itself; what matters is that nothing is delivered.
        for foreign in (topics.config(site, "east2"), topics.command(site, "east2"), topics.sync(site, "east2"),
                        "gates/v1/#", topics.all_events("othersite")):
            gate_a.subscribe(foreign)
        for secret in (topics.config(site, "east2"), topics.command(site, "east2"), topics.sync(site, "east2"),
                       topics.event("othersite", "x1"), topics.config("othersite", "east1")):
            central.c.publish(secret, b"secret", qos=1).wait_for_publish(5)
        central.c.publish(topics.config(site, "east1"), b"mine", qos=1).wait_for_publish(5)
        gate_a.wait(lambda: topics.config(site, "east1") in gate_a.received)
        assert sorted(set(gate_a.received)) == [topics.config(site, "east1")], gate_a.received
        central.c.publish(topics.event(site, "east2"), b"x", qos=1)  # settle: nothing forged arrives behind it
        central.wait(lambda: central.received.count(topics.event(site, "east2")) == 1)
        assert central.received.count(topics.event(site, "east1")) == 1

        wrong = Client(broker, cred_a.username, cred_b.password)
        clients.append(wrong)
        assert wrong.connack.is_failure
        nobody = Client(broker, "", "")
        clients.append(nobody)
        assert nobody.connack.is_failure
    finally:
        for c in clients:
            c.close()


def test_gates_of_a_site_reach_each_other_with_their_fire_alarm_and_no_further(db_url, tmp_path, mosquitto_factory):
    """The fire alarm goes gate to gate without the central: a gate publishes its own `fire` topic and reads
    the site's other gates' ones; it cannot raise a fire in another gate's name, nor hear another site's."""
    config = make_config(db_url, tmp_path)
    config = config.with_overrides(mqtt=MqttConfig(host="127.0.0.1", port=1, username="central",
                                                   password="central-secret", client_id="c1"))
    ctx = prepare(config, mqtt_on=False)
    site = config.site
    with ctx.sessions.begin() as db:
        _a, cred_a = register_gate(db, site, "east1", 1)
        _b, cred_b = register_gate(db, site, "east2", 1)
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    with ctx.sessions() as db:
        write_mosquitto_files(db, config, passwd, acl)
    ctx.close()
    run_as = "user root\n" if os.geteuid() == 0 else ""
    broker = mosquitto_factory(extra_config=f"{run_as}allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n")
    clients: list[Client] = []
    try:
        gate_a = Client(broker, cred_a.username, cred_a.password)
        gate_b = Client(broker, cred_b.username, cred_b.password)
        central = Client(broker, "central", "central-secret")
        clients += [gate_a, gate_b, central]
        gate_b.subscribe(topics.all_of_kind("fire", site))
        gate_b.subscribe(topics.all_of_kind("fire", "othersite"))
        assert gate_a.publish(topics.fire(site, "east2")) == NOT_AUTHORIZED  # not in another gate's name
        central.c.publish(topics.fire("othersite", "x1"), b"{}", qos=1).wait_for_publish(5)
        assert gate_a.publish(topics.fire(site, "east1")) == 0
        gate_b.wait(lambda: topics.fire(site, "east1") in gate_b.received)
        assert gate_b.received == [topics.fire(site, "east1")]
    finally:
        for c in clients:
            c.close()
