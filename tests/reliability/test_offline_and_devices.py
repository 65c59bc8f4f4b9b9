"""Two offline gates and one single-entry ticket; a turnstile controller that goes silent or garbles replies.

The serial reader unplugged and replugged at a running gate is `tests/gate_agent/test_readers.py::
test_qr_scanner_burst_double_scan_and_unplug_are_handled_as_a_gate_must`, and at the driver level
`tests/drivers/test_qr_scanner.py` and `test_idcard.py`; the silent controller at the driver level is
`tests/drivers/test_turnstile.py`. Here: the gate process, its status at the central and its decisions.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from central.models import Gate
from central.models import PassageEventRecord as E
from tests.reliability.conftest import poll, report

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]


def test_one_single_entry_ticket_at_two_offline_gates_is_recorded_as_a_conflict(db_url, tmp_path, mosquitto_factory,
                                                                                park_factory, gate_procs,
                                                                                witness_factory):
    broker = mosquitto_factory(persistence=True)
    park = park_factory(db_url, broker, tickets=1)
    park.start_ingest()
    witness = witness_factory(broker, park.site)
    gates = [gate_procs(broker, park.site, name).start() for name in park.gates]
    poll(lambda: all(g.ready() for g in gates), 40, what="gates configured and synced")
    broker.stop()
    code = park.codes[0]
    for g in gates:  # the same printed code at both gates while neither can tell the other
        g.scanner.scan(code)
        poll(lambda g=g: g.written() == 1, 10, what=f"{g.gate} deciding offline")
    assert [g.sim.counters for g in gates] == [(1, 0), (1, 0)]  # both let the visitor in: they could not know
    broker.start()
    poll(lambda: park.rows(passed=True) == 2, 40, what="both passages at the central")
    conflicts = poll(park.conflicts, 20, what="the conflict")
    assert len(conflicts) == 1
    conflict = conflicts[0]
    assert conflict.reason == "used_up" and conflict.offline
    assert {conflict.gate, conflict.other_gate} == {"g1", "g2"}
    with park.ctx.sessions() as db:
        refs = set(db.scalars(select(E.credential_ref).where(E.site_id == park.site, E.passed.is_(True))))
    assert refs == {conflict.credential_ref}
    assert park.zone(1).inside == 2  # both visitors are inside: the count follows the turnstiles
    report("two-offline-gates-same-ticket", sent=2, received=park.rows(), duplicates_dropped=witness.sent -
           witness.unique, lost=2 - park.rows(), conflicts=len(conflicts))


def _alarms(park, gate: str) -> list[str]:
    with park.ctx.sessions() as db:
        return db.scalar(select(Gate.alarms).where(Gate.site_id == park.site, Gate.name == gate)) or []


def test_a_silent_controller_is_reported_the_gate_still_decides_and_recovers(db_url, tmp_path, mosquitto, park_factory,
                                                                            gate_procs):
    park = park_factory(db_url, mosquitto, gates=("g1",), tickets=3)
    park.start_ingest()
    gate = gate_procs(mosquitto, park.site, "g1").start()
    poll(gate.ready, 40, what="the gate configured and synced")
    first, second, third = park.codes
    gate.scanner.scan(first)
    poll(lambda: park.rows("g1", passed=True) == 1, 20, what="a first visitor through")

    gate.sim.silent = True  # the controller stops answering (cable cut, controller hung)
    poll(lambda: "controller_unreachable" in _alarms(park, "g1"), 20, what="the fault at the central")
    gate.scanner.scan(second)  # valid, but the arm cannot be opened: the visitor is told, the entry kept
    poll(lambda: gate.written() == 2, 20, what="a decision with the controller silent")
    gate.scanner.scan(first)  # a used code is still refused: deciding does not need the controller
    poll(lambda: gate.written() == 3, 20, what="a refusal with the controller silent")

    gate.sim.silent = False
    poll(lambda: "controller_unreachable" not in _alarms(park, "g1"), 20, what="the fault cleared")
    # Silent in the middle of a passage: the arm opened, the controller stops answering, the visitor
    # walks through. The gate cannot see it (granted, not passed) until the controller answers again.
    gate.sim.pass_delay_s = 1.0
    gate.scanner.scan(third)
    poll(lambda: gate.sim.arm_state == "open_in", 10, what="the arm open")
    gate.sim.silent = True
    poll(lambda: gate.sim.counters == (2, 0), 10, what="the visitor through a silent controller")
    poll(lambda: gate.written() == 4, 20, what="the gate giving up on the passage")
    gate.sim.silent = False
    gate.sim.pass_delay_s = 0.03
    gate.sim.corrupt_responses = 2  # and a burst of garbled replies is retried, not a fault
    gate.scanner.scan(second)  # the kept entry is used now; the passage missed before is settled first
    poll(lambda: gate.sim.counters == (3, 0), 20, what="the visitor through after recovery")
    poll(lambda: park.rows("g1") == gate.written() == 6, 20, what="every decision at the central")
    with park.ctx.sessions() as db:
        rows = [(r.credential_ref, r.decision, r.reason, r.passed)
                for r in db.scalars(select(E).where(E.site_id == park.site).order_by(E.at))]
    t1, t2, t3 = (f"T{c}" for c in sorted({r[0][1:] for r in rows}, key=int))
    # A visitor the arm could not be opened for is a refusal for the gate's fault, with that reason; one the
    # arm opened for while the controller went silent is a grant not (yet) seen passing.
    assert rows == [(t1, "granted", "ok", True), (t2, "refused", "controller_fault", False),
                    (t1, "refused", "used_up", False), (t3, "granted", "ok", False), (t3, "granted", "ok", True),
                    (t2, "granted", "ok", True)]
    assert park.rows("g1", passed=True) == gate.sim.counters[0] == park.zone(1).inside == 3
    report("modbus-controller-silent", sent=gate.written(), received=park.rows(), duplicates_dropped=0,
           lost=gate.written() - park.rows(), decisions_while_silent=3, passages_recovered=1)
