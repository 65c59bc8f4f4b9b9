"""The claim server: answers gates' ClaimRequests at once, beside the ingest but never behind its batches.

    gate --claim (QoS 1)--> broker --$share/{group}-claims/...--> on_message: drop if past its deadline
        --> queue --> worker threads (own sessions): handle_claim in one transaction, commit
        --> ClaimReply on gates/v1/{site}/gate/{gate}/claim/reply (QoS 1)

Claims on one credential serialise in the database (`central.services.claims`), so several workers,
in one process or in several behind the shared subscription, grant each entry once. The session is
not persistent: a request that waited at the broker while the server was away is past its deadline
anyway, and the gate has already decided alone.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from central import metrics
from central.bus.link import MqttLink, PublishError
from central.config import CentralConfig
from central.db import is_transient
from central.models import utcnow
from central.services.claims import expired, handle_claim, prune_claims
from protocol import topics
from protocol.clock import park_now
from protocol.errors import MessageError
from protocol.messages import ClaimReply, ClaimRequest, decode, encode

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0
KEEP_EXPIRED = timedelta(days=1)


@dataclass
class ClaimStats:
    received: int = 0
    granted: int = 0
    refused: int = 0
    late: int = 0  # past the gate's deadline on arrival or after the transaction: not answered
    invalid: int = 0
    errors: int = 0
    busy_s: float = 0.0  # in transactions
    slowest_s: float = 0.0


class ClaimServer:
    """`start()` subscribes and runs `workers` threads; `stop()` ends them."""

    def __init__(self, config: CentralConfig, sessions, *, workers: int = 4, worker_id: str = "1") -> None:
        self.config = config
        self.sessions = sessions
        self.stats = ClaimStats()
        self._queue: queue.SimpleQueue[ClaimRequest | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._workers = max(1, workers)
        self._next_prune = time.monotonic() + 60
        self._postgres = sessions.kw["bind"].dialect.name == "postgresql"
        self.link = MqttLink(config.mqtt, client_id=f"{config.mqtt.client_id}-claims-{worker_id}-{os.getpid()}",
                             no_delay=True)
        topic = topics.all_of_kind("claim")
        # MQTT 3.1.1 has no shared subscriptions: every server sees every request; the request id and
        # the row lock make the answers agree.
        if config.mqtt.protocol != "3.1.1":
            topic = topics.shared(f"{config.ingest.group}-claims", topic)
        self.link.subscribe(topic, self._on_message, qos=1)

    def start(self, wait: float = 10.0) -> ClaimServer:
        self._stop.clear()
        for n in range(self._workers):
            thread = threading.Thread(target=self._run, name=f"claims-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.link.start(wait=wait)
        return self

    def stop(self) -> None:
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(5)
        self._threads.clear()
        self.link.stop()

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def alive(self) -> bool:
        """Every worker thread runs (for the systemd watchdog)."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    # --- receiving ---------------------------------------------------------------------------
    def _on_message(self, msg) -> None:
        self.stats.received += 1
        try:
            site, gate, _ = topics.parse_gate_topic(msg.topic)
            request = decode(ClaimRequest, msg.payload)
        except (ValueError, MessageError) as exc:
            self.stats.invalid += 1
            metrics.CLAIMS.labels("invalid").inc()
            log.warning("claim request on %s refused: %s", msg.topic, exc)
            return
        if request.site != site or request.gate != gate:
            self.stats.invalid += 1  # a gate may claim only under its own topic (the ACL says so too)
            metrics.CLAIMS.labels("invalid").inc()
            log.warning("claim request on %s names %s/%s", msg.topic, request.site, request.gate,
                        extra={"site": site, "gate": gate})
            return
        if expired(request, utcnow()):
            self.stats.late += 1
            metrics.CLAIMS.labels("late").inc()
            return
        self._queue.put(request)

    # --- answering ---------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            request = self._queue.get()
            if request is None:
                return
            started = time.perf_counter()
            try:
                reply = self.answer(request)
            except Exception:
                self.stats.errors += 1
                metrics.CLAIMS.labels("error").inc()
                log.exception("claim %s failed; the gate decides alone", request.id)
                continue
            if reply is not None:
                self._reply(request, reply)
            took = time.perf_counter() - started
            metrics.CLAIM_SECONDS.observe(took)
            self.stats.busy_s += took
            self.stats.slowest_s = max(self.stats.slowest_s, took)
            if took > 0.05:
                log.info("claim %s took %.0f ms", request.id, took * 1000)
            self._maybe_prune()

    def answer(self, request: ClaimRequest) -> ClaimReply | None:
        """Decide one request in its own transaction; None when it is too late to answer."""
        for attempt in (1, 2):
            try:
                with self.sessions.begin() as session:
                    if self._postgres:
                        # A claim is a lease of seconds: it need not wait for the WAL flush behind the
                        # ingest's writes. A crash may forget the last few claims: as if the gate had
                        # decided alone, which the ingest's conflicts then show.
                        session.execute(text("SET LOCAL synchronous_commit = off"))
                    reply = handle_claim(session, request, utcnow(), park_now())
                    if expired(request, utcnow()):
                        raise _TooLate  # the gate has stopped waiting: roll back, grant nothing
                break
            except _TooLate:
                self.stats.late += 1
                metrics.CLAIMS.labels("late").inc()
                return None
            except (OperationalError, DBAPIError) as exc:
                if attempt == 2 or not _transient(exc):
                    raise
        if reply.granted:
            self.stats.granted += 1
        else:
            self.stats.refused += 1
        metrics.CLAIMS.labels("granted" if reply.granted else "refused").inc()
        return reply

    def _reply(self, request: ClaimRequest, reply: ClaimReply) -> None:
        try:
            self.link.publish(topics.claim_reply(request.site, request.gate), encode(reply), qos=1, wait=False)
        except PublishError as exc:
            log.warning("claim reply to %s lost: %s", request.gate, exc, extra={"site": request.site,
                                                                                 "gate": request.gate})

    def _maybe_prune(self) -> None:
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        try:
            with self.sessions.begin() as session:
                pruned = prune_claims(session, utcnow() - KEEP_EXPIRED)
            if pruned:
                log.info("pruned %d expired claims", pruned)
        except Exception:
            log.exception("pruning claims failed")


class _TooLate(Exception):
    pass


def _transient(exc: Exception) -> bool:
    """Worth one more try: a deadlock, or a connection cut by a failover (the next goes to the new
    primary). Retrying is safe: the claim is keyed by its request id, so a first try that committed
    unseen gives the same answer again."""
    return is_transient(exc)


__all__ = ["ClaimServer", "ClaimStats"]
