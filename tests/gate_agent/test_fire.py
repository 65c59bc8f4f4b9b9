"""The fire alarm: a controller's fire input (Modbus simulator) opens its gate and the gates of its zone,
or of the site, over real Mosquitto and without the central; it holds until the central ends it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from protocol import messages as m
from protocol import topics
from tests.gate_agent.conftest import gate_config_for, ticket


def emergency_at(probe, gate: str):
    return [s for s in probe.of("status", m.GateStatus, gate) if s.mode == "emergency"]


def test_the_fire_input_opens_every_gate_of_the_zone_within_a_second(gate_factory, probe, signer, site):
    g1, sim1 = gate_factory("g1")
    g2, sim2 = gate_factory("g2")
    g3, sim3 = gate_factory("g3", config=gate_config_for(signer, site, "g3", zone=2))

    sim1.raise_alarm("fire")

    # The event is the gates' own status, published the moment they latch; one second for all of it.
    probe.wait(lambda: emergency_at(probe, "g1") and emergency_at(probe, "g2"), timeout=1.0)
    assert (sim1.mode, sim2.mode) == ("free", "free")  # the arms are open
    assert g2.fire.source == "g1"
    alarm = probe.wait(lambda: probe.of("fire", m.FireAlarm, "g1"))[-1]
    assert (alarm.active, alarm.zone, alarm.scope) == (True, 1, "zone")
    # The other zone's gate is not in the fire's scope.
    assert g3.mode == "normal" and sim3.mode == "normal"
    # Visitors pass freely (counted by the controller), and the visitor is told.
    assert g2.present("qr", ticket(signer, 3001)).reason == "emergency"
    assert g2.display.wait_for(lambda s: s.reason == "emergency")


def test_a_site_wide_fire_scope_opens_the_other_zones_too(gate_factory, probe, signer, site):
    g1, sim1 = gate_factory("g1", config=gate_config_for(signer, site, "g1", fire_scope="site"))
    g3, sim3 = gate_factory("g3", config=gate_config_for(signer, site, "g3", zone=2, fire_scope="site"))

    sim1.raise_alarm("fire")

    probe.wait(lambda: emergency_at(probe, "g3"))
    assert sim3.mode == "free" and g3.fire.source == "g1"


def test_a_gate_scope_opens_only_that_gate(gate_factory, probe, signer, site):
    g1, sim1 = gate_factory("g1", config=gate_config_for(signer, site, "g1", fire_scope="gate"))
    g2, sim2 = gate_factory("g2", config=gate_config_for(signer, site, "g2", fire_scope="gate"))

    sim1.raise_alarm("fire")

    probe.wait(lambda: emergency_at(probe, "g1"))
    probe.wait(lambda: probe.of("fire", m.FireAlarm, "g1"))
    assert g2.mode == "normal"


def test_the_emergency_holds_until_the_central_ends_it_and_its_old_alarm_does_not_come_back(
        gate_factory, probe, signer, site):
    g1, sim1 = gate_factory("g1")
    g2, sim2 = gate_factory("g2")
    sim1.raise_alarm("fire")
    probe.wait(lambda: emergency_at(probe, "g2"))

    sim1.clear_alarms()  # the input drops: the gates stay open, it is staff who end an emergency
    probe.wait(lambda: [a for a in probe.of("fire", m.FireAlarm, "g1") if not a.active])
    assert g1.mode == g2.mode == "emergency"

    ended = datetime.now(UTC)
    for gate, agent in (("g1", g1), ("g2", g2)):
        cfg = gate_config_for(signer, site, gate, version=2, emergency_ended_at=ended)
        probe.publish(topics.config(site, gate), cfg, retain=True)
        probe.wait(lambda agent=agent: agent.active.cfg.version == 2)
    assert g1.mode == g2.mode == "normal"
    probe.wait(lambda: sim1.mode == sim2.mode == "normal")

    # The old (retained) alarm read again, as by a gate that restarts, is history.
    old = m.FireAlarm(site=site, gate="g1", zone=1, at=ended - timedelta(seconds=5))
    g2.fire.on_alarm(topics.fire(site, "g1"), m.encode(old))
    assert g2.mode == "normal"
    # A fire input raised again is a new fire.
    sim1.raise_alarm("fire")
    probe.wait(lambda: g2.mode == "emergency")


def test_a_technician_at_the_box_ends_the_fire_emergency(gate_factory, probe):
    g1, sim1 = gate_factory("g1")
    sim1.raise_alarm("fire")
    probe.wait(lambda: emergency_at(probe, "g1"))
    sim1.clear_alarms()
    probe.wait(lambda: [a for a in probe.of("fire", m.FireAlarm, "g1") if not a.active])
    g1.set_mode("normal")
    assert g1.mode == "normal" and not g1.fire.active
