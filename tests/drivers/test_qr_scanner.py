"""The serial QR scanner and the UID-typing RFID reader, against simulators on pseudo-terminals."""

from __future__ import annotations

import threading
import time

import pytest

from drivers.errors import DeviceDisconnected
from drivers.qr_scanner import QrScanner
from drivers.rfid import SerialRfidReader
from drivers.sim.serial_sim import QrScannerSim, SerialRfidReaderSim


class StatusLog:
    """Collects status reports and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list = []
        self._cond = threading.Condition()

    def __call__(self, err) -> None:
        with self._cond:
            self.events.append(err)
            self._cond.notify_all()

    def wait_for(self, pred, timeout: float = 3.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: pred(self.events), timeout)


@pytest.fixture
def scanner_rig():
    sim = QrScannerSim()
    status = StatusLog()
    scanner = QrScanner(sim.device_path, baudrate=115200, on_status=status, reopen_interval_s=0.05)
    assert scanner.open()
    yield sim, scanner, status
    scanner.close()
    sim.close()


def test_code_ended_by_crlf_is_read_without_framing(scanner_rig):
    sim, scanner, _ = scanner_rig
    sim.scan("GT1.k1.AbCdEf0123")
    assert scanner.read_code(1.0) == "GT1.k1.AbCdEf0123"


def test_code_ended_by_cr_only_is_read(scanner_rig):
    sim, scanner, _ = scanner_rig
    sim.terminator = b"\r"
    sim.scan("FIRST")
    sim.scan("SECOND")
    assert scanner.read_code(1.0) == "FIRST"
    assert scanner.read_code(1.0) == "SECOND"


def test_unicode_code_survives(scanner_rig):
    sim, scanner, _ = scanner_rig
    sim.scan("门票-2024-成人")
    assert scanner.read_code(1.0) == "门票-2024-成人"


def test_no_scan_returns_none_after_the_timeout(scanner_rig):
    _, scanner, _ = scanner_rig
    start = time.monotonic()
    assert scanner.read_code(0.15) is None
    assert 0.1 < time.monotonic() - start < 1.0


def test_garbage_before_code_is_dropped(scanner_rig):
    sim, scanner, _ = scanner_rig
    sim.send_raw(b"\x00\x1b[2J\xff\xfe\r\n")
    sim.scan("REAL-CODE")
    assert scanner.read_code(1.0) == "REAL-CODE"
    assert scanner.dropped == 1


def test_line_that_is_not_utf8_is_dropped(scanner_rig):
    sim, scanner, _ = scanner_rig
    sim.send_raw(b"caf\xe9\r\n")
    sim.scan("OK")
    assert scanner.read_code(1.0) == "OK"


def test_overlong_line_is_dropped_whole(scanner_rig):
    sim, scanner, _ = scanner_rig
    sim.send_raw(b"A" * 5000 + b"\r\n")
    sim.scan("AFTER")
    assert scanner.read_code(1.0) == "AFTER"


def test_half_line_then_silence_is_not_glued_to_the_next_code(scanner_rig):
    sim, scanner, _ = scanner_rig
    scanner._lines.stale_after_s = 0.05
    sim.send_raw(b"HALF-OF-A-CO")
    assert scanner.read_code(0.1) is None
    time.sleep(0.1)  # the silence is the scenario itself
    sim.scan("WHOLE")
    assert scanner.read_code(1.0) == "WHOLE"


def test_scanner_unplug_is_reported_once_and_replug_resumes(scanner_rig):
    sim, scanner, status = scanner_rig
    sim.send_raw(b"CUT-BY-UNPL")  # a half line when the cable goes
    sim.unplug()
    assert scanner.read_code(0.2) is None
    assert scanner.read_code(0.2) is None  # still away: no second report, no exception
    assert len(status.events) == 1 and isinstance(status.events[0], DeviceDisconnected)
    assert status.events[0].port == sim.device_path
    assert not scanner.connected

    got: list = []
    reader = threading.Thread(target=lambda: got.append(scanner.read_code(3.0)))
    reader.start()
    sim.replug()
    assert status.wait_for(lambda ev: ev[-1] is None)  # the scanner reopened the port
    sim.scan("AFTER-REPLUG")
    reader.join(5)
    assert got == ["AFTER-REPLUG"]
    assert scanner.connected and len(status.events) == 2


def test_scanner_that_is_not_there_at_start_is_picked_up_later(tmp_path):
    status = StatusLog()
    sim = QrScannerSim(device_path=str(tmp_path / "ttyQR"))
    sim.unplug()
    scanner = QrScanner(sim.device_path, on_status=status, reopen_interval_s=0.05)
    assert scanner.read_code(0.1) is None
    assert isinstance(status.events[0], DeviceDisconnected)
    got: list = []
    reader = threading.Thread(target=lambda: got.append(scanner.read_code(3.0)))
    reader.start()
    sim.replug()
    assert status.wait_for(lambda ev: ev[-1] is None)
    sim.scan("LATE")
    reader.join(5)
    assert got == ["LATE"]
    scanner.close()
    sim.close()


def test_serial_rfid_reader_types_the_uid():
    with SerialRfidReaderSim() as sim, SerialRfidReader(sim.device_path) as reader:
        sim.present(bytes.fromhex("04a1b2c3"))
        assert reader.read_uid(1.0) == "04A1B2C3"


def test_serial_rfid_reader_drops_lines_that_are_not_uids():
    with SerialRfidReaderSim() as sim, SerialRfidReader(sim.device_path) as reader:
        sim.send_raw(b"READY\r\n12\r\n")
        sim.send_raw(b"04:A1:B2:C3:D4:E5:F6\r\n")
        assert reader.read_uid(1.0) == "04A1B2C3D4E5F6"
        assert reader.read_uid(0.05) is None
