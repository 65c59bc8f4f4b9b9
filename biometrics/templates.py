"""Template formats the gates' devices accept, checked before a template is stored and sent to gates.

Pure functions over bytes: no device, no database. `check_template(kind, data)` returns the bytes or
raises `TemplateFormatError` with a sentence the enrolment desk can show (never the bytes).

**Fingerprint: an AS608 / ZhianTec / R30x module template.** The gate writes it into a module slot
(`drivers.fingerprint.FingerprintModule.store_template`: DownChar, data packets, Store), so it must be
what such a module uploads (UpChar) after enrolment (two captures merged by RegModel):

    offset   0  character file 1 (256 bytes)   03 ...
    offset 256  character file 2 (256 bytes)   03 ...

512 bytes: four data packets of 128 bytes, the modules' default packet size. The vendors do not
document the inside of a character file; what every upload from these modules shows, and what this
check relies on, is its first byte, 0x03. A module refuses or silently mismatches anything else, so an
upload of other bytes (a photo, a random blob, a template of another module family: R503 modules make
1536-byte templates starting 0x02) is refused here instead of reaching every gate's module.

**Face: a face_recognition (dlib) descriptor** as `biometrics.face.FaceTemplate.to_bytes` writes it:
128 little-endian float32 values, 512 bytes. Gates skip a template of another size; the central refuses
it, and refuses values a descriptor never has: NaN, infinities, or any value outside [-1, 1] (dlib's
descriptors lie within about +-0.5; random bytes read as float32 have wild exponents and fail).
"""

from __future__ import annotations

import math
import struct

__all__ = [
    "AS608_CHAR_FILE_BYTES",
    "AS608_CHAR_FILE_MARK",
    "AS608_TEMPLATE_BYTES",
    "FACE_TEMPLATE_BYTES",
    "TemplateFormatError",
    "check_face_template",
    "check_fingerprint_template",
    "check_template",
]

AS608_CHAR_FILE_BYTES = 256
AS608_TEMPLATE_BYTES = 2 * AS608_CHAR_FILE_BYTES
AS608_CHAR_FILE_MARK = 0x03
FACE_VALUES = 128
FACE_TEMPLATE_BYTES = FACE_VALUES * 4
FACE_MAX_ABS = 1.0


class TemplateFormatError(ValueError):
    """The bytes are not a template the gates' devices can use; the message says what is wrong."""


def check_fingerprint_template(data: bytes) -> bytes:
    """`data` if it is an AS608 module template (see the module doc), else TemplateFormatError."""
    data = bytes(data)
    if len(data) != AS608_TEMPLATE_BYTES:
        raise TemplateFormatError(
            f"a fingerprint template is the module's {AS608_TEMPLATE_BYTES}-byte template "
            f"(two {AS608_CHAR_FILE_BYTES}-byte character files, as an AS608 module uploads it), "
            f"not {len(data)} bytes")
    for number, start in enumerate(range(0, AS608_TEMPLATE_BYTES, AS608_CHAR_FILE_BYTES), start=1):
        if data[start] != AS608_CHAR_FILE_MARK:
            raise TemplateFormatError(
                f"this is not an AS608 module template: character file {number} does not start as the "
                "module writes it; upload the template the enrolment station read from the module")
    return data


def check_face_template(data: bytes) -> bytes:
    """`data` if it is a face descriptor of 128 float32 values (see the module doc), else TemplateFormatError."""
    data = bytes(data)
    if len(data) != FACE_TEMPLATE_BYTES:
        raise TemplateFormatError(f"a face template is {FACE_VALUES} float32 values ({FACE_TEMPLATE_BYTES} bytes), "
                                  f"not {len(data)} bytes")
    values = struct.unpack(f"<{FACE_VALUES}f", data)
    if not all(math.isfinite(v) and abs(v) <= FACE_MAX_ABS for v in values):
        raise TemplateFormatError("this is not a face template: its values are not those of a face descriptor "
                                  "(each within -1..1); enrol from a photo instead")
    return data


def check_template(kind: str, data: bytes) -> bytes:
    """Check a template of `kind` ("face" or "fingerprint"); returns the bytes."""
    if kind == "fingerprint":
        return check_fingerprint_template(data)
    if kind == "face":
        return check_face_template(data)
    raise TemplateFormatError(f"unknown template kind {kind!r}: face or fingerprint")
