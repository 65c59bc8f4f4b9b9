"""Fingerprints at a gate, end to end through an AS608 module simulator on a pseudo-terminal: the module's
slots follow the central's templates, a finger admits its holder, and a card asks for its holder's finger."""

from __future__ import annotations

import pytest

from drivers import fingerprint_packets as p
from drivers.sim.fingerprint_sim import FingerprintModuleSim
from gate_agent.decider import Attempt
from protocol import messages as m
from tests.gate_agent.conftest import gate_config_for
from tests.support.waiting import poll as until


def template(k: int) -> bytes:
    """A 512-byte stand-in for a module's character file (the simulator matches by equality)."""
    return bytes((i * 31 + k * 7) % 256 for i in range(512))


A, A2, B, C = template(1), template(2), template(3), template(4)




def shown_next(agent, count: int, timeout: float = 10.0):
    """The decision shown after the first `count` ones."""
    agent.display.wait_for(lambda s: len(agent.display.history) > count, timeout=timeout)
    return agent.display.history[count]


def finger(module: FingerprintModuleSim, agent, data: bytes) -> str:
    """A visitor lays a finger on the sensor, reads the display and lifts the finger."""
    count = len(agent.display.history)
    module.place_finger(data)
    try:
        return shown_next(agent, count).reason
    finally:
        module.lift_finger()


def card_then_finger(module: FingerprintModuleSim, agent, uid: str, data: bytes):
    """A visitor shows the card, is asked for a finger, and lays it."""
    agent._recent.clear()  # the same card again, after the repeat window
    count = len(agent.display.history)
    job = agent.submit(Attempt("annual_pass", uid, "in", "test"))
    assert shown_next(agent, count).reason == "finger_needed"
    module.place_finger(data)
    try:
        assert job.done.wait(10)
        return job.result
    finally:
        module.lift_finger()


@pytest.fixture
def module():
    sim = FingerprintModuleSim(capacity=50)
    commands: list[int] = []
    handle = sim._command
    sim._command = lambda code, args: (commands.append(code), handle(code, args))[1]
    sim.commands = commands
    yield sim
    sim.close()


def test_fingerprint_slots_follow_the_central_and_a_finger_or_card_and_finger_admit_the_holder(
        gate_factory, probe, signer, site, module):
    agent, turnstile = gate_factory(config=gate_config_for(signer, site, "g1", pass_biometric="fingerprint"),
                                    devices={"fingerprint": {"port": module.device_path}})
    probe.wait(lambda: agent.store.meta("snapshot_id"))
    probe.delta(m.PassChange(pass_id=91, holder_id="h91", card_uid="0491"),
                m.TemplateChange(holder_id="h91", kind="fingerprint", data=A),
                m.PassChange(pass_id=92, holder_id="h92", card_uid="0492"),
                m.TemplateChange(holder_id="h92", kind="fingerprint", data=B, finger=2))

    until(lambda: module.slots == {0: A, 1: B})
    until(lambda: agent.store.fp_slots() == {0: ("h91", 1, 0), 1: ("h92", 1, 2)})

    # Fingerprint-only entry: the module's slot maps back to the holder, who passes on their pass.
    assert finger(module, agent, A) == "ok"
    event = probe.wait(lambda: [e for e in probe.events("g1") if e.passed])[0]
    assert (event.credential_kind, event.credential_ref) == ("fingerprint", "P91")
    assert finger(module, agent, C) == "unknown_credential"  # a finger the module does not know

    # Site policy pass_biometric = "fingerprint": the card, then the holder's own finger.
    granted = card_then_finger(module, agent, "0492", B)
    assert granted.granted and granted.passed == 1
    assert granted.events[0].credential_kind == "annual_pass"
    refused = card_then_finger(module, agent, "0492", A)  # h92's card, h91's finger
    assert refused.reason == "not_same_person" and refused.passed == 0
    assert turnstile.counters == (2, 0)

    # Re-enrolment rewrites h91's slot in place; h92 is forgotten and h93 reuses the slot, overwritten
    # by the Store with no Delete sent.
    module.commands.clear()
    probe.delta(m.TemplateChange(holder_id="h91", kind="fingerprint", data=A2, version=2),
                m.HolderForget(holder_id="h92"),
                m.PassChange(pass_id=93, holder_id="h93", card_uid="0493"),
                m.TemplateChange(holder_id="h93", kind="fingerprint", data=C))
    until(lambda: module.slots == {0: A2, 1: C})
    until(lambda: agent.store.fp_slots() == {0: ("h91", 2, 0), 1: ("h93", 1, 0)})
    assert p.STORE in module.commands and p.DELETE not in module.commands

    assert finger(module, agent, B) == "unknown_credential"  # the forgotten holder's finger
    assert finger(module, agent, A) == "unknown_credential"  # the re-enrolled finger's old template
    assert finger(module, agent, A2) == "ok"
    assert finger(module, agent, C) == "ok"
    refs = [e.credential_ref for e in probe.wait(lambda: len([e for e in probe.events("g1") if e.passed]) == 4
                                                 and probe.events("g1")) if e.passed]
    assert refs == ["P91", "P92", "P91", "P93"]

    # A forget alone empties the slot on the module.
    probe.delta(m.HolderForget(holder_id="h93"))
    until(lambda: module.slots == {0: A2})
    until(lambda: agent.store.fp_slots() == {0: ("h91", 2, 0)})


def test_a_module_holding_templates_nobody_answers_for_is_emptied_at_start(gate_factory, signer, site, module):
    module.slots = {7: A, 8: B}  # left from another store, or enrolled by hand on the module
    agent, _ = gate_factory(config=gate_config_for(signer, site, "g1", pass_biometric="fingerprint"),
                            devices={"fingerprint": {"port": module.device_path}})
    until(lambda: module.slots == {})
    assert finger(module, agent, A) == "unknown_credential"
