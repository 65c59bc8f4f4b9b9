"""Past one machine's broker: gates and the central on a three-node NATS cluster (JetStream, MQTT 3.1.1),
each client given the other nodes as `failover`. A node is killed while two gates admit a stream of
visitors; the clients on it move to another node, and every passage reaches the central exactly once."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import replace

import msgspec
import pytest
from sqlalchemy import func, select

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

PER_GATE = 60


@pytest.mark.slow
@pytest.mark.nats
def test_a_cluster_node_killed_under_load_moves_its_clients_and_loses_no_passage(db_url, tmp_path, nats_cluster):
    n1, n2, n3 = nats_cluster.nodes
    broker = type("Broker", (), {"host": n1.host, "port": n1.mqtt_port})()
    config = make_config(db_url, tmp_path, broker)
    config = replace(config, mqtt=replace(config.mqtt, protocol="3.1.1", failover=(n2.address, n3.address)))
    ctx = prepare(config, mqtt_on=True)
    assert ctx.link.wait_connected(30)
    site = config.site
    with ctx.sessions.begin() as db:
        single = define_ticket_type(db, site, TicketTypeSpec(name="Single", entries=1))
        tickets = issue_tickets(db, site, [IssueRequest(ticket_type=single.id)] * (2 * PER_GATE))
        codes = [ticket_code(t, ctx.signer) for t in tickets]
        for gate in ("east1", "east2"):
            register_gate(db, site, gate, 1, hardware={"controller_profile": "tripod-coil", "passage_timeout_s": 2.0})
    worker = IngestWorker(config, ctx.sessions, ctx.link, worker_id="cluster").start(wait=30)
    poll(lambda: ctx.publisher.flush() or None, timeout=30)  # the retained GateConfigs

    sims, agents = [], []
    # Gate east1 and the central start on n1, east2 on n2; each knows the other two nodes.
    for gate, first, others in (("east1", n1, (n2, n3)), ("east2", n2, (n3, n1))):
        sim = TurnstileSimulator("tripod-coil", transport="tcp").start()
        sim.pass_delay_s = 0.02
        home = type("Broker", (), {"host": first.host, "port": first.mqtt_port})()
        cfg = file_config(tmp_path, home, site, gate, turnstile=sim)
        cfg = msgspec.structs.replace(cfg, broker=msgspec.structs.replace(
            cfg.broker, protocol="3.1.1", failover=[n.address for n in others], resend_after_s=3.0))
        sims.append(sim)
        agents.append(GateAgent(cfg, display=ConsoleDisplay(gate, stream=io.StringIO())).start())
    try:
        for agent in agents:
            poll(lambda agent=agent: agent.active is not None, timeout=30)
        admitted = [0, 0]
        halfway = threading.Barrier(3)

        def visitors(k: int) -> None:
            for i, code in enumerate(codes[k * PER_GATE:(k + 1) * PER_GATE]):
                if i == PER_GATE // 3:
                    halfway.wait(30)
                admitted[k] += agents[k].present("qr", code).passed

        threads = [threading.Thread(target=visitors, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        halfway.wait(60)
        nats_cluster.kill(n1)  # the node of the central, its ingest and gate east1, under load
        for t in threads:
            t.join(120)
        assert admitted == [PER_GATE, PER_GATE]  # the gates decide on their own: nobody waited for the broker

        def all_stored():
            with ctx.sessions() as db:
                stored = db.scalar(select(func.count()).select_from(PassageEventRecord)
                                   .where(PassageEventRecord.site_id == site, PassageEventRecord.passed.is_(True)))
                zone = db.scalar(select(Zone).where(Zone.site_id == site, Zone.number == 1))
                drained = all(a.store.outbox_depth() == 0 for a in agents)
                return (stored, zone.entries_today) if stored >= 2 * PER_GATE and drained else None

        stored, entries = poll(all_stored, timeout=90)
        assert (stored, entries) == (2 * PER_GATE, 2 * PER_GATE)  # each passage once: none lost, none doubled
        assert agents[0].link.brokers.current != (n1.host, n1.mqtt_port)  # east1 moved
        assert worker.link.brokers.current != (n1.host, n1.mqtt_port)
    finally:
        for agent in agents:
            agent.stop()
        for sim in sims:
            sim.stop()
        worker.stop()
        ctx.close()


@pytest.mark.parametrize("bad", ["node2", "node2:0", "node2:99999", "node 2:1883", "mqtt://node2:1883"])
def test_a_failover_address_that_is_not_host_and_port_is_named_in_both_configs(tmp_path, bad):
    from central.config import ConfigError as CentralConfigError
    from central.config import load_config
    from gate_agent.config import ConfigError as GateConfigError
    from gate_agent.config import from_dict

    central_toml = tmp_path / "central.toml"
    central_toml.write_text(f'database_url = "sqlite:///x.db"\nsite = "park"\n[mqtt]\nfailover = [{json.dumps(bad)}]\n')
    with pytest.raises(CentralConfigError, match="mqtt.failover"):
        load_config(central_toml, env={})
    with pytest.raises(GateConfigError, match="broker.failover"):
        from_dict({"gate": {"id": "g1", "site": "park"}, "broker": {"failover": [bad]}}, source="gate.toml")


def test_the_rotation_goes_round_the_nodes_from_the_configured_one():
    from protocol.brokers import BrokerRotation, parse_address

    rotation = BrokerRotation("n1", 1883, ["n2:1884", "[::1]:1885"])
    assert rotation.current == ("n1", 1883)
    assert [rotation.advance() for _ in range(4)] == [("n2", 1884), ("::1", 1885), ("n1", 1883), ("n2", 1884)]
    assert BrokerRotation("only", 1883).advance() is None  # one broker: paho retries it
    assert parse_address(" broker.park.local:8883 ") == ("broker.park.local", 8883)
