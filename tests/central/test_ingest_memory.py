"""The ingest worker does not eat the server: its memory stays flat however many events it stores,
and a worker far behind the load holds a bounded number of received messages (the broker keeps the
rest), even when the broker sends more than the worker's Receive Maximum."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from central.bus.ingest_worker import IngestWorker
from central.models import PassageEventRecord, Zone, utcnow
from central.services.ingest import ingest_batch
from central.services.tickets import IssueRequest, TicketTypeSpec, define_ticket_type, issue_tickets
from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import PassageEvent, encode
from tests.central.conftest import add_gates, make_config, prepare


def _events(site: str, tickets: list[int], start: int, count: int) -> list[PassageEvent]:
    """A gate's mix: 8 in 10 confirmed entries on a fresh ticket, 1 exit, 1 refusal."""
    at = utcnow()
    out = []
    for n in range(start, start + count):
        kind = n % 10
        if kind < 8:
            out.append(PassageEvent(id=new_event_id(), site=site, gate="g1", zone=1, at=at, direction="in",
                                    credential_kind="qr", credential_ref=f"T{tickets[n % len(tickets)]}",
                                    passed=True, ticket_type=1))
        elif kind == 8:
            out.append(PassageEvent(id=new_event_id(), site=site, gate="g1", zone=1, at=at, direction="out",
                                    credential_kind="qr", passed=True))
        else:
            out.append(PassageEvent(id=new_event_id(), site=site, gate="g1", zone=1, at=at, direction="in",
                                    credential_kind="qr", credential_ref="T1", decision="refused",
                                    reason="used_up"))
    return out


@pytest.mark.slow
def test_storing_tens_of_thousands_of_events_does_not_grow_the_workers_memory(any_db_url, tmp_path):
    config = make_config(any_db_url, tmp_path)
    ctx = prepare(config, mqtt_on=False)
    site = config.site
    add_gates(ctx, site, "g1")
    total, batch = 40_000, 500
    with ctx.sessions.begin() as db:
        single = define_ticket_type(db, site, TicketTypeSpec(name="Single", entries=1))
        tickets = [t.id for t in issue_tickets(db, site, [IssueRequest(ticket_type=single.id)] * 2_000)]
    traced: list[int] = []
    tracemalloc.start(1)
    try:
        for start in range(0, total, batch):
            events = _events(site, tickets, start, batch)
            with ctx.sessions.begin() as db:
                ingest_batch(db, events)
            del events
            if (start // batch) % 10 == 9:
                gc.collect()
                traced.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    with ctx.sessions() as db:
        assert db.scalar(select(func.count()).select_from(PassageEventRecord)) == total
        zone = db.scalar(select(Zone).where(Zone.site_id == site, Zone.number == 1))
        assert (zone.entries_today, zone.exits_today, zone.refused_today) == (total * 8 // 10, total // 10,
                                                                               total // 10)
    ctx.close()
    quarter = len(traced) // 4
    second, last = traced[quarter:2 * quarter], traced[3 * quarter:]
    growth = max(last) - max(second)
    # Flat: what the second quarter of the run needed is what the last needs (allocator noise aside).
    assert growth < 2 * 1024 * 1024, f"traced memory grew {growth / 1e6:.1f} MB over half the run: {traced}"


@pytest.mark.slow
@pytest.mark.mosquitto
def test_a_worker_far_behind_the_load_holds_a_bounded_number_of_messages_and_loses_none(
        db_url, tmp_path, mosquitto):
    config = make_config(db_url, tmp_path, mosquitto)
    ctx = prepare(config, mqtt_on=True)
    site, count = config.site, 6_000
    add_gates(ctx, site, "g1")
    worker = IngestWorker(config, ctx.sessions, worker_id=uuid.uuid4().hex[:6])
    worker.max_pending, worker.batch_size = 600, 100
    released = threading.Event()
    process = worker._process

    def slow(batch):  # the database is slow for a while: about 1,000 messages a second
        if not released.is_set():
            time.sleep(0.1)
        process(batch)

    worker._process = slow
    worker.start()
    gate = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"g-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    gate.max_inflight_messages_set(1000)
    gate.connect(mosquitto.host, mosquitto.port)
    gate.loop_start()
    try:
        at = utcnow()
        infos = [gate.publish(topics.event(site, "g1"), encode(PassageEvent(
            id=new_event_id(), site=site, gate="g1", zone=1, at=at, direction="in", credential_kind="none",
            passed=True, mode="free")), qos=1) for _ in range(count)]
        deadline = time.monotonic() + 10
        peak = 0
        while time.monotonic() < deadline:
            peak = max(peak, worker._queue.qsize())
            time.sleep(0.01)
        assert 0 < peak <= worker.max_pending + 1, f"the worker held {peak} unprocessed messages"
        released.set()
        for info in infos:
            info.wait_for_publish(60)
        assert worker.wait_idle(120, quiet=1.0)
    finally:
        released.set()
        worker.stop()
        gate.disconnect()
        gate.loop_stop()
    with ctx.sessions() as db:
        assert db.scalar(select(func.count()).select_from(PassageEventRecord)) == count
        assert db.scalar(select(Zone.entries_today).where(Zone.site_id == site, Zone.number == 1)) == count
    ctx.close()
