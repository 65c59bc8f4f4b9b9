"""Frames of second-generation ID card reader modules (GA 467 style SAM modules), and the card's text.

Pure encode/decode over bytes, no port handling.

Command frame (host -> module)::

    AA AA AA 96 69 | LEN (2, big-endian) | CMD | PARA | data... | CHK

Response frame (module -> host)::

    AA AA AA 96 69 | LEN (2, big-endian) | SW1 SW2 SW3 | data... | CHK

LEN counts the bytes after itself, CHK included. CHK is the XOR of every byte from LEN to the byte
before CHK. SW3 is the status (0x90 done, 0x9F card found, 0x80 no card, 0x81 select failed, ...).

The text block (256 bytes, UCS-2 little-endian, space padded) holds, in order: name (15 chars),
sex (1), nation (2), birth date (8, YYYYMMDD), address (35), ID number (18), issuing authority (15),
valid from (8), valid to (8, or "长期" for no end), reserved (18).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from drivers.errors import FrameError

PREAMBLE = bytes.fromhex("AAAAAA9669")
MAX_LEN = 4096  # longest body we accept; a real read (text + photo) is about 1.3 kB

# commands: (CMD, PARA)
FIND_CARD = (0x20, 0x01)
SELECT_CARD = (0x20, 0x02)
READ_TEXT_PHOTO = (0x30, 0x01)
READ_SAM_ID = (0x12, 0xFF)

# SW3 status values
SW_OK = 0x90
SW_FOUND = 0x9F
SW_NO_CARD = 0x80
SW_SELECT_FAILED = 0x81
SW_READ_FAILED = 0x41
SW_CHECKSUM = 0x10
SW_LENGTH = 0x11
SW_COMMAND = 0x21
SW_MESSAGES = {
    0x90: "done",
    0x9F: "card found",
    0x80: "no card found",
    0x81: "card selection failed",
    0x41: "reading the card failed",
    0x10: "module received a frame with a bad checksum",
    0x11: "module received a frame with a bad length",
    0x21: "module does not know the command",
    0x23: "command not allowed now",
    0x24: "no permission (SAM not authenticated)",
    0x60: "SAM self-test failed",
    0x66: "SAM not authorised",
    0x91: "no content for this item",
}

TEXT_LEN = 256
TEXT_FIELDS = (  # (name, characters)
    ("name", 15),
    ("sex", 1),
    ("nation", 2),
    ("birth", 8),
    ("address", 35),
    ("id_number", 18),
    ("issuer", 15),
    ("valid_from", 8),
    ("valid_to", 8),
    ("reserved", 18),
)
NATIONS = dict(enumerate((  # the 56 nations in the order of their codes (GB 3304)
    "汉", "蒙古", "回", "藏", "维吾尔", "苗", "彝", "壮",
    "布依", "朝鲜", "满", "侗", "瑶", "白", "土家", "哈尼",
    "哈萨克", "傣", "黎", "傈僳", "佤", "畲", "高山", "拉祜",
    "水", "东乡", "纳西", "景颇", "柯尔克孜", "土", "达斡尔", "仫佬",
    "羌", "布朗", "撒拉", "毛南", "仡佬", "锡伯", "阿昌", "普米",
    "塔吉克", "怒", "乌孜别克", "俄罗斯", "鄂温克", "德昂", "保安", "裕固",
    "京", "塔塔尔", "独龙", "鄂伦春", "赫哲", "门巴", "珞巴", "基诺",
), start=1))
NATIONS.update({97: "其他", 98: "外国血统"})
SEXES = {"1": "male", "2": "female", "0": "unknown", "9": "unspecified"}
NO_END = "长期"

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """The check character of an 18-digit ID number (GB 11643, ISO 7064 MOD 11-2)."""
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def valid_id_number(s: str) -> bool:
    """True if `s` is 17 digits and the right check character (GB 11643), with a plausible birth date."""
    if not isinstance(s, str) or len(s) != 18 or not s[:17].isascii() or not s[:17].isdigit():
        return False
    if s[17].upper() != id_check_digit(s[:17]):
        return False
    try:
        dt.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    return True


def mask_id_number(s: str) -> str:
    """First 3 and last 1 characters kept: enough to tell cards apart in a log, not to identify."""
    return s[:3] + "*" * max(0, len(s) - 4) + s[-1:] if len(s) > 4 else "*" * len(s)


@dataclass(frozen=True)
class IdCard:
    """The text of a national ID card. Its repr masks personal data: safe to log by accident."""

    name: str
    sex: str  # "male", "female", "unknown", "unspecified"
    nation: str  # the nation's name, e.g. "汉"
    birth_date: dt.date
    address: str
    id_number: str
    issuer: str
    valid_from: dt.date
    valid_to: dt.date | None  # None: no end date ("长期")
    nation_code: int = field(default=0)
    # The card's photo as the reader maker's SDK decoded it (JPEG/BMP bytes); None where none was decoded.
    photo: bytes | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        name = self.name[:1] + "*" * (len(self.name) - 1)
        return f"IdCard(name={name!r}, id_number={mask_id_number(self.id_number)!r}, valid_to={self.valid_to})"

    __str__ = __repr__


@dataclass(frozen=True)
class Command:
    cmd: int
    para: int
    data: bytes = b""


@dataclass(frozen=True)
class Response:
    sw1: int
    sw2: int
    sw3: int
    data: bytes = b""

    @property
    def message(self) -> str:
        return SW_MESSAGES.get(self.sw3, f"status 0x{self.sw3:02X}")


def _xor(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x


def _frame(body: bytes) -> bytes:
    if len(body) + 1 > MAX_LEN:
        raise ValueError("frame too long")
    head = (len(body) + 1).to_bytes(2, "big") + body
    return PREAMBLE + head + bytes([_xor(head)])


def encode_command(cmd: int, para: int, data: bytes = b"") -> bytes:
    return _frame(bytes([cmd, para]) + data)


def encode_response(sw3: int, data: bytes = b"", sw1: int = 0, sw2: int = 0) -> bytes:
    return _frame(bytes([sw1, sw2, sw3]) + data)


def split_frame(buf: bytes, port: str = "ga467") -> tuple[bytes | None, int]:
    """Find the first complete frame in `buf`: (frame, bytes consumed) or (None, bytes to discard).

    Bytes before a preamble are garbage and are consumed. A length field above MAX_LEN raises
    FrameError (after which the caller should drop the preamble and look again).
    """
    start = buf.find(PREAMBLE)
    if start < 0:
        # keep a tail that may be the start of a preamble
        keep = next((k for k in range(min(len(PREAMBLE) - 1, len(buf)), 0, -1) if PREAMBLE.startswith(buf[-k:])), 0)
        return None, len(buf) - keep
    if len(buf) < start + 7:
        return None, start
    length = int.from_bytes(buf[start + 5 : start + 7], "big")
    if length < 3 or length > MAX_LEN:
        raise FrameError(port, f"frame length {length} out of range")
    end = start + 7 + length
    if len(buf) < end:
        return None, start
    return bytes(buf[start:end]), end


def _body(frame: bytes, port: str, minimum: int) -> bytes:
    if not frame.startswith(PREAMBLE):
        raise FrameError(port, "no AA AA AA 96 69 preamble")
    if len(frame) < 7:
        raise FrameError(port, "frame shorter than its header")
    length = int.from_bytes(frame[5:7], "big")
    if length != len(frame) - 7:
        raise FrameError(port, f"length field says {length} bytes, frame has {len(frame) - 7}")
    if length < minimum + 1:
        raise FrameError(port, f"frame body of {length} bytes is too short")
    if _xor(frame[5:-1]) != frame[-1]:
        raise FrameError(port, "checksum mismatch")
    return frame[7:-1]


def decode_command(frame: bytes, port: str = "ga467") -> Command:
    body = _body(frame, port, 2)
    return Command(body[0], body[1], bytes(body[2:]))


def decode_response(frame: bytes, port: str = "ga467") -> Response:
    body = _body(frame, port, 3)
    return Response(body[0], body[1], body[2], bytes(body[3:]))


def _date(text: str, what: str, port: str) -> dt.date:
    try:
        return dt.date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        raise FrameError(port, f"{what} is not a date (YYYYMMDD)") from None


def parse_text(block: bytes, port: str = "ga467", *, verify: bool = True) -> IdCard:
    """The card's 256-byte text block as an IdCard; FrameError if it does not parse.

    With `verify`, the ID number's check digit must be right (GB 11643).
    """
    if len(block) != TEXT_LEN:
        raise FrameError(port, f"text block is {len(block)} bytes, not {TEXT_LEN}")
    try:
        text = block.decode("utf-16-le")
    except UnicodeDecodeError:
        raise FrameError(port, "text block is not UCS-2") from None
    if len(text) != TEXT_LEN // 2:  # surrogate pairs would shift every field
        raise FrameError(port, "text block holds characters outside UCS-2")
    values: dict[str, str] = {}
    pos = 0
    for name, n in TEXT_FIELDS:
        values[name] = text[pos : pos + n].rstrip(" \x00")
        pos += n
    id_number = values["id_number"].upper()
    if verify and not valid_id_number(id_number):
        raise FrameError(port, "ID number fails its check digit (GB 11643)")
    nation = values["nation"]
    nation_code = int(nation) if nation.isascii() and nation.isdigit() else 0
    valid_to_text = values["valid_to"]
    return IdCard(
        name=values["name"],
        sex=SEXES.get(values["sex"], "unknown"),
        nation=NATIONS.get(nation_code, nation),
        birth_date=_date(values["birth"], "birth date", port),
        address=values["address"],
        id_number=id_number,
        issuer=values["issuer"],
        valid_from=_date(values["valid_from"], "valid-from date", port),
        valid_to=None if valid_to_text.startswith(NO_END) else _date(valid_to_text, "valid-to date", port),
        nation_code=nation_code,
    )


def build_text(card: IdCard) -> bytes:
    """The 256-byte text block for `card` (the simulator's side of parse_text)."""
    sex = {v: k for k, v in SEXES.items()}.get(card.sex, "0")
    values = {
        "name": card.name,
        "sex": sex,
        "nation": f"{card.nation_code:02d}",
        "birth": card.birth_date.strftime("%Y%m%d"),
        "address": card.address,
        "id_number": card.id_number,
        "issuer": card.issuer,
        "valid_from": card.valid_from.strftime("%Y%m%d"),
        "valid_to": NO_END if card.valid_to is None else card.valid_to.strftime("%Y%m%d"),
        "reserved": "",
    }
    out = ""
    for name, n in TEXT_FIELDS:
        value = values[name]
        if len(value) > n:
            raise ValueError(f"{name} longer than {n} characters")
        out += value.ljust(n)
    return out.encode("utf-16-le")


def text_photo_payload(text: bytes, photo: bytes = b"") -> bytes:
    """The data of a READ_TEXT_PHOTO answer: text length, photo length (2 bytes each, BE), text, photo."""
    return len(text).to_bytes(2, "big") + len(photo).to_bytes(2, "big") + text + photo


def split_text_photo(data: bytes, port: str = "ga467") -> tuple[bytes, bytes]:
    if len(data) < 4:
        raise FrameError(port, "read answer shorter than its length fields")
    tlen, plen = int.from_bytes(data[0:2], "big"), int.from_bytes(data[2:4], "big")
    if len(data) != 4 + tlen + plen:
        raise FrameError(port, f"read answer is {len(data)} bytes, its lengths say {4 + tlen + plen}")
    return data[4 : 4 + tlen], data[4 + tlen :]
