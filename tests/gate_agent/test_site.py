"""Scenarios across gates of one site, and with the broker gone."""

from __future__ import annotations

import time

from gate_agent.config import from_dict
from protocol import messages as m
from protocol import topics
from tests.gate_agent.conftest import Probe, gate_config_for, ticket


def test_entry_at_gate_a_is_refused_at_gate_b_with_exit_first_within_a_second(gate_factory, probe, signer):
    a, _ = gate_factory("g1")
    b, _ = gate_factory("g2")
    code = ticket(signer, 2001, ticket_type=2)  # three entries, anti-passback

    assert a.present("qr", code).passed == 1
    started = time.monotonic()
    probe.wait(lambda: b.store.usage("T2001")[0].entries == 1, timeout=1.0)
    shared_after = time.monotonic() - started

    assert b.present("qr", code).reason == "exit_first"
    assert shared_after < 1.0
    # The visitor leaves through gate B; the next entry at A is granted again.
    assert b.present("qr", code, "out").passed == 1
    probe.wait(lambda: a.store.usage("T2001")[0].exits == 1, timeout=1.0)
    a._recent.clear()
    assert a.present("qr", code).passed == 1


def test_single_entry_ticket_used_at_one_gate_is_refused_at_another(gate_factory, probe, signer):
    a, _ = gate_factory("g1")
    b, _ = gate_factory("g2")
    code = ticket(signer, 2002)
    assert a.present("qr", code).passed == 1
    probe.wait(lambda: b.store.usage("T2002")[0].entries == 1, timeout=1.0)
    assert b.present("qr", code).reason == "used_up"


def test_another_gates_passage_dated_ahead_or_for_a_crowd_on_one_pass_is_not_counted_here(gate_factory, probe,
                                                                                          site, signer):
    from datetime import timedelta

    from protocol.ids import new_event_id
    from tests.gate_agent.conftest import now

    a, _ = gate_factory("g1")

    def remote(ref: str, kind: str = "qr", **kw) -> m.PassageEvent:
        values = dict(id=new_event_id(), site=site, gate="g2", zone=1, at=now(), direction="in",
                      credential_kind=kind, credential_ref=ref, passed=True) | kw
        return m.PassageEvent(**values)

    # What a stolen box could publish on its own topic: straight to every gate, past the central.
    probe.publish(topics.event(site, "g2"), remote("T2003", at=now() + timedelta(days=30)))
    probe.publish(topics.event(site, "g2"), remote("P77", "annual_pass", headcount=200))
    probe.publish(topics.event(site, "g2"), remote("T2004"))  # a real passage, behind them on the same topic
    probe.wait(lambda: a.store.usage("T2004")[0].entries == 1)
    assert a.store.usage("T2003")[0].entries == 0
    assert a.store.usage("P77")[0].entries == 0
    assert a.zones.state(1).inside == 1
    assert a.present("qr", ticket(signer, 2003)).passed == 1


def test_offline_gate_decides_queues_and_drains_in_order_once(tmp_path, mosquitto_factory, site, signer,
                                                             turnstile_factory):
    from gate_agent.agent import GateAgent
    from gate_agent.display import ConsoleDisplay
    from tests.gate_agent.conftest import file_config

    # The broker must keep the central's session across the restart (persistence on).
    broker = mosquitto_factory(persistence=True)
    central = Probe(broker.host, broker.port, site, client_id=f"central-{site}")
    central.publish(topics.config(site, "g1"), gate_config_for(signer, site, "g1"), retain=True)
    sim = turnstile_factory()
    import io

    agent = GateAgent(file_config(tmp_path, broker, site, "g1", turnstile=sim),
                      display=ConsoleDisplay("g1", stream=io.StringIO())).start()
    try:
        central.wait(lambda: agent.active is not None and agent.link.connected)
        broker.stop()
        central.wait(lambda: not agent.link.connected)

        handled = [agent.present("qr", ticket(signer, 3000 + i)) for i in range(20)]

        assert all(h.passed == 1 for h in handled)
        assert all(h.events[0].offline for h in handled)
        assert agent.store.outbox_depth() == 20
        sent = [h.events[0].id for h in handled]
        broker.start()
        central.wait(lambda: len(central.events("g1")) >= 20, timeout=20)
        central.wait(lambda: agent.store.outbox_depth() == 0)
        time.sleep(0.3)  # a duplicate would arrive now, if there were one
        received = [e.id for e in central.events("g1")]
        assert received == sent
    finally:
        agent.stop()
        central.close()


def test_config_update_is_applied_and_acked_and_a_bad_one_refused_keeping_the_last_good(gate_factory, probe,
                                                                                          signer, site):
    agent, sim = gate_factory("g1")
    probe.wait(lambda: [a for a in probe.of("config/ack", m.ConfigAck) if a.version == 1 and a.applied])

    probe.publish(topics.config(site, "g1"), gate_config_for(signer, site, "g1", version=2, mode="locked"),
                  retain=True)
    probe.wait(lambda: [a for a in probe.of("config/ack", m.ConfigAck) if a.version == 2 and a.applied])
    probe.wait(lambda: sim.mode == "locked")
    assert agent.present("qr", ticket(signer, 4001)).reason == "gate_locked"

    good = m.encode(gate_config_for(signer, site, "g1", version=3, mode="normal"))
    bad = good.replace(b'"Asia/Shanghai"', b'"Mars/Olympus_Mons"')
    probe.publish(topics.config(site, "g1"), bad, retain=True)
    ack = probe.wait(lambda: [a for a in probe.of("config/ack", m.ConfigAck) if a.version == 3])[0]
    assert not ack.applied and "timezone" in ack.error
    assert agent.active.cfg.version == 2 and agent.mode == "locked"
    assert agent.store.meta("config_version") == "2"

    probe.publish(topics.config(site, "g1"), b'{"v": 1, "version": 4, "site": "x"}', retain=True)
    ack = probe.wait(lambda: [a for a in probe.of("config/ack", m.ConfigAck) if a.version == 4])[0]
    assert not ack.applied and ack.error.startswith("invalid")

    probe.publish(topics.config(site, "g1"), gate_config_for(signer, site, "g1", version=5, mode="emergency"),
                  retain=True)
    probe.wait(lambda: sim.mode == "free" and agent.arm.counting_free)
    assert agent.present("qr", ticket(signer, 4002)).reason == "emergency"
    sim.walk_through("out")  # people leave through the open gate: counting goes on
    event = probe.wait(lambda: [e for e in probe.events("g1") if e.credential_kind == "none"])[0]
    assert (event.direction, event.passed, event.mode) == ("out", True, "emergency")


def test_controller_alarm_becomes_a_status_event(gate_factory, probe):
    agent, sim = gate_factory("g1")
    sim.raise_alarm("tailgating")
    status = probe.wait(lambda: [s for s in probe.of("status", m.GateStatus, "g1") if "tailgating" in s.alarms])[0]
    assert status.online and status.config_version == 1


def test_file_config_errors_name_the_key_and_file():
    import pytest

    from gate_agent.config import ConfigError

    with pytest.raises(ConfigError, match=r"gate.toml: .*devices.turnstile"):
        from_dict({"gate": {"id": "g1", "site": "s1"}, "devices": {"turnstile": {"profile": "x"}}},
                  source="gate.toml")
    with pytest.raises(ConfigError, match=r"gate.toml: .*gate.id"):
        from_dict({"gate": {"id": "g/1", "site": "s1"}}, source="gate.toml")
    with pytest.raises(ConfigError, match=r"broker.port"):
        from_dict({"gate": {"id": "g1", "site": "s1"}, "broker": {"port": "x"}}, source="gate.toml")


def test_a_gap_in_the_delta_sequence_triggers_a_resync(gate_factory, probe, signer):
    agent, _ = gate_factory("g1")
    probe.wait(lambda: agent.store.meta("snapshot_id"))
    first = len(probe.sync_requests)
    probe.delta(m.TicketChange(ticket_id=8001, ticket_type=1, status="revoked"))
    probe.seq += 1  # a delta the gate never sees
    probe.snapshot.append(m.TicketChange(ticket_id=8002, ticket_type=1, status="refunded"))
    probe.delta(m.TicketChange(ticket_id=8003, ticket_type=1, status="revoked"))

    probe.wait(lambda: len(probe.sync_requests) > first and agent.store.seq == probe.seq and not agent.sync.resyncing)
    assert probe.sync_requests[-1].have_seq == probe.seq - 2
    assert agent.present("qr", ticket(signer, 8002)).reason == "refunded"
    assert agent.present("qr", ticket(signer, 8003)).reason == "revoked"


def test_central_commands_open_the_arm_and_switch_the_mode(gate_factory, probe, site):
    agent, sim = gate_factory("g1")
    probe.publish(topics.command(site, "g1"), m.Command(id="c1", kind="open_once", direction="in"))
    ack = probe.wait(lambda: [a for a in probe.of("cmd/ack", m.CommandAck) if a.id == "c1"])[0]
    assert ack.ok
    probe.wait(lambda: sim.counters == (1, 0))  # the simulated visitor walked through the opened arm

    probe.publish(topics.site_command(site), m.Command(id="c2", kind="set_mode", mode="emergency"))
    probe.wait(lambda: [a for a in probe.of("cmd/ack", m.CommandAck) if a.id == "c2" and a.ok])
    probe.wait(lambda: sim.mode == "free")
    status = probe.wait(lambda: [s for s in probe.of("status", m.GateStatus, "g1") if s.mode == "emergency"])[0]
    assert status.online


def test_the_example_gate_config_is_valid():
    import tomllib
    from pathlib import Path

    data = tomllib.loads((Path(__file__).resolve().parents[2] / "config" / "gate.example.toml").read_text())
    data["broker"].pop("tls_ca")  # a file that exists only on a real box
    cfg = from_dict(data, source="gate.example.toml")
    assert cfg.devices.turnstile.serial == "/dev/ttyUSB0" and cfg.devices.rfid.pcsc_reader
