"""Face: a 640x480 frame to a template, beside the bare face_recognition calls; 1:N among 100,000."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tests.bench.common import Bar, Section, median, percentile

FACES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "faces"


def _frame_640x480() -> np.ndarray:
    """A camera-sized frame: a real photo when the shared folder is there, scaled into 640x480."""
    from PIL import Image

    photo = FACES / "obama" / "1.jpg"
    canvas = Image.new("RGB", (640, 480), (120, 120, 120))
    if photo.exists():
        img = Image.open(photo).convert("RGB")
        img.thumbnail((480, 480))
        canvas.paste(img, ((640 - img.width) // 2, 0))
    return np.asarray(canvas)


def run(quick: bool) -> Section:
    import face_recognition

    from biometrics.face import FaceIndex, FaceTemplate, encode_frame

    section = Section("face")
    frame = _frame_640x480()
    rounds = 3 if quick else 15
    encode_frame(frame)  # warm-up: loads the models
    ours, bare = [], []
    for _ in range(rounds):  # interleaved, so both see the same machine noise
        t = time.perf_counter()
        templates = encode_frame(frame)
        ours.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        locations = face_recognition.face_locations(frame)
        face_recognition.face_encodings(frame, locations, model="small")
        bare.append((time.perf_counter() - t) * 1000)
    section.figures["face_encode_ms"] = round(median(ours), 1)
    section.figures["face_encode_bare_ms"] = round(median(bare), 1)
    section.figures["face_encode_overhead_pct"] = round((median(ours) / median(bare) - 1) * 100, 1)
    section.bars.append(Bar("face_encode_overhead_pct", 10, note="(ours vs bare face_recognition)"))
    if not templates:
        section.notes.append("no face found in the benchmark frame (shared photos absent?)")

    size = 10_000 if quick else 100_000
    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((size, 128)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    index = FaceIndex()
    for i, row in enumerate(matrix):
        index.add(f"H{i}", FaceTemplate(row))
    probes = [FaceTemplate(matrix[i] + 0.01) for i in rng.integers(0, size, 50 if quick else 300)]
    index.identify(probes[0])
    times = []
    for probe in probes:
        t = time.perf_counter()
        index.identify(probe)
        times.append((time.perf_counter() - t) * 1000)
    key = "face_identify_100k_p99_ms"
    section.figures[key] = round(percentile(times, 99), 2)
    section.figures["face_identify_templates"] = size
    section.bars.append(Bar(key, 20))
    return section
