"""Face matching at the gate: the camera's probe against a holder's bound face (1:1), and the 1:N index
of enrolled holders' faces for face-only entry, kept in step with the cache (beside `fingerprints`).

Two galleries: the annual-pass holders' faces (`index`), and the faces of the visit day's bookings
(`day`: templates whose holder is a ticket ref, which the central sends on the visit day only and
takes back after it). A probe is identified in each, and the closer match within the threshold wins,
so a booked face is searched among that day's bookings, never among every booking ahead.

The indexes hold decrypted templates in memory only. They are built at start where the camera identifies
(`[devices.camera] identify`), else on the first face attempt; once built they follow template changes
and forgets (`after_changes`), and a snapshot rebuilds them (`load`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from protocol import messages as m
from protocol.ids import is_ticket_ref
from protocol.rules import Biometric

from .config import CameraDevice
from .decider import ActiveConfig, CardPhotoUnreadable, Resolved
from .readers import Camera
from .store import Store

if TYPE_CHECKING:
    from biometrics.face import FaceIndex, FaceTemplate, Match

log = logging.getLogger(__name__)
TEMPLATE_BYTES = 512  # biometrics.face: 128 float32
PROBE_WAIT_S = 2.0


class FaceMatcher:
    """The gate's faces; `threshold()` is the site's face threshold from the current config (or None)."""

    def __init__(self, store: Store, camera_cfg: CameraDevice | None, threshold: Callable[[], float | None]) -> None:
        self.store = store
        self.camera_cfg = camera_cfg
        self.camera: Camera | None = None  # set once the readers are built
        self._threshold = threshold
        self.index: FaceIndex | None = None  # holders; built at the first face attempt, or at start for 1:N
        self.day: FaceIndex | None = None  # the visit day's booked faces (holder: the person's ticket ref)

    def load(self, force: bool = False) -> FaceIndex | None:
        """Build the 1:N index from the store (see the module doc); None when not wanted yet."""
        identify = self.camera_cfg is not None and self.camera_cfg.identify
        if not force and self.index is None and not identify:
            return None
        from biometrics.face import DEFAULT_THRESHOLD, FaceIndex, FaceTemplate

        threshold = self._threshold() or DEFAULT_THRESHOLD
        # Sized once for what the store holds (plus room to grow): no doubling copies at load.
        index = FaceIndex(threshold, capacity=self.store.count_templates("face") + 1024)
        day = FaceIndex(threshold)
        for holder_id, _finger, _version, data in self.store.iter_templates("face"):
            try:
                (day if is_ticket_ref(holder_id) else index).add(holder_id, FaceTemplate.from_bytes(data))
            except ValueError:
                log.warning("a stored face template of the wrong size was skipped")
        self.index, self.day = index, day
        return index

    def ensure(self) -> FaceIndex | None:
        """The index, built now if this is the first face attempt."""
        return self.index if self.index is not None else self.load(force=True)

    def after_changes(self, changes: Iterable[object]) -> None:
        """Follow applied cache changes: new or replaced templates, holders forgotten."""
        from biometrics.erasure import forget_holder

        faces: set[str] = set()
        for ch in changes:
            if isinstance(ch, m.HolderForget):
                forgotten = forget_holder(ch.holder_id, face_index=self._gallery(ch.holder_id))
                log.info("holder forgotten: %d face templates dropped from memory", forgotten.face_templates)
                faces.discard(ch.holder_id)
            elif isinstance(ch, m.TemplateChange) and ch.kind == "face":
                faces.add(ch.holder_id)
        if self.index is None or self.day is None or not faces:
            return
        from biometrics.face import FaceTemplate

        for holder_id in faces:
            templates = [FaceTemplate.from_bytes(t) for t in self.store.templates(holder_id, "face")
                         if len(t) == TEMPLATE_BYTES]
            gallery = self._gallery(holder_id)
            if gallery is not None:
                gallery.replace(holder_id, templates)

    def _gallery(self, holder_id: str) -> FaceIndex | None:
        """Where a holder's faces live: the day's bookings for a ticket ref, the pass holders' otherwise."""
        return self.day if is_ticket_ref(holder_id) else self.index

    def identify(self, probe: FaceTemplate, threshold: float | None) -> Match | None:
        """1:N in both galleries (holders, the day's bookings): the closer match within the threshold."""
        self.ensure()
        matches = [g.identify(probe, threshold) for g in (self.index, self.day) if g is not None]
        found = [match for match in matches if match is not None]
        return min(found, key=lambda match: match.distance) if found else None

    def verify(self, resolved: Resolved, active: ActiveConfig) -> tuple[Biometric | None, bytes | None]:
        """The camera's face against the credential's bound faces (1:1); (None, None) with no usable
        probe. A first entry of a same-person ticket has nothing bound yet: this face becomes its binding."""
        if self.camera is None:
            return None, None
        probe = self.camera.probe(PROBE_WAIT_S)
        if probe is None:
            return None, None
        from biometrics.face import FaceTemplate, verify

        bound: list[bytes] = []
        if resolved.holder_id:
            bound = self.store.templates(resolved.holder_id, "face")
        elif resolved.binding:
            bound = [resolved.binding]
        if not bound:
            return Biometric(kind="face", matched=True), probe.to_bytes()
        best = min((verify(FaceTemplate.from_bytes(b), probe, active.cfg.face_threshold) for b in bound),
                   key=lambda match: match.distance)
        return Biometric(kind="face", matched=best.ok, distance=best.distance), probe.to_bytes()

    def verify_card_photo(self, photo: bytes | None, active: ActiveConfig) -> tuple[Biometric | None, None]:
        """人证核验: the camera's face against the ID card's photo (1:1). The photo is decoded and encoded in
        memory only; nothing is bound or kept. CardPhotoUnreadable when the photo shows no single face."""
        if self.camera is None:
            return None, None
        from biometrics.face import EnrolmentRefused, encode_frame, verify

        if not photo:
            raise CardPhotoUnreadable("no card photo")
        try:
            card_faces = encode_frame(photo)
        except EnrolmentRefused:
            card_faces = []
        if len(card_faces) != 1:
            raise CardPhotoUnreadable(f"{len(card_faces)} faces on the card photo")
        probe = self.camera.probe(PROBE_WAIT_S)
        if probe is None:
            return None, None
        match = verify(card_faces[0], probe, active.cfg.face_threshold)
        return Biometric(kind="face", matched=match.ok, distance=match.distance), None


__all__ = ["FaceMatcher"]
