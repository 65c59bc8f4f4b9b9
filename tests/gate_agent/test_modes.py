"""Operating modes at one gate: a locked gate refuses entries, yet nobody is trapped inside."""

from __future__ import annotations

from tests.gate_agent.conftest import gate_config_for, ticket


def test_a_locked_gate_refuses_entries_but_lets_an_exit_through_and_locks_again(gate_factory, probe, signer, site):
    agent, sim = gate_factory(config=gate_config_for(signer, site, "g1", mode="locked"))
    probe.wait(lambda: sim.mode == "locked")
    code = ticket(signer, 9101, ticket_type=2)

    assert agent.present("qr", code).reason == "gate_locked"
    assert sim.counters == (0, 0)

    leaving = agent.present("qr", code, "out")
    assert leaving.granted and leaving.passed == 1
    assert sim.counters == (0, 1)  # the arm turned for the exit ...
    assert sim.mode == "locked" and agent.mode == "locked"  # ... and the controller is locked again

    # A visitor who is let out but walks back: the controller locks again all the same.
    sim.behaviour = "walk_away"
    agent._recent.clear()
    assert agent.present("qr", code, "out").passed == 0
    assert sim.mode == "locked"
    sim.behaviour = "pass"
    agent._recent.clear()
    assert agent.present("qr", code).reason == "gate_locked"
    assert sim.counters == (0, 1)


def test_an_exit_through_a_locked_gate_ends_in_the_mode_set_meanwhile(gate_factory, probe, signer, site):
    agent, sim = gate_factory(config=gate_config_for(signer, site, "g1", mode="locked"))
    probe.wait(lambda: sim.mode == "locked")
    sim.behaviour = "walk_away"
    sim.walk_away_s = 0.5
    import threading

    done = threading.Event()
    threading.Thread(target=lambda: (agent.present("qr", ticket(signer, 9102), "out"), done.set()),
                     daemon=True).start()
    probe.wait(lambda: sim.arm_state == "open_out")
    agent.set_mode("emergency")  # the fire alarm, while the exit is under way
    assert done.wait(10)
    assert sim.mode == "free" and agent.mode == "emergency"
