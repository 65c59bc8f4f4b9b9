"""Packets of ZhianTec / AS608 / R30x fingerprint modules. Pure encode/decode over bytes.

::

    EF 01 | address (4, BE) | PID (1) | LEN (2, BE) | payload ... | SUM (2, BE)

PID: 0x01 command, 0x02 data (more follow), 0x07 acknowledge, 0x08 last data packet.
LEN counts the payload and the 2-byte SUM. SUM is the low 16 bits of the sum of PID, the two LEN
bytes and the payload bytes. An acknowledge's payload starts with the confirmation code (0x00 ok).
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.errors import FrameError

HEADER = b"\xef\x01"
DEFAULT_ADDRESS = 0xFFFFFFFF
MAX_PAYLOAD = 512  # the longest data packet the modules send (packet size code 3 = 256, with margin)

PID_COMMAND = 0x01
PID_DATA = 0x02
PID_ACK = 0x07
PID_END = 0x08
PIDS = (PID_COMMAND, PID_DATA, PID_ACK, PID_END)

# instruction codes
GEN_IMG = 0x01
IMG2TZ = 0x02
MATCH = 0x03
SEARCH = 0x04
REG_MODEL = 0x05
STORE = 0x06
LOAD_CHAR = 0x07
UP_CHAR = 0x08
DOWN_CHAR = 0x09
DELETE = 0x0C
EMPTY = 0x0D
READ_SYS_PARA = 0x0F
VERIFY_PASSWORD = 0x13
READ_INDEX_TABLE = 0x1F
TEMPLATE_COUNT = 0x1D

# confirmation codes
OK = 0x00
PACKET_ERROR = 0x01
NO_FINGER = 0x02
ENROLL_FAIL = 0x03
IMAGE_MESSY = 0x06
FEATURE_FAIL = 0x07
NO_MATCH = 0x08
NOT_FOUND = 0x09
MERGE_FAIL = 0x0A
BAD_LOCATION = 0x0B
LOAD_FAIL = 0x0C
UPLOAD_FAIL = 0x0D
DOWNLOAD_FAIL = 0x0E
DELETE_FAIL = 0x10
CLEAR_FAIL = 0x11
WRONG_PASSWORD = 0x13
FLASH_ERROR = 0x18
CONFIRM_MESSAGES = {
    0x00: "ok",
    0x01: "error receiving packet",
    0x02: "no finger on the sensor",
    0x03: "failed to take the fingerprint image",
    0x06: "image too messy to extract features",
    0x07: "too few feature points",
    0x08: "fingerprints do not match",
    0x09: "no matching template in the library",
    0x0A: "failed to merge the two captures",
    0x0B: "slot number out of range",
    0x0C: "template in slot is invalid or empty",
    0x0D: "error uploading the template",
    0x0E: "module cannot receive the data packets",
    0x0F: "error uploading the image",
    0x10: "failed to delete the template",
    0x11: "failed to clear the library",
    0x13: "wrong password",
    0x15: "no valid image in the buffer",
    0x18: "error writing flash",
    0x1A: "invalid register",
}


@dataclass(frozen=True)
class Packet:
    pid: int
    payload: bytes
    address: int = DEFAULT_ADDRESS

    @property
    def confirmation(self) -> int:
        """An acknowledge's confirmation code."""
        return self.payload[0] if self.payload else PACKET_ERROR


def checksum(pid: int, length: int, payload: bytes) -> int:
    return (pid + (length >> 8) + (length & 0xFF) + sum(payload)) & 0xFFFF


def encode_packet(pid: int, payload: bytes, address: int = DEFAULT_ADDRESS) -> bytes:
    if pid not in PIDS:
        raise ValueError(f"unknown packet type 0x{pid:02X}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too long")
    length = len(payload) + 2
    return (
        HEADER + address.to_bytes(4, "big") + bytes([pid]) + length.to_bytes(2, "big") + payload
        + checksum(pid, length, payload).to_bytes(2, "big")
    )


def command(code: int, params: bytes = b"", address: int = DEFAULT_ADDRESS) -> bytes:
    return encode_packet(PID_COMMAND, bytes([code]) + params, address)


def ack(confirmation: int, data: bytes = b"", address: int = DEFAULT_ADDRESS) -> bytes:
    return encode_packet(PID_ACK, bytes([confirmation]) + data, address)


def split_packet(buf: bytes, port: str = "as608") -> tuple[bytes | None, int]:
    """The first complete packet in `buf`: (packet, consumed), or (None, bytes to discard).

    Garbage before a header is consumed; a length out of range raises FrameError.
    """
    start = buf.find(HEADER)
    if start < 0:
        return None, len(buf) - (1 if buf.endswith(HEADER[:1]) else 0)
    if len(buf) < start + 9:
        return None, start
    pid = buf[start + 6]
    length = int.from_bytes(buf[start + 7 : start + 9], "big")
    if pid not in PIDS or not 2 <= length <= MAX_PAYLOAD + 2:
        raise FrameError(port, f"packet type 0x{pid:02X} / length {length} out of range")
    end = start + 9 + length
    if len(buf) < end:
        return None, start
    return bytes(buf[start:end]), end


def decode_packet(data: bytes, port: str = "as608") -> Packet:
    """One whole packet; FrameError for anything else."""
    if len(data) < 11 or not data.startswith(HEADER):
        raise FrameError(port, "not a packet (no EF 01 header or too short)")
    address = int.from_bytes(data[2:6], "big")
    pid = data[6]
    if pid not in PIDS:
        raise FrameError(port, f"unknown packet type 0x{pid:02X}")
    length = int.from_bytes(data[7:9], "big")
    if length != len(data) - 9:
        raise FrameError(port, f"length field says {length}, packet has {len(data) - 9}")
    payload = data[9:-2]
    if checksum(pid, length, payload) != int.from_bytes(data[-2:], "big"):
        raise FrameError(port, "checksum mismatch")
    return Packet(pid, bytes(payload), address)


def data_packets(blob: bytes, packet_size: int = 128, address: int = DEFAULT_ADDRESS) -> bytes:
    """`blob` as data packets of `packet_size` bytes, the last one marked END."""
    if not blob:
        return encode_packet(PID_END, b"", address)
    chunks = [blob[i : i + packet_size] for i in range(0, len(blob), packet_size)]
    return b"".join(
        encode_packet(PID_END if i == len(chunks) - 1 else PID_DATA, chunk, address)
        for i, chunk in enumerate(chunks)
    )
