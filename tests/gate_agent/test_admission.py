"""Scenarios at one gate: a visitor shows a credential, the gate decides, opens, and reports."""

from __future__ import annotations

from protocol import messages as m
from protocol import topics
from tests.gate_agent.conftest import ticket


def test_valid_qr_code_is_granted_and_the_passage_is_reported_with_usage_one(gate_factory, probe, signer):
    agent, sim = gate_factory()
    code = ticket(signer, 1001)

    handled = agent.present("qr", code)

    assert handled.granted and handled.passed == 1
    assert sim.counters == (1, 0)
    assert agent.store.usage("T1001")[0].entries == 1
    events = probe.wait(lambda: probe.events("g1"))
    assert [(e.credential_ref, e.decision, e.passed, e.headcount) for e in events] == [("T1001", "granted", True, 1)]
    assert code not in str(events[0])  # the code itself never leaves the gate
    probe.wait(lambda: agent.store.outbox_depth() == 0)
    shown = agent.display.history[-1]
    assert (shown.colour, shown.reason) == ("green", "ok")


def test_visitor_who_walks_away_keeps_the_entry(gate_factory, probe, signer):
    agent, sim = gate_factory()
    sim.behaviour = "walk_away"

    handled = agent.present("qr", ticket(signer, 1002))

    assert handled.granted and handled.passed == 0
    assert agent.store.usage("T1002")[0].entries == 0
    event = probe.wait(lambda: probe.events("g1"))[0]
    assert (event.decision, event.passed) == ("granted", False)
    sim.behaviour = "pass"
    agent._recent.clear()  # the visitor comes back after the repeat window
    assert agent.present("qr", ticket(signer, 1002)).passed == 1


def test_forged_code_is_refused_as_bad_signature_on_the_display(gate_factory, probe, signer):
    agent, sim = gate_factory()
    code = ticket(signer, 1003)
    forged = code[:-3] + ("A" if code[-3] != "A" else "B") + code[-2:]

    handled = agent.present("qr", forged)

    assert not handled.granted and handled.reason == "bad_signature"
    assert sim.counters == (0, 0)
    shown = agent.display.history[-1]
    assert (shown.colour, shown.reason, shown.text) == ("red", "bad_signature", "Ticket code not valid")
    assert agent.display.spoken[-1] == "Ticket code not valid"
    event = probe.wait(lambda: probe.events("g1"))[0]
    assert (event.decision, event.reason, event.passed, event.credential_ref) == ("refused", "bad_signature", False, "")


def test_single_entry_ticket_is_used_up_at_its_second_visit(gate_factory, signer):
    agent, _ = gate_factory()
    code = ticket(signer, 1004)
    assert agent.present("qr", code).passed == 1
    agent._recent.clear()
    assert agent.present("qr", code).reason == "used_up"


def test_repeated_scan_within_the_window_is_ignored(gate_factory, signer):
    agent, sim = gate_factory()
    code = ticket(signer, 1005)
    first = agent.present("qr", code)
    again = agent.present("qr", code)
    assert first.passed == 1
    assert again.ignored == "repeat" and again.outcome is None
    assert sim.counters == (1, 0)


def test_ticket_revoked_by_a_delta_is_refused(gate_factory, probe, signer):
    agent, _ = gate_factory()
    probe.wait(lambda: agent.store.meta("snapshot_id"))  # the first start's snapshot
    probe.delta(m.TicketChange(ticket_id=1006, ticket_type=1, status="revoked"))
    probe.wait(lambda: agent.store.seq == probe.seq)

    handled = agent.present("qr", ticket(signer, 1006))

    assert handled.reason == "revoked"
    assert agent.display.history[-1].text == "Ticket cancelled"


def test_group_ticket_of_three_opens_three_times(gate_factory, probe, signer):
    agent, sim = gate_factory()

    handled = agent.present("qr", ticket(signer, 1007, ticket_type=3, headcount=3))

    assert handled.granted and handled.passed == 3
    assert sim.counters == (3, 0)
    events = probe.wait(lambda: len(probe.events("g1")) == 3 and probe.events("g1"))
    assert all(e.passed and e.headcount == 1 and e.credential_ref == "T1007" for e in events)
    assert agent.store.usage("T1007")[0].entries == 3
    agent._recent.clear()
    assert agent.present("qr", ticket(signer, 1007, ticket_type=3, headcount=3)).reason == "used_up"


def test_ticket_for_another_zone_and_not_yet_valid_are_refused_with_reasons(gate_factory, signer):
    agent, _ = gate_factory()
    assert agent.present("qr", ticket(signer, 1008, zones=frozenset({5}))).reason == "wrong_zone"
    from datetime import timedelta

    from tests.gate_agent.conftest import now

    later = now() + timedelta(days=2)
    handled = agent.present("qr", ticket(signer, 1009, valid_from=later, valid_to=later + timedelta(days=1)))
    assert handled.reason == "too_early"
    assert agent.display.history[-1].colour == "amber"
    assert agent.present("qr", "HELLO").reason == "not_a_code"



def test_a_gate_whose_turnstile_has_no_profile_refuses_with_the_fault_and_reports_it(gate_factory, probe, signer):
    """A provisioned gate the central named no controller profile for: the visitor is told to see staff,
    the attempt reaches the central as a refusal for the fault (not a grant nobody walked through), the
    entry is kept, and the gate's status carries the fault."""
    from tests.gate_agent.conftest import gate_config_for

    config = gate_config_for(signer, probe.site, "g1", hardware=m.HardwareParams(passage_timeout_s=1.0))
    agent, sim = gate_factory(config=config)

    handled = agent.present("qr", ticket(signer, 1501))

    assert handled.passed == 0 and sim.counters == (0, 0)
    event = probe.wait(lambda: probe.events("g1"))[0]
    assert (event.decision, event.reason, event.passed) == ("refused", "controller_fault", False)
    assert agent.store.usage("T1501")[0].entries == 0
    assert agent.display.history[-1].reason == "controller_fault"
    status = probe.wait(lambda: [s for s in probe.of("status", m.GateStatus, "g1") if s.alarms])[-1]
    assert status.alarms == ["controller_profile_missing"]


def test_a_profile_the_box_does_not_have_is_refused_with_the_models_it_knows(gate_factory, probe, signer):
    from tests.gate_agent.conftest import gate_config_for

    agent, _sim = gate_factory()
    typo = gate_config_for(signer, probe.site, "g1", version=2,
                           hardware=m.HardwareParams(controller_profile="tripod-coi"))
    probe.publish(topics.config(probe.site, "g1"), typo, retain=True)
    ack = probe.wait(lambda: [a for a in probe.of("config/ack", m.ConfigAck, "g1") if a.version == 2])[0]
    assert not ack.applied and "tripod-coi" in ack.error and "tripod-coil" in ack.error
    assert agent.active.cfg.version == 1  # the last good config stays
