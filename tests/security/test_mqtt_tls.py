"""MQTT over TLS with a park's own CA: gates and the central check the broker's certificate.

Mosquitto gets a plain listener (the test's stand-in for the central, on the broker's host) and TLS
listeners made as in config/mosquitto/park-tls.conf: server authentication only, mutual TLS (a client
certificate per gate), and one whose certificate names another host. The CA and certificates are made
by `tests/security/pki.py` with `cryptography`, as a park makes them with openssl (README section).
"""

from __future__ import annotations

import io
import socket
import ssl
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central.bus.link import MqttLink
from central.config import MqttConfig
from gate_agent import config as gate_config
from gate_agent.agent import GateAgent
from gate_agent.display import ConsoleDisplay
from protocol import messages as m
from protocol import topics
from tests.gate_agent.conftest import Probe, gate_config_for, ticket
from tests.security.pki import Pair, TestCA
from tests.support.services import free_port, wait_port

pytestmark = pytest.mark.mosquitto
CONNECT = bytes([0x10, 0x0E, 0, 4]) + b"MQTT" + bytes([5, 2, 0, 5, 0, 0, 1]) + b"x"  # MQTT 5, client id "x"


def _listener(port: int, ca: TestCA, server: Pair, *, require_certificate: bool = False) -> str:
    return (f"listener {port} 127.0.0.1\ncafile {ca.cert}\ncertfile {server.cert}\nkeyfile {server.key}\n"
            f"tls_version tlsv1.2\nrequire_certificate {'true' if require_certificate else 'false'}\n")


@pytest.fixture
def tls_broker(tmp_path, mosquitto_factory):
    """Mosquitto with a plain listener and three TLS listeners; returns (broker, ports, ca)."""
    ca = TestCA(tmp_path / "pki")
    ports = {"tls": free_port(), "mutual": free_port(), "wrong_name": free_port()}
    extra = (_listener(ports["tls"], ca, ca.server())
             + _listener(ports["mutual"], ca, ca.server(), require_certificate=True)
             + _listener(ports["wrong_name"], ca, ca.server("elsewhere", hosts=("broker.elsewhere.example",))))
    broker = mosquitto_factory(extra_config=extra)
    for port in ports.values():
        assert wait_port(broker.host, port), f"TLS listener {port} did not open: {broker.workdir}/mosquitto.log"
    return broker, ports, ca


def _gate(tmp_path, site: str, gate: str, port: int, sim, **tls) -> GateAgent:
    host, tport = sim.tcp_address
    fc = gate_config.from_dict({
        "gate": {"id": gate, "site": site, "language": "en", "heartbeat_s": 2},
        "broker": {"host": "127.0.0.1", "port": port, "keepalive_s": 5, **{k: str(v) for k, v in tls.items()}},
        "store": {"path": str(tmp_path / f"{gate}.db")},
        "control": {"socket": str(tmp_path / f"{gate}.sock")},
        "devices": {"turnstile": {"tcp": f"{host}:{tport}", "timeout_s": 0.5}},
    }, source="test")
    return GateAgent(fc, display=ConsoleDisplay(gate, stream=io.StringIO()))


def test_a_gate_and_the_central_talk_over_tls_with_the_park_ca(tmp_path, tls_broker, site, signer,
                                                               turnstile_factory):
    broker, ports, ca = tls_broker
    probe = Probe(broker.host, broker.port, site)  # the central's config and EventAcks, on the local listener
    central = MqttLink(MqttConfig(host="127.0.0.1", port=ports["tls"], tls_ca=str(ca.cert),
                                  client_id=f"c{uuid.uuid4().hex[:8]}"))
    arrived: list[m.PassageEvent] = []
    got = threading.Event()

    def on_event(msg) -> None:
        arrived.append(m.decode(m.PassageEvent, msg.payload))
        got.set()

    central.subscribe(topics.all_events(site), on_event)
    agent = None
    try:
        central.start(wait=10)
        assert central.connected, "the central's MqttLink did not connect over TLS"
        probe.publish(topics.config(site, "g1"), gate_config_for(signer, site, "g1"), retain=True)
        agent = _gate(tmp_path, site, "g1", ports["tls"], turnstile_factory(), tls_ca=ca.cert).start()
        assert agent.link.wait_connected(10), "the gate did not connect over TLS"
        probe.wait(lambda: agent.active is not None)
        sock = agent.link.client.socket()
        assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
        assert ("IP Address", "127.0.0.1") in sock.getpeercert()["subjectAltName"]

        handled = agent.present("qr", ticket(signer, 4401))
        assert handled.passed == 1
        assert got.wait(10), "the passage did not reach the central over TLS"
        assert arrived[0].credential_ref == "T4401" and arrived[0].passed
        probe.wait(lambda: agent.store.counts()["outbox"] == 0)  # the EventAck came back to the TLS gate
    finally:
        if agent is not None:
            agent.stop()
        central.stop()
        probe.publish(topics.config(site, "g1"), b"", retain=True)
        probe.close()


def test_a_gate_with_its_client_certificate_connects_where_the_broker_demands_one(tmp_path, tls_broker, site,
                                                                                  signer, turnstile_factory):
    broker, ports, ca = tls_broker
    pair = ca.client("g1")
    probe = Probe(broker.host, broker.port, site)
    agent = None
    try:
        probe.publish(topics.config(site, "g1"), gate_config_for(signer, site, "g1"), retain=True)
        agent = _gate(tmp_path, site, "g1", ports["mutual"], turnstile_factory(), tls_ca=ca.cert,
                      tls_cert=pair.cert, tls_key=pair.key).start()
        assert agent.link.wait_connected(10), "the gate with a client certificate did not connect"
        probe.wait(lambda: agent.active is not None)
        assert agent.present("qr", ticket(signer, 4402)).passed == 1
        probe.wait(lambda: [e for e in probe.events("g1") if e.credential_ref == "T4402"])
    finally:
        if agent is not None:
            agent.stop()
        probe.publish(topics.config(site, "g1"), b"", retain=True)
        probe.close()
    # The same listener refuses a client that trusts the CA but shows no certificate of its own.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(ports["mutual"], ca.cert, read=True)


def _paho(ca_file=None) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"x{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(ca_file) if ca_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return c


def _handshake(port: int, ca_file, *, read: bool = False) -> None:
    """A TLS handshake with 127.0.0.1:`port` trusting only `ca_file` (and, `read`, one record after it)."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        if read:
            # TLS 1.3: the server checks the client's certificate after the client's Finished; its
            # refusal arrives as an alert on the first read.
            tls.sendall(CONNECT)
            if not tls.recv(16):
                raise ConnectionError("the broker closed the connection")


def test_a_client_without_the_park_ca_is_refused_at_the_tls_handshake(tmp_path, tls_broker):
    broker, ports, ca = tls_broker
    other = TestCA(tmp_path / "other", name="Someone Else's CA")

    # The system's public CAs do not vouch for the park's broker; nor does another CA.
    for ca_file in (None, other.cert):
        client = _paho(ca_file)
        with pytest.raises(ssl.SSLCertVerificationError):
            client.connect("127.0.0.1", ports["tls"])
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ports["tls"], other.cert)

    # The right CA, but the certificate names another host: refused too (the name is checked, not just the CA).
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ports["wrong_name"], ca.cert)

    # The real code paths: a gate and the central configured with the wrong CA never get a connection.
    agent = _gate(tmp_path, "s1", "g9", ports["tls"], _NoTurnstile(), tls_ca=other.cert)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            agent.link.client.connect("127.0.0.1", ports["tls"])
    finally:
        agent.store.close()
    central = MqttLink(MqttConfig(host="127.0.0.1", port=ports["tls"], tls_ca=str(other.cert),
                                  client_id=f"c{uuid.uuid4().hex[:8]}"))
    with pytest.raises(ssl.SSLCertVerificationError):
        central._client.connect("127.0.0.1", ports["tls"])

    # Plain MQTT on the TLS port gets no CONNACK: the broker drops what is not a TLS handshake.
    with socket.create_connection(("127.0.0.1", ports["tls"]), timeout=5) as raw:
        raw.sendall(CONNECT)
        try:
            answer = raw.recv(16)
        except ConnectionResetError:
            answer = b""
        assert not answer.startswith(b"\x20"), answer  # 0x20: CONNACK


class _NoTurnstile:
    tcp_address = ("127.0.0.1", 1)
