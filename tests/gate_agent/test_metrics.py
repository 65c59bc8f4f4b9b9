"""A gate's /metrics, as the park's monitoring reads it: decisions, the outbox, its devices; off unless
configured, and never on a public interface unless the technician says so."""

from __future__ import annotations

import io
import urllib.request

import pytest

from gate_agent import config as gate_config
from gate_agent.agent import ConsoleDisplay, GateAgent
from protocol import topics
from tests.central.test_metrics import samples, value
from tests.gate_agent.conftest import file_config, gate_config_for, ticket


@pytest.fixture
def metered_gate(tmp_path, mosquitto, site, signer, probe, turnstile_factory):
    agents = []

    def make(gate: str = "g1"):
        sim = turnstile_factory()
        cfg = gate_config_for(signer, site, gate)
        probe.publish(topics.config(site, gate), cfg, retain=True)
        fc = file_config(tmp_path, mosquitto, site, gate, turnstile=sim)
        fc.metrics = gate_config.MetricsSection(listen="127.0.0.1:0")
        agent = GateAgent(fc, display=ConsoleDisplay(gate, stream=io.StringIO())).start()
        agents.append(agent)
        probe.wait(lambda: agent.active is not None and agent.active.cfg.version == cfg.version)
        return agent, sim

    yield make
    for agent in agents:
        agent.stop()
    probe.publish(topics.config(site, "g1"), b"", retain=True)


def _scrape(port: int) -> tuple[str, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return text, samples(text)


def test_a_gate_serves_its_decisions_outbox_and_devices_on_its_metrics_port(metered_gate, signer, site):
    agent, sim = metered_gate()
    assert agent.metrics_port
    code = ticket(signer, 4242)
    assert agent.present("qr", code).passed == 1
    assert agent.present("qr", "NOT-A-TICKET").granted is False
    text, found = _scrape(agent.metrics_port)
    assert value(found, "park_gate_decision_seconds_count", site=site, gate="g1") == 2
    assert value(found, "park_gate_decisions_total", decision="granted") == 1
    assert value(found, "park_gate_decisions_total", decision="refused") == 1
    assert ("park_gate_outbox_events", frozenset({("site", site), ("gate", "g1")})) in found
    assert value(found, "park_gate_device_up", device="turnstile") == 1
    assert value(found, "park_gate_broker_connected", gate="g1") == 1
    assert code not in text
    sim.stop()  # the controller goes away: the next poll marks it down
    agent.health.dirty.set()
    deadline = 50
    while deadline and value(_scrape(agent.metrics_port)[1], "park_gate_device_up", device="turnstile") != 0:
        agent.arm.poll()
        deadline -= 1
    assert value(_scrape(agent.metrics_port)[1], "park_gate_device_up", device="turnstile") == 0


def test_a_gate_without_a_metrics_section_serves_none(tmp_path, mosquitto, site):
    fc = file_config(tmp_path, mosquitto, site, "g9")
    assert fc.metrics.listen is None
    agent = GateAgent(fc, display=ConsoleDisplay("g9", stream=io.StringIO()))
    try:
        assert agent.metrics_port is None
    finally:
        agent.store.close()


@pytest.mark.parametrize("listen", ["0.0.0.0:9101", "52.80.1.7:9101", "[::]:9101"])
def test_metrics_on_a_public_interface_are_refused_unless_allowed(tmp_path, listen):
    data = {"gate": {"id": "g1", "site": "park"}, "store": {"path": str(tmp_path / "g.db")},
            "metrics": {"listen": listen}}
    with pytest.raises(gate_config.ConfigError, match="metrics.listen.*allow_public"):
        gate_config.from_dict(data, source="gate.toml")
    data["metrics"]["allow_public"] = True
    assert gate_config.from_dict(data, source="gate.toml").metrics.address()[1] == 9101


@pytest.mark.parametrize("listen", ["127.0.0.1:9101", "10.20.0.5:9101", "192.168.1.10:9101", "localhost:9101"])
def test_metrics_on_the_parks_own_network_are_accepted(tmp_path, listen):
    data = {"gate": {"id": "g1", "site": "park"}, "store": {"path": str(tmp_path / "g.db")},
            "metrics": {"listen": listen}}
    assert gate_config.from_dict(data, source="gate.toml").metrics.listen == listen


def test_a_metrics_address_that_is_not_one_is_refused_naming_the_key(tmp_path):
    data = {"gate": {"id": "g1", "site": "park"}, "store": {"path": str(tmp_path / "g.db")},
            "metrics": {"listen": "gate-box:http"}}
    with pytest.raises(gate_config.ConfigError, match="metrics.listen"):
        gate_config.from_dict(data, source="gate.toml")


def test_a_gate_whose_metrics_port_is_taken_still_admits_visitors(tmp_path, mosquitto, site, signer, probe,
                                                                  turnstile_factory, caplog):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    sim = turnstile_factory()
    cfg = gate_config_for(signer, site, "g1")
    probe.publish(topics.config(site, "g1"), cfg, retain=True)
    fc = file_config(tmp_path, mosquitto, site, "g1", turnstile=sim)
    fc.metrics = gate_config.MetricsSection(listen=f"127.0.0.1:{taken.getsockname()[1]}")
    agent = GateAgent(fc, display=ConsoleDisplay("g1", stream=io.StringIO())).start()
    try:
        probe.wait(lambda: agent.active is not None)
        assert agent.metrics_port is None
        assert "metrics not served" in caplog.text
        assert agent.present("qr", ticket(signer, 77)).passed == 1
    finally:
        agent.stop()
        taken.close()
        probe.publish(topics.config(site, "g1"), b"", retain=True)
