"""Template formats: an AS608 module's template and a face descriptor pass, anything else is refused
with a sentence the enrolment desk can show."""

from __future__ import annotations

import math
import random
import struct

import pytest

from biometrics import TemplateFormatError, check_template
from biometrics.face import FaceTemplate
from drivers import fingerprint_packets as p
from tests.drivers.conftest import hex_fixture


def module_template() -> bytes:
    """The template in tests/fixtures/as608/upchar_template.hex, taken from its data packets."""
    raw = hex_fixture("as608", "upchar_template")
    blob, pids = bytearray(), []
    while raw:
        frame, used = p.split_packet(raw)
        packet = p.decode_packet(frame)  # checksums as the module computes them
        blob += packet.payload
        pids.append(packet.pid)
        raw = raw[used:]
    assert pids == [p.PID_DATA, p.PID_DATA, p.PID_DATA, p.PID_END]
    return bytes(blob)


def test_a_template_as_the_module_uploads_it_is_accepted():
    template = module_template()
    assert len(template) == 512
    assert check_template("fingerprint", template) == template


@pytest.mark.parametrize("seed", range(200))
def test_random_bytes_of_the_right_size_are_refused_as_a_fingerprint(seed):
    blob = random.Random(seed).randbytes(512)
    with pytest.raises(TemplateFormatError, match="not an AS608 module template"):
        check_template("fingerprint", blob)


@pytest.mark.parametrize("size", [0, 1, 256, 498, 511, 513, 768, 1536])
def test_a_fingerprint_template_of_another_size_is_refused_naming_the_size(size):
    blob = bytes([0x03]) + bytes(max(size - 1, 0)) if size else b""
    with pytest.raises(TemplateFormatError, match=f"512-byte template .* not {size} bytes"):
        check_template("fingerprint", blob)


def test_a_template_whose_second_character_file_is_damaged_is_refused():
    damaged = bytearray(module_template())
    damaged[256] = 0x00
    with pytest.raises(TemplateFormatError, match="character file 2"):
        check_template("fingerprint", bytes(damaged))


def test_a_template_of_another_module_family_is_refused():
    r503 = bytes([0x02]) + bytes(1535)  # R503 modules: 1536-byte templates
    with pytest.raises(TemplateFormatError):
        check_template("fingerprint", r503)


def test_a_face_descriptor_is_accepted_and_random_bytes_are_refused():
    rng = random.Random(7)
    vec = [rng.gauss(0, 1) for _ in range(128)]
    norm = math.sqrt(sum(v * v for v in vec))
    descriptor = FaceTemplate([v / norm for v in vec]).to_bytes()
    assert check_template("face", descriptor) == descriptor
    for seed in range(50):
        with pytest.raises(TemplateFormatError, match="not a face template"):
            check_template("face", random.Random(seed).randbytes(512))
    for bad in (float("nan"), float("inf"), 3.5):
        values = list(struct.unpack("<128f", descriptor))
        values[17] = bad
        with pytest.raises(TemplateFormatError, match="within -1..1"):
            check_template("face", struct.pack("<128f", *values))
    with pytest.raises(TemplateFormatError, match="512 bytes"):
        check_template("face", descriptor * 2)  # 1024 bytes: 128 float64 is not the format either


@pytest.mark.faces
def test_every_real_photos_descriptor_passes_the_face_check(templates):
    for name, template in templates.items():
        assert check_template("face", template.to_bytes()) == template.to_bytes(), name
