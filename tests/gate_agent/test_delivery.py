"""End-to-end delivery: an event leaves the gate's outbox only when the central confirms it stored it,
not when the broker acknowledged it (a broker can still drop what it acknowledged)."""

from __future__ import annotations

from tests.gate_agent.conftest import ticket


def test_an_event_the_central_never_confirmed_is_sent_again_and_kept_until_it_is(gate_factory, probe, signer):
    probe.acknowledge = False  # the broker takes the event, but it never reaches the central
    agent, _sim = gate_factory()
    agent.link.resend_after_s = 0.4

    assert agent.present("qr", ticket(signer, 3001)).passed == 1
    first = probe.wait(lambda: probe.events("g1"))[0]
    probe.wait(lambda: agent.store.outbox_unsent() == 0)  # the broker acknowledged it ...
    assert agent.store.outbox_depth() == 1  # ... and the gate still keeps it

    resent = probe.wait(lambda: [e for e in probe.events("g1") if e.id == first.id][1:], timeout=15)
    assert resent[0] == first  # the same event, the same id: the central counts it once

    probe.acknowledge = True  # the central is back and stores what comes
    probe.wait(lambda: agent.store.outbox_depth() == 0, timeout=20)
    assert agent.link.confirmed == 1

