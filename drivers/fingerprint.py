"""Fingerprint module of the ZhianTec / AS608 / R30x kind on a serial line (codec in `fingerprint_packets`).

The module matches on its own: the gate captures and searches, and keeps the module's slots in
step with the central's templates (`store_template`, `delete`, `used_slots`). Errors: a bad
checksum raises FrameError, no answer DeviceTimeout, an error confirmation code DeviceFault (with
`.code`), an unplugged port DeviceDisconnected (reported once through `on_status`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from drivers import fingerprint_packets as p
from drivers.errors import DeviceDisconnected, DeviceFault, DeviceTimeout, FrameError
from drivers.serial_link import SerialLink, StatusCallback


@dataclass(frozen=True)
class SearchHit:
    slot: int
    score: int


@dataclass(frozen=True)
class SystemParameters:
    capacity: int
    security_level: int
    address: int
    packet_size: int


class FingerprintModule:
    """An AS608 / R30x fingerprint module."""

    def __init__(
        self,
        port: str,
        baudrate: int = 57600,
        address: int = p.DEFAULT_ADDRESS,
        *,
        password: int = 0,
        response_timeout: float = 1.0,
        poll_interval_s: float = 0.05,
        packet_size: int = 128,
        capacity: int | None = None,
        on_status: StatusCallback | None = None,
    ) -> None:
        self.port = port
        self.address = address
        self.password = password
        self.response_timeout = response_timeout
        self.poll_interval_s = poll_interval_s
        self.packet_size = packet_size
        self.capacity = capacity
        self.link = SerialLink(port, baudrate, on_status=on_status)
        self._buf = bytearray()

    def open(self) -> bool:
        return self.link.open()

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> FingerprintModule:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- packets -------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if not self.link.open():
            raise self.link.last_error or DeviceDisconnected(self.port, "port not open")
        self.link.write(data)

    def _receive(self, what: str) -> p.Packet:
        deadline = time.monotonic() + self.response_timeout
        while True:
            try:
                raw, used = p.split_packet(bytes(self._buf), self.port)
            except FrameError:
                del self._buf[:2]
                raise
            del self._buf[:used]
            if raw is not None:
                pkt = p.decode_packet(raw, self.port)
                if pkt.address != self.address:
                    continue  # another module on the same line
                return pkt
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeviceTimeout(self.port, f"{what}: no answer within {self.response_timeout}s")
            self._buf += self.link.read(remaining)

    def _command(self, code: int, params: bytes, what: str, allowed: tuple[int, ...] = (p.OK,)) -> p.Packet:
        self._buf.clear()
        if self.link.connected:
            self.link.discard_input()  # a late answer must not pass for this one
        self._send(p.command(code, params, self.address))
        pkt = self._receive(what)
        if pkt.pid != p.PID_ACK:
            raise FrameError(self.port, f"{what}: expected an acknowledge, got packet type 0x{pkt.pid:02X}")
        if pkt.confirmation not in allowed:
            msg = p.CONFIRM_MESSAGES.get(pkt.confirmation, f"code 0x{pkt.confirmation:02X}")
            raise DeviceFault(self.port, f"{what}: {msg}", pkt.confirmation)
        return pkt

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot <= 0xFFFF or (self.capacity is not None and slot >= self.capacity):
            raise ValueError(f"slot {slot} out of range")

    # -- operations ----------------------------------------------------------------------------

    def verify_password(self) -> bool:
        pkt = self._command(p.VERIFY_PASSWORD, self.password.to_bytes(4, "big"), "verify password",
                            (p.OK, p.WRONG_PASSWORD))
        return pkt.confirmation == p.OK

    def read_system_parameters(self) -> SystemParameters:
        d = self._command(p.READ_SYS_PARA, b"", "read system parameters").payload[1:]
        if len(d) < 16:
            raise FrameError(self.port, "system parameters shorter than 16 bytes")
        size = {0: 32, 1: 64, 2: 128, 3: 256}.get(int.from_bytes(d[12:14], "big"), 128)
        params = SystemParameters(int.from_bytes(d[4:6], "big"), int.from_bytes(d[6:8], "big"),
                                  int.from_bytes(d[8:12], "big"), size)
        self.capacity, self.packet_size = params.capacity, params.packet_size
        return params

    def _capture(self, buffer_id: int, deadline: float) -> bool:
        """GenImg until a finger is on the sensor (False at deadline), then Img2Tz into `buffer_id`."""
        while True:
            pkt = self._command(p.GEN_IMG, b"", "capture image", (p.OK, p.NO_FINGER, p.ENROLL_FAIL))
            if pkt.confirmation == p.OK:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(self.poll_interval_s, remaining))  # the sensor is polled: no finger event
        self._command(p.IMG2TZ, bytes([buffer_id]), "extract features")
        return True

    def capture_and_search(self, timeout: float | None) -> SearchHit | None:
        """Wait for a finger, then search the library: the matching slot and score, or None.

        None both when no finger came within `timeout` and when the finger matched no slot.
        """
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        if not self._capture(1, deadline):
            return None
        count = self.capacity if self.capacity is not None else 0xFFFF
        pkt = self._command(p.SEARCH, bytes([1]) + (0).to_bytes(2, "big") + count.to_bytes(2, "big"),
                            "search", (p.OK, p.NOT_FOUND))
        if pkt.confirmation == p.NOT_FOUND:
            return None
        d = pkt.payload[1:]
        if len(d) < 4:
            raise FrameError(self.port, "search answer shorter than slot and score")
        return SearchHit(int.from_bytes(d[0:2], "big"), int.from_bytes(d[2:4], "big"))

    def wait_finger_lifted(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            pkt = self._command(p.GEN_IMG, b"", "capture image", (p.OK, p.NO_FINGER, p.ENROLL_FAIL))
            if pkt.confirmation == p.NO_FINGER:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(self.poll_interval_s, remaining))

    def enrol(self, slot: int, timeout: float = 10.0) -> bool:
        """Enrol a finger from the sensor into `slot`: two captures (lift between), merge, store.

        False if a finger did not come in time; DeviceFault if the two captures do not merge.
        """
        self._check_slot(slot)
        deadline = time.monotonic() + timeout
        if not self._capture(1, deadline):
            return False
        if not self.wait_finger_lifted(max(0.0, deadline - time.monotonic())):
            return False
        if not self._capture(2, deadline):
            return False
        self._command(p.REG_MODEL, b"", "merge captures")
        self._command(p.STORE, bytes([1]) + slot.to_bytes(2, "big"), f"store slot {slot}")
        return True

    def store_template(self, slot: int, template: bytes) -> None:
        """Download `template` to the module and store it in `slot` (DownChar + Store)."""
        self._check_slot(slot)
        if not template:
            raise ValueError("empty template")
        self._command(p.DOWN_CHAR, bytes([1]), "download template")
        self._send(p.data_packets(template, self.packet_size, self.address))
        self._command(p.STORE, bytes([1]) + slot.to_bytes(2, "big"), f"store slot {slot}")

    def load_template(self, slot: int) -> bytes:
        """The template stored in `slot` (LoadChar + UpChar)."""
        self._check_slot(slot)
        self._command(p.LOAD_CHAR, bytes([1]) + slot.to_bytes(2, "big"), f"load slot {slot}")
        self._command(p.UP_CHAR, bytes([1]), "upload template")
        blob = bytearray()
        while True:
            pkt = self._receive("template data")
            if pkt.pid not in (p.PID_DATA, p.PID_END):
                raise FrameError(self.port, f"expected template data, got packet type 0x{pkt.pid:02X}")
            blob += pkt.payload
            if pkt.pid == p.PID_END:
                return bytes(blob)

    def delete(self, slot: int, count: int = 1) -> None:
        self._check_slot(slot)
        self._command(p.DELETE, slot.to_bytes(2, "big") + count.to_bytes(2, "big"), f"delete slot {slot}")

    def empty(self) -> None:
        self._command(p.EMPTY, b"", "empty library")

    def template_count(self) -> int:
        d = self._command(p.TEMPLATE_COUNT, b"", "template count").payload[1:]
        if len(d) < 2:
            raise FrameError(self.port, "template count answer too short")
        return int.from_bytes(d[:2], "big")

    def used_slots(self) -> frozenset[int]:
        """The slots holding a template (from the module's index table), to sync against the central."""
        capacity = self.capacity if self.capacity is not None else self.read_system_parameters().capacity
        used: set[int] = set()
        for page in range((capacity + 255) // 256):
            bits = self._command(p.READ_INDEX_TABLE, bytes([page]), "read index table").payload[1:33]
            used.update(page * 256 + i for i in range(len(bits) * 8) if bits[i // 8] >> (i % 8) & 1)
        return frozenset(s for s in used if s < capacity)


__all__ = ["FingerprintModule", "SearchHit", "SystemParameters"]
