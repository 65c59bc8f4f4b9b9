"""A fingerprint module's slots kept mirroring the holders a gate must know."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biometrics.fingerprint import (
    Delete,
    FingerprintTemplate,
    SlotCapacityError,
    SlotEntry,
    SlotPlan,
    Store,
    apply_operations,
)


def fp(holder: str, finger: int = 1, version: int = 1) -> FingerprintTemplate:
    return FingerprintTemplate(holder, finger, f"{holder}/{finger}/v{version}".encode(), version)


def test_a_fresh_module_gets_every_template_in_the_lowest_slots():
    plan = SlotPlan.compute(10, {}, [fp("b"), fp("a")])
    assert plan.operations == (Store(0, fp("a")), Store(1, fp("b")))
    assert plan.holder_for_slot(0) == "a" and plan.holder_for_slot(1) == "b"
    assert plan.holder_for_slot(5) is None


def test_a_module_already_in_step_needs_no_operation():
    current = {3: SlotEntry("a", 1, 1), 7: SlotEntry("b", 2, 1)}
    plan = SlotPlan.compute(10, current, [fp("a"), fp("b", version=2)])
    assert plan.operations == ()
    assert plan.slots == current


def test_a_re_enrolled_finger_is_rewritten_in_its_own_slot():
    plan = SlotPlan.compute(10, {4: ("a", 1)}, [FingerprintTemplate("a", 0, b"new", 2)])
    assert plan.operations == (Store(4, FingerprintTemplate("a", 0, b"new", 2)),)


def test_a_holder_no_longer_wanted_is_deleted_and_the_others_keep_their_slots():
    current = {0: SlotEntry("a", 1, 1), 1: SlotEntry("b", 1, 1), 2: SlotEntry("c", 1, 1)}
    plan = SlotPlan.compute(3, current, [fp("a"), fp("c")])
    assert plan.operations == (Delete(1),)
    assert plan.holder_for_slot(2) == "c"
    assert plan.slots_of("b") == []


def test_a_vacated_slot_is_overwritten_without_a_separate_delete():
    current = {0: SlotEntry("a", 1, 1), 1: SlotEntry("b", 1, 1)}
    plan = SlotPlan.compute(2, current, [fp("a"), fp("new")])
    assert plan.operations == (Store(1, fp("new")),)
    assert plan.holder_for_slot(1) == "new"


def test_more_templates_than_slots_is_a_clear_error():
    with pytest.raises(SlotCapacityError, match="3 fingerprint templates are wanted but the module has 2 slots"):
        SlotPlan.compute(2, {}, [fp("a"), fp("b"), fp("c")])


def test_a_recorded_slot_outside_the_module_is_refused():
    with pytest.raises(ValueError, match="slot 5 is outside"):
        SlotPlan.compute(5, {5: ("a", 1)}, [])


def test_two_templates_for_one_finger_of_one_holder_are_refused():
    with pytest.raises(ValueError, match="same finger"):
        SlotPlan.compute(5, {}, [fp("a", version=1), fp("a", version=2)])


def test_a_template_hides_its_bytes_when_printed():
    t = FingerprintTemplate("holder-9", 2, b"\x01secret-minutiae", 3)
    assert "secret" not in repr(t) and "holder-9" in repr(t)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"holder_id": "", "finger": 1, "data": b"x", "version": 1},
        {"holder_id": "a", "finger": 11, "data": b"x", "version": 1},
        {"holder_id": "a", "finger": 1, "data": b"", "version": 1},
        {"holder_id": "a", "finger": 1, "data": b"x" * 4097, "version": 1},
        {"holder_id": "a", "finger": 1, "data": b"x", "version": 0},
    ],
)
def test_an_invalid_template_is_refused(kwargs):
    with pytest.raises(ValueError):
        FingerprintTemplate(**kwargs)


HOLDERS = ["h0", "h1", "h2", "h3", "h4", "h5"]
entries = st.builds(SlotEntry, st.sampled_from(HOLDERS), st.integers(1, 3), st.integers(0, 2))


@st.composite
def scenarios(draw):
    capacity = draw(st.integers(1, 10))
    current = draw(st.dictionaries(st.integers(0, capacity - 1), entries, max_size=capacity))
    keys = draw(st.sets(st.tuples(st.sampled_from(HOLDERS), st.integers(0, 2)), max_size=12))
    wanted = [fp(h, f, draw(st.integers(1, 3))) for h, f in sorted(keys)]
    return capacity, current, wanted


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_applying_the_plan_makes_the_module_mirror_exactly_the_wanted_templates(scenario):
    capacity, current, wanted = scenario
    if len(wanted) > capacity:
        with pytest.raises(SlotCapacityError):
            SlotPlan.compute(capacity, current, wanted)
        return
    plan = SlotPlan.compute(capacity, current, wanted)
    after = apply_operations(current, plan.operations)
    assert after == dict(plan.slots)
    assert sorted((e.holder_id, e.finger, e.version) for e in after.values()) == sorted(
        (t.holder_id, t.finger, t.version) for t in wanted
    )
    assert all(0 <= slot < capacity for slot in after)
    for slot, entry in after.items():
        assert plan.holder_for_slot(slot) == entry.holder_id

    # A wanted template keeps its slot (the lowest, if a stray duplicate sat in another one).
    first_slot = {}
    for slot in sorted(current):
        first_slot.setdefault(current[slot].key, slot)
    wanted_keys = {t.key for t in wanted}
    for key, slot in first_slot.items():
        if key in wanted_keys:
            assert after[slot].key == key

    # Minimal: one operation per slot at most, a store only where the content must change,
    # a delete only where a slot must end empty.
    slots_touched = [op.slot for op in plan.operations]
    assert len(slots_touched) == len(set(slots_touched))
    for op in plan.operations:
        if isinstance(op, Store):
            assert current.get(op.slot) != after[op.slot] or SlotEntry(*current[op.slot]) != after[op.slot]
        else:
            assert op.slot in current and op.slot not in after
    assert len(plan.operations) == sum(
        1 for s in set(current) | set(after) if (current.get(s) and SlotEntry(*current[s])) != after.get(s)
    )

    # Syncing again from the result changes nothing.
    assert SlotPlan.compute(capacity, plan.slots, wanted).operations == ()
