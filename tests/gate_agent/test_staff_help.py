"""Staff help at the gate (real Mosquitto, the turnstile simulator): a pass whose finger is not read asks
staff; staff admit once (one passage, recorded and counted as any other) or refuse; an answer counts once."""

from __future__ import annotations

from datetime import UTC, datetime

from protocol import messages as m
from protocol import topics
from tests.gate_agent.conftest import gate_config_for


def answer(probe, site: str, kind: str, help_id: str, command_id: str) -> m.CommandAck:
    probe.publish(topics.command(site, "g1"), m.Command(id=command_id, kind=kind, help_id=help_id,
                                                        at=datetime.now(UTC)))
    return probe.wait(lambda: [a for a in probe.of("cmd/ack", m.CommandAck) if a.id == command_id])[0]


def test_a_finger_not_read_asks_staff_who_admit_once(gate_factory, probe, signer, site):
    agent, sim = gate_factory(config=gate_config_for(signer, site, "g1", pass_biometric="fingerprint"))
    probe.wait(lambda: agent.store.meta("snapshot_id"))
    probe.delta(m.PassChange(pass_id=91, holder_id="H91", card_uid="0491"))
    probe.wait(lambda: agent.store.seq == probe.seq)

    refused = agent.present("annual_pass", "0491")

    assert refused.reason == "finger_needed" and sim.counters == (0, 0)
    request = probe.wait(lambda: probe.of("help", m.HelpRequest, "g1"))[0]
    assert (request.credential_ref, request.holder_id, request.reason) == ("P91", "H91", "finger_needed")
    assert agent.display.wait_notice(lambda n: n.lines == ("Staff have been called",))

    assert answer(probe, site, "staff_admit", request.id, "c1").ok
    probe.wait(lambda: [e for e in probe.events("g1") if e.passed and e.credential_ref == "P91"])
    assert sim.counters == (1, 0) and agent.store.usage("P91")[0].entries == 1
    # The same answer again (a double tap on the tablet) admits nobody more.
    again = answer(probe, site, "staff_admit", request.id, "c2")
    assert not again.ok and "no open help request" in again.error
    assert sim.counters == (1, 0)


def test_staff_refuse_and_the_visitor_is_told_again(gate_factory, probe, signer, site):
    agent, sim = gate_factory(config=gate_config_for(signer, site, "g1", pass_biometric="fingerprint"))
    probe.wait(lambda: agent.store.meta("snapshot_id"))
    probe.delta(m.PassChange(pass_id=92, holder_id="H92", card_uid="0492"))
    probe.wait(lambda: agent.store.seq == probe.seq)
    agent.present("annual_pass", "0492")
    request = probe.wait(lambda: probe.of("help", m.HelpRequest, "g1"))[0]
    shown = len(agent.display.notices)

    assert answer(probe, site, "staff_refuse", request.id, "c3").ok

    assert agent.display.wait_notice(lambda n: agent.display.notices.index(n) >= shown
                                     and n.reason == "finger_needed")
    assert sim.counters == (0, 0)


def test_a_refusal_staff_cannot_help_with_asks_nobody(gate_factory, probe, signer):
    agent, _ = gate_factory()
    assert agent.present("qr", "not a code").reason == "not_a_code"
    probe.wait(lambda: probe.events("g1"))
    assert probe.of("help") == [] and agent.help.open == 0
