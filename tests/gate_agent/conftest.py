"""Fixtures for gate agent scenarios: a signer, a central stand-in on MQTT, turnstile simulators, gates."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.sim.turnstile_sim import TurnstileSimulator
from gate_agent import config as gate_config
from gate_agent.agent import GateAgent
from gate_agent.display import ConsoleDisplay
from protocol import messages as m
from protocol import topics
from protocol.ticket_code import TicketClaims, TicketSigner

SEED = bytes(range(32))
SALT = b"site-salt-0123456789"


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="session")
def signer() -> TicketSigner:
    return TicketSigner.from_seed(1, SEED)


def ticket(signer: TicketSigner, ticket_id: int, *, ticket_type: int = 1, headcount: int = 1,
           zones: frozenset[int] = frozenset(), valid_from: datetime | None = None,
           valid_to: datetime | None = None) -> str:
    start = valid_from or now() - timedelta(hours=1)
    return signer.sign(TicketClaims(ticket_id=ticket_id, ticket_type=ticket_type, headcount=headcount, zones=zones,
                                    valid_from=start, valid_to=valid_to or now() + timedelta(days=1)))


def booking_today(ticket_id: int, id_number: str, *, ticket_type: int = 1) -> m.TicketChange:
    """A real-name booking for a slot under way now, as the central sends it: the ID number salted."""
    from protocol.ids import id_number_digest

    return m.TicketChange(
        ticket_id=ticket_id, ticket_type=ticket_type, valid_from=now() - timedelta(hours=1),
        valid_to=now() + timedelta(hours=8), slot_start=now() - timedelta(minutes=10),
        slot_end=now() + timedelta(hours=1), id_digest=id_number_digest(SALT, id_number))


RULES = [
    m.TicketTypeRules(id=1, name="day ticket", entries=1),
    m.TicketTypeRules(id=2, name="day ticket with re-entry", entries=3, anti_passback=True),
    m.TicketTypeRules(id=3, name="group", entries=1),
]


def gate_config_for(signer: TicketSigner, site: str, gate: str, *, version: int = 1, **overrides) -> m.GateConfig:
    values = dict(
        version=version, site=site, gate=gate, zone=1, timezone="Asia/Shanghai", language="en",
        pass_biometric="none", ticket_types=RULES,
        keys=[m.PublicKeyInfo(key_id=signer.key_id, public=signer.public_key_bytes())], id_salt=SALT,
        hardware=m.HardwareParams(controller_profile="tripod-coil", passage_timeout_s=1.0, repeat_scan_s=1.0),
    )
    values.update(overrides)
    return m.GateConfig(**values)


class Probe:
    """The central's side of the broker for a test: publishes, and records what the gates send."""

    def __init__(self, host: str, port: int, site: str, *, client_id: str | None = None) -> None:
        self.site = site
        self.seq = 0  # the central's delta sequence
        self.snapshot: list = []  # what a snapshot holds; the probe answers every sync request with it
        self.sync_requests: list[m.SnapshotRequest] = []
        self.acknowledge = True  # answer every event with an EventAck, as the central does
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{uuid.uuid4().hex}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = self._on_connect
        self.client.reconnect_delay_set(0.1, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(host, port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self._subscribed.wait(5), "probe could not subscribe"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(f"{topics.ROOT}/{self.site}/#", qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic.endswith("/sync/request"):
            request = m.decode(m.SnapshotRequest, msg.payload)
            self.sync_requests.append(request)
            chunk = m.SnapshotChunk(site=self.site, gate=request.gate, snapshot_id=uuid.uuid4().hex, index=0,
                                    last=True, seq=self.seq, changes=list(self.snapshot))
            client.publish(topics.sync(self.site, request.gate), m.encode(chunk), qos=1)
        if msg.topic.endswith("/event") and self.acknowledge:
            # As the central does once it has stored an event: the gate may then forget it.
            event = m.decode(m.PassageEvent, msg.payload)
            client.publish(topics.event_ack(self.site, event.gate),
                           m.encode(m.EventAck(gate=event.gate, ids=[event.id])), qos=1)
        with self._cond:
            self.messages.append((msg.topic, msg.payload))
            self._cond.notify_all()

    def publish(self, topic: str, message, *, retain: bool = False) -> None:
        payload = message if isinstance(message, bytes) else m.encode(message)
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def delta(self, *changes) -> m.Delta:
        """Publish the next delta, as the central does."""
        self.seq += 1
        self.snapshot.extend(changes)
        delta = m.Delta(site=self.site, seq=self.seq, at=now(), changes=list(changes))
        self.publish(topics.deltas(self.site), delta)
        return delta

    def of(self, suffix: str, kind: type | None = None, gate: str | None = None) -> list:
        with self._cond:
            found = [(t, p) for t, p in self.messages
                     if t.endswith("/" + suffix) and (gate is None or f"/gate/{gate}/" in t)]
        return [m.decode(kind, p) for _, p in found] if kind else found

    def events(self, gate: str | None = None) -> list[m.PassageEvent]:
        return self.of("event", m.PassageEvent, gate)

    def wait(self, predicate: Callable[[], object], timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("timed out waiting for the broker")
                self._cond.wait(min(remaining, 0.2))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def site() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


@pytest.fixture
def probe(mosquitto, site):
    p = Probe(mosquitto.host, mosquitto.port, site)
    yield p
    p.close()


@pytest.fixture
def turnstile_factory():
    sims: list[TurnstileSimulator] = []

    def make(profile: str = "tripod-coil") -> TurnstileSimulator:
        sim = TurnstileSimulator(profile, transport="tcp").start()
        sim.pass_delay_s = 0.05
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.stop()


def file_config(tmp_path, broker, site: str, gate: str, *, turnstile: TurnstileSimulator | None = None,
                devices: dict | None = None) -> gate_config.GateFileConfig:
    devs = dict(devices or {})
    if turnstile is not None:
        host, port = turnstile.tcp_address
        devs["turnstile"] = {"tcp": f"{host}:{port}", "timeout_s": 0.5}
    data = {
        "gate": {"id": gate, "site": site, "language": "en", "heartbeat_s": 2},
        "broker": {"host": broker.host, "port": broker.port, "keepalive_s": 5},
        "store": {"path": str(tmp_path / f"{gate}.db")},
        "control": {"socket": str(tmp_path / f"{gate}.sock")},
        "devices": devs,
    }
    return gate_config.from_dict(data, source="test")


@pytest.fixture
def gate_factory(tmp_path, mosquitto, site, signer, probe, turnstile_factory):
    """Start a gate against the session broker and a turnstile simulator, its config applied."""
    agents: list[GateAgent] = []

    def make(gate: str = "g1", *, broker=None, config: m.GateConfig | None = None, devices: dict | None = None,
             sim: TurnstileSimulator | None = None, wait_config: bool = True) -> tuple[GateAgent, TurnstileSimulator]:
        broker = broker or mosquitto
        sim = sim or turnstile_factory()
        cfg = config or gate_config_for(signer, site, gate)
        probe.publish(topics.config(site, gate), cfg, retain=True)
        fc = file_config(tmp_path, broker, site, gate, turnstile=sim, devices=devices)
        agent = GateAgent(fc, display=ConsoleDisplay(gate, stream=io.StringIO())).start()
        agents.append(agent)
        if wait_config:
            probe.wait(lambda: agent.active is not None and agent.active.cfg.version == cfg.version)
            assert agent.link.wait_connected(5)
        return agent, sim

    yield make
    for agent in agents:
        agent.stop()
    for gate in ("g1", "g2", "g3"):
        probe.publish(topics.config(site, gate), b"", retain=True)
