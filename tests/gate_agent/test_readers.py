"""Visitors at the real (simulated) readers: ID card, RFID card, QR scanner on pseudo-terminals."""

from __future__ import annotations

import datetime as dt
import time
from datetime import timedelta

from drivers.idcard_frames import IdCard
from drivers.sim.idcard_sim import IdCardReaderSim
from drivers.sim.serial_sim import QrScannerSim, SerialRfidReaderSim
from protocol import messages as m
from tests.gate_agent.conftest import booking_today, now, ticket
from tests.support.waiting import poll as until

ZHANG = IdCard(name="张三", sex="male", nation="汉", birth_date=dt.date(1949, 12, 31), address="北京市朝阳区某某路1号",
               id_number="11010519491231002X", issuer="北京市公安局朝阳分局", valid_from=dt.date(2015, 1, 1),
               valid_to=dt.date(2035, 1, 1), nation_code=1)
LI = IdCard("李四", "female", "壮", dt.date(1990, 3, 7), "广西南宁市青秀区民族大道100号",
            "450103199003070020", "南宁市公安局青秀分局", dt.date(2020, 5, 1), None, 8)




def latest(agent, count: int):
    """Wait for the `count`-th shown decision."""
    agent.display.wait_for(lambda s: len(agent.display.history) >= count, timeout=10)
    return agent.display.history[count - 1]


def test_id_card_with_a_booking_today_is_granted_and_without_one_refused(gate_factory, probe):
    reader = IdCardReaderSim()
    try:
        probe.snapshot.append(booking_today(6001, ZHANG.id_number))
        agent, sim = gate_factory(devices={"idcard": {"port": reader.device_path}})
        probe.wait(lambda: agent.store.meta("snapshot_id"))

        reader.present(ZHANG)
        shown = latest(agent, 1)
        assert (shown.reason, shown.colour) == ("ok", "green")
        event = probe.wait(lambda: [e for e in probe.events("g1") if e.passed])[0]
        assert (event.credential_kind, event.credential_ref) == ("id_card", "T6001")
        assert ZHANG.id_number not in str(probe.messages)  # the number itself never leaves the gate
        assert sim.counters == (1, 0)

        reader.present(LI)
        assert latest(agent, 2).reason == "no_booking"
    finally:
        reader.close()


def test_annual_pass_by_rfid_card_is_granted_and_a_suspended_one_refused(gate_factory, probe):
    reader = SerialRfidReaderSim()
    try:
        agent, sim = gate_factory(devices={"rfid": {"port": reader.device_path}})
        probe.wait(lambda: agent.store.meta("snapshot_id"))
        probe.delta(m.PassChange(pass_id=77, holder_id="h77", card_uid="04A1B2C3",
                                 valid_to=now() + timedelta(days=300)),
                    m.PassChange(pass_id=78, holder_id="h78", card_uid="04A1B2C4", status="suspended"))
        probe.wait(lambda: agent.store.seq == probe.seq)

        reader.present(bytes.fromhex("04A1B2C3"))
        assert latest(agent, 1).reason == "ok"
        event = probe.wait(lambda: [e for e in probe.events("g1") if e.passed])[0]
        assert (event.credential_kind, event.credential_ref) == ("annual_pass", "P77")

        reader.present(bytes.fromhex("04A1B2C4"))
        assert latest(agent, 2).reason == "pass_suspended"
        reader.present(bytes.fromhex("DEADBEEF"))
        assert latest(agent, 3).reason == "unknown_credential"
    finally:
        reader.close()


def test_annual_pass_needing_a_face_without_a_camera_asks_the_visitor_to_look(gate_factory, probe, signer, site):
    from tests.gate_agent.conftest import gate_config_for

    agent, _ = gate_factory(config=gate_config_for(signer, site, "g1", pass_biometric="face"))
    probe.wait(lambda: agent.store.meta("snapshot_id"))
    probe.delta(m.PassChange(pass_id=79, holder_id="h79", card_uid="04A1B2C5"))
    probe.wait(lambda: agent.store.seq == probe.seq)
    assert agent.present("annual_pass", "04a1b2c5").reason == "look_at_camera"


def test_qr_scanner_burst_double_scan_and_unplug_are_handled_as_a_gate_must(gate_factory, signer):
    scanner = QrScannerSim()
    try:
        agent, sim = gate_factory(devices={"qr": {"port": scanner.device_path}})
        reader = agent.readers[0]
        until(lambda: reader.ok)
        first, second = ticket(signer, 7001), ticket(signer, 7002)

        # A burst: two visitors' codes and a double read of the first, back to back.
        scanner.scan(first)
        scanner.scan(first)
        scanner.scan(second)
        assert latest(agent, 2).reason == "ok"
        time.sleep(0.3)  # the double read would have been decided by now
        assert len(agent.display.history) == 2  # the double read was ignored
        assert sim.counters == (2, 0)

        scanner.unplug()
        until(lambda: not reader.ok)
        assert [h.ok for h in agent.reader_health() if h.name == "qr"] == [False]
        scanner.replug()
        until(lambda: reader.ok)  # the scanner is back (a scan while the port reopens is lost, as with a cable)
        scanner.scan(ticket(signer, 7003))
        assert latest(agent, 3).reason == "ok"
        assert reader.ok
    finally:
        scanner.close()
