"""The serial transport under the line and frame readers: a vanished port is one driver error."""

from __future__ import annotations

import time

import pytest

from drivers.errors import DeviceDisconnected
from drivers.serial_link import SerialLink
from drivers.sim.serial_sim import PtyPair


def test_writing_to_a_port_that_vanished_is_a_disconnect_and_the_link_reopens_after_replug():
    """A USB adapter pulled while the driver writes: the driver sees DeviceDisconnected and the link
    opens again once the port is back."""
    pty = PtyPair()
    link = SerialLink(pty.device_path, 115200)
    try:
        assert link.open()
        link.write(b"ping")
        assert _received(pty) == b"ping"
        pty.unplug()
        with pytest.raises(DeviceDisconnected):
            for _ in range(20):  # the kernel may take a write or two to notice the other end is gone
                link.write(b"x" * 64)
        assert not link.connected
        pty.replug()
        assert link.wait_open(time.monotonic() + 3)  # reopened once the retry interval has passed
        link.write(b"back")
        assert _received(pty) == b"back"
    finally:
        link.close()
        pty.close()


def _received(pty: PtyPair, timeout: float = 2.0) -> bytes:
    """What the driver sent: `read` also returns early when the cable is woken (as by an unplug)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = pty.read(deadline - time.monotonic())
        if data:
            return data
    return b""


def test_pyserial_flush_on_a_vanished_port_raises_termios_error_which_the_link_expects():
    """Pins pyserial 3.5's behaviour that `SerialLink.write` relies on: `flush()` calls termios.tcdrain
    unwrapped, so a port that vanishes between write and flush fails with termios.error (no OSError).
    An unplug landing there made the ID card reader's unplug test fail about once in ten runs."""
    import termios

    import serial

    pty = PtyPair()
    ser = serial.Serial(pty.device_path, 115200, timeout=0)
    try:
        ser.write(b"x")
        pty.unplug()
        with pytest.raises(termios.error) as caught:
            ser.flush()
        assert not isinstance(caught.value, OSError)
    finally:
        ser.close()
        pty.close()
