"""Face templates: enrol from a photo, verify 1:1, identify 1:N among a site's holders.

A template is dlib's 128-value face descriptor (face_recognition, HOG detector, 5-point landmark
model). Two templates of the same person lie close in Euclidean distance; `DEFAULT_THRESHOLD` is the
largest distance still taken as "same person".

face_recognition (and dlib) are imported lazily, inside the functions that detect or encode faces, so
that `verify`, `FaceIndex` and `FaceTemplate` work on a box with numpy alone (a gate that receives
templates from the central never needs dlib to match them).

Measurements behind the constants (the real photos of ../shared/testdata/faces, this machine, HOG
detection on the image capped at 1024 px, encoding on the photo itself; rerun with
`python -m biometrics.bench --faces DIR`):

Same person (12 pairs)                   distance   Different people (33 pairs, closest)     distance
obama/2 - obama/3                        0.417      alex_lacamoire/1 - obama/2               0.763
biden/1 - biden/2                        0.409      alex_lacamoire/1 - obama partial face    0.771
rose_leslie/1 - rose_leslie/2            0.406      alex_lacamoire/1 - obama/4, obama/1      0.795-0.798
obama partial face - obama/2, obama/3    0.352-0.386 alex_lacamoire/1 - obama/3              0.820
obama/1 - obama/2, obama/2 - obama/4     0.353-0.354 biden/* - obama/*                       0.823-0.87
obama/1 - obama/3, obama/3 - obama/4     0.319-0.324 rose_leslie/* - anyone else             0.87-1.01
obama partial face - obama/1, obama/4    0.227
obama/1 - obama/4 (same sitting)         0.062

So every same-person pair is at most 0.42 and every different-person pair at least 0.76 (without the
detection cap: 0.43 and 0.74). The default 0.50 keeps a margin of 0.08 above the worst same-person
pair and 0.26 below the closest stranger.
It sits on the strict side of face_recognition's 0.6 on purpose: at a gate a false accept lets a
stranger in on someone else's annual pass, while a false reject costs a retry or a staff check.
Expect more false rejects with poor gate lighting; a site may raise the threshold, 0.6 being the top of
the sensible range (values past 1.0 are refused as a configuration error).

The "partial face" photo (Obama, the left edge of the face cut by the frame) is enrolled, not refused:
the face is found, large and sharp, and its template lies 0.23-0.39 from his four other photos and
0.77+ from everyone else, so it is a useful template. Enrolment refuses what measurably is not.

Timings here: enrolment 0.22-0.47 s per photo (the first call also loads the models, ~1 s); a 640x480
gate frame 100 ms (upsample=0) or 180 ms (upsample=1); `FaceIndex.identify` over 100,000 templates
about 1 ms median on this machine (the 51 MB matrix fits its 480 MB L3 cache; with 1,000,000
templates, past the cache, the same product takes 18-22 ms, so ~2 ms per 100,000 from memory).
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from PIL import Image  # imported where images are read

__all__ = [
    "DEFAULT_THRESHOLD",
    "ENCODING_SIZE",
    "MAX_DETECT_SIDE",
    "MIN_FACE_PX",
    "SHARPNESS_FLOOR",
    "DetectedFace",
    "EnrolmentRefused",
    "FaceIndex",
    "FaceSupportMissing",
    "FaceTemplate",
    "Match",
    "RefusalReason",
    "detect_faces",
    "encode_frame",
    "enrol_face",
    "face_sharpness",
    "verify",
]

ENCODING_SIZE = 128
DEFAULT_THRESHOLD = 0.50
# Enrolment refuses a face box shorter than this, in pixels of the photo. Measured: a face downscaled
# to 80 px drifts 0.05-0.13 from its full-size template, at 50 px 0.13-0.20 (a third of the budget).
MIN_FACE_PX = 80
# Variance of the Laplacian of the face crop resized to 128x128 grey. The real photos measure 159-448;
# a Gaussian blur of sigma = 1 % of the face height already drops them to 8-32 (and moves the template
# 0.13-0.21), sigma = 2 % to 3-9 (0.28-0.37). 50 refuses both with a 3x margin under the sharpest floor.
SHARPNESS_FLOOR = 50.0
# Detection runs on the photo scaled down to this longest side: HOG time grows with the pixel count
# (2333x1434: 1.3 s, capped: 0.25 s) and the distances above moved by at most 0.02 with the cap.
# The template itself is computed on the full-resolution photo (up to MAX_WORK_SIDE).
MAX_DETECT_SIDE = 1024
MAX_WORK_SIDE = 2048
_SHARPNESS_SIDE = 128
_MAX_THRESHOLD = 1.0  # beyond this, nearly any two faces "match": refuse such a configuration

RefusalReason = Literal["no_face", "several_faces", "face_too_small", "too_blurred", "unreadable_image"]

ImageInput = np.ndarray | bytes | bytearray | memoryview | str | PathLike[str]


class FaceSupportMissing(ImportError):
    """face_recognition/dlib is not installed (the `face` extra); only detection and encoding need it."""


class EnrolmentRefused(Exception):
    """The photo cannot give a useful template; `.reason` is a code, the message says what to do."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason: RefusalReason = reason
        self.message = message


@dataclass(frozen=True, eq=False, slots=True)
class FaceTemplate:
    """One face descriptor: 128 float32 values, read-only. Personal data: its repr shows no values."""

    vector: np.ndarray

    def __post_init__(self) -> None:
        vec = np.array(self.vector, dtype=np.float32, copy=True).reshape(-1)
        if vec.shape != (ENCODING_SIZE,):
            raise ValueError(f"a face template has {ENCODING_SIZE} values, got {vec.size}")
        if not np.all(np.isfinite(vec)):
            raise ValueError("a face template must hold finite values")
        vec.setflags(write=False)
        object.__setattr__(self, "vector", vec)

    def to_bytes(self) -> bytes:
        """512 bytes: the 128 values as little-endian float32."""
        return self.vector.astype("<f4", copy=False).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> FaceTemplate:
        if len(data) != ENCODING_SIZE * 4:
            raise ValueError(f"a face template is {ENCODING_SIZE * 4} bytes, got {len(data)}")
        return cls(np.frombuffer(bytes(data), dtype="<f4"))

    def distance(self, other: FaceTemplate) -> float:
        return float(np.linalg.norm(self.vector - other.vector))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FaceTemplate):
            return NotImplemented
        return bool(np.array_equal(self.vector, other.vector))

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return "FaceTemplate(<128 values hidden>)"


@dataclass(frozen=True, slots=True)
class Match:
    """The outcome of a comparison: `ok` if `distance` is within the threshold; log the distance."""

    ok: bool
    distance: float
    holder_id: str | None = None


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not (math.isfinite(t) and 0.0 < t <= _MAX_THRESHOLD):
        raise ValueError(f"face threshold must be a distance in (0, {_MAX_THRESHOLD}], got {threshold!r}")
    return t


def verify(bound: FaceTemplate, probe: FaceTemplate, threshold: float | None = None) -> Match:
    """1:1: is `probe` the person of the `bound` template? The distance is returned either way."""
    t = DEFAULT_THRESHOLD if threshold is None else _check_threshold(threshold)
    d = bound.distance(probe)
    return Match(ok=d <= t, distance=d)


# --- images -------------------------------------------------------------------------------------


def _face_recognition() -> Any:  # the library ships no types
    try:
        import face_recognition
    except ImportError as exc:  # pragma: no cover - depends on the box
        raise FaceSupportMissing(
            "face detection needs face_recognition and dlib: install the `face` extra "
            "(dlib-bin, face-recognition-models, then face-recognition --no-deps)"
        ) from exc
    return face_recognition


def _load_rgb(image: ImageInput) -> np.ndarray:
    """An RGB uint8 array, C-contiguous, from an array, encoded bytes or a file path."""
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            raise TypeError(f"an image array must be uint8, got {arr.dtype}")
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[:, :, :3]
        elif not (arr.ndim == 3 and arr.shape[2] == 3):
            raise TypeError(f"an image array must be HxW, HxWx3 or HxWx4, got shape {arr.shape}")
        if min(arr.shape[:2]) < 1:
            raise EnrolmentRefused("unreadable_image", "the image is empty")
        return np.ascontiguousarray(arr)

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        if isinstance(image, bytes | bytearray | memoryview):
            src = Image.open(io.BytesIO(bytes(image)))
        elif isinstance(image, str | PathLike):
            src = Image.open(image)
        else:
            raise TypeError(f"an image is an RGB array, encoded bytes or a path, not {type(image).__name__}")
        with src:
            if max(src.size) > MAX_WORK_SIDE:
                src.draft("RGB", (MAX_WORK_SIDE, MAX_WORK_SIDE))  # JPEG: decode at a reduced scale
            # Phones store the camera's orientation in EXIF; the detector needs the face upright.
            img = _fit(ImageOps.exif_transpose(src), MAX_WORK_SIDE).convert("RGB")
            return np.ascontiguousarray(np.asarray(img))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError) as exc:
        raise EnrolmentRefused(
            "unreadable_image", f"the image could not be read as a photo ({type(exc).__name__})"
        ) from exc


def _fit(img: Image.Image, side: int) -> Image.Image:
    from PIL import Image

    scale = side / max(img.size)
    if scale >= 1:
        return img
    size = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
    return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


Box = tuple[int, int, int, int]  # top, right, bottom, left (face_recognition's order)


def _detect(rgb: np.ndarray, upsample: int) -> list[Box]:
    """Face boxes in `rgb` coordinates, detected on a copy capped at MAX_DETECT_SIDE."""
    fr = _face_recognition()
    h, w = rgb.shape[:2]
    scale = min(1.0, MAX_DETECT_SIDE / max(h, w))
    if scale < 1.0:
        from PIL import Image

        small = np.asarray(_fit(Image.fromarray(rgb), MAX_DETECT_SIDE))
        sy, sx = small.shape[0] / h, small.shape[1] / w
    else:
        small, sy, sx = rgb, 1.0, 1.0
    boxes = fr.face_locations(small, number_of_times_to_upsample=upsample, model="hog")
    out = []
    for top, right, bottom, left in boxes:
        out.append(
            (
                max(0, round(top / sy)),
                min(w, round(right / sx)),
                min(h, round(bottom / sy)),
                max(0, round(left / sx)),
            )
        )
    return out


def _encode(rgb: np.ndarray, boxes: list[Box]) -> list[FaceTemplate]:
    fr = _face_recognition()
    vectors = fr.face_encodings(rgb, known_face_locations=boxes, num_jitters=1, model="small")
    return [FaceTemplate(v) for v in vectors]


def _laplacian_variance(grey: np.ndarray) -> float:
    g = grey.astype(np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def face_sharpness(rgb: np.ndarray, box: Box) -> float:
    """Variance of the Laplacian of the face crop, resized to 128x128 grey so the size does not count."""
    from PIL import Image

    top, right, bottom, left = box
    crop = Image.fromarray(np.ascontiguousarray(rgb[top:bottom, left:right])).convert("L")
    crop = crop.resize((_SHARPNESS_SIDE, _SHARPNESS_SIDE), Image.Resampling.BILINEAR)
    return _laplacian_variance(np.asarray(crop))


def enrol_face(
    image: ImageInput,
    *,
    min_face_px: int = MIN_FACE_PX,
    sharpness_floor: float = SHARPNESS_FLOOR,
) -> FaceTemplate:
    """A template from an enrolment photo or camera frame, or `EnrolmentRefused` saying why not.

    The photo must show exactly one face, at least `min_face_px` tall and sharp enough.
    """
    rgb = _load_rgb(image)
    boxes = _detect(rgb, upsample=1)
    if not boxes:
        raise EnrolmentRefused("no_face", "no face found in the photo: the face must be visible, upright and well lit")
    if len(boxes) > 1:
        raise EnrolmentRefused(
            "several_faces",
            f"{len(boxes)} faces found in the photo: take a photo of the holder alone",
        )
    box = boxes[0]
    height = box[2] - box[0]
    if height < min_face_px:
        raise EnrolmentRefused(
            "face_too_small",
            f"the face is {height} px tall, at least {min_face_px} px are needed: move closer or crop",
        )
    sharpness = face_sharpness(rgb, box)
    if sharpness < sharpness_floor:
        raise EnrolmentRefused(
            "too_blurred",
            f"the face is too blurred (sharpness {sharpness:.0f}, at least {sharpness_floor:.0f}): "
            "hold the camera still and focus on the face",
        )
    return _encode(rgb, [box])[0]


@dataclass(frozen=True, slots=True)
class DetectedFace:
    """A face in a camera frame: its box (top, right, bottom, left, in frame pixels) and template."""

    box: Box
    template: FaceTemplate

    @property
    def height(self) -> int:
        return self.box[2] - self.box[0]


def detect_faces(frame: ImageInput, *, upsample: int = 1) -> list[DetectedFace]:
    """Every face in a gate's camera frame with its box, largest first; no enrolment checks.

    `upsample=0` finds only faces of about 80 px and more, about twice as fast (a gate's camera close
    to the visitor); `upsample=1` finds faces down to about 40 px.
    """
    rgb = _load_rgb(frame)
    boxes = _detect(rgb, upsample=upsample)
    if not boxes:
        return []
    boxes.sort(key=lambda b: (b[2] - b[0]) * (b[1] - b[3]), reverse=True)
    return [DetectedFace(box, t) for box, t in zip(boxes, _encode(rgb, boxes), strict=True)]


def encode_frame(frame: ImageInput, *, upsample: int = 1) -> list[FaceTemplate]:
    """Templates of every face in a gate's camera frame, largest face first; no enrolment checks."""
    return [face.template for face in detect_faces(frame, upsample=upsample)]


# --- 1:N ----------------------------------------------------------------------------------------


class FaceIndex:
    """Exact 1:N search over the face templates of a site's holders, in one matrix product.

    Templates live in one contiguous float32 matrix with their squared norms precomputed; a search
    is ``||t||^2 - 2 T.p`` over all rows (the probe's own norm does not change the argmin), then the
    exact distance of the best row. Adding grows the capacity by doubling; removing swaps the last
    row into the hole, so neither rebuilds the matrix. A holder may have several templates (several
    enrolment photos); `remove` drops them all. Safe to search from one thread while another syncs.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, capacity: int = 1024) -> None:
        self.threshold = _check_threshold(threshold)
        cap = max(1, int(capacity))
        self._matrix = np.zeros((cap, ENCODING_SIZE), dtype=np.float32)
        self._sqnorms = np.zeros(cap, dtype=np.float32)
        self._holders: list[str] = []  # row -> holder
        self._rows: dict[str, list[int]] = {}  # holder -> rows
        self._lock = threading.RLock()

    def __len__(self) -> int:
        """The number of templates (a holder with two photos counts twice)."""
        return len(self._holders)

    def __contains__(self, holder_id: object) -> bool:
        return holder_id in self._rows

    def __repr__(self) -> str:
        return f"FaceIndex({len(self._rows)} holders, {len(self)} templates, threshold={self.threshold})"

    def holders(self) -> set[str]:
        with self._lock:
            return set(self._rows)

    def add(self, holder_id: str, template: FaceTemplate) -> None:
        """Add one template of `holder_id` (keeps the holder's other templates; see `replace`)."""
        if not isinstance(template, FaceTemplate):
            raise TypeError("FaceIndex.add takes a FaceTemplate")
        with self._lock:
            n = len(self._holders)
            if n == self._matrix.shape[0]:
                self._grow(2 * n)
            self._matrix[n] = template.vector
            self._sqnorms[n] = float(np.dot(template.vector, template.vector))
            self._holders.append(holder_id)
            self._rows.setdefault(holder_id, []).append(n)

    def replace(self, holder_id: str, templates: Iterable[FaceTemplate]) -> None:
        """Make `templates` the holder's only ones (re-enrolment: the old photos must stop matching)."""
        templates = list(templates)
        with self._lock:
            self.remove(holder_id)
            for t in templates:
                self.add(holder_id, t)

    def remove(self, holder_id: str) -> int:
        """Drop every template of `holder_id`; returns how many there were (0 if unknown)."""
        with self._lock:
            rows = self._rows.pop(holder_id, None)
            if not rows:
                return 0
            # Highest rows first, so a row swapped in from the end is never one still to be removed.
            for row in sorted(rows, reverse=True):
                last = len(self._holders) - 1
                if row != last:
                    moved = self._holders[last]
                    self._matrix[row] = self._matrix[last]
                    self._sqnorms[row] = self._sqnorms[last]
                    self._holders[row] = moved
                    moved_rows = self._rows[moved]
                    moved_rows[moved_rows.index(last)] = row
                self._holders.pop()
            # Keep memory in step after mass deletions (a pass season ending), with hysteresis.
            n = len(self._holders)
            if self._matrix.shape[0] > 4096 and n < self._matrix.shape[0] // 4:
                self._grow(max(1024, 2 * n))
            return len(rows)

    def clear(self) -> None:
        with self._lock:
            self._holders.clear()
            self._rows.clear()

    def _grow(self, capacity: int) -> None:
        n = len(self._holders)
        matrix = np.zeros((capacity, ENCODING_SIZE), dtype=np.float32)
        sqnorms = np.zeros(capacity, dtype=np.float32)
        matrix[:n] = self._matrix[:n]
        sqnorms[:n] = self._sqnorms[:n]
        self._matrix, self._sqnorms = matrix, sqnorms

    def nearest(self, probe: FaceTemplate, threshold: float | None = None) -> Match | None:
        """The closest enrolled template, matched or not (`ok` says which); None if the index is empty."""
        t = self.threshold if threshold is None else _check_threshold(threshold)
        with self._lock:
            n = len(self._holders)
            if n == 0:
                return None
            p = probe.vector
            scores = self._sqnorms[:n] - 2.0 * (self._matrix[:n] @ p)
            row = int(np.argmin(scores))
            # Recompute the winner's distance exactly: the expanded form loses digits to cancellation.
            d = float(np.linalg.norm(self._matrix[row] - p))
            return Match(ok=d <= t, distance=d, holder_id=self._holders[row])

    def identify(self, probe: FaceTemplate, threshold: float | None = None) -> Match | None:
        """1:N: the enrolled holder closest to `probe` if within the threshold, else None.

        Use `nearest` to log the best distance of a refused face too.
        """
        m = self.nearest(probe, threshold)
        return m if m is not None and m.ok else None
