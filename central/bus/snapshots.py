"""Snapshots for gates that ask (`sync/request`), built off the ingest's batch thread, a fair share each.

    ingest batch thread --request(site, gate)--> pending gates (FIFO, one entry per gate)
    `workers` threads: take the first pending gate not being built --> Publisher.send_snapshot

A full snapshot is the whole state of a site (a million real-name tickets: seconds to read and send),
so building it inside the ingest loop held every other gate's events behind it, and a gate that asked
again and again got one full build per request. Here:

- requests coalesce per gate: a request for a gate already waiting is the same request; one arriving
  while that gate's snapshot is being built waits as the one that follows (the build under way may
  have read the state before the gate's reason to ask), so a gate has at most one build running and
  one waiting, however often it asks;
- one build at a time per gate, `workers` at a time in all (a small pool: each holds a database
  connection and a read of the whole site);
- gates are served in the order they asked, and a gate asking again goes to the back: one gate's
  flood delays another gate's snapshot by at most one build.

Only registered gates get one: a snapshot carries the site's ID digests, card UIDs and templates.
The request message is acknowledged to the broker with its batch, before the build: if the process
dies meanwhile the gate asks again (a gate that has no snapshot within 30 s repeats its request).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import select

from central.models import Gate

log = logging.getLogger(__name__)


@dataclass
class SnapshotStats:
    requested: int = 0
    coalesced: int = 0  # requests merged into one already waiting
    built: int = 0
    failed: int = 0
    unknown_gate: int = 0


class SnapshotSender:
    """`request()` from any thread; `start()` runs the workers, `stop()` ends them."""

    def __init__(self, publisher, sessions, *, workers: int = 2) -> None:
        self.publisher = publisher
        self.sessions = sessions
        self.stats = SnapshotStats()
        self._workers = max(1, workers)
        self._cond = threading.Condition()
        self._pending: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._running: set[tuple[str, str]] = set()
        self._stop = False
        self._threads: list[threading.Thread] = []

    def start(self) -> SnapshotSender:
        with self._cond:
            self._stop = False
        for n in range(self._workers):
            thread = threading.Thread(target=self._run, name=f"snapshots-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def request(self, site_id: str, gate: str) -> bool:
        """Ask for a snapshot for the gate; False when it merged into one already waiting."""
        key = (site_id, gate)
        with self._cond:
            self.stats.requested += 1
            if key in self._pending:
                self.stats.coalesced += 1
                return False
            self._pending[key] = None
            self._cond.notify()
            return True

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._running

    def _next(self) -> tuple[str, str] | None:
        """The first waiting gate whose snapshot is not being built; waits for one. None: stopping."""
        with self._cond:
            while True:
                if self._stop:
                    return None
                key = next((k for k in self._pending if k not in self._running), None)
                if key is not None:
                    del self._pending[key]
                    self._running.add(key)
                    return key
                self._cond.wait()

    def _run(self) -> None:
        while (key := self._next()) is not None:
            try:
                self._build(*key)
            finally:
                with self._cond:
                    self._running.discard(key)
                    self._cond.notify_all()

    def _build(self, site_id: str, gate: str) -> None:
        try:
            with self.sessions() as session:
                known = session.scalar(select(Gate.id).where(Gate.site_id == site_id, Gate.name == gate))
            if known is None:
                self.stats.unknown_gate += 1
                log.warning("snapshot request from %s/%s ignored: no such gate is registered", site_id, gate)
                return
            self.publisher.send_snapshot(site_id, gate)
            self.stats.built += 1
        except Exception:  # the gate asks again when none arrives
            self.stats.failed += 1
            log.exception("snapshot for %s/%s failed", site_id, gate)


__all__ = ["SnapshotSender", "SnapshotStats"]
