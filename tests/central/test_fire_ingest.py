"""The central hears a gate's fire alarm (real Mosquitto, the ingest worker, PostgreSQL): in the audit log."""

from __future__ import annotations

from sqlalchemy import select

from central.bus.ingest_worker import IngestWorker
from central.models import AuditEntry, utcnow
from protocol import topics
from protocol.messages import FireAlarm, encode
from tests.central.conftest import add_gates
from tests.central.test_ingest import GatePublisher
from tests.support.waiting import poll


def test_a_gates_fire_alarm_is_in_the_audit_log_when_it_rises_and_falls(live_config, live_ctx, mosquitto):
    site = live_config.site
    add_gates(live_ctx, site, "g1")
    worker = IngestWorker(live_config, live_ctx.sessions, worker_id="fire").start()
    gate = GatePublisher(mosquitto, site, "g1")
    try:
        for active in (True, False):
            alarm = FireAlarm(site=site, gate="g1", zone=1, scope="zone", active=active, at=utcnow())
            gate.client.publish(topics.fire(site, "g1"), encode(alarm), qos=1).wait_for_publish(10)

        def entries():
            with live_ctx.sessions() as db:
                return list(db.scalars(select(AuditEntry).where(AuditEntry.action == "gate.fire")
                                       .order_by(AuditEntry.id)))

        found = poll(lambda: len(entries()) == 2 and entries(), timeout=20, what="the fire alarm recorded")
        assert [(e.actor, e.target, e.detail["state"], e.detail["zone"]) for e in found] == [
            ("gate:g1", f"{site}/g1", "on", 1), ("gate:g1", f"{site}/g1", "off", 1)]
    finally:
        gate.close()
        worker.stop()
