"""The fingerprint module's slots kept in step with the central's templates, and a hit mapped to a holder.

The module matches on itself and answers a finger with a slot number, so the gate keeps a slot map in
its store (`fp_slots`: slot -> holder, finger, template version). `biometrics.fingerprint.SlotPlan`
says which `Store` and `Delete` operations make the module hold exactly the stored templates; they run
in the fingerprint reader's thread, which owns the serial port, a few at a time between two captures.

The slot map only ever claims what the module is known to hold:

- a slot is recorded for its new holder only after the module acknowledged the `Store`;
- a slot being reused for another holder (a `Store` overwrites, no `Delete` is sent) is first
  cleared in the map, so if the `Store` fails half-way the old holder's finger maps to nobody;
- a holder forgotten or dropped from the templates has their slots tombstoned (holder '') in the same
  transaction as the change (`Store.apply_delta`): from that moment their finger admits nobody,
  and the next sync empties the slot;
- at the first sync, slots the module holds but the map does not know are emptied.
"""

from __future__ import annotations

import logging
import threading
import time

from biometrics.fingerprint import Delete, FingerprintTemplate, SlotCapacityError, SlotEntry, SlotPlan

from .store import Store

log = logging.getLogger(__name__)

FRESH_KEEP_S = 120.0  # a finger taken for an entry nobody walked through: its slot is freed after this
OPS_PER_TURN = 16  # operations per sync turn, so a big snapshot does not keep fingers waiting long


class FingerprintSync:
    """Plans and applies slot operations for one module; `request()` from any thread, `run()` in the reader's."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._due = threading.Event()
        self._due.set()  # the first turn checks the module against the map
        self._checked = False
        self.last_error = ""
        self.synced = threading.Event()  # set whenever the module mirrors the store (tests, status)
        self._fresh: dict[str, tuple[bytes, float]] = {}  # fingers taken here, until their binding is stored
        self._fresh_lock = threading.Lock()

    def request(self) -> None:
        self.synced.clear()
        self._due.set()

    @property
    def due(self) -> bool:
        return self._due.is_set()

    def holder(self, slot: int) -> str | None:
        """The holder whose finger matched `slot`; None for an empty or tombstoned slot."""
        return self.store.fp_slot_holder(slot)

    def claim_slot(self, owner: str, capacity: int) -> int | None:
        """A free slot for a finger taken at this gate (人票绑定), or None when the module is full."""
        used = set(self.store.fp_slots())
        return next((s for s in range(capacity) if s not in used), None)

    def taken(self, slot: int, owner: str, data: bytes) -> None:
        """A finger enrolled into `slot` at this gate: the map says so, and the slot is kept until the
        passage's binding is stored (then `store.finger_bindings` keeps it, until the ticket ends)."""
        self.store.fp_slot_set(slot, owner, 1, 0)
        with self._fresh_lock:
            self._fresh[owner] = (data, time.monotonic())

    def _ticket_fingers(self) -> list[FingerprintTemplate]:
        bound = dict(self.store.finger_bindings())
        now = time.monotonic()
        with self._fresh_lock:
            # Fresh until its passage is stored (then the binding speaks for it, and goes with it).
            self._fresh = {k: v for k, v in self._fresh.items()
                           if k not in bound and now - v[1] < FRESH_KEEP_S and not self.store.usage(k)[0].entries}
            fresh = {k: v[0] for k, v in self._fresh.items()}
        return [FingerprintTemplate(ref, 0, data, 1) for ref, data in {**fresh, **bound}.items()]

    def plan(self, capacity: int) -> SlotPlan:
        self.last_error = ""
        wanted = []
        for holder_id, finger, version, data in self.store.all_template_versions("fingerprint"):
            try:
                wanted.append(FingerprintTemplate(holder_id, finger, data, max(1, version)))
            except ValueError as exc:
                log.warning("a stored fingerprint template was skipped: %s", exc)
        try:
            wanted += self._ticket_fingers()  # tickets bound by fingerprint: in every gate's module (人票绑定)
        except ValueError as exc:
            log.warning("a ticket's fingerprint was skipped: %s", exc)
        current = {slot: SlotEntry(h, v, f) for slot, (h, v, f) in self.store.fp_slots().items() if slot < capacity}
        try:
            return SlotPlan.compute(capacity, current, wanted)
        except SlotCapacityError as exc:
            # Keep the holders the module can hold (those already in it first); say so in the reader's health.
            self.last_error = str(exc)
            log.error("fingerprint module: %s", exc)
            held = {(e.holder_id, e.finger) for e in current.values()}
            wanted.sort(key=lambda t: (t.key not in held, t.key))
            return SlotPlan.compute(capacity, current, wanted[:capacity])

    def run(self, module, limit: int = OPS_PER_TURN) -> int:
        """One turn: up to `limit` operations on `module` (a drivers.fingerprint.FingerprintModule)."""
        self._due.clear()
        try:
            capacity = module.capacity or module.read_system_parameters().capacity
            if not self._checked:
                known = self.store.fp_slots()
                for slot in sorted(module.used_slots() - set(known)):
                    module.delete(slot)  # a template nobody in the map answers for
                self._checked = True
            plan = self.plan(capacity)
            done = 0
            for op in plan.operations[:limit]:
                self._apply(module, op)
                done += 1
        except BaseException:
            self._due.set()  # try again on the reader's next turn
            raise
        if len(plan.operations) > limit:
            self._due.set()
        else:
            self.synced.set()
            if done:
                log.info("fingerprint module in step: %d slots used", len(plan.slots))
        return done

    def _apply(self, module, op) -> None:
        if isinstance(op, Delete):
            module.delete(op.slot)
            self.store.fp_slot_clear(op.slot)
            return
        t = op.template
        was = self.store.fp_slots().get(op.slot)
        if was is not None and (was[0], was[2]) != (t.holder_id, t.finger):
            self.store.fp_slot_clear(op.slot)  # reused: nobody matches here until the Store succeeded
        started = time.monotonic()
        module.store_template(op.slot, t.data)
        self.store.fp_slot_set(op.slot, t.holder_id, t.version, t.finger)
        log.debug("fingerprint slot %d written in %.2f s", op.slot, time.monotonic() - started)


__all__ = ["FingerprintSync"]
