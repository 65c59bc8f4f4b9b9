"""The ingest worker: gate messages from MQTT into the database, in batches, acknowledged after commit.

    broker --(QoS 1, MQTT 5 shared subscription, persistent session)--> on_message -> queue
    queue --(N messages or M ms)--> one transaction: events, statuses, acks, parked messages
    commit --> PUBACK every message of the batch --> occupancy (retained), deltas
                                                 --> snapshot requests --> SnapshotSender (own threads)

Messages are acknowledged only after their batch is committed (paho `manual_ack`), so a worker killed
at any point loses nothing: the broker redelivers what was not acknowledged, and the event id makes
the redelivery harmless. The worker holds at most a few batches of received messages: past that the
network thread waits for the batch thread (TCP then holds the rest at the broker), because a broker
need not honour the Receive Maximum (Mosquitto 2.0.11 sends more after every PUBACK: a worker behind
the load grew by 8 KB per message received). A message that cannot be decoded, or whose batch fails
to store, is parked in `parked_messages` with the error, as its first 4 KB with its size and SHA-256
(one transaction per message on the retry path), so one bad message neither crashes the worker, nor
holds back the events behind it, nor fills the database. Several workers with the same group split
the load through the shared subscription. Snapshots are built by `central.bus.snapshots.SnapshotSender`,
coalesced per gate and off this loop: a gate asking again and again neither holds back other gates'
events nor gets one full build per request.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import paho.mqtt.client as mqtt
from sqlalchemy.exc import DBAPIError, OperationalError

from central import metrics
from central.bus.link import MqttLink
from central.bus.publisher import Publisher
from central.bus.snapshots import SnapshotSender
from central.config import CentralConfig
from central.db import is_transient
from central.models import PARKED_PAYLOAD_BYTES, ParkedMessage, utcnow
from central.services.gates import record_command_ack, record_config_ack, record_fire_alarm, record_status
from central.services.ingest import ingest_batch
from central.services.staff_help import record_help_request
from protocol import topics
from protocol.clock import park_now
from protocol.errors import MessageError
from protocol.messages import (
    CommandAck,
    ConfigAck,
    EventAck,
    FireAlarm,
    GateStatus,
    HelpRequest,
    PassageEvent,
    SnapshotRequest,
    StoredPassage,
    StoredPassages,
    decode,
    encode,
)

log = logging.getLogger(__name__)
ACK_INTERVAL_S = 0.5  # how often, under load, each gate hears which of its events are stored
GateMessage = PassageEvent | GateStatus | ConfigAck | CommandAck | SnapshotRequest | FireAlarm | HelpRequest
KINDS: dict[str, type[GateMessage]] = {"event": PassageEvent, "status": GateStatus, "config/ack": ConfigAck,
                                       "cmd/ack": CommandAck, "sync/request": SnapshotRequest, "fire": FireAlarm,
                                       "help": HelpRequest}


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    parked: int = 0
    conflicts: int = 0
    flagged: int = 0  # stored, but implausible: counted nowhere (see central.services.ingest)
    batches: int = 0
    retries: int = 0
    busy_s: float = 0.0


class _Parked(Exception):
    pass


class _Item:
    __slots__ = ("gate", "kind", "message", "msg", "site")

    def __init__(self, msg, site: str = "", gate: str = "", kind: str = "", message: object = None) -> None:
        self.msg, self.site, self.gate, self.kind, self.message = msg, site, gate, kind, message


@lru_cache(maxsize=8192)
def _parse_topic(topic: str) -> tuple[str, str, str]:
    """(site, gate, kind) of a gate topic; a gate's few topics repeat, so their checks are remembered."""
    return topics.parse_gate_topic(topic)


class IngestWorker:
    """Consumes gate messages; `start()` runs it in background threads, `stop()` ends it cleanly."""

    def __init__(self, config: CentralConfig, sessions, publisher_link: MqttLink | None = None, *,
                 worker_id: str = "1", cipher=None, occupancy_interval: float = 0.25,
                 snapshot_workers: int = 2) -> None:
        self.config = config
        self.cipher = cipher  # seals the camera views of requests for staff help
        self.sessions = sessions
        self.worker_id = worker_id  # its own rows of the per-gate day counts (`ingest_batch(shard=...)`)
        self.stats = IngestStats()
        self.batch_size = config.ingest.batch_size
        self.batch_s = config.ingest.batch_ms / 1000
        self._queue: queue.SimpleQueue[mqtt.MQTTMessage] = queue.SimpleQueue()
        # Received but not yet processed, at most: past this the network thread waits (see the module doc).
        self.max_pending = max(2000, self.batch_size * 4)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._occupancy_interval = occupancy_interval
        self._dirty_sites: set[str] = set()
        self._unacked: dict[tuple[str, str], list[str]] = {}  # stored event ids not yet acknowledged to gates
        self._counted: list[PassageEvent] = []  # committed and counted, not yet told to the dashboards
        self._acks_due = 0.0
        self._need_flush = False
        self.link = MqttLink(config.mqtt, client_id=f"{config.mqtt.client_id}-ingest-{worker_id}", persistent=True,
                             manual_ack=True, receive_maximum=min(65535, max(100, self.batch_size * 2)), lean=True)
        self.publisher = Publisher(sessions, publisher_link or self.link, cipher)
        self.snapshots = SnapshotSender(self.publisher, sessions, workers=snapshot_workers)
        # A head office's park servers serve their own gates: that traffic here would count twice.
        self._remote = frozenset(config.replication.remote_sites())
        group = config.ingest.group
        for site in config.ingest.sites or ("+",):  # `[ingest] sites`: this worker's parks only
            for suffix in ("event", "status", "config/ack", "cmd/ack", "sync/request", "fire", "help"):
                topic = topics.all_events(site) if suffix == "event" else topics.all_of_kind(suffix, site)
                # MQTT 3.1.1 has no shared subscriptions: each worker gets every message (the event id dedups).
                shared = topics.shared(group, topic) if config.mqtt.protocol != "3.1.1" else topic
                self.link.subscribe(shared, self._enqueue, qos=1)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, wait: float = 10.0) -> IngestWorker:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()
        self.snapshots.start()
        self.link.start(wait=wait)
        return self

    @property
    def alive(self) -> bool:
        """The processing loop runs (for the systemd watchdog)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)
        self.snapshots.stop()
        self.link.stop()

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    def wait_idle(self, timeout: float = 30.0, quiet: float = 0.3) -> bool:
        """True once no message arrived for `quiet` seconds and all were processed (for tests)."""
        deadline = time.monotonic() + timeout
        last = -1
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            seen = self.stats.received
            if seen != last or not self._queue.empty() or not self._idle.is_set() or not self.snapshots.idle():
                last, stable_since = seen, time.monotonic()
            elif time.monotonic() - stable_since >= quiet:
                return True
            time.sleep(0.05)
        return False

    # --- the loop ----------------------------------------------------------------------------
    def _enqueue(self, msg) -> None:
        """On paho's network thread: hand the message on; wait while the batch thread is far behind.

        Not while a publish on the same link waits for its PUBACK: only this thread can read it."""
        self._queue.put(msg)
        if self._queue.qsize() >= self.max_pending:
            while (self._queue.qsize() >= self.max_pending // 2 and not self._stop.is_set()
                   and not self.link.publishing):
                time.sleep(0.005)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                self._send_event_acks(force=True)
                self._idle.set()
                self._publish_occupancy(force=True)
                continue
            self._idle.clear()
            batch = [first]
            deadline = time.monotonic() + self.batch_s
            while len(batch) < self.batch_size:
                remaining = deadline - time.monotonic()
                try:
                    batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            started = time.perf_counter()
            if not self._process_until_done(batch):
                return  # stopping: the unacknowledged messages come back to the next worker
            self.stats.busy_s += time.perf_counter() - started
            self._publish_occupancy(force=self._queue.empty())
            self._send_event_acks(force=self._queue.empty())

    def _process_until_done(self, batch: list[mqtt.MQTTMessage]) -> bool:
        """Retry a failed batch until it is stored; False if the worker was stopped first.

        The broker redelivers unacknowledged messages only when the connection is renewed, so a batch
        given up while the worker stays connected would wait for its next restart.
        """
        while True:
            try:
                self._process(batch)
                return True
            except Exception:  # never die: the messages stay unacknowledged until they are stored
                log.exception("ingest batch failed; retrying it in 1 s")
                if self._stop.wait(1.0):
                    return False

    def _classify(self, msg: mqtt.MQTTMessage) -> _Item:
        item = _Item(msg)
        try:
            item.site, item.gate, item.kind = _parse_topic(msg.topic)
        except ValueError as exc:
            raise _Parked(str(exc)) from None
        if item.site in self._remote:  # a bridge forwarding what its park's own server already holds
            raise _Parked(f"park {item.site} has its own server: its gates' traffic reaches head office "
                          "through the replication, not here")
        kind = KINDS.get(item.kind)
        if kind is None:
            raise _Parked(f"no handler for {item.kind}")
        try:
            item.message = decode(kind, msg.payload)
        except MessageError as exc:
            raise _Parked(f"{exc.reason} {exc.field or ''}: {exc.detail}"[:2000]) from None
        for attr, expected in (("site", item.site), ("gate", item.gate)):
            value = getattr(item.message, attr, expected)
            if value != expected:
                raise _Parked(f"payload {attr} {value!r} does not match the topic's {expected!r}")
        return item

    def _process(self, batch: list[mqtt.MQTTMessage]) -> None:
        self.stats.received += len(batch)
        items: list[_Item] = []
        parked: list[tuple[mqtt.MQTTMessage, str]] = []
        for msg in batch:
            try:
                items.append(self._classify(msg))
            except _Parked as exc:
                parked.append((msg, str(exc)))
        try:
            self._store(items, parked)
        except (OperationalError, DBAPIError) as exc:
            if _transient(exc):
                self.stats.retries += 1
                log.warning("ingest batch hit a transient database error, retrying: %s", exc.__class__.__name__)
                time.sleep(0.2)
                self._store(items, parked)
            else:
                self._store_one_by_one(items, parked)
        except Exception:
            log.exception("ingest batch failed; storing its messages one by one")
            self._store_one_by_one(items, parked)
        self.link.ack_messages(batch)
        self._after_commit(items)

    def _store(self, items: list[_Item], parked: list[tuple[mqtt.MQTTMessage, str]]) -> None:
        now = utcnow()
        received = park_now()  # the park's time of receipt: the events' times are on that clock
        started = time.perf_counter()
        counted: list[PassageEvent] = []
        result = None
        with self.sessions.begin() as session:
            for item in items:
                message = item.message  # its type is its topic's kind (KINDS)
                if isinstance(message, GateStatus):
                    record_status(session, message, message.at if item.msg.retain else now)
                elif isinstance(message, ConfigAck):
                    record_config_ack(session, item.site, message)
                elif isinstance(message, CommandAck):
                    record_command_ack(session, message)
                elif isinstance(message, HelpRequest):
                    record_help_request(session, self.cipher, message)
                elif isinstance(message, FireAlarm) and not item.msg.retain:  # a retained one was recorded when it came
                    record_fire_alarm(session, message)
            for msg, error in parked:
                session.add(_parked(msg, error, now))
            session.flush()
            # The events last: ingest_batch locks the rows all workers share just before the commit.
            events = [i.message for i in items if isinstance(i.message, PassageEvent)]
            if events:
                result = ingest_batch(session, events, received, shard=self.worker_id)
                self.stats.stored += result.new
                self.stats.duplicates += result.duplicates
                self.stats.conflicts += len(result.conflicts)
                self.stats.flagged += len(result.flagged)
                if result.flagged:
                    log.warning("%d implausible events stored flagged, not counted: %s", len(result.flagged),
                                ", ".join(sorted(set(result.flagged.values()))))
                self._dirty_sites |= result.sites
                self._need_flush = self._need_flush or bool(result.used_up)
                counted = result.counted
        self._counted.extend(counted)  # committed: a retried batch never tells the dashboards twice
        self.stats.parked += len(parked)
        self.stats.batches += 1
        metrics.count_batch(counted, stored=result.new if result else 0,
                            duplicates=result.duplicates if result else 0,
                            conflicts=len(result.conflicts) if result else 0,
                            flagged=len(result.flagged) if result else 0, parked=len(parked),
                            committed_at=time.time(), batch_s=time.perf_counter() - started)

    def _store_one_by_one(self, items: list[_Item], parked: list[tuple[mqtt.MQTTMessage, str]]) -> None:
        for msg, error in parked:
            self._store([], [(msg, error)])
        for item in items:
            try:
                self._store([item], [])
            except Exception as exc:  # this one message cannot be stored: park it, go on
                if isinstance(exc, DBAPIError) and _transient(exc):
                    raise  # the database is away, not this message at fault: the batch is retried whole
                log.warning("parking a message on %s: %s", item.msg.topic, exc.__class__.__name__)
                self._store([], [(item.msg, f"store failed: {exc}"[:2000])])

    def _after_commit(self, items: list[_Item]) -> None:
        for item in items:
            if isinstance(item.message, PassageEvent):
                self._unacked.setdefault((item.site, item.gate), []).append(item.message.id)
        for item in items:
            if item.kind == "sync/request":
                self.snapshots.request(item.site, item.gate)
        if self._need_flush or any(i.kind == "config/ack" for i in items):
            self._need_flush = False
            self.publisher.flush()
        self._publish_counted()

    def _publish_counted(self) -> None:
        """The dashboards' live passages: what this batch stored and counted, each event once."""
        counted, self._counted = self._counted, []
        by_site: dict[str, list[StoredPassage]] = {}
        for e in counted:
            by_site.setdefault(e.site, []).append(StoredPassage(
                id=e.id, gate=e.gate, zone=e.zone, at=e.at, direction=e.direction, decision=e.decision,
                reason=e.reason, passed=e.passed, headcount=e.headcount, offline=e.offline))
        link = self.publisher.link or self.link
        for site, events in by_site.items():
            for start in range(0, len(events), 5000):
                try:
                    link.publish(topics.live_passages(site), encode(StoredPassages(site=site,
                                 events=events[start:start + 5000])), qos=0, wait=False)
                except Exception:  # a dashboard missing a minute's bar is not a loss: its snapshot has it
                    log.debug("live passages of %s not published", site)

    def _send_event_acks(self, force: bool) -> None:
        """Tell each gate which of its events are stored, so it may drop them from its outbox: one
        EventAck per gate at most every ACK_INTERVAL_S under load (not one message per batch)."""
        if not self._unacked or (not force and time.monotonic() < self._acks_due):
            return
        pending, self._unacked = self._unacked, {}
        self._acks_due = time.monotonic() + ACK_INTERVAL_S
        link = self.publisher.link or self.link
        for (site, gate), ids in pending.items():
            for start in range(0, len(ids), 5000):
                try:
                    link.publish(topics.event_ack(site, gate), encode(EventAck(gate=gate, ids=ids[start:start + 5000])),
                                 qos=1, wait=False)
                except Exception:  # the gate sends these events again and gets its acknowledgement then
                    log.warning("event acknowledgement for %s/%s not sent", site, gate)

    def _publish_occupancy(self, force: bool) -> None:
        if not self._dirty_sites:
            return
        interval = 0.0 if force else self._occupancy_interval
        try:
            self._dirty_sites -= self.publisher.publish_occupancy(list(self._dirty_sites), min_interval=interval)
        except Exception:
            log.exception("occupancy publish failed")


def _parked(msg, error: str, now) -> ParkedMessage:
    """The parked row: the payload's head, its size and hash (a message may be up to the broker's limit)."""
    payload = memoryview(msg.payload)
    return ParkedMessage(topic=msg.topic[:512], payload=bytes(payload[:PARKED_PAYLOAD_BYTES]), size=len(payload),
                         sha256=hashlib.sha256(payload).hexdigest(), error=error, received_at=now)


_transient = is_transient
