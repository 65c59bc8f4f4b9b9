"""Measurements behind the face constants: pair distances, enrolment and frame timings, 1:N speed.

    python -m biometrics.bench --faces ../shared/testdata/faces   # distances and encoding times
    python -m biometrics.bench --index 100000                     # 1:N search time

Prints only distances, sizes and timings: never a template.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from .face import DEFAULT_THRESHOLD, EnrolmentRefused, FaceIndex, FaceTemplate, encode_frame, enrol_face


def random_templates(count: int, seed: int = 0) -> np.ndarray:
    """Unit-norm random vectors: far (about 1.4) from each other and from real face templates."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((count, 128)).astype(np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m


def bench_index(count: int, searches: int = 200) -> None:
    index = FaceIndex()
    t0 = time.perf_counter()
    for i, v in enumerate(random_templates(count)):
        index.add(f"h{i}", FaceTemplate(v))
    t_add = time.perf_counter() - t0
    probes = [FaceTemplate(v) for v in random_templates(searches, seed=1)]
    index.nearest(probes[0])  # warm-up
    times = []
    for p in probes:
        t = time.perf_counter()
        index.nearest(p)
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    print(
        f"FaceIndex of {count} templates: built in {t_add:.2f} s; search median {np.median(ms):.1f} ms, "
        f"p95 {np.percentile(ms, 95):.1f} ms, max {ms.max():.1f} ms ({searches} searches)"
    )


def bench_faces(faces: Path) -> None:
    templates: dict[str, FaceTemplate] = {}
    for path in sorted(faces.glob("*/*.jpg")):
        name = f"{path.parent.name}/{path.stem}"
        t = time.perf_counter()
        try:
            templates[name] = enrol_face(path)
            outcome = "enrolled"
        except EnrolmentRefused as exc:
            outcome = f"refused: {exc.reason}"
        print(f"{name:32s} {time.perf_counter() - t:5.2f} s  {outcome}")

    def person(name: str) -> str:
        return "obama" if name == "group/obama_partial_face" else name.split("/")[0]

    same: list[tuple[float, str, str]] = []
    diff: list[tuple[float, str, str]] = []
    for a, b in itertools.combinations(sorted(templates), 2):
        d = templates[a].distance(templates[b])
        (same if person(a) == person(b) else diff).append((d, a, b))
    print(f"\nsame person ({len(same)} pairs), worst first:")
    for d, a, b in sorted(same, reverse=True):
        print(f"  {d:.3f}  {a} - {b}")
    print(f"different people ({len(diff)} pairs), closest first:")
    for d, a, b in sorted(diff)[:10]:
        print(f"  {d:.3f}  {a} - {b}")
    worst_same, closest_diff = max(same)[0], min(diff)[0]
    print(
        f"\nworst same {worst_same:.3f}, closest different {closest_diff:.3f}, default threshold "
        f"{DEFAULT_THRESHOLD:.2f}: margins {DEFAULT_THRESHOLD - worst_same:+.3f} / "
        f"{closest_diff - DEFAULT_THRESHOLD:+.3f}"
    )

    from PIL import Image

    frame_src = Image.open(faces / "obama" / "1.jpg").convert("RGB")
    frame_src.thumbnail((640, 480))
    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    arr = np.asarray(frame_src)
    frame[: arr.shape[0], : arr.shape[1]] = arr
    for upsample in (0, 1):
        encode_frame(frame, upsample=upsample)
        t = time.perf_counter()
        runs = 5
        for _ in range(runs):
            found = encode_frame(frame, upsample=upsample)
        print(
            f"640x480 frame, upsample={upsample}: {(time.perf_counter() - t) / runs * 1000:.0f} ms ({len(found)} face)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, help="folder of one sub-folder of photos per person")
    parser.add_argument("--index", type=int, help="measure 1:N over this many random templates")
    args = parser.parse_args()
    if args.faces:
        bench_faces(args.faces)
    if args.index:
        bench_index(args.index)
    if not (args.faces or args.index):
        parser.print_help()


if __name__ == "__main__":
    main()
