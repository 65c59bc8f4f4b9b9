"""Made-up templates in the formats the central accepts (`biometrics.templates`), for tests.

Random bytes, distinctive enough that any leak of them is findable, shaped as the real thing: a face
descriptor of 128 float32 values within -1..1, and an AS608 module template of two 256-byte
character files each starting 0x03.
"""

from __future__ import annotations

import random

import numpy as np

from biometrics.templates import AS608_CHAR_FILE_BYTES, AS608_CHAR_FILE_MARK, AS608_TEMPLATE_BYTES


def face_bytes(seed: int) -> bytes:
    vec = np.random.default_rng(seed).normal(size=128)
    return (vec / np.linalg.norm(vec) * 0.9).astype("<f4").tobytes()


def fingerprint_bytes(seed: int) -> bytes:
    data = bytearray(random.Random(seed).randbytes(AS608_TEMPLATE_BYTES))
    data[0] = data[AS608_CHAR_FILE_BYTES] = AS608_CHAR_FILE_MARK
    return bytes(data)
