"""The gate's own passage counts of the park day, published retained: the live counts' light path.

    a passage stored (usage, `day_counts`, outbox: one transaction) ──► changed() ──┐
    the link (re)connected ───────────────────────────────────────────► changed() ──┤
    the park day rolls over (read every second): older days pruned ────────────────┤
                                                                                    ▼
    publisher thread: at most one `GateCounts` each 0.5 s, retained, QoS 1, on `.../counts`

The message is the whole day's count, never a difference: a lost or repeated one is harmless, the next
says it all again and the broker keeps the last. The passage path only sets a flag and an event (no
broker, no store read, nothing that raises); offline nothing is sent and the flag stays, so the
reconnect publishes. At the roll-over the new day goes out with no zones, so the central stops adding
the old day's; a passage in the old day's last half-second reaches the central with its event only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from protocol import messages as m
from protocol import topics
from protocol.clock import park_now

from .store import Store

log = logging.getLogger(__name__)
MIN_INTERVAL_S = 0.5  # a rush sends two messages a second, not one per passage
CHECK_DAY_S = 1.0  # how often the park day is read when nothing else happens
KEEP_DAYS = 3  # today and the two before it stay in the store


def park_day(at: datetime, timezone: str) -> date:
    """The park's day of the instant `at`, in the site's time zone."""
    return at.astimezone(ZoneInfo(timezone)).date()


class DayCounts:
    """Publishes one gate's counts of the park day; `timezone()` is the site's (None: no config yet),
    `publish(topic, payload, retain=...)` and `connected()` are the link's."""

    def __init__(self, store: Store, site: str, gate: str, *, timezone: Callable[[], str | None],
                 publish: Callable[..., bool], connected: Callable[[], bool]) -> None:
        self.store = store
        self.site, self.gate = site, gate
        self._timezone = timezone
        self._publish = publish
        self._connected = connected
        self._topic = topics.counts(site, gate)
        self._dirty = True  # the broker may not have today's count yet
        self._wake = threading.Event()
        self._day: date | None = None
        self._last = float("-inf")  # monotonic time of the last message sent
        self.sent = 0  # messages the link took (this process)

    def changed(self) -> None:
        """A passage was counted or the link is back: publish soon. Never waits, never raises."""
        self._dirty = True
        self._wake.set()

    def wake(self) -> None:
        """Look now (the agent stopping, say) instead of at the next check."""
        self._wake.set()

    @property
    def day(self) -> date | None:
        """The park day the counts are published for (None until the site's time zone is known)."""
        return self._day

    def message(self, day: date) -> m.GateCounts:
        return m.GateCounts(site=self.site, gate=self.gate, day=day, at=park_now(), zones=self.store.day_counts(day))

    def run(self, stop: threading.Event) -> None:
        """The publisher thread's loop until `stop` is set (then `wake()`); the last change goes out as it ends."""
        while not stop.is_set():
            self._wake.wait(CHECK_DAY_S)
            self._wake.clear()
            if stop.is_set():
                break
            try:
                self._roll()
                if not self._dirty or self._day is None or not self._connected():
                    continue  # offline: the reconnect's changed() wakes this loop
                pause = self._last + MIN_INTERVAL_S - time.monotonic()
                if pause > 0 and stop.wait(pause):
                    break
                self._send()
            except Exception:
                log.exception("day counts")
                self._dirty = True
                stop.wait(MIN_INTERVAL_S)
        try:
            if self._dirty and self._day is not None and self._connected():
                self._send()
        except Exception:
            log.exception("day counts")

    def _roll(self) -> None:
        """Follow the park day: a new one (or the first) is published at once, days long past pruned."""
        tz = self._timezone()
        if tz is None:
            return
        day = park_day(park_now(), tz)
        if day == self._day:
            return
        if self._day is not None:
            log.info("park day %s: the gate's counts start again", day.isoformat())
        self._day = day
        self.store.prune_day_counts(day - timedelta(days=KEEP_DAYS - 1))
        self._dirty = True

    def _send(self) -> None:
        day = self._day
        assert day is not None
        # Cleared before the count is read: a passage stored after the read sets it again.
        self._dirty = False
        if self._publish(self._topic, m.encode(self.message(day)), retain=True):
            self._last = time.monotonic()
            self.sent += 1
        else:
            self._dirty = True  # the link went away meanwhile: the reconnect's changed() sends it


__all__ = ["CHECK_DAY_S", "KEEP_DAYS", "MIN_INTERVAL_S", "DayCounts", "park_day"]
