"""Sends what the database says gates must know, after it is committed: deltas, configs, occupancy,
snapshots, commands. Safe to call from several threads; a broker that is away only delays it (the
scheduler calls `flush()` every few seconds)."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from central.bus.link import MqttLink, PublishError
from central.db import table
from central.models import CommandRecord, Gate, SyncChange, utcnow
from central.services import gates as gate_service
from central.services import sync
from central.services.occupancy import occupancies
from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import Delta, decode, encode

log = logging.getLogger(__name__)
PUBLISH_LOCK = 0x7061726B_64656C74  # the advisory lock of a round of deltas ("parkdelt")


class Publisher:
    GATHER_S = 0.05  # after-commit flushes wait this long for more commits to send with (flush_soon)

    def __init__(self, sessions: sessionmaker[Session], link: MqttLink | None, cipher=None) -> None:
        self.sessions = sessions
        self.link = link
        self.cipher = cipher
        self._lock = threading.Lock()
        self._again = False  # a flush was asked for while another ran
        self._occupancy_at: dict[str, float] = {}
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def flush_soon(self) -> None:
        """Ask the publishing thread to flush, and return at once: a request that committed a change for
        the gates answers its visitor without waiting for the broker, and one flush sends what a rush of
        requests committed meanwhile (in the booking rush, a flush per request cost each booking four more
        transactions and a broker round trip in its own thread)."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
                    self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if not self._stopping:
                # Gather: the commits of the next few milliseconds go in the same flush. Under the booking
                # rush a flush per booking was a fifth of the web process's CPU (py-spy of the bench).
                time.sleep(self.GATHER_S)
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.flush()
            except Exception:  # committed already; the scheduler's publish job sends it later
                log.exception("publishing after commit failed")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the publishing thread after one last flush of what was committed before."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake.set()
        thread.join(timeout)
        try:
            self.flush()
        except Exception:
            log.exception("the last flush failed (the scheduler's publish job sends it later)")

    # --- deltas and configs -------------------------------------------------------------------
    def flush(self) -> int:
        """Publish every delta and gate config not yet published; returns how many this call sent.

        Calls coalesce: while one thread flushes, another's call only asks it to go round once more
        (what that caller committed is then sent by the running flush) and returns at once, so a rush of
        commits does not queue every request thread behind one lock (the booking rush did)."""
        link = self.link
        if link is None or not link.connected:
            return 0  # the scheduler retries every few seconds
        sent = 0
        while True:
            if not self._lock.acquire(blocking=False):
                self._again = True
                if self._lock.locked():
                    return sent  # the holder sees `_again` after it releases and flushes once more
                continue  # released meanwhile: take it ourselves
            try:
                self._again = False
                sent += self._flush_deltas(link)
                sent += self._flush_configs(link)
            except PublishError as exc:
                log.warning("publishing paused: %s", exc)
                return sent
            finally:
                self._lock.release()
            if not self._again:
                return sent

    def _flush_deltas(self, link: MqttLink) -> int:
        sent = 0
        changes = table(SyncChange)
        while True:
            with self.sessions.begin() as session:
                # One sender at a time across the park's processes (web processes, ingest, scheduler: each
                # has a publisher, and after a rush they flush together): a round waits for another's to
                # commit its marks, then sends only what is still unsent, in seq order. Without it each
                # process sent every delta of the booking rush again (to every gate). SQLite's BEGIN
                # IMMEDIATE already makes the rounds one at a time. Core rows and one UPDATE per round
                # (ORM rows marked one by one were most of a flush's CPU under the booking rush).
                if session.get_bind().dialect.name == "postgresql":
                    session.execute(select(func.pg_advisory_xact_lock(PUBLISH_LOCK)))
                rows = session.execute(select(changes.c.site_id, changes.c.seq, changes.c.kinds, changes.c.payload)
                                       .where(changes.c.published_at.is_(None))
                                       .order_by(changes.c.site_id, changes.c.seq).limit(200)).all()
                if not rows:
                    return sent
                done: list[tuple[str, int]] = []
                for row in rows:
                    payload = row.payload
                    if "template" in row.kinds:
                        delta = decode(Delta, payload)
                        decrypted = sync.decrypt_templates(delta.changes, self.cipher)
                        payload = encode(Delta(site=delta.site, seq=delta.seq, at=delta.at, changes=decrypted))
                    try:
                        link.publish(topics.deltas(row.site_id), payload, qos=1)
                    except PublishError:
                        self._mark_published(session, done)  # what was sent before the broker went away
                        session.commit()
                        raise
                    done.append((row.site_id, row.seq))
                    sent += 1
                self._mark_published(session, done)

    @staticmethod
    def _mark_published(session: Session, sent: list[tuple[str, int]]) -> None:
        if sent:  # one statement for every park's deltas of the round (a head office sends many parks')
            changes = table(SyncChange)
            session.execute(update(changes).where(tuple_(changes.c.site_id, changes.c.seq).in_(sent))
                            .values(published_at=utcnow()))

    def _flush_configs(self, link: MqttLink) -> int:
        sent = 0
        with self.sessions.begin() as session:
            pending = list(session.scalars(select(Gate).where(Gate.config_published < Gate.config_version)))
            for gate in pending:
                message = gate_service.build_gate_config(session, gate)
                try:
                    link.publish(topics.config(gate.site_id, gate.name), encode(message), qos=1, retain=True)
                except PublishError:
                    session.commit()
                    raise
                gate.config_published = message.version
                sent += 1
        return sent

    # --- occupancy ----------------------------------------------------------------------------
    def publish_occupancy(self, site_ids, min_interval: float = 0.0) -> set[str]:
        """Publish, retained, the occupancy of each site (at most once per `min_interval` seconds);
        returns the sites published."""
        if self.link is None:
            return set()
        now = time.monotonic()
        due = [s for s in site_ids if now - self._occupancy_at.get(s, 0.0) >= min_interval]
        done: set[str] = set()
        if not due:
            return done
        with self.sessions() as session:
            messages = occupancies(session, due)
        for message in messages:
            try:
                self.link.publish(topics.occupancy(message.site), encode(message), qos=1, retain=True, wait=False)
                self._occupancy_at[message.site] = now
                done.add(message.site)
            except PublishError as exc:
                log.warning("occupancy not published: %s", exc)
        return done

    # --- snapshots and commands ---------------------------------------------------------------
    def send_snapshot(self, site_id: str, gate: str) -> tuple[str, int]:
        """Send the full state to one gate as SnapshotChunks; returns (snapshot id, chunk count)."""
        if self.link is None:
            raise PublishError("no MQTT link")
        snapshot_id = new_event_id()
        count = changes = 0
        with self.sessions() as session:  # streamed: read, encoded and sent one chunk at a time
            snap = sync.stream_snapshot(session, site_id)
            snap = sync.Snapshot(site=snap.site, seq=snap.seq, changes=sync.iter_decrypted(snap.changes, self.cipher))
            for part in sync.chunk(snap, gate, snapshot_id):
                payload = encode(part)
                changes += len(part.changes)
                del part
                self.link.publish(topics.sync(site_id, gate), payload, qos=1)
                count += 1
        log.info("snapshot %s for %s/%s: %d changes in %d chunks at seq %d", snapshot_id, site_id, gate,
                 changes, count, snap.seq)
        return snapshot_id, count

    def send_command(self, command_id: str) -> None:
        if self.link is None:
            raise PublishError("no MQTT link")
        with self.sessions.begin() as session:
            record = session.get(CommandRecord, command_id)
            if record is None:
                raise PublishError(f"no command {command_id} to send")
            topic = topics.command(record.site_id, record.gate) if record.gate else topics.site_command(record.site_id)
            self.link.publish(topic, record.payload, qos=1)
            record.sent_at = utcnow()
