"""The broker's max_packet_size (config/mosquitto/park.conf) admits the largest message the central makes
and a receiver accepts, and a Mosquitto started with it refuses a larger packet by disconnecting its sender."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central.services import sync
from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import (
    MAX_BYTES,
    MAX_PACKET_BYTES,
    PassChange,
    SnapshotChunk,
    TemplateChange,
    TicketChange,
    decode,
    encode,
)

PARK_CONF = Path(__file__).resolve().parents[2] / "config" / "mosquitto" / "park.conf"
LONGEST = "x" * 64  # a site or gate name at its longest (protocol.messages.Name)


def _park_max_packet_size() -> int:
    found = re.findall(r"^max_packet_size\s+(\d+)\s*$", PARK_CONF.read_text(), re.M)
    assert len(found) == 1, "park.conf sets max_packet_size once"
    assert not re.search(r"^message_size_limit", PARK_CONF.read_text(), re.M)
    return int(found[0])


def _worst_case_changes():
    """Every field at its longest, as the central could make them: tickets, passes, then templates."""
    at = datetime(2026, 11, 23, 16, 0, 0, 123456, tzinfo=UTC)
    holder = "H" + "9" * 127
    for i in range(30_000):
        yield TicketChange(ticket_id=2**63 - 1 - i, ticket_type=65535, status="refunded", valid_from=at, valid_to=at,
                           slot_start=at, slot_end=at, headcount=255, zones=list(range(1, 33)), id_digest="f" * 64)
    for i in range(5_000):
        yield PassChange(pass_id=2**63 - 1 - i, holder_id=holder, card_uid="F" * 32, status="suspended",
                         valid_from=at, valid_to=at, zones=list(range(1, 33)))
    for i in range(2_000):
        yield TemplateChange(holder_id=holder, kind="fingerprint", data=bytes([i % 256]) * 4096, version=2**31,
                             finger=10)


def test_the_largest_snapshot_chunk_the_central_makes_fits_the_protocol_and_the_broker_limit():
    limit = _park_max_packet_size()
    assert limit == MAX_PACKET_BYTES
    snap = sync.Snapshot(site=LONGEST, seq=2**40, changes=_worst_case_changes())
    sizes = [len(encode(c)) for c in sync.chunk(snap, LONGEST, "s" * 128)]
    assert len(sizes) > 3
    assert max(sizes) <= sync.CHUNK_BYTES + 8 * 1024 <= MAX_BYTES[SnapshotChunk]
    # Every message a receiver accepts fits one packet, with the longest topic and a header to spare.
    topic = topics.sync(LONGEST, LONGEST)
    assert max(MAX_BYTES.values()) + len(topic) + 64 <= limit


class _Client:
    def __init__(self, broker, *, subscribe: str | None = None) -> None:
        self.received: list[mqtt.MQTTMessage] = []
        self.disconnected = threading.Event()
        self._cond = threading.Condition()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        ready = threading.Event()
        self.c.on_connect = lambda c, *_a: c.subscribe(subscribe, 1) if subscribe else ready.set()
        self.c.on_subscribe = lambda *_a: ready.set()
        self.c.on_message = self._on_message
        self.c.on_disconnect = lambda *_a: self.disconnected.set()
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert ready.wait(10)

    def _on_message(self, _c, _u, msg) -> None:
        with self._cond:
            self.received.append(msg)
            self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 20) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout), "nothing came"

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.mark.mosquitto
def test_a_broker_with_the_parks_limit_delivers_the_largest_valid_message_and_disconnects_a_larger_one(
        mosquitto_factory):
    limit = _park_max_packet_size()
    broker = mosquitto_factory(persistence=False, extra_config=f"max_packet_size {limit}\n")
    topic = topics.sync(LONGEST, LONGEST)
    central = _Client(broker, subscribe=f"{topics.ROOT}/#")
    sender = _Client(broker)
    try:
        # The largest payload a gate accepts, as a valid chunk padded to exactly the limit.
        chunk = SnapshotChunk(site=LONGEST, gate=LONGEST, snapshot_id=new_event_id(), index=0, last=True, seq=1,
                              changes=[])
        body = encode(chunk)
        largest = body[:-1] + b"," + b'"pad":"' + b"x" * (MAX_BYTES[SnapshotChunk] - len(body) - 9) + b'"}'
        assert len(largest) == MAX_BYTES[SnapshotChunk]
        assert decode(SnapshotChunk, largest).last  # valid: receivers ignore unknown fields
        sender.c.publish(topic, largest, qos=1).wait_for_publish(30)
        central.wait_for(lambda: any(m.payload == largest for m in central.received))

        sender.c.publish(topic, b"x" * limit, qos=1)
        assert sender.disconnected.wait(20), "the broker kept a client that sent a packet over its limit"
        after = _Client(broker)  # what follows still flows, and the oversized payload never arrived
        after.c.publish(topic, b"after", qos=1).wait_for_publish(10)
        central.wait_for(lambda: any(m.payload == b"after" for m in central.received))
        assert [len(m.payload) for m in central.received] == [len(largest), len(b"after")]
        after.close()
    finally:
        sender.c.loop_stop()
        central.close()
