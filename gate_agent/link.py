"""The gate's MQTT link: paho-mqtt v2, MQTT 5, a persistent session, and the outbox drainer.

* The session survives reconnects (`clean_start=False` with a session expiry), so QoS 1 messages for
  the gate (deltas, commands, the site's events) wait at the broker while it is away.
* The Last Will is a retained `GateStatus(online=False)`: the broker marks the gate offline for it.
* The drainer publishes outbox rows in order at QoS 1. A PUBACK marks a row as at the broker; the row
  leaves the outbox only when the central's `EventAck` says the event is stored. A broker's PUBACK is
  not enough: a broker restarted without a session for the ingest, or a shared subscription with
  nobody connected, drops what it acknowledged. Rows the central has not confirmed are sent again
  after 30 s, then 60 s, ... up to 32 minutes; paho also resends an unacknowledged message after a
  reconnect, and a process that dies leaves its rows for the next one. A repeat is harmless (the
  central dedups by event id); a loss is not possible.

paho calls `on_publish` holding its own lock, so acknowledgements travel to the drainer through a
queue rather than a lock of ours (publish() takes paho's lock too: the other order would deadlock).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol import messages as m
from protocol import topics
from protocol.brokers import BrokerRotation

from .config import GateFileConfig
from .store import Store

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], None]
HOLD_ENV = "GATE_AGENT_TEST_HOLD_PUBLISH"  # test hook: decide and queue, but never publish the outbox


class Link:
    """One MQTT connection for one gate."""

    def __init__(self, cfg: GateFileConfig, store: Store, *, window: int = 50,
                 on_connect: Callable[[bool], None] | None = None,
                 on_disconnect: Callable[[], None] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.window = window
        self.on_connect_cb = on_connect
        self.on_disconnect_cb = on_disconnect
        self.hold = os.environ.get(HOLD_ENV) == "1"
        self.site, self.gate = cfg.site, cfg.gate_id
        self._handlers: list[tuple[str, int, Handler]] = []
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._acks: queue.SimpleQueue[tuple[int, bool, str]] = queue.SimpleQueue()
        self._pending: dict[int, int] = {}  # mid -> outbox seq
        self._failed: list[int] = []
        self._cursor = 0
        self.published = 0  # outbox rows acknowledged by the broker (this process)
        self.confirmed = 0  # outbox rows the central confirmed stored (this process)
        self.resend_after_s = cfg.broker.resend_after_s
        self._next_resend_check = 0.0
        self._handlers.append((topics.event_ack(self.site, self.gate), 1, self._on_event_ack))
        self.last_will_status = m.GateStatus(site=self.site, gate=self.gate, online=False, at=datetime.now(UTC))
        b = cfg.broker
        self.brokers = BrokerRotation(b.host, b.port, b.failover)
        self.client = self._make_client()
        self._drainer = threading.Thread(target=self._drain_loop, name=f"outbox-{self.gate}", daemon=True)

    # -- setup ---------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        b = self.cfg.broker
        # MQTT 3.1.1 (brokers without 5) keeps the session with clean_session=False instead of an expiry.
        client_id = f"gate-{self.site}-{self.gate}"
        if b.protocol == "3.1.1":
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                 clean_session=False)
        else:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if b.username:
            client.username_pw_set(b.username, b.password)
        if b.tls_ca or b.tls_cert:
            client.tls_set(ca_certs=b.tls_ca, certfile=b.tls_cert, keyfile=b.tls_key,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.will_set(topics.status(self.site, self.gate), m.encode(self.last_will_status), qos=1, retain=True)
        # paho annotates whole seconds but computes the backoff in floats: the first retry after 0.2 s.
        client.reconnect_delay_set(min_delay=0.2, max_delay=5)  # type: ignore[arg-type]
        client.max_inflight_messages_set(self.window)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Register before `start()`; subscriptions are renewed at every connect."""
        self._handlers.append((topic_filter, qos, handler))

    def start(self) -> None:
        self._connect_to(*self.brokers.current)
        self.client.loop_start()
        self._drainer.start()

    def _connect_to(self, host: str, port: int) -> None:
        b = self.cfg.broker
        if b.protocol == "3.1.1":
            self.client.connect_async(host, port, keepalive=b.keepalive_s)
        else:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = b.session_expiry_s
            self.client.connect_async(host, port, keepalive=b.keepalive_s, clean_start=False, properties=props)

    def _next_broker(self) -> None:
        """A clustered broker's node is away: paho's reconnect loop goes to the next one (protocol.brokers)."""
        address = self.brokers.advance()
        if address is not None and not self._stop.is_set():
            self._connect_to(*address)

    def stop(self, *, publish_offline: m.GateStatus | None = None, timeout: float = 2.0) -> None:
        """Leave cleanly: mark the gate offline (retained), then disconnect."""
        if publish_offline is not None and self.connected:
            info = self.client.publish(topics.status(self.site, self.gate), m.encode(publish_offline), qos=1,
                                       retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self._stop.set()
        self._wake.set()
        if self._drainer.is_alive():
            self._drainer.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wake(self) -> None:
        """There is something new in the outbox."""
        self._wake.set()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Publish a message that is not a passage (status, acks, requests); False when offline."""
        if not self.connected:
            return False
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    # -- paho callbacks (network thread) -------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        _no_delay(client)
        for topic_filter, qos, _ in self._handlers:
            client.subscribe(topic_filter, qos=qos)
        self._connected.set()
        log.info("connected to %s:%s (session present: %s)", *self.brokers.current, flags.session_present)
        if self.on_connect_cb:
            try:
                self.on_connect_cb(flags.session_present)
            except Exception:
                log.exception("on_connect handler failed")
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self._next_broker()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected
        self._connected.clear()
        if not self._stop.is_set():
            self._next_broker()
        if was:
            log.warning("disconnected from the broker: %s", reason_code)
            if self.on_disconnect_cb:
                try:
                    self.on_disconnect_cb()
                except Exception:
                    log.exception("on_disconnect handler failed")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.put((mid, not reason_code.is_failure, str(reason_code)))
        self._wake.set()

    def _on_message(self, client, userdata, msg) -> None:
        for topic_filter, _, handler in self._handlers:
            if mqtt.topic_matches_sub(topic_filter, msg.topic):
                try:
                    handler(msg.topic, msg.payload)
                except Exception:
                    log.exception("handler for %s failed", msg.topic)

    # -- the drainer ---------------------------------------------------------------------------

    def _take_acks(self) -> None:
        done: list[int] = []
        while True:
            try:
                mid, ok, why = self._acks.get_nowait()
            except queue.Empty:
                break
            seq = self._pending.pop(mid, None)
            if seq is None:
                continue  # not an outbox row (status, acks)
            if ok:
                done.append(seq)
            else:
                log.warning("broker refused outbox row %s: %s; it stays queued", seq, why)
                self._failed.append(seq)
        if done:
            self.store.outbox_mark_sent(done)
            self.published += len(done)

    def _on_event_ack(self, _topic: str, payload: bytes) -> None:
        ack = m.decode(m.EventAck, payload)
        if ack.gate == self.gate:
            self.confirmed += self.store.outbox_confirm(ack.ids)

    def _resend_due(self, room: int) -> None:
        """Send again what the broker took but the central never confirmed (see the module doc)."""
        now = time.monotonic()
        if now < self._next_resend_check or room <= 0:
            return
        self._next_resend_check = now + min(5.0, self.resend_after_s / 2)
        for row in self.store.outbox_due(self.resend_after_s, room):
            info = self.client.publish(row.topic, row.payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self.store.outbox_mark_sent([row.seq])  # due again later
                continue
            self._pending[info.mid] = row.seq

    def _drain_loop(self) -> None:
        retry_at = 0.0
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._take_acks()
                if self._failed and not self._pending and time.monotonic() >= retry_at:
                    self._cursor = min(self._failed) - 1
                    self._failed.clear()
                    retry_at = time.monotonic() + 5
                if self.hold or not self.connected:
                    continue
                room = self.window - len(self._pending)
                if room <= 0:
                    continue
                self._resend_due(room // 2)
                room = self.window - len(self._pending)
                for row in self.store.outbox_after(self._cursor, room, unsent_only=True):
                    info = self.client.publish(row.topic, row.payload, qos=1)
                    if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                        break  # paho refused it outright (queue full): try again later
                    # NO_CONN: paho holds it and sends it after the reconnect, in order.
                    self._pending[info.mid] = row.seq
                    self._cursor = row.seq
                    if info.rc == mqtt.MQTT_ERR_NO_CONN:
                        break
            except Exception:
                log.exception("outbox drainer")
                time.sleep(0.5)

    @property
    def pending(self) -> int:
        return len(self._pending)


def _no_delay(client: mqtt.Client) -> None:
    """Send small messages at once: with Nagle's algorithm a claim waits for the last packet's delayed
    ACK (about 40 ms on Linux at each hop; measured 68 ms for a round trip through Mosquitto, 1 ms without)."""
    sock = client.socket()
    try:
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass  # a TLS or proxy socket without the option: slower, not broken


__all__ = ["HOLD_ENV", "Link"]
