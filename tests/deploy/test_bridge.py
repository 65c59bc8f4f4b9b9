"""On-site server: a park broker bridged to head office. Passages made while the bridge is down reach
head office when it comes back, and none is counted twice."""

from __future__ import annotations

import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from central.bridge import bridge_config
from central.ingest import IngestWorker
from central.models import PassageEventRecord, Zone, utcnow
from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import PassageEvent, encode
from tests.central.conftest import make_config, prepare


def _publish(broker, site: str, gate: str, count: int) -> list[str]:
    """A gate at the park publishes `count` passages (QoS 1, every PUBACK awaited)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{gate}-{uuid.uuid4().hex[:6]}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    ids = []
    infos = []
    for _ in range(count):
        event = PassageEvent(id=new_event_id(), site=site, gate=gate, zone=1, at=utcnow(), direction="in",
                             credential_kind="none", passed=True, mode="free")
        ids.append(event.id)
        infos.append(client.publish(topics.event(site, gate), encode(event), qos=1))
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()
    return ids


def _wait_rows(ctx, site: str, expected: int, timeout: float = 60) -> int:
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


@pytest.mark.slow
@pytest.mark.mosquitto
def test_passages_made_while_the_bridge_is_down_reach_head_office_once(db_url, tmp_path, mosquitto_factory):
    head_office = mosquitto_factory(persistence=True)
    config = make_config(db_url, tmp_path, head_office)
    site = config.site
    park = mosquitto_factory(persistence=True, extra_config=bridge_config(
        site, "127.0.0.1", head_office.port, restart_timeout=(1, 2)))
    ctx = prepare(config, mqtt_on=False)
    worker = IngestWorker(config, ctx.sessions, worker_id="ho").start()
    try:
        before = _publish(park, site, "east1", 50)
        assert _wait_rows(ctx, site, 50) == 50

        head_office.stop()  # the slow link is down: the park's broker queues for the bridge
        during = _publish(park, site, "east1", 200) + _publish(park, site, "west1", 100)
        head_office.start()

        assert _wait_rows(ctx, site, 350) == 350
        assert worker.wait_idle(timeout=30, quiet=1.0)
        with ctx.sessions() as db:
            ids = set(db.scalars(select(PassageEventRecord.event_id).where(PassageEventRecord.site_id == site)))
            zone = db.scalar(select(Zone).where(Zone.site_id == site, Zone.number == 1))
        assert ids == set(before) | set(during)
        assert zone.entries_today == 350  # every passage counted once, none twice
        assert zone.inside == 350
    finally:
        worker.stop()
        ctx.close()
