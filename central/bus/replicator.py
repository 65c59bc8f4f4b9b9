"""The replicator: a park server's and the head office's changes to each other, over their brokers.

Each server's replicator talks to its own broker only; the park broker's bridge carries the two topics
to and from the head office's broker and queues them while the link is down (`central.bus.bridge`):

    gates/v1/repl/<to>/changes/<from>   a Batch: all of <from>'s changes for <to> in (after, upto]
    gates/v1/repl/<to>/ack/<from>       an Ack: how far <from> holds <to>'s changes

The sender keeps a few batches in flight past the last acknowledgement; when nothing is acknowledged for
`replication.resend_s` it sends again from the acknowledgement (then waits twice as long, up to five
minutes, so an hour's cut does not fill the bridge's queue). The receiver applies in order, exactly once
(`central.services.replication`). What a server receives is checked: a batch from a server that is not
its peer, or a park server's change for a park that is not its own, applies nothing of it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

import msgspec
from sqlalchemy.exc import SQLAlchemyError

from central.bus.link import MqttLink, PublishError
from central.config import CentralConfig
from central.services import replication
from protocol.topics import ROOT

log = logging.getLogger(__name__)
IN_FLIGHT = 8  # batches sent past the last acknowledgement
KEEPALIVE_S = 15.0  # with nothing to send, an empty batch this often: the other side sees the link is up
MAX_RESEND_S = 300.0


class Batch(msgspec.Struct, frozen=True):
    origin: str
    after: int
    upto: int
    changes: list[tuple[int, str, str, msgspec.Raw]]


class Ack(msgspec.Struct, frozen=True):
    origin: str
    applied: int
    gap: bool = False  # the answer to a batch past what it holds


_batch = msgspec.json.Decoder(Batch)
_ack = msgspec.json.Decoder(Ack)
_encode = msgspec.json.Encoder().encode


def changes_topic(to: str, origin: str) -> str:
    return f"{ROOT}/repl/{to}/changes/{origin}"


def ack_topic(to: str, origin: str) -> str:
    return f"{ROOT}/repl/{to}/ack/{origin}"


@dataclass
class PeerState:
    sites: tuple[str, ...] | None
    acked: int = -1  # -1: not read from the database yet
    sent: int = 0
    flight: list[int] = field(default_factory=list)  # the `upto` of each batch sent past the acknowledgement
    progress_at: float = field(default_factory=time.monotonic)
    resend_after: float = 10.0
    applied_from: int = 0  # how far we hold its changes (what we acknowledge)
    sent_at: float = 0.0
    heard_at: float = 0.0
    rewound_at: float = 0.0


class Replicator:
    """One per server (`park-central replicate`): a thread that applies what arrives and sends what changed."""

    def __init__(self, config: CentralConfig, sessions, *, link: MqttLink | None = None) -> None:
        r = config.replication
        if not r.enabled:
            raise ValueError("replication.server is not set: this central replicates with nobody")
        self.config, self.sessions, self.me = config, sessions, r.server
        self.peers = {name: PeerState(sites, resend_after=float(r.resend_s)) for name, sites in r.peers().items()}
        self.inbox: queue.Queue = queue.Queue()
        self.link = link or MqttLink(config.mqtt, client_id=f"{config.mqtt.client_id}-repl-{self.me}", persistent=True)
        self.link.subscribe(f"{ROOT}/repl/{self.me}/+/+", self.inbox.put)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat = 0.0  # when the loop last went round (the watchdog's question)
        self.stats = {"applied_rows": 0, "parked": 0, "refused": 0, "conflicts": 0, "sent_batches": 0}

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Replicator:
        self.link.start(wait=5)
        self._thread = threading.Thread(target=self._run, name=f"replicator-{self.me}", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """The loop went round in the last 30 s (a hung database call or broker stops the watchdog's pings)."""
        return self._thread is not None and self._thread.is_alive() and time.monotonic() - self._beat < 30

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.link.stop()

    def _run(self) -> None:
        every = self.config.replication.interval_ms / 1000
        while not self._stop.is_set():
            self._beat = time.monotonic()
            try:
                self.step(every)
            except SQLAlchemyError as exc:  # the database restarting: nothing acknowledged, all sent again
                log.warning("replication: database unavailable (%s); retrying", str(exc).splitlines()[0])
                self._stop.wait(1.0)
            except Exception:
                log.exception("replication: unexpected error; retrying")
                self._stop.wait(1.0)

    def step(self, wait: float = 0.0) -> None:
        """Apply what arrived (waiting up to `wait` for it), then send what is new."""
        deadline = time.monotonic() + wait
        while True:
            try:
                message = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self._receive(message)
            if time.monotonic() >= deadline:
                break
        self._send()

    # --- receiving ---------------------------------------------------------------------------
    def _receive(self, message) -> None:
        parts = message.topic.split("/")
        kind, origin = parts[-2], parts[-1]
        peer = self.peers.get(origin)
        if peer is None:
            log.warning("replication: message from %r, not a peer of %s: ignored", origin, self.me)
            self.stats["refused"] += 1
            return
        try:
            if kind == "ack":
                ack = _ack.decode(message.payload)
                if ack.origin != origin:
                    raise msgspec.ValidationError("the acknowledgement names another server")
                self._heard(peer)
                with self.sessions.begin() as session:
                    acked = replication.acknowledged(session, origin, ack.applied, behind=ack.gap)
                if ack.gap and acked < peer.acked:  # it lost what it had confirmed: all again from there
                    peer.acked, peer.sent, peer.flight = acked, acked, []
                self._acked(peer, acked)
            elif kind == "changes":
                self._apply(origin, peer, _batch.decode(message.payload))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("replication: a malformed %s message from %s ignored: %s", kind, origin, exc)
            self.stats["refused"] += 1

    def _apply(self, origin: str, peer: PeerState, batch: Batch) -> None:
        if batch.origin != origin:
            raise msgspec.ValidationError("the batch names another server")
        self._heard(peer)
        changes = [(pos, table, op, bytes(raw).decode()) for pos, table, op, raw in batch.changes]
        # The head office takes from a park server only its own parks' changes (a park server gets the
        # head office's for its parks, which the head office chose).
        allowed = set(peer.sites) if peer.sites is not None else None
        with self.sessions.begin() as session:
            result = replication.apply(session, origin, batch.after, batch.upto, changes, self.config.is_home,
                                       allowed_sites=allowed)
        peer.applied_from = result.applied
        for key in ("parked", "conflicts"):
            self.stats[key] += getattr(result, key)
        self.stats["applied_rows"] += result.rows
        self._publish(ack_topic(origin, self.me), _encode(Ack(self.me, result.applied, result.gap)))

    # --- sending -----------------------------------------------------------------------------
    def _acked(self, peer: PeerState, acked: int) -> None:
        now = time.monotonic()
        if acked > peer.acked:
            peer.acked = acked
            peer.progress_at = now
            peer.resend_after = float(self.config.replication.resend_s)
            peer.flight = [upto for upto in peer.flight if upto > acked]  # acknowledgements are cumulative
            peer.sent = max(peer.sent, acked)
        elif peer.sent > peer.acked and now - peer.rewound_at > 1.0:
            # It is there and holds less than was sent: what was in flight is lost (a gap, a queue dropped
            # while the link was down). Send it again now rather than at the next timeout.
            peer.sent, peer.flight, peer.progress_at, peer.rewound_at = peer.acked, [], now, now

    def _heard(self, peer: PeerState) -> None:
        """Anything from a peer: the link is up. After a quiet spell the resend wait starts short again."""
        now = time.monotonic()
        base = float(self.config.replication.resend_s)
        if now - peer.heard_at > base:
            peer.resend_after = base
        peer.heard_at = now

    def _send(self) -> None:
        r = self.config.replication
        with self.sessions.begin() as session:
            top = replication.sequence(session)
            for name, peer in self.peers.items():
                if peer.acked < 0:
                    peer.acked = replication.acknowledged(session, name, 0)
                    peer.sent = peer.acked
        now = time.monotonic()
        for name, peer in self.peers.items():
            if peer.sent > peer.acked and now - peer.progress_at > peer.resend_after:
                log.info("replication: %s acknowledged nothing for %.0f s: sending again from %s",
                         name, peer.resend_after, peer.acked)
                peer.sent, peer.flight, peer.progress_at = peer.acked, [], now
                peer.resend_after = min(MAX_RESEND_S, peer.resend_after * 2)
            while len(peer.flight) < IN_FLIGHT:
                batch = None
                if peer.sent < top:  # something new for someone (a head office with fifty parks asks little)
                    with self.sessions.begin() as session:
                        batch = replication.pending(session, peer.sites, peer.sent, r.batch)
                if batch is None or batch.upto <= peer.sent:
                    keepalive = _encode(Batch(self.me, peer.sent, peer.sent, []))
                    if now - peer.sent_at >= KEEPALIVE_S and peer.sent == peer.acked and \
                            self._publish(changes_topic(name, self.me), keepalive):
                        peer.sent_at = now
                    break
                payload = _encode(Batch(self.me, batch.after, batch.upto, [
                    (pos, table, op, msgspec.Raw(row.encode())) for pos, table, op, row in batch.changes]))
                if not self._publish(changes_topic(name, self.me), payload):
                    break
                if peer.sent == peer.acked:
                    peer.progress_at = now  # the first batch past the acknowledgement: the wait starts now
                peer.sent, peer.sent_at = batch.upto, now
                peer.flight.append(batch.upto)
                self.stats["sent_batches"] += 1
        with self.sessions.begin() as session:
            replication.prune(session, self.peers, timedelta(days=r.keep_days))

    def _publish(self, topic: str, payload: bytes) -> bool:
        try:
            self.link.publish(topic, payload, qos=1, wait=False)
            return True
        except PublishError as exc:
            log.debug("replication: %s", exc)
            return False


__all__ = ["Ack", "Batch", "Replicator", "ack_topic", "changes_topic"]
