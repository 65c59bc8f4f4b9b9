"""A small paho-mqtt wrapper for the central: MQTT 5 (or 3.1.1), credentials and TLS from configuration, QoS 1.

`MqttLink` connects in the background and reconnects by itself; `publish(..., wait=True)` returns
only once the broker acknowledged the message (PUBACK) or raises `PublishError` after the timeout.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from central.config import MqttConfig
from protocol.brokers import BrokerRotation

log = logging.getLogger(__name__)
Handler = Callable[[mqtt.MQTTMessage], None]
SESSION_EXPIRY_S = 7 * 24 * 3600


class PublishError(RuntimeError):
    """A message was not acknowledged by the broker in time (or the link is down)."""


class InboundMessage:
    """A received PUBLISH as the lean receive path hands it on: what a bulk subscriber reads, no more.

    paho's MQTTMessage carries an MQTTMessageInfo (with its own threading.Condition) and, on MQTT 5, a
    Properties object (two dicts and a list built per message): about 8 KB and 15 us each, for fields
    the ingest never reads."""

    __slots__ = ("_topic", "dup", "generation", "mid", "payload", "properties", "qos", "retain")

    def __init__(self, mid: int, topic: bytes, payload: bytes, qos: int, retain: bool, dup: bool,
                 generation: int) -> None:
        self.mid, self._topic, self.payload, self.qos, self.retain, self.dup = mid, topic, payload, qos, retain, dup
        self.generation = generation  # the connection it came on: a PUBACK only means something there
        self.properties = None

    @property
    def topic(self) -> str:
        return self._topic.decode("utf-8")


_PUBLISH_QOS1 = 0x32
_READ_CHUNK = 65536
_READS_PER_WAKE = 8  # socket reads of up to 64 KB per select() wake-up, then paho's writes get their turn


class _LeanClient(mqtt.Client):
    """paho's Client with a receive path for bulk QoS 1 subscribers (the ingest worker).

    paho reads one packet per select(), with three recv() calls (command byte, length, body) and, on
    MQTT 5, a Properties object per PUBLISH. Here the socket is read 64 KB at a time, every packet
    read is handled in the same wake-up (a few reads' worth: nothing stays buffered where select()
    cannot see it), and a QoS 0/1 PUBLISH without properties becomes an `InboundMessage`;
    anything else takes paho's own path. Only paho's private receive hooks are replaced; if a paho
    release renames them, the client falls back to paho's behaviour (the overrides are not called).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._reads = 0
        self.generation = 0

    def _buffered(self) -> bool:
        return self._rpos < len(self._rbuf)

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            self._reads += 1
            buf = super()._sock_recv(max(bufsize, _READ_CHUNK))
            if len(buf) <= bufsize:
                self._rbuf, self._rpos = b"", 0
                return buf
            self._rbuf, pos = buf, 0
        self._rpos = pos + bufsize
        return buf[pos:pos + bufsize]

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        self._reads = 0
        # Stop only with the buffer empty: what is left is then in the socket, where select() sees it.
        while self._buffered() or self._reads < _READS_PER_WAKE:
            if self._sock is None:
                return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN:
                break
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        header = self._in_packet["command"]
        packet = self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        if qos == 2 or len(packet) < 2:
            return super()._handle_publish()
        end = 2 + int.from_bytes(packet[0:2], "big")
        topic = bytes(packet[2:end])
        mid = 0
        if qos:
            mid = int.from_bytes(packet[end:end + 2], "big")
            end += 2
        if self._protocol == mqtt.MQTTv5:
            if end >= len(packet) or packet[end] != 0:  # properties present: paho decodes them
                return super()._handle_publish()
            end += 1
        if not topic:
            return super()._handle_publish()
        # paho hands the message to our on_message untouched: an InboundMessage has every field our handlers read.
        self._handle_on_message(InboundMessage(mid, topic, bytes(packet[end:]), qos,  # type: ignore[arg-type]
                                               bool(header & 0x01), bool(header & 0x08), self.generation))
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: list[int]) -> None:
        """PUBACK many messages with one queued write (paho queues and signals once per packet)."""
        if not mids:
            return
        packet = b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in mids)
        self._packet_queue(0x40, packet, 0, 1)


class MqttLink:
    """One MQTT 5 connection; subscriptions are renewed on every (re)connect."""

    def __init__(self, cfg: MqttConfig, *, client_id: str | None = None, persistent: bool = False,
                 manual_ack: bool = False, receive_maximum: int | None = None, no_delay: bool = False,
                 lean: bool = False) -> None:
        self.cfg = cfg
        self._no_delay = no_delay  # TCP_NODELAY: for request/reply traffic (claims), not bulk ingest
        self.client_id = client_id or cfg.client_id
        self._persistent = persistent
        self._receive_maximum = receive_maximum
        self._subs: list[tuple[str, int, Handler]] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._failed = threading.Event()
        self._pending_subs = 0
        self._v5 = cfg.protocol != "3.1.1"
        # MQTT 3.1.1 has no session expiry: a persistent session is clean_session=False.
        self._publishing = 0  # publish(wait=True) calls under way: they need the network thread
        self._publishing_lock = threading.Lock()
        # lean: the bulk receive path of `_LeanClient` (the ingest worker); handlers then get InboundMessages.
        self._client = (_LeanClient if lean else mqtt.Client)(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                   protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311, manual_ack=manual_ack,
                                   clean_session=None if self._v5 else not persistent)
        self._client.max_queued_messages_set(0)
        self._client.max_inflight_messages_set(1000)
        if cfg.username:
            self._client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls_ca:
            self._client.tls_set(ca_certs=cfg.tls_ca, cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self.brokers = BrokerRotation(cfg.host, cfg.port, cfg.failover)
        self._client.on_connect_fail = self._on_connect_fail
        # paho annotates whole seconds but computes the backoff in floats: the first retry after 0.2 s.
        self._client.reconnect_delay_set(0.2, 5)  # type: ignore[arg-type]

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, wait: float | None = 10.0) -> MqttLink:
        self._connect_to(*self.brokers.current)
        self._client.loop_start()
        deadline = time.monotonic() + (wait or 0)
        while wait and not self._connected.is_set() and not self._failed.is_set() and time.monotonic() < deadline:
            self._connected.wait(0.05)
        if wait and not self._connected.is_set():
            log.warning("MQTT broker %s:%s not reachable yet; retrying in the background",
                        self.cfg.host, self.cfg.port)
        elif wait and self._subs:
            self._subscribed.wait(wait)
        return self

    def stop(self) -> None:
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
            self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # --- subscribe / publish -----------------------------------------------------------------
    def subscribe(self, topic: str, handler: Handler, qos: int = 1) -> None:
        """Subscribe now (if connected) and again after every reconnect."""
        self._subs.append((topic, qos, handler))
        match = topic.split("/", 2)[2] if topic.startswith("$share/") else topic
        self._client.message_callback_add(match, lambda _c, _u, msg: handler(msg))
        if self.connected:
            self._client.subscribe(topic, qos)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                wait: bool = True, timeout: float = 10.0) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN) and not wait:
            raise PublishError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        if wait:
            with self._publishing_lock:
                self._publishing += 1
            try:
                if info.rc == mqtt.MQTT_ERR_NO_CONN and not self._connected.wait(timeout):
                    raise PublishError(f"not connected to {self.cfg.host}:{self.cfg.port}")
                try:
                    info.wait_for_publish(timeout)
                except (RuntimeError, ValueError) as exc:
                    raise PublishError(f"publish to {topic} failed: {exc}") from None
                if not info.is_published():
                    raise PublishError(f"no acknowledgement for {topic} within {timeout}s")
            finally:
                with self._publishing_lock:
                    self._publishing -= 1

    @property
    def publishing(self) -> bool:
        """A publish on this link is waiting for its PUBACK (which only the network thread can read)."""
        return self._publishing > 0

    @property
    def generation(self) -> int:
        """Counts connections (lean links): a message's PUBACK is only sent on the connection it came on."""
        return getattr(self._client, "generation", 0)

    def ack(self, mid: int, qos: int) -> None:
        self._client.ack(mid, qos)

    def ack_messages(self, messages) -> None:
        """PUBACK the QoS 1 messages of this connection (the broker redelivers the others anyway)."""
        client = self._client
        if isinstance(client, _LeanClient):
            generation = client.generation
            client.ack_many([m.mid for m in messages
                             if m.qos == 1 and getattr(m, "generation", generation) == generation])
            for m in messages:
                if m.qos == 2:
                    client.ack(m.mid, m.qos)
            return
        for m in messages:
            client.ack(m.mid, m.qos)

    # --- callbacks ---------------------------------------------------------------------------
    def _on_connect(self, client, _userdata, _flags, reason_code, _props) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect refused: %s", reason_code)
            return
        if self._no_delay:
            _set_no_delay(client.socket())
        if isinstance(client, _LeanClient):
            client.generation += 1
        self._subscribed.clear()
        if self._subs:
            self._pending_subs = 1
            client.subscribe([(topic, qos) for topic, qos, _handler in self._subs])
        self._connected.set()
        log.info("MQTT connected to %s:%s as %s", *self.brokers.current, self.client_id)

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _props) -> None:
        for code in reason_codes:
            if code.is_failure:
                log.error("MQTT subscription refused: %s", code)
        self._pending_subs = 0
        self._subscribed.set()

    def _connect_to(self, host: str, port: int) -> None:
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            if self._persistent:
                props.SessionExpiryInterval = SESSION_EXPIRY_S
            if self._receive_maximum:
                props.ReceiveMaximum = self._receive_maximum
            self._client.connect_async(host, port, keepalive=self.cfg.keepalive, clean_start=not self._persistent,
                                       properties=props)
        else:
            self._client.connect_async(host, port, keepalive=self.cfg.keepalive)

    def _next_broker(self) -> None:
        """A clustered broker's node is away: paho's reconnect loop goes to the next one (protocol.brokers)."""
        address = self.brokers.advance()
        if address is not None:
            self._connect_to(*address)

    def _on_connect_fail(self, _client, _userdata) -> None:
        self._failed.set()
        self._next_broker()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props) -> None:
        self._connected.clear()
        if reason_code != 0:
            log.warning("MQTT disconnected: %s", reason_code)
            self._next_broker()

    def _on_message(self, _client, _userdata, msg) -> None:
        log.debug("unrouted message on %s", msg.topic)


def _set_no_delay(sock) -> None:
    """Nagle's algorithm holds a small reply until the last packet's delayed ACK (about 40 ms on Linux)."""
    import socket

    try:
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass
