"""Fingerprint templates and the plan that keeps a module's slots mirroring the holders it must know.

Modules of the ZhianTec/AS608 kind match on the module itself: the gate hands each template to a
numbered slot ("page") and the module answers a finger with a slot number. So the central stores the
templates as the module produced them at enrolment (opaque bytes, one per holder and finger, with a
version bumped at each re-enrolment), and each gate computes a `SlotPlan`: the fewest `Store` and
`Delete` operations that make its module hold exactly the wanted templates, each holder keeping its
slot across syncs (so a slot number in a passage log keeps meaning the same holder).

Pure logic: the driver (`drivers.fingerprint`) does the bytes with `store_template(slot, data)` and
`delete(slot)`; the gate persists `plan.slots` once the operations succeeded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "MAX_TEMPLATE_BYTES",
    "Delete",
    "FingerprintTemplate",
    "SlotCapacityError",
    "SlotEntry",
    "SlotPlan",
    "Store",
    "apply_operations",
]

MAX_TEMPLATE_BYTES = 4096  # an AS608 template is 512 bytes; protocol.messages.TemplateChange caps 4096


@dataclass(frozen=True, slots=True)
class FingerprintTemplate:
    """A module-produced template of one finger of one holder. Personal data: repr hides `data`."""

    holder_id: str
    finger: int  # 1-10 as ISO/IEC 19794 numbers them, 0 when the enrolment desk did not say
    data: bytes = field(repr=False)
    version: int = 1

    def __post_init__(self) -> None:
        if not self.holder_id:
            raise ValueError("a fingerprint template needs a holder_id")
        if not 0 <= self.finger <= 10:
            raise ValueError(f"finger must be 0-10, got {self.finger}")
        if not isinstance(self.data, bytes) or not 0 < len(self.data) <= MAX_TEMPLATE_BYTES:
            raise ValueError(f"template data must be 1-{MAX_TEMPLATE_BYTES} bytes")
        if self.version < 1:
            raise ValueError(f"template version starts at 1, got {self.version}")

    @property
    def key(self) -> tuple[str, int]:
        return (self.holder_id, self.finger)


class SlotEntry(NamedTuple):
    """What one module slot holds, as the gate recorded it: a plain `(holder_id, version)` works too."""

    holder_id: str
    version: int
    finger: int = 0

    @property
    def key(self) -> tuple[str, int]:
        return (self.holder_id, self.finger)


@dataclass(frozen=True, slots=True)
class Store:
    """Write `template` into `slot` (the module overwrites whatever the slot held)."""

    slot: int
    template: FingerprintTemplate


@dataclass(frozen=True, slots=True)
class Delete:
    """Empty `slot`."""

    slot: int


Operation = Store | Delete


class SlotCapacityError(ValueError):
    """More templates are wanted than the module has slots."""

    def __init__(self, wanted: int, capacity: int) -> None:
        super().__init__(
            f"{wanted} fingerprint templates are wanted but the module has {capacity} slots: "
            "use a module with more slots, or enrol fewer fingers per holder"
        )
        self.wanted = wanted
        self.capacity = capacity


@dataclass(frozen=True)
class SlotPlan:
    """The operations that make a module mirror the wanted templates, and the slot map afterwards."""

    capacity: int
    operations: tuple[Operation, ...]
    slots: Mapping[int, SlotEntry]  # the module's content once `operations` are applied

    @classmethod
    def compute(
        cls,
        capacity: int,
        current: Mapping[int, SlotEntry | tuple[str, int]],
        wanted: Iterable[FingerprintTemplate],
    ) -> SlotPlan:
        """Plan the fewest operations from `current` (slot -> what it holds) to `wanted`.

        A wanted template already in a slot at the same version costs nothing; at another version it
        is rewritten in the same slot. New templates take the lowest free slots, reusing a slot being
        vacated (a `Store` overwrites, so no `Delete` is sent for it). Slots of templates no longer
        wanted are deleted.
        """
        if capacity < 1:
            raise ValueError(f"module capacity must be at least 1, got {capacity}")
        entries: dict[int, SlotEntry] = {}
        for slot, entry in current.items():
            if not 0 <= slot < capacity:
                raise ValueError(f"slot {slot} is outside the module's slots 0-{capacity - 1}")
            entries[slot] = entry if isinstance(entry, SlotEntry) else SlotEntry(*entry)

        by_key: dict[tuple[str, int], FingerprintTemplate] = {}
        for t in wanted:
            if t.key in by_key:
                raise ValueError(f"two templates wanted for the same finger ({t.finger}) of one holder")
            by_key[t.key] = t
        if len(by_key) > capacity:
            raise SlotCapacityError(len(by_key), capacity)

        result: dict[int, SlotEntry] = {}
        stores: dict[int, Store] = {}
        placed: set[tuple[str, int]] = set()
        vacated: list[int] = []
        for slot in sorted(entries):
            entry = entries[slot]
            template = by_key.get(entry.key)
            if template is None or entry.key in placed:  # not wanted, or a stray duplicate
                vacated.append(slot)
                continue
            placed.add(entry.key)
            result[slot] = SlotEntry(template.holder_id, template.version, template.finger)
            if entry.version != template.version:
                stores[slot] = Store(slot, template)

        newcomers = [t for key, t in by_key.items() if key not in placed]
        newcomers.sort(key=lambda t: t.key)  # deterministic: the same inputs give the same slots
        free = (s for s in range(capacity) if s not in result)
        for template, slot in zip(newcomers, free, strict=False):
            result[slot] = SlotEntry(template.holder_id, template.version, template.finger)
            stores[slot] = Store(slot, template)

        deletes = [Delete(s) for s in vacated if s not in result]
        # Deletes first: a module told to drop a holder drops them even if a later store fails.
        operations: tuple[Operation, ...] = (*deletes, *(stores[s] for s in sorted(stores)))
        return cls(capacity=capacity, operations=operations, slots=dict(sorted(result.items())))

    def holder_for_slot(self, slot: int) -> str | None:
        """The holder whose finger the module matched in `slot`, or None for an empty slot."""
        entry = self.slots.get(slot)
        return entry.holder_id if entry else None

    def slots_of(self, holder_id: str) -> list[int]:
        return [s for s, e in self.slots.items() if e.holder_id == holder_id]


def apply_operations(current: Mapping[int, SlotEntry | tuple[str, int]],
                     operations: Iterable[Operation]) -> dict[int, SlotEntry]:
    """The slot map after `operations`, as a module would hold it (for tests and gate bookkeeping)."""
    slots = {s: (e if isinstance(e, SlotEntry) else SlotEntry(*e)) for s, e in current.items()}
    for op in operations:
        if isinstance(op, Delete):
            slots.pop(op.slot, None)
        else:
            t = op.template
            slots[op.slot] = SlotEntry(t.holder_id, t.version, t.finger)
    return slots
