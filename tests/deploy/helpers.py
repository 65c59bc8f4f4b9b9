"""Helpers for the deployment tests: a gate that publishes passages, waiting for the central's rows."""

from __future__ import annotations

import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from central.models import PassageEventRecord, utcnow
from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import PassageEvent, encode


def publish_passages(broker, site: str, gate: str, count: int) -> list[str]:
    """A gate at the park publishes `count` free passages (QoS 1, every PUBACK awaited)."""
    return publish_events(broker, site, gate, [
        PassageEvent(id=new_event_id(), site=site, gate=gate, zone=1, at=utcnow(), direction="in",
                     credential_kind="none", passed=True, mode="free") for _ in range(count)])


def publish_events(broker, site: str, gate: str, events: list[PassageEvent]) -> list[str]:
    """A gate publishes these events on its topic (QoS 1, every PUBACK awaited); returns their ids."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{gate}-{uuid.uuid4().hex[:6]}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    infos = [client.publish(topics.event(site, gate), encode(event), qos=1) for event in events]
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()
    return [event.id for event in events]


def wait_rows(ctx, site: str, expected: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        with ctx.sessions() as db:
            count = db.scalar(select(func.count()).select_from(PassageEventRecord)
                              .where(PassageEventRecord.site_id == site))
        if count >= expected:
            return count
        time.sleep(0.1)
    return count
