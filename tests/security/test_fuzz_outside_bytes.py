"""Fuzz the parsers of outside bytes not fuzzed elsewhere: only the component's own errors may escape.

Already fuzzed: every MQTT message decoder and the ticket-code verifier (`tests/protocol/test_fuzz.py`),
ID-card frames (`tests/drivers/test_idcard.py`), fingerprint packets (`tests/drivers/test_fingerprint.py`).
Here:

    LineReader      QR scanners and serial RFID readers: arbitrary chunks, unplugs between them
    Modbus replies  a controller's register values decoded by a profile; a controller (a hostile proxy
                    in front of the simulator) whose replies are mutated, cut, padded or replaced
    gate handlers   GateAgent's MQTT handlers on a running gate: arbitrary and half-valid payloads

Run longer with HYPOTHESIS_PROFILE=fuzz.
"""

from __future__ import annotations

import json
import re
import socket
import threading

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.errors import DeviceDisconnected, DriverError
from drivers.qr_scanner import QrScanner
from drivers.serial_link import LineReader
from drivers.sim.serial_sim import QrScannerSim
from drivers.sim.turnstile_sim import TurnstileSimulator
from drivers.turnstile import ControllerProfile, Counters, Turnstile
from protocol import messages as m
from protocol import topics
from tests.gate_agent.conftest import gate_config_for, ticket
from tests.protocol.conftest import FUZZ, examples
from tests.protocol.test_fuzz import json_values
from tests.protocol.test_messages import SAMPLES
from tests.support.waiting import poll

PROFILES = ["tripod-coil", "swing-regcmd"]

# --- the line framing of serial scanners ----------------------------------------------------------


class ScriptedLink:
    """A serial link that yields the given chunks; None in the script is an unplug."""

    port = "/dev/fuzz"

    def __init__(self, script: list[bytes | None]) -> None:
        self.script = list(script)
        self.reads = 0

    def wait_open(self, deadline: float) -> bool:
        return bool(self.script)  # the port "goes away" for good once the script is played

    def read(self, timeout: float) -> bytes:
        self.reads += 1
        chunk = self.script.pop(0)
        if chunk is None:
            raise DeviceDisconnected(self.port, "unplugged")
        return chunk


def _expected_lines(script: list[bytes | None], max_len: int) -> list[str]:
    """The clean lines, said plainly: split each connection's bytes at CR/LF, drop the unended tail, the
    empty, the overlong, and those with control bytes or that are not UTF-8."""
    out: list[str] = []
    segments: list[bytes] = [b""]
    for chunk in script:
        if chunk is None:
            segments.append(b"")
        else:
            segments[-1] += chunk
    for data in segments:
        for piece in re.split(rb"[\r\n]", data)[:-1]:
            if not piece or len(piece) > max_len or any(b < 0x20 or b == 0x7F for b in piece):
                continue
            try:
                out.append(piece.decode("utf-8"))
            except UnicodeDecodeError:
                continue
    return out


framing_bytes = st.lists(st.sampled_from(list(b"AB\xe4\xb8\xad\r\n\x00\x7f\xff ")), max_size=40).map(bytes)
chunks = st.lists(st.none() | st.binary(max_size=48) | framing_bytes, max_size=12)


@settings(**examples(400))
@given(script=chunks, max_len=st.integers(1, 24))
def test_scanner_lines_from_arbitrary_chunks_are_clean_bounded_and_never_an_error(script, max_len) -> None:
    link = ScriptedLink(script)
    reader = LineReader(link, max_len=max_len, stale_after_s=1e9)  # timing is not what this fuzzes
    lines = []
    while (line := reader.read_line(timeout=5)) is not None:
        lines.append(line)
        assert len(lines) <= len(script) * 48, "more lines than bytes: a loop"
    assert link.reads == len(script)  # every chunk read once, then done: no hang, no spin
    assert all(len(line.encode()) <= max_len and not re.search(r"[\x00-\x1f\x7f]", line) for line in lines)
    assert lines == _expected_lines(script, max_len)


def test_a_junk_line_does_not_cut_the_start_off_the_code_behind_it_on_a_real_scanner_port():
    """Found by the fuzz above: refusing a junk line cleared the half-read code after it, and the
    scanner then yielded the code's tail ("CD") as a code of its own."""
    with QrScannerSim() as sim:
        scanner = QrScanner(sim.device_path, baudrate=115200)
        assert scanner.open()
        got: list[str | None] = []
        reader = threading.Thread(target=lambda: got.append(scanner.read_code(5)))
        reader.start()
        sim.send_raw(b"\x01\x02junk\r\nT-AB")  # line noise, then the start of a code in the same read
        poll(lambda: scanner.dropped == 1, 5, what="the junk line refused")
        sim.send_raw(b"CD\r\n")
        reader.join(6)
        scanner.close()
    assert got == ["T-ABCD"]


# --- Modbus: register values decoded by a profile -----------------------------------------------------

registers = st.integers(0, 0xFFFF)


@pytest.mark.parametrize("model", PROFILES)
@settings(**examples(200))
@given(data=st.data())
def test_any_register_values_decode_to_named_points_and_counters_in_range(model, data) -> None:
    profile = ControllerProfile.load(model)
    for points in (profile.alarms, profile.sensors):
        if points is None:
            continue
        base, count = points.span()
        values = data.draw(st.lists(registers if points.is_bitfield else st.booleans(), min_size=count,
                                    max_size=count))
        names = points.decode(values, base)
        assert names <= set(points.points)
        if points.is_bitfield:
            assert names == {n for n, bit in points.points.items() if values[0] >> bit & 1}
    regs = data.draw(st.lists(registers, min_size=profile.counter_words, max_size=profile.counter_words))
    value = profile.counter_value(regs)
    assert 0 <= value < profile.counter_modulus
    assert profile.counter_registers(value) == regs


# --- Modbus: a controller whose replies are mutated on the wire ---------------------------------------


class HostileProxy:
    """Modbus TCP in front of a real simulator; `mutate(request, reply)` decides what the driver gets.

    After a mutated reply the connection is closed, as a controller that reset would: the driver must
    then report an error and reconnect on its next call, never hang or raise anything else."""

    def __init__(self, sim: TurnstileSimulator) -> None:
        self.upstream = socket.create_connection(sim.tcp_address)
        self.mutate = None
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _frame(sock: socket.socket) -> bytes:
        head = _read(sock, 7)
        return head + _read(sock, max(0, int.from_bytes(head[4:6], "big") - 1))

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while True:
                    request = self._frame(conn)
                    self.upstream.sendall(request)
                    reply = self._frame(self.upstream)
                    mutate = self.mutate
                    if mutate is None:
                        conn.sendall(reply)
                        continue
                    conn.sendall(mutate(request, reply))
                    conn.shutdown(socket.SHUT_RDWR)
                    return
            except (OSError, EOFError):
                return

    def close(self) -> None:
        self.sock.close()
        self.upstream.close()


def _read(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise EOFError
        buf += part
    return buf


def _mutations():
    """Functions (request, honest reply) -> bytes on the wire."""

    def flip(positions):
        def apply(_req, reply):
            out = bytearray(reply)
            for i, v in positions:
                out[i % len(out)] = v
            return bytes(out)
        return apply

    def with_pdu(pdu):  # the right transaction and unit, any PDU (a lying byte count, an exception, junk)
        return lambda req, _reply: req[:4] + (len(pdu) + 1).to_bytes(2, "big") + req[6:7] + pdu

    def with_registers(values):  # a well-formed answer with other register values (or another count)
        def apply(req, _reply):
            body = b"".join(v.to_bytes(2, "big") for v in values)
            pdu = req[7:8] + bytes([len(body) & 0xFF]) + body
            return req[:4] + (len(pdu) + 1).to_bytes(2, "big") + req[6:7] + pdu
        return apply

    return st.one_of(
        st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), min_size=1, max_size=4).map(flip),
        st.binary(max_size=12).map(with_pdu),
        st.lists(registers, max_size=8).map(with_registers),
        st.integers(0, 40).map(lambda n: lambda _req, reply: reply[:n]),
        st.binary(min_size=1, max_size=16).map(lambda junk: lambda _req, reply: reply + junk),
        st.binary(max_size=64).map(lambda junk: lambda _req, _reply: junk),
    )


CALLS = {
    "read_counters": lambda t: t.read_counters(),
    "read_alarms": lambda t: t.read_alarms(),
    "read_sensors": lambda t: t.read_sensors(),
    "read_mode": lambda t: t.read_mode(),
    "open_once": lambda t: t.open_once("in"),
    "set_mode": lambda t: t.set_mode("normal"),
}


@pytest.mark.parametrize("model", PROFILES)
def test_a_controller_with_mangled_replies_gives_a_driver_error_or_a_sane_value_never_anything_else(model):
    sim = TurnstileSimulator(model, transport="tcp").start()
    proxy = HostileProxy(sim)
    gate = Turnstile(model, tcp=proxy.address, timeout=0.15, retries=0)
    names = set(gate.profile.alarms.points) | set(gate.profile.sensors.points)
    try:
        @settings(max_examples=2000 if FUZZ else 60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(mutate=_mutations(), call=st.sampled_from(sorted(CALLS)))
        def check(mutate, call):
            proxy.mutate = mutate
            try:
                value = CALLS[call](gate)
            except DriverError as err:
                assert err.port == gate.port
                return
            if isinstance(value, Counters):
                assert 0 <= value.entries < gate.profile.counter_modulus and 0 <= value.exits < 1 << 32
            elif isinstance(value, frozenset):
                assert value <= names
            elif isinstance(value, str):
                assert value in gate.profile.mode_values or value.startswith("unknown:")

        check()
        proxy.mutate = None  # the controller behaves again: the same driver object recovers
        try:
            gate.read_counters()
        except DeviceDisconnected:
            pass  # the last mangled reply's reset is found on this call; the next one reconnects
        assert gate.read_counters() == Counters(*sim.counters)
        gate.set_mode("normal")
        assert gate.read_mode() == "normal"
    finally:
        gate.close()
        proxy.close()
        sim.stop()


# --- the gate agent's MQTT handlers -------------------------------------------------------------------


def _sample(kind: type, site: str, gate: str) -> dict:
    """A valid message of `kind` addressed to this gate, as JSON."""
    msg = SAMPLES[kind]
    fields = {f.name for f in msgspec.structs.fields(kind)}
    changes = {k: v for k, v in (("site", site), ("gate", gate)) if k in fields}
    return json.loads(m.encode(msgspec.structs.replace(msg, **changes)))


def _payloads(kind: type, site: str, gate: str):
    sample = _sample(kind, site, gate)
    encoded = json.dumps(sample).encode()

    @st.composite
    def one_field(draw):
        message = dict(sample)
        message[draw(st.sampled_from(sorted(message)))] = draw(json_values)
        return json.dumps(message).encode()

    @st.composite
    def mutated(draw):
        payload = bytearray(encoded)
        for _ in range(draw(st.integers(1, 4))):
            payload[draw(st.integers(0, len(payload) - 1))] = draw(st.integers(0, 255))
        return bytes(payload)

    return st.one_of(
        st.binary(max_size=256),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.just(encoded),
        one_field(),
        mutated(),
    )


HANDLERS = {
    "config": m.GateConfig, "delta": m.Delta, "sync": m.SnapshotChunk, "command": m.Command,
    "site_event": m.PassageEvent, "occupancy": m.Occupancy,
}


@pytest.mark.mosquitto
def test_a_running_gate_survives_arbitrary_payloads_on_every_topic_and_keeps_deciding(gate_factory, probe, signer,
                                                                                     site):
    agent, sim = gate_factory("g1")
    probe.wait(lambda: agent.store.meta("snapshot_id"))
    good = gate_config_for(signer, site, "g1")
    handlers = {
        "config": agent._on_config, "delta": agent.sync.on_delta, "sync": agent.sync.on_sync,
        "command": agent._on_command, "occupancy": agent.sync.on_occupancy,
        "site_event": lambda p: agent.sync.on_site_event(topics.event(site, "g2"), p),
    }
    strategies = {name: _payloads(kind, site, "g1") for name, kind in HANDLERS.items()}

    @settings(max_examples=3000 if FUZZ else 300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data):
        name = data.draw(st.sampled_from(sorted(handlers)))
        handlers[name](data.draw(strategies[name]))  # any exception here fails the test

    check()
    # The fuzz may have applied a strange but valid config or mode: put the park's back, then decide.
    ack = agent.apply_config(m.encode(msgspec.structs.replace(good, version=agent.active.cfg.version)))
    assert ack.applied, ack
    agent.set_mode("normal")
    agent._recent.clear()
    before = sim.counters[0]
    handled = agent.present("qr", ticket(signer, 7701))
    assert handled.ignored is None and handled.reason == "ok" and handled.passed == 1, handled
    assert sim.counters[0] == before + 1
    assert agent.present("qr", "not a code").reason == "not_a_code"


@pytest.mark.mosquitto
def test_a_config_with_a_stray_non_utf8_byte_is_refused_with_an_ack_and_not_half_applied(gate_factory, probe,
                                                                                        signer, site):
    """Found by the fuzz above: an unknown field whose name is not UTF-8 passed decoding, the config became
    active, then storing it failed: no ack, not saved, the mode not applied."""
    agent, _ = gate_factory("g1")
    newer = m.encode(gate_config_for(signer, site, "g1", version=2, mode="locked"))
    probe.publish(topics.config(site, "g1"), newer.replace(b'{"v"', b'{"\x80":1,"v"', 1))
    [refusal] = probe.wait(lambda: [a for a in probe.of("config/ack", m.ConfigAck, "g1") if not a.applied])
    assert "UTF-8" in refusal.error
    assert agent.active.cfg.version == 1 and agent.store.meta("config_version") == "1"
    assert agent.present("qr", ticket(signer, 7702)).passed == 1  # still the park's config, still open

