"""Forgetting a holder at a gate: every face template and fingerprint slot of theirs, at once.

The central deletes the holder's template rows and publishes `protocol.messages.HolderForget`
(deletion on request, pass ended); each gate calls `forget_holder` on receipt, sends the returned
`Delete` operations to its fingerprint module, and deletes the holder's rows from its own store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .fingerprint import Delete, SlotEntry

if TYPE_CHECKING:
    from .face import FaceIndex  # numpy and dlib only where faces are used

__all__ = ["Forgotten", "forget_holder"]


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What a gate dropped: face templates removed from its index, module slots to delete."""

    face_templates: int
    fingerprint_deletes: tuple[Delete, ...]
    remaining_slots: Mapping[int, SlotEntry]


def forget_holder(
    holder_id: str,
    *,
    face_index: FaceIndex | None = None,
    fingerprint_slots: Mapping[int, SlotEntry | tuple[str, int]] | None = None,
) -> Forgotten:
    """Drop `holder_id` from the face index (if given) and plan the deletion of their module slots."""
    removed = face_index.remove(holder_id) if face_index is not None else 0
    slots = {s: (e if isinstance(e, SlotEntry) else SlotEntry(*e)) for s, e in (fingerprint_slots or {}).items()}
    deletes = tuple(Delete(s) for s in sorted(slots) if slots[s].holder_id == holder_id)
    remaining = {s: e for s, e in slots.items() if e.holder_id != holder_id}
    return Forgotten(face_templates=removed, fingerprint_deletes=deletes, remaining_slots=remaining)
