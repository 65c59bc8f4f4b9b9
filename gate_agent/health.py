"""The gate's health: its status (retained, on every change and every heartbeat), its devices tested
one by one, and the monitor thread that keeps it all going.

    monitor, every 0.25 s:  `tick()` (the agent: controller alarms, mode, free passages, snapshot retries)
                            the status when it changed or the heartbeat is due
                            systemd's watchdog, pinged from this loop only: a wedged loop is restarted
                            hourly: applied deltas pruned, expired same-person bindings purged
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from protocol import host, topics
from protocol import messages as m

from .arm import Arm, TurnstileUnavailable
from .link import Link
from .readers import Reader
from .store import Store

log = logging.getLogger(__name__)
AGENT_VERSION = "0.1.0"
TICK_S = 0.25
PRUNE_EVERY_S = 3600.0


class Health:
    """Status and device checks of one gate; `mode()` and `config_version()` follow its config."""

    def __init__(self, *, site: str, gate: str, store: Store, link: Link, arm: Arm, mode: Callable[[], m.Mode],
                 config_version: Callable[[], int], heartbeat_s: float) -> None:
        self.site, self.gate = site, gate
        self.store = store
        self.link = link
        self.arm = arm
        self._mode = mode
        self._config_version = config_version
        self.heartbeat_s = heartbeat_s
        self.readers: list[Reader] = []
        self.broken_readers: list[m.ReaderHealth] = []  # configured readers that could not be built
        self.devices: list[Callable[[], m.ReaderHealth]] = []  # the voice module's and other devices' health
        self.dirty = threading.Event()  # the status changed: publish it now
        self.after_purge: Callable[[], None] | None = None  # expired bindings went: free the module's slots

    def reader_health(self) -> list[m.ReaderHealth]:
        return [r.health() for r in self.readers] + list(self.broken_readers) + [d() for d in self.devices]

    def status(self, online: bool = True) -> m.GateStatus:
        return m.GateStatus(
            site=self.site, gate=self.gate, online=online, at=datetime.now(UTC), mode=self._mode(),
            config_version=self._config_version(), store_seq=self.store.seq, outbox=self.store.outbox_depth(),
            readers=self.reader_health(), controller_ok=self.arm.healthy, alarms=sorted(self.arm.alarms),
            agent_version=AGENT_VERSION,
        )

    def publish_status(self) -> None:
        self.link.publish(topics.status(self.site, self.gate), m.encode(self.status()), retain=True)

    def status_dict(self, resyncing: bool) -> dict:
        """The status as the local CLI shows it, with the link's state."""
        status = msgspec.to_builtins(self.status())
        status["connected"] = self.link.connected
        status["resyncing"] = resyncing
        status["published"] = self.link.published
        return status

    def test_devices(self, name: str | None = None) -> list[tuple[str, bool, str]]:
        """(device, ok, detail) for the turnstile (open once in) and each reader's health."""
        results: list[tuple[str, bool, str]] = []
        if name in (None, "turnstile"):
            if self.arm.control is None:
                results.append(("turnstile", name is None, "not configured"))
            else:
                try:
                    self.arm.open_once("in")
                    results.append(("turnstile", True, "opened once"))
                except TurnstileUnavailable as exc:
                    results.append(("turnstile", False, str(exc)))
        for health in self.reader_health():
            if name in (None, health.name):
                results.append((health.name, health.ok, health.detail))
        return results

    def monitor(self, stop: threading.Event, tick: Callable[[], None]) -> None:
        """The monitor thread's loop (see the module doc), until `stop` is set."""
        next_beat = 0.0
        next_prune = time.monotonic() + PRUNE_EVERY_S
        watchdog = host.watchdog_interval()
        while not stop.wait(TICK_S):
            now = time.monotonic()
            try:
                tick()
            except Exception:
                log.exception("monitor")
            if now >= next_beat or self.dirty.is_set():
                self.dirty.clear()
                next_beat = now + self.heartbeat_s
                try:
                    self.publish_status()
                except Exception:
                    log.exception("status")
            if watchdog:
                host.notify("WATCHDOG=1")
            if now >= next_prune:
                next_prune = now + PRUNE_EVERY_S
                self.store.prune_applied()
                if self.store.purge_bindings() and self.after_purge is not None:
                    self.after_purge()


__all__ = ["AGENT_VERSION", "Health"]
