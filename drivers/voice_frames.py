"""Frames of SYN6288-family text-to-speech modules (Beijing InfoQuick SinoVoice), pure encode/decode.

No port handling here (`drivers.voice` is the port, `drivers.sim.voice_sim` the simulator).

Command frame (host -> module)::

    FD | LEN (2, big-endian) | CMD | [PARA] | text... | CHK

LEN counts the bytes after itself: the command byte, the parameter byte (synthesis only), the text
and CHK. CHK is the XOR of every byte before it, the FD header included. The manual's example, "宇音天下"
in GB2312: ``FD 00 0B 01 00 D3 EE D2 F4 CC EC CF C2 C1``.

Commands: 0x01 synthesise (PARA: bits 7-3 background music 0-15, bits 2-0 the text's encoding:
0 GB2312, 1 GBK, 2 BIG5, 3 UNICODE, UTF-16 big-endian), 0x02 stop, 0x03 pause, 0x04 resume,
0x21 status query, 0x88 power down. A frame holds at most 200 bytes of text.

The module answers with single status bytes, not frames: 0x41 a frame received, 0x45 a frame it
could not take (bad check byte, unknown command), 0x4E busy (speaking), 0x4F idle (also sent when it
finishes speaking and as the answer to a status query).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from drivers.errors import FrameError

HEADER = 0xFD
MAX_TEXT = 200  # bytes of text in one synthesis frame (the manual's limit)


class Cmd(IntEnum):
    SPEAK = 0x01
    STOP = 0x02
    PAUSE = 0x03
    RESUME = 0x04
    STATUS = 0x21
    POWER_DOWN = 0x88


class Encoding(IntEnum):
    GB2312 = 0
    GBK = 1
    BIG5 = 2
    UNICODE = 3


CODECS = {Encoding.GB2312: "gb2312", Encoding.GBK: "gbk", Encoding.BIG5: "big5", Encoding.UNICODE: "utf-16-be"}


class Status(IntEnum):
    RECEIVED = 0x41
    ERROR = 0x45
    BUSY = 0x4E
    IDLE = 0x4F


STATUS_BYTES = frozenset(int(s) for s in Status)


@dataclass(frozen=True)
class Frame:
    """One decoded host frame: the command, and for SPEAK the encoding, music and text."""

    cmd: int
    encoding: Encoding | None = None
    music: int = 0
    text: str = ""


def check_byte(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x


def _frame(body: bytes) -> bytes:
    head = bytes([HEADER]) + (len(body) + 1).to_bytes(2, "big") + body
    return head + bytes([check_byte(head)])


def encode_command(cmd: Cmd) -> bytes:
    """A frame without text: stop, pause, resume, status query, power down."""
    if cmd == Cmd.SPEAK:
        raise ValueError("SPEAK takes a text: use encode_speak")
    return _frame(bytes([cmd]))


def pick_encoding(text: str) -> Encoding:
    """GB2312 where every character has a code there (the module's own), else UNICODE."""
    try:
        text.encode("gb2312")
    except UnicodeEncodeError:
        return Encoding.UNICODE
    return Encoding.GB2312


def encode_speak(text: str, encoding: Encoding | None = None, music: int = 0) -> bytes:
    """One synthesis frame; ValueError if `text` has no code in `encoding` or is over MAX_TEXT bytes."""
    if not 0 <= music <= 15:
        raise ValueError("background music is 0 (none) to 15")
    enc = pick_encoding(text) if encoding is None else Encoding(encoding)
    data = text.encode(CODECS[enc])
    if not data:
        raise ValueError("nothing to say")
    if len(data) > MAX_TEXT:
        raise ValueError(f"text is {len(data)} bytes in {CODECS[enc]}, a frame holds {MAX_TEXT}")
    return _frame(bytes([Cmd.SPEAK, (music << 3) | enc]) + data)


def split_text(text: str, encoding: Encoding | None = None) -> list[str]:
    """`text` cut into pieces that fit one frame each, at character boundaries (punctuation preferred)."""
    enc = pick_encoding(text) if encoding is None else Encoding(encoding)
    codec = CODECS[enc]
    pieces: list[str] = []
    current = ""
    for ch in text:
        if len((current + ch).encode(codec)) > MAX_TEXT:
            cut = max(current.rfind(p) for p in "，。,. ！!？?；;")
            if cut > 0:
                pieces.append(current[: cut + 1])
                current = current[cut + 1 :]
            else:
                pieces.append(current)
                current = ""
        current += ch
    if current.strip():
        pieces.append(current)
    return pieces


def split_frame(buf: bytes, port: str = "syn6288") -> tuple[bytes | None, int]:
    """The first complete frame in `buf`: (frame, bytes consumed) or (None, bytes to discard).

    Bytes before an FD header are garbage and consumed. A length field of 0 or above the largest frame
    raises FrameError (the caller drops the header byte and looks again).
    """
    start = buf.find(bytes([HEADER]))
    if start < 0:
        return None, len(buf)
    if len(buf) < start + 3:
        return None, start
    length = int.from_bytes(buf[start + 1 : start + 3], "big")
    if length < 2 or length > MAX_TEXT + 3:
        raise FrameError(port, f"frame length {length} out of range")
    end = start + 3 + length
    if len(buf) < end:
        return None, start
    return bytes(buf[start:end]), end


def decode_frame(frame: bytes, port: str = "syn6288") -> Frame:
    """A host frame back to its command and text (the simulator's side); FrameError if it is not valid."""
    if len(frame) < 5 or frame[0] != HEADER:
        raise FrameError(port, "no FD header")
    length = int.from_bytes(frame[1:3], "big")
    if length != len(frame) - 3:
        raise FrameError(port, f"length field says {length} bytes, frame has {len(frame) - 3}")
    if check_byte(frame[:-1]) != frame[-1]:
        raise FrameError(port, "check byte mismatch")
    cmd = frame[3]
    if cmd != Cmd.SPEAK:
        if len(frame) != 5:
            raise FrameError(port, f"command 0x{cmd:02X} carries no data")
        return Frame(cmd)
    if len(frame) < 6:
        raise FrameError(port, "synthesis frame without its parameter byte")
    para = frame[4]
    try:
        enc = Encoding(para & 0x07)
    except ValueError:
        raise FrameError(port, f"unknown text encoding {para & 0x07}") from None
    try:
        text = frame[5:-1].decode(CODECS[enc])
    except UnicodeDecodeError:
        raise FrameError(port, f"text is not valid {CODECS[enc]}") from None
    return Frame(cmd, enc, para >> 3, text)


def status_name(byte: int) -> str:
    return Status(byte).name.lower() if byte in STATUS_BYTES else f"0x{byte:02X}"


__all__ = [
    "CODECS", "MAX_TEXT", "Cmd", "Encoding", "Frame", "Status", "check_byte", "decode_frame", "encode_command",
    "encode_speak", "pick_encoding", "split_frame", "split_text", "status_name",
]
