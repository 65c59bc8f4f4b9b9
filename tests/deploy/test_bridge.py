"""On-site server: a park broker bridged to head office. Passages made while the bridge is down reach
head office when it comes back, and none is counted twice."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from central.bus.bridge import bridge_config
from central.bus.ingest_worker import IngestWorker
from central.models import PassageEventRecord, Zone
from tests.central.conftest import add_gates, make_config, prepare
from tests.deploy.helpers import publish_passages, wait_rows


@pytest.mark.slow
@pytest.mark.mosquitto
def test_passages_made_while_the_bridge_is_down_reach_head_office_once(db_url, tmp_path, mosquitto_factory):
    head_office = mosquitto_factory(persistence=True)
    config = make_config(db_url, tmp_path, head_office)
    site = config.site
    park = mosquitto_factory(persistence=True, extra_config=bridge_config(
        site, "127.0.0.1", head_office.port, restart_timeout=(1, 2)))
    ctx = prepare(config, mqtt_on=False)
    add_gates(ctx, site, "east1", "west1")
    worker = IngestWorker(config, ctx.sessions, worker_id="ho").start()
    try:
        before = publish_passages(park, site, "east1", 50)
        assert wait_rows(ctx, site, 50) == 50

        head_office.stop()  # the slow link is down: the park's broker queues for the bridge
        during = publish_passages(park, site, "east1", 200) + publish_passages(park, site, "west1", 100)
        head_office.start()

        assert wait_rows(ctx, site, 350) == 350
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
