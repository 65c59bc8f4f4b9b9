"""Codes shown again or too late, at running gates; ID numbers never in a gate's store file.

Forged, altered, unknown-key and retired-key codes (after the grace period) are refused in
`tests/protocol/test_ticket_code.py` and `test_rules.py`, fuzzed in `tests/protocol/test_fuzz.py`, and a
forged code at a gate in `tests/gate_agent/test_admission.py`.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

from drivers.idcard_frames import IdCard
from drivers.sim.idcard_sim import IdCardReaderSim
from tests.gate_agent.conftest import booking_today, now, ticket


def test_a_code_used_once_is_refused_when_shown_again_at_the_same_gate_and_at_another(gate_factory, probe, signer):
    a, _ = gate_factory("g1")
    b, _ = gate_factory("g2")
    code = ticket(signer, 9101)
    assert a.present("qr", code).passed == 1
    a._recent.clear()  # past the double-scan window: a visitor handing the code back over the fence
    assert a.present("qr", code).reason == "used_up"
    probe.wait(lambda: b.store.usage("T9101")[0].entries == 1, timeout=2)
    assert b.present("qr", code).reason == "used_up"
    # A screenshot of the same code shown at both gates while they are cut off is the offline conflict:
    # tests/reliability/test_offline_and_devices.py.


def test_an_expired_code_is_refused_with_expired_at_the_gate(gate_factory, signer):
    a, sim = gate_factory("g1")
    old = ticket(signer, 9102, valid_from=now() - timedelta(days=2), valid_to=now() - timedelta(days=1))
    handled = a.present("qr", old)
    assert handled.reason == "expired" and handled.passed == 0
    assert sim.counters == (0, 0)


def test_an_id_number_is_only_ever_a_salted_digest_in_the_gate_store_file(gate_factory, probe, tmp_path):
    card = IdCard(name="王五", sex="male", nation="汉", birth_date=dt.date(1990, 3, 7), address="北京市东城区某某路2号",
                  id_number="450103199003070020", issuer="北京市公安局东城分局", valid_from=dt.date(2020, 1, 1),
                  valid_to=dt.date(2040, 1, 1), nation_code=1)
    reader = IdCardReaderSim()
    try:
        probe.snapshot.append(booking_today(9103, card.id_number))
        agent, sim = gate_factory(devices={"idcard": {"port": reader.device_path}})
        probe.wait(lambda: agent.store.meta("snapshot_id"))
        reader.present(card)
        probe.wait(lambda: [e for e in probe.events("g1") if e.passed], timeout=10)
        assert sim.counters == (1, 0)
    finally:
        reader.close()
    agent.stop()
    number = card.id_number.encode()
    for path in tmp_path.glob("g1.db*"):  # the database, its WAL and shared memory
        data = path.read_bytes()
        for needle in (number, number[:-1], card.id_number.encode("utf-16-le")):
            assert needle not in data, f"{needle!r} found in {path.name}"
    assert card.id_number not in str(probe.messages)
