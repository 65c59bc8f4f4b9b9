"""Past one machine: two ingest workers split the passage stream through an MQTT 5 shared
subscription, and the database's unique event id keeps every passage exactly once."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from central.bus.ingest_worker import IngestWorker
from central.models import PassageEventRecord, Zone
from tests.central.conftest import add_gates, make_config, prepare
from tests.deploy.helpers import publish_passages, wait_rows


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.mosquitto
def test_two_ingest_workers_share_the_load_and_count_each_passage_once(pg_url, tmp_path, mosquitto):
    config = make_config(pg_url, tmp_path, mosquitto)
    ctx = prepare(config, mqtt_on=False)
    add_gates(ctx, config.site, "east1", "east2", "west1", "west2")
    workers = [IngestWorker(config, ctx.sessions, worker_id=f"w{i}").start() for i in (1, 2)]
    try:
        sent = []
        for gate in ("east1", "east2", "west1", "west2"):
            sent += publish_passages(mosquitto, config.site, gate, 500)
        assert wait_rows(ctx, config.site, len(sent)) == len(sent)
        for worker in workers:
            assert worker.wait_idle(timeout=30, quiet=0.5)
        received = [w.stats.received for w in workers]
        assert all(r > 0 for r in received), f"one worker got nothing: {received}"
        # Split, not copied (a plain subscription would give each worker all 2,000); QoS 1 may redeliver
        # a few, which the unique event id absorbs.
        assert len(sent) <= sum(received) < 1.5 * len(sent), received
        with ctx.sessions() as db:
            assert db.scalar(select(func.count()).select_from(PassageEventRecord)
                             .where(PassageEventRecord.site_id == config.site)) == len(sent)
            zone = db.scalar(select(Zone).where(Zone.site_id == config.site, Zone.number == 1))
        assert zone.entries_today == len(sent)
    finally:
        for worker in workers:
            worker.stop()
        ctx.close()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.mosquitto
def test_ingest_workers_split_by_park_each_takes_only_its_parks(pg_url, tmp_path, mosquitto):
    from dataclasses import replace

    from central.services.gates import ensure_site, ensure_zone

    config = make_config(pg_url, tmp_path, mosquitto)
    ctx = prepare(config, mqtt_on=False)
    north = config.site
    south = "south" + north[4:]
    with ctx.sessions.begin() as db:
        ensure_site(db, south, name="South Park", timezone="Asia/Shanghai")
        ensure_zone(db, south, 1, name="Main", capacity=100_000)
    add_gates(ctx, north, "n1")
    add_gates(ctx, south, "s1")
    for_north = replace(config, ingest=replace(config.ingest, sites=(north,)))
    worker = IngestWorker(for_north, ctx.sessions, worker_id="north").start()
    try:
        sent = publish_passages(mosquitto, north, "n1", 200)
        publish_passages(mosquitto, south, "s1", 100)
        assert wait_rows(ctx, north, len(sent)) == len(sent)
        assert worker.wait_idle(timeout=30, quiet=0.5)
        assert wait_rows(ctx, south, 1, timeout=1) == 0  # the south's passages wait for the south's worker
        assert worker.stats.received >= len(sent) and worker.stats.received < len(sent) + 50
        south_worker = IngestWorker(replace(config, ingest=replace(config.ingest, sites=(south,))), ctx.sessions,
                                    worker_id="south").start()
        try:  # (the 100 above reached no subscriber: a worker's session holds a park's messages from its first start)
            more = publish_passages(mosquitto, south, "s1", 50)
            assert wait_rows(ctx, south, len(more)) == len(more)
        finally:
            south_worker.stop()
    finally:
        worker.stop()
        ctx.close()
