"""Two parks and a head office, each with its own database and broker; one park's link is cut.

Real parts throughout: three PostgreSQL databases, three Mosquitto brokers, each park broker bridged to
head office's (one of them through a link the test cuts), the park servers' ingest workers fed by
gate-like MQTT clients, and a replicator per server (`central.bus.replicator`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select

from central.bus.bridge import bridge_config
from central.bus.ingest_worker import IngestWorker
from central.bus.replicator import Replicator
from central.config import CentralConfig, IngestConfig, KeysConfig, MqttConfig, ReplicationConfig
from central.context import CentralContext
from central.migrate import upgrade
from central.models import (
    Conflict,
    CredentialUsage,
    ParkedMessage,
    PassageEventRecord,
    ReplicationParked,
    SigningKey,
    SyncChange,
    Ticket,
    Zone,
    utcnow,
)
from central.services import replication
from central.services.conflicts import resolve_conflict
from central.services.gates import ensure_site, ensure_zone, register_gate
from central.services.tickets import (
    IssueRequest,
    TicketTypeSpec,
    define_ticket_type,
    issue_ticket,
    refund_ticket,
    ticket_code,
)
from protocol.ids import new_event_id
from protocol.messages import PassageEvent
from protocol.ticket_code import KeyRing, PublicKey
from tests.deploy.helpers import publish_events
from tests.support.proxy import CuttableLink
from tests.support.services import create_pg_database, drop_pg_database, pg_admin_url, pg_reachable
from tests.support.waiting import poll

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.postgres]
NORTH, SOUTH = "north", "south"


@dataclass
class Server:
    name: str
    config: CentralConfig
    ctx: CentralContext
    broker: object
    replicator: Replicator | None = None
    ingest: IngestWorker | None = None

    def rows(self, model, *where):
        with self.ctx.sessions() as db:
            return db.scalars(select(model).where(*where)).all()


def _server(name: str, number: int, site: str, broker, db_url: str, tmp_path, **repl) -> Server:
    from biometrics.protect import generate_key

    config = CentralConfig(
        database_url=db_url, site=site,
        mqtt=MqttConfig(host=broker.host, port=broker.port, client_id=f"{name}-{uuid.uuid4().hex[:6]}"),
        keys=KeysConfig(signing_key_file=str(tmp_path / f"{name}.key"), signing_key_id=number,
                        template_key=generate_key()),
        ingest=IngestConfig(batch_size=200, batch_ms=30, group=f"g{uuid.uuid4().hex[:8]}"),
        replication=ReplicationConfig(server=name, number=number, interval_ms=50, resend_s=2, **repl),
    )
    upgrade(db_url)
    ctx = CentralContext.create(config, mqtt=False)
    with ctx.engine.begin() as conn:
        replication.setup(conn, number)
    return Server(name, config, ctx, broker)


def _pass(broker, site: str, gate: str, refs: list[str], ticket_type: int | None = 1) -> list[str]:
    """A park's gate reports entries (QoS 1, every PUBACK awaited); "" is a free entry."""
    return publish_events(broker, site, gate, [
        PassageEvent(id=new_event_id(), site=site, gate=gate, zone=1, at=utcnow(), direction="in",
                     credential_kind="qr" if ref else "none", credential_ref=ref, passed=True,
                     mode="normal" if ref else "free", ticket_type=ticket_type if ref else None) for ref in refs])


def _sell(server: Server, site: str, channel: str) -> Ticket:
    with server.ctx.sessions.begin() as db:
        request = IssueRequest(ticket_type=1 if site == NORTH else 2, valid_from=utcnow() - timedelta(hours=1),
                               valid_to=utcnow() + timedelta(days=1), channel=channel)
        ticket = issue_ticket(db, site, request)
        db.expunge(ticket)
    return ticket


def _same(a: Server, b: Server, site: str) -> dict:
    """What both servers hold of one park: passages, tickets, usage, counts, conflicts."""
    def view(s: Server):
        with s.ctx.sessions() as db:
            events = select(PassageEventRecord.event_id).where(PassageEventRecord.site_id == site)
            return {
                "passages": set(db.scalars(events)),
                "tickets": set(db.execute(select(Ticket.id, Ticket.status).where(Ticket.site_id == site)).all()),
                "usage": set(db.execute(select(CredentialUsage.ref, CredentialUsage.entries)
                                        .where(CredentialUsage.site_id == site)).all()),
                "counts": set(db.execute(select(Zone.number, Zone.inside, Zone.entries_today)
                                         .where(Zone.site_id == site)).all()),
                "conflicts": set(db.execute(select(Conflict.event_id, Conflict.reason, Conflict.resolution)
                                            .where(Conflict.site_id == site)).all()),
            }
    mine, theirs = view(a), view(b)
    return mine if mine == theirs else {}


@pytest.fixture
def three_databases():
    admin = pg_admin_url()
    from tests.support.services import need

    need(pg_reachable(admin), f"PostgreSQL not reachable at {admin}")
    made = [create_pg_database(admin) for _ in range(3)]
    yield [url for url, _ in made]
    for _, name in made:
        drop_pg_database(admin, name)


def test_a_park_cut_off_from_head_office_goes_on_and_both_agree_when_the_link_returns(
        three_databases, tmp_path, mosquitto_factory):
    ho_db, north_db, south_db = three_databases
    ho_broker = mosquitto_factory(persistence=True)
    line = CuttableLink(ho_broker.host, ho_broker.port)  # north's slow line to head office
    north_broker = mosquitto_factory(persistence=True, extra_config=bridge_config(
        NORTH, "127.0.0.1", line.port, restart_timeout=(1, 2), replication=("north", "ho")))
    south_broker = mosquitto_factory(persistence=True, extra_config=bridge_config(
        SOUTH, "127.0.0.1", ho_broker.port, restart_timeout=(1, 2), replication=("south", "ho")))

    ho = _server("ho", 1, NORTH, ho_broker, ho_db, tmp_path, parks=("north", "south"))
    north = _server("north", 2, NORTH, north_broker, north_db, tmp_path, head_office="ho")
    south = _server("south", 3, SOUTH, south_broker, south_db, tmp_path, head_office="ho")
    servers = (ho, north, south)
    try:
        # Head office sets the parks up; the park servers receive them.
        with ho.ctx.sessions.begin() as db:
            for site in (NORTH, SOUTH):
                ensure_site(db, site, name=site.title(), timezone="Asia/Shanghai")
                ensure_zone(db, site, 1, name="Main", capacity=10_000)
                define_ticket_type(db, site, TicketTypeSpec(name="Day", id=1 if site == NORTH else 2, entries=1))
        for server in servers:
            server.replicator = Replicator(server.config, server.ctx.sessions).start()
        # head office's own ingest runs too: no park gate's passage may reach it but through the replication
        ho.ingest = IngestWorker(ho.config, ho.ctx.sessions, worker_id="ho").start()
        for park, site in ((north, NORTH), (south, SOUTH)):
            poll(lambda park=park, site=site: park.rows(Zone, Zone.site_id == site), 30, what=f"{site} set up")
            with park.ctx.sessions.begin() as db:
                register_gate(db, site, "g1", 1)
            park.ingest = IngestWorker(park.config, park.ctx.sessions, worker_id=park.name).start()
        poll(lambda: ho.rows(SigningKey, SigningKey.key_id == 1) and north.rows(SigningKey, SigningKey.key_id == 1),
             30, what="head office's signing key at north")
        assert not ho.rows(SigningKey, SigningKey.key_id == 2), "a park server's key is not the head office's to trust"

        # Linked: sales both ways, the park's passages up.
        online = _sell(ho, NORTH, "web")
        desk = _sell(north, NORTH, "box_office")
        assert online.id % replication.STRIDE == 1 and desk.id % replication.STRIDE == 2  # each server's ids
        used_then_refunded = _sell(ho, NORTH, "ota")
        poll(lambda: north.rows(Ticket, Ticket.id == used_then_refunded.id), 30, what="head office's sales at north")
        _pass(north_broker, NORTH, "g1", [online.ref, "", ""])
        poll(lambda: _same(ho, north, NORTH).get("passages", set()).__len__() == 3, 30, what="north's passages up")

        # The line is cut (an hour on a real park; the mechanism is the same for seconds).
        line.cut()
        during_park = _pass(north_broker, NORTH, "g1", [used_then_refunded.ref, desk.ref] + [""] * 40)
        while_cut = _sell(north, NORTH, "box_office")
        with ho.ctx.sessions.begin() as db:  # head office does not know the ticket was used: it refunds
            refund_ticket(db, used_then_refunded.id, actor="ho-clerk", reason="visitor asked by phone")
        sold_meanwhile = _sell(ho, NORTH, "web")
        # its signed code passes north's gates, which hold head office's public key
        with north.ctx.sessions() as db:
            ring = KeyRing([PublicKey(k.key_id, k.public) for k in db.scalars(select(SigningKey))])
        with ho.ctx.sessions() as db:
            code = ticket_code(db.get(Ticket, sold_meanwhile.id), ho.ctx.signer)
        assert ring.verify(code).ticket_id == sold_meanwhile.id
        admitted_meanwhile = _pass(north_broker, NORTH, "g1", [sold_meanwhile.ref])
        # south goes on replicating while north is cut off
        south_sale = _sell(south, SOUTH, "box_office")
        south_passages = _pass(south_broker, SOUTH, "g1", [south_sale.ref, ""], ticket_type=2)
        poll(lambda: len(_same(ho, south, SOUTH).get("passages", ())) == 2, 30, what="south's passages at head office")
        assert north.ingest.wait_idle(timeout=30, quiet=1.0)
        time.sleep(2)  # the replicators try (and fail) to get through meanwhile
        assert not ho.rows(Ticket, Ticket.id == while_cut.id)
        assert not north.rows(Ticket, Ticket.id == sold_meanwhile.id)
        assert not ho.rows(PassageEventRecord, PassageEventRecord.event_id == during_park[0])

        line.restore()
        agreed = poll(lambda: _same(ho, north, NORTH) if len(_same(ho, north, NORTH).get("conflicts", ())) == 1
                      and len(_same(ho, north, NORTH)["passages"]) == 3 + 42 + 1 else None, 60,
                      what="north and head office agree")
        assert {e for e in agreed["passages"]} >= set(during_park) | set(admitted_meanwhile)
        tickets = dict(agreed["tickets"])
        assert tickets[used_then_refunded.id] == "refunded" and tickets[while_cut.id] == "valid"
        assert sold_meanwhile.id in tickets
        # every passage counted once: the 3 + 42 before, and the one of the ticket sold meanwhile once known
        assert agreed["counts"] == {(1, 46, 46)}
        assert dict(agreed["usage"])[sold_meanwhile.ref] == 1
        (conflict,) = agreed["conflicts"]
        assert conflict[1] == replication.REFUNDED_AFTER_USE and conflict[2] is None
        # north's gates learn the refund in a delta
        with north.ctx.sessions() as db:
            kinds = db.scalars(select(SyncChange.payload).where(SyncChange.site_id == NORTH)).all()
        assert any(str(used_then_refunded.id).encode() in p and b"refunded" in p for p in kinds)

        # A manager at head office resolves the conflict; the park holds the decision too.
        with ho.ctx.sessions.begin() as db:
            row = db.scalar(select(Conflict).where(Conflict.site_id == NORTH))
            resolve_conflict(db, NORTH, row.id, "followed_up", "OTA charged back the refund", actor="ho-manager")
        resolved = poll(lambda: [c for c in north.rows(Conflict, Conflict.site_id == NORTH) if c.resolved_at], 30,
                        what="the resolution at north")
        assert resolved[0].resolved_by == "ho-manager" and resolved[0].resolution_note == "OTA charged back the refund"
        # nothing stuck, nothing refused, south untouched by north's rows
        for server in servers:
            assert not server.rows(ReplicationParked), server.name
            assert not server.rows(ParkedMessage), server.name
        assert ho.ingest.stats.received == 0  # the bridges carry no gate traffic to head office
        assert not south.rows(Ticket, Ticket.site_id == NORTH)
        assert set(south_passages) <= {e for e in _same(ho, south, SOUTH)["passages"]}
    finally:
        for server in servers:
            for part in (server.ingest, server.replicator):
                if part is not None:
                    part.stop()
            server.ctx.close()
        line.close()

