"""The central fails while gates admit: its ingest killed mid-batch, its PostgreSQL restarted under load."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tests.reliability.conftest import Visitors, poll
from tests.reliability.test_broker_outage import check_park

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.postgres]


def _rush(park, gate_procs, broker, *, per_gate: int = 600, pace_s: float = 0.05):
    park.start_ingest()
    gates = [gate_procs(broker, park.site, name).start() for name in park.gates]
    poll(lambda: all(g.ready() for g in gates), 40, what="gates configured and synced")
    visitors = [Visitors(g, park.codes[i * per_gate:(i + 1) * per_gate], replay_every=12, pace_s=pace_s)
                for i, g in enumerate(gates)]
    for v in visitors:
        v.start()
    poll(lambda: all(len(v.decisions) >= 10 for v in visitors), 30, what="the rush under way")
    return gates, visitors


def test_ingest_killed_mid_batch_and_restarted_loses_nothing(tmp_path, private_pg, mosquitto_factory,
                                                             park_factory, gate_procs, witness_factory):
    broker = mosquitto_factory(persistence=True)
    park = park_factory(private_pg.url, broker, tickets=1200)
    witness = witness_factory(broker, park.site)
    gates, visitors = _rush(park, gate_procs, broker)
    libpq = private_pg.url.replace("postgresql+psycopg://", "postgresql://")
    kills = 0
    for _ in range(3):
        # Caught up: at most a few events of the ongoing rush on their way (all of them at one instant is
        # rare on a loaded machine, where the suite's other processes run beside this one).
        poll(lambda: park.rows() > 0 and sum(g.outbox() for g in gates) <= 4, 90, what="the ingest keeping up")
        # Hold the events table so the worker's next batch stops inside its transaction: received from
        # the broker, not committed, not acknowledged. That is the moment it dies.
        with psycopg.connect(libpq) as holder:
            holder.execute("LOCK TABLE passage_events IN EXCLUSIVE MODE")
            stored = park.rows()

            def waiting() -> bool:
                with psycopg.connect(libpq) as conn:
                    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                        "AND query LIKE 'INSERT INTO passage_events%'").fetchone()[0] > 0

            poll(waiting, 20, what="the ingest blocked inside a batch")
            park.kill_ingest()
            kills += 1
            holder.rollback()
        assert park.rows() == stored  # the batch in flight was not committed ...
        threading.Event().wait(2)  # ... and gates go on admitting while the central is down
        park.start_ingest()
    for v in visitors:
        v.finish()
    check_park(park, gates, visitors, witness, "ingest-killed-mid-batch", kills=kills)


def test_postgres_restarted_under_load_loses_nothing(tmp_path, private_pg, mosquitto_factory, park_factory,
                                                     gate_procs, witness_factory):
    broker = mosquitto_factory(persistence=True)
    park = park_factory(private_pg.url, broker, tickets=1200)
    witness = witness_factory(broker, park.site)
    gates, visitors = _rush(park, gate_procs, broker)
    restarts = 0
    for _ in range(3):
        rows = park.rows()
        poll(lambda rows=rows: park.rows() >= rows + 15, 30, what="events being stored")
        private_pg.restart()
        restarts += 1
    after = park.rows()
    poll(lambda: park.rows() > after + 20, 30, what="the ingest storing again after the restarts")
    for v in visitors:
        v.finish()
    check_park(park, gates, visitors, witness, "postgres-restarted-under-load", restarts=restarts)
    assert park.ingest.poll() is None, "the ingest worker died with the database"
