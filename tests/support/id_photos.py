"""ID-card-style photos made from the shared test photos, in memory: the face cropped and shrunk to the
card's 102 x 126 pixels as a small JPEG (what a reader's SDK hands over, give or take the format)."""

from __future__ import annotations

import io
from pathlib import Path

CARD_SIZE = (102, 126)


def id_photo(path: Path, quality: int = 70) -> bytes:
    from PIL import Image

    from biometrics.face import detect_faces

    (face,) = detect_faces(str(path))
    top, right, bottom, left = face.box
    height = int((bottom - top) * 1.9)
    width = height * CARD_SIZE[0] // CARD_SIZE[1]
    cx, cy = (left + right) // 2, (top + bottom) // 2
    with Image.open(path) as img:
        card = img.convert("RGB").crop((max(0, cx - width // 2), max(0, cy - height // 2),
                                        cx + width // 2, cy + height // 2)).resize(CARD_SIZE)
    out = io.BytesIO()
    card.save(out, "JPEG", quality=quality)
    return out.getvalue()
