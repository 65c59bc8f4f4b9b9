"""Recording passages: the one builder of the gate's PassageEvents, and the note of a passage under way.

Every event the gate sends is built by `Passages.event`: a decided attempt (`attempt`), a passage
settled from the controller's counter after the gate died mid-passage (`recover`), a visitor counted
in free passage or an emergency (`free`). `record` stores it with the usage change, the gate's count of
the park day and the outbox row in one transaction (`Store.record`), moves the gate's zone count, wakes
the link's sender and, for a confirmed passage, the counts' publisher (`gate_agent.counts`).

The pending-passage note (`mark`, store meta `pending_passage`) is written as the arm opens: a gate
process that dies between the visitor walking through and the event being stored finds the note at
restart, reads the controller's counter and records the passage once (`recover`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime

from protocol import messages as m
from protocol import topics
from protocol.clock import park_now
from protocol.ids import new_event_id
from protocol.reasons import Reason

from .arm import Arm, TurnstileUnavailable
from .counts import park_day
from .decider import Attempt, Outcome, ZoneTracker
from .store import Store

log = logging.getLogger(__name__)
PENDING_PASSAGE = "pending_passage"


class Passages:
    """Builds, stores and forwards the gate's events; `zone()`, `connected()` and `timezone()` (the site's,
    None before the first config) are read at each event; `counted()` follows each confirmed passage."""

    def __init__(self, store: Store, zones: ZoneTracker, site: str, gate: str, *, zone: Callable[[], int],
                 connected: Callable[[], bool], wake: Callable[[], None],
                 timezone: Callable[[], str | None] = lambda: None,
                 counted: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.zones = zones
        self.site, self.gate = site, gate
        self._zone = zone
        self._connected = connected
        self._wake = wake
        self._timezone = timezone
        self._counted = counted
        self._topic = topics.event(site, gate)

    def event(self, *, direction: m.Direction, kind: m.CredentialKind, decision: m.Decision, reason: str,
              passed: bool, mode: m.Mode,
              offline: bool | None = None, ref: str = "", ticket_type: int | None = None, at: datetime | None = None,
              binding: bytes | None = None, face_distance: float | None = None, claim_id: str | None = None,
              zone: int | None = None, binding_kind: str = "face", photo: bytes | None = None) -> m.PassageEvent:
        """A PassageEvent of this gate: a new id, the gate's zone and link state unless given."""
        return m.PassageEvent(
            id=new_event_id(), site=self.site, gate=self.gate, zone=self._zone() if zone is None else zone,
            at=at or park_now(), direction=direction, credential_kind=kind, credential_ref=ref,
            decision=decision, reason=reason, passed=passed, headcount=1,
            offline=(not self._connected()) if offline is None else offline, mode=mode, ticket_type=ticket_type,
            binding=binding, face_distance=face_distance, claim_id=claim_id,
            binding_kind="fingerprint" if binding_kind == "fingerprint" else "face", photo=photo)

    def record(self, event: m.PassageEvent, *, wake: bool = True) -> m.PassageEvent:
        """Store the event (usage, the day's count, outbox and the clearing of any pending note in one
        transaction). A confirmed passage counts on the park day of its `at`, in the site's time zone."""
        tz = self._timezone() if event.passed else None
        self.store.record(event, self._topic, park_day(event.at, tz) if tz else None)
        self.zones.passage(event)
        if wake:
            self._wake()
            if event.passed:
                self._counted()
        return event

    def attempt(self, attempt: Attempt, outcome: Outcome, *, now: datetime, passed: bool, offline: bool,
                mode: m.Mode, binding: bytes | None = None, claim_id: str | None = None,
                photo: bytes | None = None) -> m.PassageEvent:
        """The event of one decided attempt (a refusal, a grant nobody walked through, or a passage)."""
        verdict, resolved = outcome.verdict, outcome.resolved
        credential = resolved.credential
        return self.record(self.event(
            direction=attempt.direction, kind=resolved.kind, ref=resolved.ref, at=now,
            decision="granted" if verdict.granted else "refused", reason=str(verdict.reason), passed=passed,
            offline=offline, mode=mode, ticket_type=credential.ticket_type if credential else None, binding=binding,
            face_distance=outcome.biometric.distance if outcome.biometric else None, claim_id=claim_id,
            binding_kind=outcome.biometric.kind if binding and outcome.biometric else "face", photo=photo))

    def free(self, direction: m.Direction, count: int, mode: m.Mode) -> None:
        """Visitors the controller counted through an open arm (free passage, emergency)."""
        reason = str(Reason.EMERGENCY if mode == "emergency" else Reason.FREE_PASSAGE)
        for _ in range(count):
            self.record(self.event(direction=direction, kind="none", decision="granted", reason=reason, passed=True,
                                   mode=mode), wake=False)
        self._wake()
        if count:
            self._counted()

    def mark(self, outcome: Outcome, direction: m.Direction, mode: m.Mode, claim_id: str | None,
             before: int | None) -> None:
        """As the arm opens, note the passage and the controller's counter before it (see the module doc)."""
        credential = outcome.resolved.credential
        # Written without waiting for the disk: it must survive the process dying (the case it exists
        # for), and a power cut stops the turnstile with it; an fsync here would be most of a decision.
        self.store.set_meta(PENDING_PASSAGE, json.dumps({
            "direction": direction, "before": before, "kind": outcome.resolved.kind, "ref": outcome.resolved.ref,
            "ticket_type": credential.ticket_type if credential else None, "mode": mode, "claim_id": claim_id,
            "zone": self._zone()}), fsync=False)

    def recover(self, arm: Arm) -> bool:
        """Settle a passage noted before the arm opened and not recorded: the process died, or the
        controller went silent while the visitor walked through. If the controller's counter moved since,
        record the passage now (once: `Store.record` clears the note in the same transaction); runs at
        start and before the next opening. False if the controller is away."""
        text = self.store.meta(PENDING_PASSAGE)
        if not text:
            return True
        if arm.control is None:
            return False
        note = json.loads(text)
        try:
            moved = arm.counters().get(note["direction"]) != note["before"]
        except TurnstileUnavailable:
            return False
        if not moved:
            self.store.set_meta(PENDING_PASSAGE, None)  # the visitor never went through
            return True
        self.record(self.event(direction=note["direction"], kind=note["kind"], ref=note["ref"], decision="granted",
                               reason=str(Reason.OK), passed=True, mode=note["mode"], ticket_type=note["ticket_type"],
                               claim_id=note["claim_id"], zone=note["zone"]))
        log.warning("a passage interrupted by a restart was recorded from the controller's counter")
        return True


__all__ = ["PENDING_PASSAGE", "Passages"]
