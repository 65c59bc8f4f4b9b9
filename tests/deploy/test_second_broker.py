"""Nothing relies on Mosquitto-only behaviour: a real gate agent and the central's ingest work through
NATS's MQTT listener (an open, clustered broker; MQTT 3.1.1, QoS 1, retained messages)."""

from __future__ import annotations

import io
from dataclasses import replace

import msgspec
import pytest
from sqlalchemy import select

from central.bus.ingest_worker import IngestWorker
from central.models import PassageEventRecord, Zone
from central.services.gates import register_gate
from central.services.tickets import IssueRequest, TicketTypeSpec, define_ticket_type, issue_tickets, ticket_code
from drivers.sim.turnstile_sim import TurnstileSimulator
from gate_agent.agent import GateAgent
from gate_agent.display import ConsoleDisplay
from tests.central.conftest import make_config, prepare
from tests.gate_agent.conftest import file_config
from tests.support.waiting import poll


@pytest.mark.slow
@pytest.mark.nats
def test_a_gate_admits_and_the_central_counts_through_nats_mqtt(db_url, tmp_path, nats_mqtt):
    broker = type("Broker", (), {"host": nats_mqtt.host, "port": nats_mqtt.mqtt_port})()
    config = make_config(db_url, tmp_path, broker)
    config = replace(config, mqtt=replace(config.mqtt, protocol="3.1.1"))
    ctx = prepare(config, mqtt_on=True)
    assert ctx.link.wait_connected(10)
    site = config.site
    with ctx.sessions.begin() as db:
        single = define_ticket_type(db, site, TicketTypeSpec(name="Single", entries=1))
        ticket = issue_tickets(db, site, [IssueRequest(ticket_type=single.id)])[0]
        code = ticket_code(ticket, ctx.signer)
        register_gate(db, site, "east1", 1, hardware={"controller_profile": "tripod-coil", "passage_timeout_s": 2.0})
    worker = IngestWorker(config, ctx.sessions, ctx.link, worker_id="nats").start()
    poll(lambda: ctx.publisher.flush() or None)  # the retained GateConfig, as the scheduler does

    sim = TurnstileSimulator("tripod-coil", transport="tcp").start()
    sim.pass_delay_s = 0.05
    gate_cfg = file_config(tmp_path, broker, site, "east1", turnstile=sim)
    gate_cfg = msgspec.structs.replace(gate_cfg, broker=msgspec.structs.replace(gate_cfg.broker, protocol="3.1.1"))
    agent = GateAgent(gate_cfg, display=ConsoleDisplay("east1", stream=io.StringIO())).start()
    try:
        poll(lambda: agent.active is not None)
        assert agent.present("qr", code).granted
        assert agent.present("qr", "PRINTED-AT-HOME").reason == "not_a_code"

        def counted():
            with ctx.sessions() as db:
                zone = db.scalar(select(Zone).where(Zone.site_id == site, Zone.number == 1))
                events = db.scalars(select(PassageEventRecord).where(PassageEventRecord.site_id == site)).all()
                return (zone, events) if zone.entries_today == 1 and len(events) == 2 else None

        zone, events = poll(counted)
        assert zone.inside == 1
        assert sorted(e.decision for e in events) == ["granted", "refused"]
        assert sim.entries == 1
    finally:
        agent.stop()
        sim.stop()
        worker.stop()
        ctx.close()
