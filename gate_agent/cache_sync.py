"""The gate's copy of the site's credentials, kept in step with the central and the site's other gates.

    deltas      numbered changes from the central, applied in sequence; a gap asks for a snapshot
    snapshots   the whole cache, in chunks, when the gate starts empty, falls behind or asks again
    site events other gates' passages: their usage, so a ticket used at gate A is refused at gate B
    occupancy   the central's live counts: the zone-full rule at the gate

While a snapshot is coming, deltas are kept and applied after it. `after_changes(changes)` is called
with every applied change (faces and fingerprint slots follow), `after_snapshot()` once a snapshot is
in place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from protocol import messages as m
from protocol import topics
from protocol.clock import park_now
from protocol.errors import MessageError
from protocol.ids import is_ticket_ref

from .decider import ZoneTracker
from .store import Store

log = logging.getLogger(__name__)
SNAPSHOT_PATIENCE_S = 30.0  # ask again when no snapshot has arrived this long after asking


class CacheSync:
    """Applies the central's deltas and snapshots and the site's passages to the gate's store."""

    def __init__(self, store: Store, zones: ZoneTracker, site: str, gate: str, *,
                 publish: Callable[[str, bytes], bool], after_changes: Callable[[Iterable[object]], None],
                 after_snapshot: Callable[[], None]) -> None:
        self.store = store
        self.zones = zones
        self.site, self.gate = site, gate
        self._publish = publish
        self._after_changes = after_changes
        self._after_snapshot = after_snapshot
        self.on_finger_binding: Callable[[], None] | None = None  # a ticket's finger taken at another gate
        self._lock = threading.RLock()
        self.resyncing = False
        self._asked_at = 0.0
        self._next_chunk = 0
        self._buffered: dict[int, m.Delta] = {}

    def resync(self, reason: str = "") -> bool:
        """Ask the central for a full snapshot; deltas wait until it has been applied."""
        with self._lock:
            self.resyncing = True
            self._next_chunk = 0
            self._asked_at = time.monotonic()
        request = m.SnapshotRequest(self.gate, self.store.seq, reason[:256])
        log.info("asking for a snapshot (%s)", reason)
        return self._publish(topics.sync_request(self.site, self.gate), m.encode(request))

    def check(self, connected: bool) -> None:
        """Called now and then: ask again for a snapshot that did not come."""
        if self.resyncing and connected and time.monotonic() - self._asked_at > SNAPSHOT_PATIENCE_S:
            self.resync(f"no snapshot within {SNAPSHOT_PATIENCE_S:.0f} s")

    def on_delta(self, payload: bytes) -> None:
        try:
            delta = m.decode(m.Delta, payload)
        except MessageError as exc:
            log.warning("delta refused: %s", exc)
            return
        if delta.site != self.site:
            return
        with self._lock:
            last = self.store.seq
            if delta.seq <= last:
                return
            if self.resyncing:
                self._buffered[delta.seq] = delta
                return
            if delta.seq == last + 1:
                self._apply(delta)
                self._apply_buffered()
                return
            self._buffered[delta.seq] = delta
        self.resync(f"gap: have {last}, got {delta.seq}")

    def _apply(self, delta: m.Delta) -> None:
        self.store.apply_delta(delta)
        self._after_changes(delta.changes)

    def _apply_buffered(self) -> None:
        last = self.store.seq
        for seq in sorted(self._buffered):
            delta = self._buffered.pop(seq)
            if seq <= last:
                continue
            if seq != last + 1:
                self._buffered[seq] = delta
                break
            self._apply(delta)
            last = seq

    def on_sync(self, payload: bytes) -> None:
        try:
            chunk = m.decode(m.SnapshotChunk, payload)
        except MessageError as exc:
            log.warning("snapshot chunk refused: %s", exc)
            return
        if chunk.gate != self.gate or chunk.site != self.site:
            return
        with self._lock:
            if chunk.index != self._next_chunk and chunk.index != 0:
                log.warning("snapshot chunk %s out of order (expected %s)", chunk.index, self._next_chunk)
                retry = True
            else:
                retry = False
                self.store.snapshot_chunk(chunk)
                self._next_chunk = chunk.index + 1
                if chunk.last:
                    self.resyncing = False
                    self._next_chunk = 0
                    log.info("snapshot %s applied at seq %s", chunk.snapshot_id, chunk.seq)
                    self._apply_buffered()
                    self._after_snapshot()
        if retry:
            self.resync("snapshot chunk out of order")

    def on_site_event(self, topic: str, payload: bytes) -> None:
        """Another gate's passage: its usage counts here too (within what a gate alone can check)."""
        try:
            gate = topics.parse_gate_topic(topic)[1]
        except ValueError:
            return
        if gate == self.gate:
            return
        try:
            event = m.decode(m.PassageEvent, payload)
        except MessageError:
            return
        if not event.passed or not plausible_remote(event):
            return
        if self.store.apply_remote(event):
            self.zones.passage(event)
            if event.binding and event.binding_kind == "fingerprint" and self.on_finger_binding is not None:
                self.on_finger_binding()  # 人票绑定: this gate's module loads the ticket's finger too

    def on_occupancy(self, payload: bytes) -> None:
        try:
            self.zones.occupancy(m.decode(m.Occupancy, payload))
        except MessageError as exc:
            log.warning("occupancy refused: %s", exc)


def plausible_remote(event: m.PassageEvent) -> bool:
    """Whether another gate's passage may count here. Such events come straight from the broker, so the
    central's checks (`central.services.ingest`) cannot stop a forged one; these are the checks a gate
    can make alone: not dated ahead of this gate's clock (a far-future time would hold the ticket "too
    soon" and the zone count until then), and one passage per event for anything but a group ticket."""
    if (event.at - park_now()).total_seconds() > m.MAX_AHEAD_S:
        log.warning("a passage event from %s dated ahead of this gate's clock was ignored", event.gate)
        return False
    if event.headcount > 1 and not is_ticket_ref(event.credential_ref):
        log.warning("a passage event from %s for %d people without a group ticket was ignored", event.gate,
                    event.headcount)
        return False
    return True


__all__ = ["CacheSync", "plausible_remote"]
