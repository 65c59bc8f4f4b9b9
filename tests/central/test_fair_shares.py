"""Fair shares on the MQTT side: a gate that floods snapshot requests gets a few snapshots and holds back
nobody; garbage on a gate's topic is parked small."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from central.bus.ingest_worker import IngestWorker
from central.models import PARKED_PAYLOAD_BYTES, ParkedMessage, PassageEventRecord
from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import PassageEvent, SnapshotChunk, SnapshotRequest, decode, encode
from tests.central.conftest import add_gates
from tests.central.test_ingest import GatePublisher
from tests.support.waiting import poll

pytestmark = pytest.mark.mosquitto


def _free_passage(site: str, gate: str) -> bytes:
    return encode(PassageEvent(id=new_event_id(), site=site, gate=gate, zone=1, at=_now(), direction="in",
                               credential_kind="none", mode="free", passed=True))


def _now():
    from central.models import utcnow

    return utcnow()


def _stored(ctx, gate: str) -> int:
    with ctx.sessions() as db:
        return db.scalar(select(func.count()).select_from(PassageEventRecord).where(PassageEventRecord.gate == gate))


def test_a_gate_flooding_snapshot_requests_gets_two_builds_and_other_gates_events_and_snapshots_go_on(
        live_config, live_ctx, mosquitto, listen):
    site = live_config.site
    add_gates(live_ctx, site, "flood", "busy", "quiet")
    worker = IngestWorker(live_config, live_ctx.sessions, worker_id="fair", cipher=live_ctx.cipher)
    release = threading.Event()
    lock = threading.Lock()
    builds: Counter[str] = Counter()
    running: Counter[str] = Counter()
    most_at_once: Counter[str] = Counter()
    send_snapshot = worker.publisher.send_snapshot

    def held_back(site_id: str, gate: str):
        """The flooding gate's snapshot takes as long as the test says (a million tickets would take seconds)."""
        with lock:
            builds[gate] += 1
            running[gate] += 1
            most_at_once[gate] = max(most_at_once[gate], running[gate])
        try:
            if gate == "flood":
                release.wait(60)
            return send_snapshot(site_id, gate)
        finally:
            with lock:
                running[gate] -= 1

    worker.publisher.send_snapshot = held_back
    worker.start()
    flood_chunks, quiet_chunks = listen(topics.sync(site, "flood")), listen(topics.sync(site, "quiet"))
    flood, busy, quiet = (GatePublisher(mosquitto, site, g) for g in ("flood", "busy", "quiet"))
    request = {g: encode(SnapshotRequest(gate=g)) for g in ("flood", "quiet")}
    try:
        flood.client.publish(topics.sync_request(site, "flood"), request["flood"], qos=1).wait_for_publish(10)
        poll(lambda: builds["flood"] == 1, timeout=20, what="the first snapshot build")
        for info in [flood.client.publish(topics.sync_request(site, "flood"), request["flood"], qos=1)
                     for _ in range(300)]:
            info.wait_for_publish(30)
        # Behind the flood at the broker: another gate's passages and another gate's snapshot request.
        busy.publish_all([_free_passage(site, "busy") for _ in range(50)])
        quiet.client.publish(topics.sync_request(site, "quiet"), request["quiet"], qos=1).wait_for_publish(10)

        # While the flooding gate's first snapshot is still being built: the busy gate's passages are
        # stored, and the quiet gate gets its whole snapshot.
        poll(lambda: _stored(live_ctx, "busy") == 50, timeout=30, what="the busy gate's passages")
        assert decode(SnapshotChunk, quiet_chunks.get(timeout=30).payload).last
        assert not release.is_set() and builds["flood"] == 1

        release.set()
        assert worker.wait_idle(timeout=60)
        # 301 requests: the build under way, and one more for all those that came while it ran.
        assert worker.snapshots.stats.requested >= 301
        assert 1 < builds["flood"] <= 2
        assert builds["quiet"] == 1
        assert most_at_once == {"flood": 1, "quiet": 1}
        got = [decode(SnapshotChunk, flood_chunks.get(timeout=10).payload) for _ in range(builds["flood"])]
        assert all(c.last for c in got)
    finally:
        release.set()
        for client in (flood, busy, quiet):
            client.close()
        worker.stop()


def test_a_snapshot_request_from_a_gate_nobody_registered_builds_nothing(live_config, live_ctx, mosquitto):
    site = live_config.site
    worker = IngestWorker(live_config, live_ctx.sessions, worker_id="unknown").start()
    stranger = GatePublisher(mosquitto, site, "stranger")
    try:
        stranger.client.publish(topics.sync_request(site, "stranger"), encode(SnapshotRequest(gate="stranger")),
                                qos=1).wait_for_publish(10)
        poll(lambda: worker.snapshots.stats.unknown_gate == 1, timeout=20, what="the request handled")
        assert worker.snapshots.stats.built == 0
    finally:
        stranger.close()
        worker.stop()


def test_a_megabyte_of_garbage_on_a_gates_topic_is_parked_as_its_first_4_kb_with_its_size_and_hash(
        live_config, live_ctx, mosquitto):
    site = live_config.site
    add_gates(live_ctx, site, "g1")
    worker = IngestWorker(live_config, live_ctx.sessions, worker_id="parked").start()
    gate = GatePublisher(mosquitto, site, "g1")
    garbage = os.urandom(1024 * 1024)
    try:
        gate.publish_all([garbage, _free_passage(site, "g1")])
        assert worker.wait_idle(timeout=30)
        with live_ctx.sessions() as db:
            (parked,) = db.scalars(select(ParkedMessage)).all()
            assert parked.topic == topics.event(site, "g1") and "oversized" in parked.error
            assert parked.payload == garbage[:PARKED_PAYLOAD_BYTES] and len(parked.payload) == 4096
            assert (parked.size, parked.sha256) == (len(garbage), hashlib.sha256(garbage).hexdigest())
        assert _stored(live_ctx, "g1") == 1  # the passage behind it
    finally:
        gate.close()
        worker.stop()
