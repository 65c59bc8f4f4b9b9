"""人票绑定 (re-entry bound by fingerprint), end to end: two gates, each with an AS608 module simulator on a
pseudo-terminal, real Mosquitto between them. A day ticket's finger is taken at its first entry at gate A,
read back from the module and loaded into gate B's module, which admits its holder again and refuses
another finger; when the binding ends, the slots are freed."""

from __future__ import annotations

import time

import pytest

from drivers.sim.fingerprint_sim import FingerprintModuleSim
from gate_agent.decider import Attempt
from protocol import messages as m
from tests.gate_agent.conftest import RULES, gate_config_for, ticket
from tests.gate_agent.test_fingerprint import A, B
from tests.support.waiting import poll as until

BOUND = m.TicketTypeRules(id=7, name="day ticket, finger bound", entries=3, bind_finger=True)


@pytest.fixture
def modules():
    sims = [FingerprintModuleSim(capacity=50) for _ in range(2)]
    yield sims
    for sim in sims:
        sim.close()


def present(agent, code: str, lay) -> object:
    """The visitor shows the ticket; once the gate asks for the finger, `lay()` puts it on the sensor."""
    agent._recent.clear()  # the same code again, after the repeat window
    count = len(agent.display.notices)
    job = agent.submit(Attempt("qr", code, "in", "test"))
    assert agent.display.wait_notice(lambda n: agent.display.notices.index(n) >= count
                                     and n.reason == "finger_needed", timeout=10)
    lay()
    assert job.done.wait(15)
    return job.result


def test_a_finger_taken_at_gate_a_admits_its_holder_again_at_gate_b_and_refuses_another(
        gate_factory, probe, signer, site, modules, tmp_path):
    module_a, module_b = modules
    view = tmp_path / "visitor.jpg"  # gate A's camera: what it sees as the finger is taken
    from PIL import Image

    Image.new("RGB", (640, 480), (30, 140, 200)).save(view, "JPEG")
    gates = {}
    for gate, module in (("g1", module_a), ("g2", module_b)):
        cfg = gate_config_for(signer, site, gate, ticket_types=[*RULES, BOUND])
        devices = {"fingerprint": {"port": module.device_path}}
        if gate == "g1":
            devices["camera"] = {"files": str(view), "fps": 20}
        gates[gate], _sim = gate_factory(gate, config=cfg, devices=devices)
    a, b = gates["g1"], gates["g2"]
    code = ticket(signer, 8101, ticket_type=7)

    first = present(a, code, lambda: module_a.enrolment_visitor(A))

    assert first.granted and first.passed == 1
    module_a.lift_finger()
    assert list(module_a.slots.values()) == [A]  # taken into the module, and read back ...
    event = probe.wait(lambda: [e for e in probe.events("g1") if e.passed])[0]
    assert (event.binding, event.binding_kind) == (A, "fingerprint")  # ... to travel to the site's gates
    assert event.photo and event.photo.startswith(b"\xff\xd8")  # with the first entry's view, for staff
    until(lambda: list(module_b.slots.values()) == [A], what="gate B's module holding the ticket's finger")
    until(lambda: b.fingerprints.synced.is_set(), what="gate B's slots in step")

    again = present(b, code, lambda: module_b.touch(A))
    assert again.granted and again.passed == 1

    other = present(b, code, lambda: module_b.touch(B))  # the same ticket, another visitor's finger
    assert other.reason == "not_same_person" and other.passed == 0
    # Staff are asked, and see the first entry's view (gate B has no camera of its own here).
    request = probe.wait(lambda: probe.of("help", m.HelpRequest, "g2"))[0]
    assert (request.credential_ref, request.holder_id, request.photo) == ("T8101", None, event.photo)

    # The visit is over: the binding goes, and with it the finger in every module.
    for agent, module in ((a, module_a), (b, module_b)):
        assert agent.store.purge_bindings(now=time.time() + 3 * 24 * 3600) == 1
        agent._after_purge()
        until(lambda module=module: module.slots == {}, what="the ticket's slot freed")
        assert agent.store.first_entry_photo("T8101") is None  # and the photo
