"""The live stream for the dashboard: one MQTT subscriber per web process, fanned out over
server-sent events to every open dashboard.

    broker --(occupancy, stored passages, gate status, config acks)--> LiveHub --queue--> /live/stream

The hub subscribes to the retained `Occupancy` of every site, the passages the ingest has just
stored and counted (`StoredPassages`: each event once, never a gate's resend, never an event the
central flagged; entries and exits per minute and refusals come from there, the same truth as
occupancy), every gate's retained status and config/command acknowledgements. A browser that
connects first gets a snapshot built from the database (and the hub's newer occupancy), then each
message as it arrives: a passage reaches the page within a second of being stored, with no polling.

Each open stream holds one of waitress's threads for as long as it is open, so streams are
rationed (`StreamSlots`): at most `PER_SESSION` (3) per login session, answered 429, and at most
`stream_cap(threads)` in the process (three quarters of `[web] threads`, and never more than
`threads - 8`: pages, the API and /healthz always keep eight), answered 503. Both answers carry
`Retry-After`; the dashboard then falls back to polling `/live/snapshot` and says it is not live.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, jsonify, session
from sqlalchemy import select

from central.config import MqttConfig
from central.models import Gate, Site
from central.services import occupancy as occupancy_service
from central.services import reports
from central.web.stack import db, live_hub, require, site_id
from protocol import topics
from protocol.errors import MessageError
from protocol.messages import (
    CommandAck,
    ConfigAck,
    GateCounts,
    GateStatus,
    Occupancy,
    StoredPassage,
    StoredPassages,
    decode,
)

if TYPE_CHECKING:
    from central.bus.link import MqttLink

log = logging.getLogger(__name__)
bp = Blueprint("live", __name__, url_prefix="/live")
KEEPALIVE_S = 15.0
QUEUE_SIZE = 1000
PER_SESSION = 3
RESERVED_THREADS = 8  # never taken by streams: pages, the API and /healthz
RETRY_AFTER_S = 30
SLOTS = "central_web_stream_slots"
COALESCE_S = 0.25  # gates' counts reach the pages at most this often per site (and at most this late)


def stream_cap(threads: int) -> int:
    """How many streams a process with `threads` waitress threads may hold open."""
    return max(0, min(threads - RESERVED_THREADS, threads * 3 // 4))


class StreamRefused(Exception):
    """No slot for another stream: `status` 429 (this session has enough) or 503 (the server is full)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class StreamSlots:
    """Counts the open streams, per session and in all, and refuses one more past either limit."""

    def __init__(self, total: int, per_session: int = PER_SESSION) -> None:
        self.total = total
        self.per_session = per_session
        self._lock = threading.Lock()
        self._by_session: dict[str, int] = {}

    @property
    def open(self) -> int:
        with self._lock:
            return sum(self._by_session.values())

    def acquire(self, owner: str) -> StreamSlot:
        with self._lock:
            mine = self._by_session.get(owner, 0)
            if mine >= self.per_session:
                raise StreamRefused(429, "too_many_streams",
                                    f"This login already has {mine} live dashboards open: close one to make this "
                                    "one live. Until then it updates by polling.")
            if sum(self._by_session.values()) >= self.total:
                raise StreamRefused(503, "streams_full",
                                    f"All {self.total} live streams of this server are in use: this dashboard "
                                    "updates by polling until one is free (or raise [web] threads).")
            self._by_session[owner] = mine + 1
        return StreamSlot(self, owner)

    def _release(self, owner: str) -> None:
        with self._lock:
            left = self._by_session.get(owner, 0) - 1
            if left > 0:
                self._by_session[owner] = left
            else:
                self._by_session.pop(owner, None)


class StreamSlot:
    """One held slot; `release()` may be called more than once (the generator and the response's close)."""

    def __init__(self, slots: StreamSlots, owner: str) -> None:
        self._slots, self._owner = slots, owner
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._slots._release(self._owner)


def slots() -> StreamSlots:
    """The process's stream slots, sized once from the app's config."""
    found = current_app.extensions.get(SLOTS)
    if found is None:
        total = current_app.config.get("LIVE_STREAMS_MAX", stream_cap(32))
        per_session = current_app.config.get("LIVE_STREAMS_PER_SESSION", PER_SESSION)
        found = current_app.extensions.setdefault(SLOTS, StreamSlots(total, per_session))
    return found


def gate_status_json(status: GateStatus) -> dict:
    return {"type": "gate", "site": status.site, "gate": status.gate, "online": status.online,
            "mode": status.mode, "alarms": list(status.alarms), "controller_ok": status.controller_ok,
            "readers": [{"name": r.name, "ok": r.ok} for r in status.readers], "outbox": status.outbox,
            "config_version": status.config_version, "at": status.at.isoformat()}


class LiveHub:
    """Latest occupancy and gate states, and the listeners (open streams) to fan messages out to."""

    def __init__(self, mqtt_cfg: MqttConfig | None = None, timezones: dict[str, str] | None = None) -> None:
        self.mqtt_cfg = mqtt_cfg
        self.timezones = dict(timezones or {})
        self._lock = threading.Lock()
        self._listeners: set[queue.Queue] = set()
        self.occupancy: dict[str, dict] = {}  # per site: the dashboard's JSON, with the gates' counts
        self.stored: dict[str, Occupancy] = {}  # per site: the central's last published (stored) occupancy
        self.counts: dict[tuple[str, str], GateCounts] = {}  # per (site, gate): the gate's own counts
        self._coalesce: dict[str, threading.Timer] = {}
        self._shown_at: dict[str, float] = {}
        self.gates: dict[tuple[str, str], dict] = {}
        self.config_acks: dict[tuple[str, str], dict] = {}
        self.command_acks: dict[str, dict] = {}
        self._link: MqttLink | None = None

    # --- MQTT side ---------------------------------------------------------------------------
    def start(self, wait: float | None = 5.0) -> LiveHub:
        from central.bus.link import MqttLink

        if self.mqtt_cfg is None:
            raise ValueError("the live hub needs the MQTT settings to start")
        client_id = f"central-web-{os.getpid()}-{secrets.token_hex(3)}"
        link = self._link = MqttLink(self.mqtt_cfg, client_id=client_id)
        link.subscribe(topics.all_occupancy(), self._on_occupancy)
        link.subscribe(topics.all_of_kind("counts"), self._on_counts)
        link.subscribe(topics.all_of_kind("status"), self._on_status)
        link.subscribe(topics.all_live_passages(), self._on_stored, qos=0)
        link.subscribe(topics.all_of_kind("config/ack"), self._on_config_ack)
        link.subscribe(topics.all_of_kind("cmd/ack"), self._on_command_ack)
        link.start(wait=wait)
        return self

    def stop(self) -> None:
        with self._lock:
            timers, self._coalesce = list(self._coalesce.values()), {}
            listeners, self._listeners = list(self._listeners), set()
        for timer in timers:
            timer.cancel()
        for q in listeners:  # every open stream ends now (its browser reconnects to another process)
            try:
                q.put_nowait(None)
            except queue.Full:
                pass
        if self._link is not None:
            self._link.stop()
            self._link = None

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.connected

    def wait_connected(self, timeout: float) -> bool:
        return self._link is not None and self._link.wait_connected(timeout)

    def _decode(self, kind, msg):
        try:
            return decode(kind, msg.payload)
        except MessageError as exc:
            log.debug("live: ignoring %s on %s: %s", kind.__name__, msg.topic, exc)
            return None

    def _on_occupancy(self, msg) -> None:
        message = self._decode(Occupancy, msg)
        if message is not None:
            self.publish_occupancy(message)

    def publish_occupancy(self, message: Occupancy) -> None:
        """The central's stored counts: shown at once, with what the gates counted beyond them."""
        with self._lock:
            old = self.stored.get(message.site)
            if old is not None and old.at > message.at:
                return  # an older retained copy (a reconnect), or older than a snapshot's read
            self.stored[message.site] = message
        self._show(message.site)

    def remember(self, stored: Occupancy) -> None:
        with self._lock:
            old = self.stored.get(stored.site)
            if old is None or old.at < stored.at:
                self.stored[stored.site] = stored

    def _on_counts(self, msg) -> None:
        counts = self._decode(GateCounts, msg)
        if counts is None:
            return
        try:
            site, gate, _rest = topics.parse_gate_topic(msg.topic)
        except ValueError:
            return
        if (site, gate) != (counts.site, counts.gate):
            log.debug("live: ignoring counts of %s/%s on the topic of %s/%s", counts.site, counts.gate, site, gate)
            return  # the broker's ACL lets a gate write only its own topic: the topic says who sent it
        with self._lock:
            old = self.counts.get((site, gate))
            if old is not None and old.at > counts.at:
                return
            self.counts[(site, gate)] = counts
            known = site in self.stored
        if known:
            self._soon(site)

    def gate_counts(self, site: str) -> list[GateCounts]:
        with self._lock:
            return [c for (s, _g), c in self.counts.items() if s == site]

    def merged(self, stored: Occupancy) -> dict:
        """The dashboard's occupancy JSON: `stored` plus the gates' counts not stored yet."""
        shown, pending = occupancy_service.with_gate_counts(stored, self.gate_counts(stored.site))
        return {"type": "occupancy", **occupancy_service.as_json(shown, pending=pending)}

    def _show(self, site: str) -> None:
        with self._lock:
            stored = self.stored.get(site)
            self._shown_at[site] = time.monotonic()
            timer = self._coalesce.pop(site, None)
        if timer is not None:
            timer.cancel()
        if stored is None:
            return
        data = self.merged(stored)
        with self._lock:
            self.occupancy[site] = data
        self.broadcast(data)

    def _soon(self, site: str) -> None:
        """A gate's counts: shown within COALESCE_S (many gates' counts in one message to the pages)."""
        with self._lock:
            if site in self._coalesce:
                return
            wait = COALESCE_S - (time.monotonic() - self._shown_at.get(site, 0.0))
            if wait > 0:
                timer = self._coalesce[site] = threading.Timer(wait, self._show, args=(site,))
                timer.daemon = True
                timer.start()
                return
        self._show(site)

    def _on_status(self, msg) -> None:
        status = self._decode(GateStatus, msg)
        if status is None:
            return
        data = gate_status_json(status)
        with self._lock:
            self.gates[(status.site, status.gate)] = data
        self.broadcast(data)

    def _on_stored(self, msg) -> None:
        stored = self._decode(StoredPassages, msg)
        if stored is not None:
            for event in stored.events:
                self.broadcast(self.passage_json(stored.site, event))

    def passage_json(self, site: str, event: StoredPassage) -> dict:
        tz = ZoneInfo(self.timezones.get(site, "UTC"))
        local = event.at.astimezone(tz)
        return {"type": "passage", "id": event.id, "site": site, "gate": event.gate, "zone": event.zone,
                "at": event.at.isoformat(), "day": local.date().isoformat(),
                "minute": local.hour * 60 + local.minute, "direction": event.direction,
                "decision": event.decision, "reason": event.reason, "passed": event.passed,
                "headcount": event.headcount, "offline": event.offline}

    def _on_config_ack(self, msg) -> None:
        ack = self._decode(ConfigAck, msg)
        if ack is None:
            return
        try:
            site, _gate, _rest = topics.parse_gate_topic(msg.topic)
        except ValueError:
            return
        data = {"type": "config_ack", "site": site, "gate": ack.gate, "version": ack.version,
                "applied": ack.applied, "error": ack.error, "at": datetime.now(UTC).isoformat()}
        with self._lock:
            self.config_acks[(site, ack.gate)] = data
        self.broadcast(data)

    def _on_command_ack(self, msg) -> None:
        ack = self._decode(CommandAck, msg)
        if ack is None:
            return
        data = {"type": "command_ack", "id": ack.id, "gate": ack.gate, "ok": ack.ok, "error": ack.error}
        with self._lock:
            self.command_acks.setdefault(ack.id, {})[ack.gate] = data
        self.broadcast(data)

    # --- browser side ------------------------------------------------------------------------
    def listen(self) -> queue.Queue:
        q: queue.Queue = queue.Queue(QUEUE_SIZE)
        with self._lock:
            self._listeners.add(q)
        return q

    def forget(self, q: queue.Queue) -> None:
        with self._lock:
            self._listeners.discard(q)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def broadcast(self, data: dict) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for q in listeners:
            try:
                q.put_nowait(data)
            except queue.Full:
                # A stalled browser must not hold up the others: drop it; its EventSource reconnects
                # and starts again from a fresh snapshot.
                self.forget(q)


def hub() -> LiveHub | None:
    return live_hub()


def snapshot(session, site: str, hub_: LiveHub | None) -> dict:
    """Everything the dashboard shows, as it stands now: the first message of every stream."""
    site_row = session.get(Site, site)
    tz = ZoneInfo(site_row.timezone if site_row else "UTC")
    if hub_ is not None:
        hub_.timezones[site] = str(tz)
    stored = occupancy_service.occupancy(session, site)
    newer = hub_.stored.get(site) if hub_ is not None else None
    if newer is not None and newer.at >= stored.at:
        stored = newer
    elif hub_ is not None:
        hub_.remember(stored)  # the gates' counts that come next are added to this, until the ingest publishes
    if hub_ is not None:
        occ = {k: v for k, v in hub_.merged(stored).items() if k != "type"}
    else:
        occ = occupancy_service.as_json(stored, pending=0)
    p = reports.period(session, site)
    minutes = reports.per_minute(session, p)
    denials = reports.denials_by_reason(session, p)
    refused = sum(r.count for r in denials)
    gates = []
    for gate in session.scalars(select(Gate).where(Gate.site_id == site).order_by(Gate.name)):
        row = {"gate": gate.name, "zone": gate.zone_number, "online": gate.online, "mode": gate.mode,
               "alarms": list(gate.alarms or []), "controller_ok": True, "readers": [],
               "config_version": gate.config_version, "config_acked": gate.config_acked}
        live = hub_.gates.get((site, gate.name)) if hub_ else None
        if live:
            row.update({k: live[k] for k in ("online", "mode", "alarms", "controller_ok", "readers")})
        gates.append(row)
    return {"type": "snapshot", "site": site, "day": p.start.isoformat(), "timezone": str(tz),
            "occupancy": occ, "minutes": {str(m): list(v) for m, v in sorted(minutes.items())},
            "denials": {r.reason: r.count for r in denials}, "refused": refused, "gates": gates,
            "live": bool(hub_ and hub_.connected)}


def _sse(data: dict, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


@bp.route("/stream")
@require("manager")
def stream():
    try:
        slot = slots().acquire(str(session.get("sid")))
    except StreamRefused as exc:
        response = jsonify({"error": exc.code, "detail": str(exc.detail)})
        response.status_code = exc.status
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    try:
        site = site_id()
        hub_ = hub()
        q = hub_.listen() if hub_ is not None else None
        first = snapshot(db(), site, hub_)
    except BaseException:
        slot.release()
        raise
    keepalive = current_app.config.get("LIVE_KEEPALIVE_S", KEEPALIVE_S)

    def events():
        try:
            yield "retry: 2000\n" + _sse(first)
            while q is not None:
                try:
                    data = q.get(timeout=keepalive)
                except queue.Empty:
                    if q not in hub_._listeners:
                        return
                    yield ": keepalive\n\n"
                    continue
                if data is None:  # the hub stopped (the web process is stopping)
                    return
                if data.get("site", site) == site or data["type"] == "command_ack":
                    yield _sse(data)
        finally:
            if q is not None:
                hub_.forget(q)
            slot.release()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    response = Response(events(), mimetype="text/event-stream", headers=headers)
    response.call_on_close(slot.release)  # also when the body is never iterated
    return response


@bp.route("/snapshot")
@require("manager")
def snapshot_json():
    """The same snapshot as JSON: for a page that cannot hold a stream open, and for tests."""
    return snapshot(db(), site_id(), hub())


def start_hub(app, mqtt_cfg: MqttConfig, sessions) -> LiveHub:
    """Start the process's hub: the site time zones from the database, then the MQTT subscriber."""
    with sessions() as session:
        zones = {s.id: s.timezone for s in session.scalars(select(Site))}
    return LiveHub(mqtt_cfg, zones).start(wait=app.config.get("LIVE_CONNECT_WAIT_S", 5.0))
