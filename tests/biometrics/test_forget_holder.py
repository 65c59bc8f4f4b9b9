"""A holder's deletion reaching a gate: their face templates and fingerprint slots all go."""

from __future__ import annotations

import numpy as np

from biometrics import Delete, FaceIndex, FaceTemplate, SlotEntry, SlotPlan, forget_holder
from biometrics.fingerprint import FingerprintTemplate


def test_a_forgotten_holder_is_dropped_from_the_face_index_and_every_module_slot():
    rng = np.random.default_rng(3)
    index = FaceIndex()
    mine = [FaceTemplate(rng.standard_normal(128)) for _ in range(2)]
    other = FaceTemplate(rng.standard_normal(128))
    for t in mine:
        index.add("leaving", t)
    index.add("staying", other)
    slots = {0: SlotEntry("staying", 1, 1), 1: SlotEntry("leaving", 1, 1), 4: ("leaving", 2, 6)}

    gone = forget_holder("leaving", face_index=index, fingerprint_slots=slots)

    assert gone.face_templates == 2
    assert gone.fingerprint_deletes == (Delete(1), Delete(4))
    assert dict(gone.remaining_slots) == {0: SlotEntry("staying", 1, 1)}
    assert all(index.identify(t) is None for t in mine)
    assert index.identify(other).holder_id == "staying"
    # The next sync from the central (which no longer lists the holder) has nothing left to do.
    staying = FingerprintTemplate("staying", 1, b"tpl", 1)
    assert SlotPlan.compute(10, gone.remaining_slots, [staying]).operations == ()


def test_forgetting_an_unknown_holder_changes_nothing():
    gone = forget_holder("nobody", face_index=FaceIndex(), fingerprint_slots={0: ("someone", 1)})
    assert gone.face_templates == 0 and gone.fingerprint_deletes == ()
