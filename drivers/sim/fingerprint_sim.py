"""A fingerprint module of the AS608 / R30x kind on a pty, storing templates in memory.

`place_finger(template)` puts a finger on the sensor (the template stands for the features the
module would extract from it), `lift_finger()` takes it off. Matching is exact template equality:
that is this simulator's stand-in for the module's fuzzy matching, which it cannot reproduce.
Enrolment (two captures + RegModel) stores the template of the finger shown.
"""

from __future__ import annotations

import threading

from drivers import fingerprint_packets as p
from drivers.sim.serial_sim import RequestResponseSim


class FingerprintModuleSim(RequestResponseSim):
    name = "fingerprint-sim"

    def __init__(
        self,
        device_path: str | None = None,
        *,
        capacity: int = 300,
        password: int = 0,
        address: int = p.DEFAULT_ADDRESS,
        packet_size: int = 128,
        template_size: int = 512,
    ) -> None:
        self.capacity = capacity
        self.password = password
        self.address = address
        self.packet_size = packet_size
        self.template_size = template_size
        self.slots: dict[int, bytes] = {}
        self.finger: bytes | None = None
        self.score = 150
        self._image: bytes | None = None
        self._buffers: dict[int, bytes | None] = {1: None, 2: None}
        self._downloading: int | None = None  # char buffer receiving data packets
        self._download = bytearray()
        self._corrupt = 0
        self._visitor: str | None = None
        self.captured = threading.Event()  # set when the module captured a finger laid by `touch`
        super().__init__(device_path)

    def place_finger(self, template: bytes) -> None:
        with self._lock:
            self.finger = template

    def lift_finger(self) -> None:
        with self._lock:
            self.finger = None
            self._visitor = None

    def touch(self, template: bytes) -> None:
        """A visitor at a gate touches the sensor once: the finger is lifted as soon as the module has
        captured it (one touch, one attempt), and `captured` is set then. A finger left lying there
        would be captured, and refused, again at every poll."""
        with self._lock:
            self.captured.clear()
            self.finger = template
            self._visitor = "touch"

    def enrolment_visitor(self, template: bytes) -> None:
        """A visitor at the enrolment desk: lays the finger, lifts it after the first capture
        (once the module has seen the sensor empty, lays it again), as the module asks."""
        with self._lock:
            self.finger = template
            self._visitor = "first"

    def corrupt_next_packet(self, count: int = 1) -> None:
        with self._lock:
            self._corrupt += count

    def split(self, buf: bytes) -> tuple[bytes | None, int]:
        return p.split_packet(buf)

    def _ack(self, code: int, data: bytes = b"") -> bytes:
        frame = p.ack(code, data, self.address)
        if self._corrupt:
            self._corrupt -= 1
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        return frame

    def handle(self, frame: bytes) -> bytes:
        try:
            pkt = p.decode_packet(frame)
        except Exception:
            return self._ack(p.PACKET_ERROR)
        if pkt.address != self.address:
            return b""  # not for this module
        if pkt.pid in (p.PID_DATA, p.PID_END):
            if self._downloading is None:
                return b""
            self._download += pkt.payload
            if pkt.pid == p.PID_END:
                self._buffers[self._downloading] = bytes(self._download)
                self._downloading = None
            return b""
        if pkt.pid != p.PID_COMMAND or not pkt.payload:
            return self._ack(p.PACKET_ERROR)
        code, args = pkt.payload[0], pkt.payload[1:]
        return self._command(code, args)

    def _slot(self, args: bytes, at: int) -> int:
        return int.from_bytes(args[at : at + 2], "big")

    def _command(self, code: int, args: bytes) -> bytes:  # noqa: C901 - one branch per instruction
        if code == p.VERIFY_PASSWORD:
            ok = int.from_bytes(args[:4], "big") == self.password
            return self._ack(p.OK if ok else p.WRONG_PASSWORD)
        if code == p.GEN_IMG:
            if self.finger is None:
                if self._visitor == "lifted":
                    self.finger, self._visitor = self._image, None  # lays the finger again
                return self._ack(p.NO_FINGER)
            self._image = self.finger
            if self._visitor == "first":
                self.finger, self._visitor = None, "lifted"
            elif self._visitor == "touch":
                self.finger, self._visitor = None, None
                self.captured.set()
            return self._ack(p.OK)
        if code == p.IMG2TZ:
            if self._image is None or not args or args[0] not in (1, 2):
                return self._ack(0x15)
            self._buffers[args[0]] = self._image
            return self._ack(p.OK)
        if code == p.REG_MODEL:
            a, b = self._buffers[1], self._buffers[2]
            if a is None or a != b:
                return self._ack(p.MERGE_FAIL)
            return self._ack(p.OK)
        if code == p.STORE:
            buf, slot = args[0], self._slot(args, 1)
            if slot >= self.capacity:
                return self._ack(p.BAD_LOCATION)
            template = self._buffers.get(buf)
            if not template:
                return self._ack(p.FLASH_ERROR)
            self.slots[slot] = template
            return self._ack(p.OK)
        if code == p.LOAD_CHAR:
            buf, slot = args[0], self._slot(args, 1)
            if slot >= self.capacity:
                return self._ack(p.BAD_LOCATION)
            if slot not in self.slots:
                return self._ack(p.LOAD_FAIL)
            self._buffers[buf] = self.slots[slot]
            return self._ack(p.OK)
        if code == p.UP_CHAR:
            blob = self._buffers.get(args[0] if args else 1)
            if not blob:
                return self._ack(p.UPLOAD_FAIL)
            return self._ack(p.OK) + p.data_packets(blob, self.packet_size, self.address)
        if code == p.DOWN_CHAR:
            if not args or args[0] not in (1, 2):
                return self._ack(p.DOWNLOAD_FAIL)
            self._downloading, self._download = args[0], bytearray()
            return self._ack(p.OK)
        if code == p.SEARCH:
            buf, start, count = args[0], self._slot(args, 1), self._slot(args, 3)
            probe = self._buffers.get(buf)
            for slot in range(start, min(start + count, self.capacity)):
                if probe is not None and self.slots.get(slot) == probe:
                    return self._ack(p.OK, slot.to_bytes(2, "big") + self.score.to_bytes(2, "big"))
            return self._ack(p.NOT_FOUND, bytes(4))
        if code == p.DELETE:
            start, count = self._slot(args, 0), self._slot(args, 2)
            if start + count > self.capacity:
                return self._ack(p.DELETE_FAIL)
            for slot in range(start, start + count):
                self.slots.pop(slot, None)
            return self._ack(p.OK)
        if code == p.EMPTY:
            self.slots.clear()
            return self._ack(p.OK)
        if code == p.TEMPLATE_COUNT:
            return self._ack(p.OK, len(self.slots).to_bytes(2, "big"))
        if code == p.READ_INDEX_TABLE:
            page = args[0] if args else 0
            bits = bytearray(32)
            for slot in self.slots:
                if page * 256 <= slot < (page + 1) * 256:
                    i = slot - page * 256
                    bits[i // 8] |= 1 << (i % 8)
            return self._ack(p.OK, bytes(bits))
        if code == p.READ_SYS_PARA:
            size_code = {32: 0, 64: 1, 128: 2, 256: 3}[self.packet_size]
            params = (
                (0).to_bytes(2, "big") + (0).to_bytes(2, "big") + self.capacity.to_bytes(2, "big")
                + (3).to_bytes(2, "big") + self.address.to_bytes(4, "big") + size_code.to_bytes(2, "big")
                + (6).to_bytes(2, "big")
            )
            return self._ack(p.OK, params)
        return self._ack(p.PACKET_ERROR)


__all__ = ["FingerprintModuleSim"]
