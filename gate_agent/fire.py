"""The fire alarm at the gate: the controller's fire input opens this gate, its zone or the site at once.

    controller fire input ──(monitor tick)──► latch: mode emergency, arm free ──► FireAlarm, retained,
                                                                                  on this gate's `fire` topic
    another gate's FireAlarm (same zone, or scope site) ──────────────────────► latch

No central is asked: the gates of a zone or site read each other's `fire` topic on the broker (the
ACL lets every gate of the site read it). The latch is kept in the store, so a restart during a fire
stays open, and it holds until the emergency is ended: the central's config carries
`emergency_ended_at` (set by whoever ended it, in the audit log), or a technician sets a mode at the
box. An alarm from before that end is history; a fire input still raised after it raises a new alarm.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from protocol import messages as m
from protocol import topics
from protocol.errors import MessageError

from .store import Store

log = logging.getLogger(__name__)
CONFIRM_READS = 2  # the monitor reads every 0.25 s: a fire opens the gates within about half a second


class FireWatch:
    """One gate's fire latch; `emergency()` is called when it latches (apply the mode, tell the visitor)."""

    def __init__(self, store: Store, site: str, gate: str, *, zone: Callable[[], int],
                 scope: Callable[[], m.FireScope], publish: Callable[..., object],
                 emergency: Callable[[], None]) -> None:
        self.store = store
        self.site, self.gate = site, gate
        self._zone, self._scope = zone, scope
        self._publish = publish
        self._emergency = emergency
        self._input = False  # the controller's fire input as last read
        self._reads = 0  # consecutive reads with the input raised

    @property
    def active(self) -> bool:
        return self.store.meta("fire") is not None

    @property
    def source(self) -> str | None:
        """The gate whose fire input latched this one."""
        raw = self.store.meta("fire")
        return json.loads(raw)["gate"] if raw else None

    def _ended_at(self) -> datetime | None:
        raw = self.store.meta("fire_ended_at")
        return datetime.fromisoformat(raw) if raw else None

    def _latch(self, source: str, at: datetime) -> None:
        if self.active:
            return
        self.store.set_meta("fire", json.dumps({"gate": source, "at": at.isoformat()}))
        log.warning("fire alarm (gate %s): emergency, the gate is open", source)
        self._emergency()

    def _announce(self, active: bool, at: datetime) -> None:
        alarm = m.FireAlarm(site=self.site, gate=self.gate, zone=self._zone(), scope=self._scope(),
                            active=active, at=at)
        self._publish(topics.fire(self.site, self.gate), m.encode(alarm), retain=True)

    def input(self, raised: bool) -> None:
        """The controller's fire input as the monitor read it (every tick). A rise counts once two reads
        in a row agree: one stray bit (a reply garbled past its check) must not open the zone."""
        self._reads = self._reads + 1 if raised else 0
        if raised and self._reads < CONFIRM_READS:
            return
        if raised == self._input:
            return
        self._input = raised
        now = datetime.now(UTC)
        if raised:
            self._latch(self.gate, now)  # first here, then the others
        self._announce(raised, now)

    def reannounce(self) -> None:
        """After a reconnect: an alarm published while offline was lost, so say it again."""
        if self._input:
            raw = self.store.meta("fire")
            at = datetime.fromisoformat(json.loads(raw)["at"]) if raw else datetime.now(UTC)
            self._announce(True, at)

    def on_alarm(self, topic: str, payload: bytes) -> None:
        """Another gate's FireAlarm: latch if it is raised, recent, and this gate is in its scope."""
        if not payload:
            return
        try:
            alarm = m.decode(m.FireAlarm, payload)
        except MessageError as exc:
            log.warning("fire alarm refused: %s", exc)
            return
        if alarm.gate == self.gate or alarm.site != self.site or not alarm.active:
            return
        ended = self._ended_at()
        if ended is not None and alarm.at <= ended:
            return  # an alarm the emergency's end already answered (the retained message stays)
        if alarm.scope == "site" or (alarm.scope == "zone" and alarm.zone == self._zone()):
            self._latch(alarm.gate, alarm.at)

    def end(self, at: datetime | None = None) -> bool:
        """The emergency is over (the central's `emergency_ended_at`, or a technician): True if it was on."""
        at = at or datetime.now(UTC)
        ended = self._ended_at()
        if ended is not None and at <= ended:
            return False
        self.store.set_meta("fire_ended_at", at.isoformat())
        raw = self.store.meta("fire")
        if raw is None or datetime.fromisoformat(json.loads(raw)["at"]) > at:
            return False  # no fire, or one that started after this end
        self.store.set_meta("fire", None)
        log.warning("fire emergency ended")
        self._input = False  # an input still raised raises a new alarm at the next tick
        return True


__all__ = ["FireWatch"]
