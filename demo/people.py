"""Made-up visitors for the demo: names, fake national ID numbers with a valid check character, card UIDs,
faces and fingers (random templates).

The ID numbers follow GB 11643 (region, birth date, sequence, ISO 7064 MOD 11-2 check character) so
the gates' card reader accepts them, but they are drawn at random: any match with a real person's
number is chance.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from biometrics.templates import AS608_CHAR_FILE_BYTES, AS608_CHAR_FILE_MARK

REGIONS = ("110101", "310101", "440305", "510107", "530102", "330106", "420106", "610113")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = ("伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "秀英", "建华",
         "晓东", "丽", "强")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_character(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def fake_id_number(rng: random.Random, *, sex: str | None = None) -> str:
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 60))
    sequence = rng.randrange(1000)
    if sex is not None and (sequence % 2 == 1) != (sex == "male"):
        sequence = (sequence + 1) % 1000
    first17 = f"{rng.choice(REGIONS)}{born:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)


def fake_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN)


def fake_card_uid(rng: random.Random) -> str:
    """A 4-byte MIFARE-style UID as 8 hex digits."""
    return f"{rng.getrandbits(32):08X}"


def random_face(rng: random.Random) -> bytes:
    """A random unit-norm 128-value face template (float32): a stand-in for a real face's encoding.

    Two random unit vectors in 128 dimensions lie about 1.41 apart, far beyond any match threshold,
    so a random template is always "a stranger" to every other one.
    """
    import numpy as np

    vec = np.asarray([rng.gauss(0.0, 1.0) for _ in range(128)], dtype=np.float32)
    vec /= np.linalg.norm(vec)
    return vec.astype("<f4").tobytes()


FINGER_TEMPLATE_BYTES = 512  # an AS608 module template (drivers.sim.fingerprint_sim's template_size)


def random_finger(rng: random.Random) -> bytes:
    """A random fingerprint module template: a stand-in for the features a real module extracts.

    Shaped as an AS608 template (two 256-byte character files, each starting 0x03: what the central's
    `biometrics.templates` check accepts), random inside. The simulated module matches by exact
    template equality, so a random template is this holder's finger and nobody else's, and a fresh
    one is an unknown finger.
    """
    data = bytearray(rng.randbytes(FINGER_TEMPLATE_BYTES))
    data[0] = data[AS608_CHAR_FILE_BYTES] = AS608_CHAR_FILE_MARK
    return bytes(data)
