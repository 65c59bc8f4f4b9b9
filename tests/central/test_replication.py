"""Replication between a park server and the head office (`central.services.replication`), each with its
own PostgreSQL database: ids that never meet, changes applied once whatever is resent, a late commit not
skipped, merges both sides reach in any order, a park server kept to its own parks, rows that will not
apply kept, counts of places from both sides' sales. The brokers and the link cut are in
tests/deploy/test_head_office_link.py; the replicator's checks of what arrives are at the end here."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import time, timedelta

import msgspec
import pytest
from sqlalchemy import func, select, text

from central.bus.bridge import bridge_config
from central.config import CentralConfig, ConfigError, KeysConfig, MqttConfig, ReplicationConfig, load_config_text
from central.context import CentralContext
from central.migrate import upgrade
from central.models import (
    BookingDay,
    Conflict,
    ReplicationApplied,
    ReplicationChange,
    ReplicationParked,
    SlotQuota,
    Ticket,
    utcnow,
)
from central.services import replication
from central.services import visitor_bookings as vb
from central.services.conflicts import resolve_conflict
from central.services.gates import ensure_site, ensure_zone, register_gate
from central.services.ingest import ingest_batch
from central.services.tickets import IssueRequest, TicketTypeSpec, define_ticket_type, issue_ticket, refund_ticket
from protocol.ids import new_event_id
from protocol.messages import PassageEvent
from tests.central.test_visitor_bookings import LI, WANG, ZHANG, party, tomorrow
from tests.support.services import create_pg_database, drop_pg_database, need, pg_admin_url, pg_reachable
from tests.support.waiting import poll

pytestmark = pytest.mark.postgres
PARK = "lakeside"


@dataclass
class Srv:
    name: str
    config: CentralConfig
    ctx: CentralContext

    @property
    def sessions(self):
        return self.ctx.sessions


def _srv(name: str, number: int, url: str, tmp_path, broker=None, **repl) -> Srv:
    from biometrics.protect import generate_key

    mqtt = MqttConfig(host=broker.host, port=broker.port, client_id=f"{name}-{uuid.uuid4().hex[:6]}") if broker \
        else MqttConfig(host="127.0.0.1", port=1, client_id=name)
    config = CentralConfig(database_url=url, site=PARK, mqtt=mqtt,
                           keys=KeysConfig(signing_key_file=str(tmp_path / f"{name}.key"), signing_key_id=number,
                                           template_key=generate_key()),
                           replication=ReplicationConfig(server=name, number=number, interval_ms=20, resend_s=1,
                                                         **repl))
    upgrade(url)
    ctx = CentralContext.create(config, mqtt=False)
    with ctx.engine.begin() as conn:
        replication.setup(conn, number)
    return Srv(name, config, ctx)


@pytest.fixture
def pair(tmp_path):
    """The head office ("ho", server 1) and the park's own server ("lake", server 2); the park set up at ho."""
    admin = pg_admin_url()
    need(pg_reachable(admin), f"PostgreSQL not reachable at {admin}")
    made = [create_pg_database(admin) for _ in range(2)]
    ho = _srv("ho", 1, made[0][0], tmp_path, parks=(f"lake:{PARK}",))
    park = _srv("lake", 2, made[1][0], tmp_path, head_office="ho", sites=(PARK,))
    with ho.sessions.begin() as db:
        ensure_site(db, PARK, name="Lakeside", timezone="Asia/Shanghai")
        ensure_zone(db, PARK, 1, name="Main", capacity=1000)
        define_ticket_type(db, PARK, TicketTypeSpec(name="Day", id=1, entries=1))
    ship(ho, park)
    yield ho, park
    for s in (ho, park):
        s.ctx.close()
    for _, name in made:
        drop_pg_database(admin, name)


def _after(dst: Srv, origin: str) -> int:
    with dst.sessions() as db:
        row = db.get(ReplicationApplied, origin)
        return row.seq if row else 0


def pending_for(src: Srv, dst: Srv, after: int | None = None) -> replication.Pending:
    with src.sessions.begin() as db:
        replication.sequence(db)
    with src.sessions() as db:
        return replication.pending(db, src.config.replication.peers()[dst.name],
                                   _after(dst, src.name) if after is None else after, 10_000)


def deliver(src: Srv, dst: Srv, batch: replication.Pending) -> replication.Applied:
    sites = dst.config.replication.peers()[src.name]
    with dst.sessions.begin() as db:
        return replication.apply(db, src.name, batch.after, batch.upto, batch.changes, dst.config.is_home,
                                 allowed_sites=set(sites) if sites is not None else None)


def ship(src: Srv, dst: Srv) -> replication.Applied:
    return deliver(src, dst, pending_for(src, dst))


def sell(s: Srv, **kw) -> Ticket:
    with s.sessions.begin() as db:
        t = issue_ticket(db, PARK, IssueRequest(ticket_type=kw.pop("ticket_type", 1),
                                                valid_from=utcnow() - timedelta(hours=1),
                                                valid_to=utcnow() + timedelta(days=1), **kw))
        db.expunge(t)
    return t


def status(s: Srv, ticket_id: int) -> str | None:
    with s.sessions() as db:
        t = db.get(Ticket, ticket_id)
        return t.status if t else None


def test_each_servers_ids_are_its_own_and_setting_up_again_changes_nothing(pair):
    ho, park = pair
    sold = [sell(ho), sell(park), sell(ho), sell(park)]
    assert [t.id % replication.STRIDE for t in sold] == [1, 2, 1, 2]
    assert all(t.id > replication.ID_FLOOR["bigint"] for t in sold)
    with park.ctx.engine.begin() as conn:
        replication.setup(conn, 2)
    again = sell(park)
    assert again.id % replication.STRIDE == 2 and again.id > sold[-1].id
    with pytest.raises(ValueError), park.ctx.engine.begin() as conn:
        replication.setup(conn, 64)


def test_a_change_applies_once_however_often_it_is_sent_and_never_past_a_gap(pair):
    ho, park = pair
    first = pending_for(ho, park)
    ticket = sell(ho)
    batch = pending_for(ho, park)
    assert any(table == "tickets" for _pos, table, _op, _row in batch.changes)
    done = deliver(ho, park, batch)
    assert done.rows >= 1 and status(park, ticket.id) == "valid"
    again = deliver(ho, park, batch)  # the acknowledgement was lost: sent again
    assert again.rows == 0 and again.applied == batch.upto
    with ho.sessions.begin() as db:
        refund_ticket(db, ticket.id, actor="clerk")
    later = pending_for(ho, park)
    skipped = replication.Pending(later.upto + 5, later.upto + 10, later.changes)  # its start went missing
    gap = deliver(ho, park, skipped)
    assert gap.gap and gap.applied == batch.upto and status(park, ticket.id) == "valid"
    deliver(ho, park, later)
    assert status(park, ticket.id) == "refunded"
    assert first.upto <= batch.after


def test_a_transaction_that_commits_late_is_not_skipped(pair):
    ho, park = pair
    slow = ho.sessions()
    slow.begin()
    window = {"valid_from": utcnow(), "valid_to": utcnow() + timedelta(days=1)}
    late = issue_ticket(slow, PARK, IssueRequest(ticket_type=1, **window))
    slow.flush()  # its change has an earlier place in the outbox than the next one
    quick = sell(ho)
    ship(ho, park)
    assert status(park, quick.id) == "valid" and status(park, late.id) is None
    slow.commit()
    slow.close()
    ship(ho, park)
    assert status(park, late.id) == "valid"


def test_an_applied_change_is_not_sent_back_and_a_sites_gate_sequence_stays_its_own(pair):
    ho, park = pair
    sell(ho)
    ship(ho, park)
    back = pending_for(park, ho)
    assert not [c for c in back.changes if c[1] == "tickets"]  # the head office's sale is not echoed
    with park.sessions.begin() as db:
        register_gate(db, PARK, "g1", 1)
    with park.sessions() as db:
        before = db.scalar(select(func.count()).select_from(ReplicationChange).where(ReplicationChange.tbl == "sites"))
        db.execute(text("UPDATE sites SET sync_seq = sync_seq + 1 WHERE id = :s"), {"s": PARK})
        db.commit()
        after = db.scalar(select(func.count()).select_from(ReplicationChange).where(ReplicationChange.tbl == "sites"))
    assert after == before  # a delta's sequence is each server's own: nothing to send
    ship(park, ho)
    with ho.sessions() as db:
        assert db.execute(text("SELECT name FROM gates WHERE site_id = :s"), {"s": PARK}).scalars().all() == ["g1"]


def _entry(park: Srv, ticket: Ticket) -> None:
    with park.sessions.begin() as db:
        ingest_batch(db, [PassageEvent(id=new_event_id(), site=PARK, gate="g1", zone=1, at=utcnow(), direction="in",
                                       credential_kind="qr", credential_ref=ticket.ref, passed=True, ticket_type=1)])


def test_a_refund_at_head_office_of_a_ticket_the_park_admitted_is_one_conflict_on_both_sides(pair):
    ho, park = pair
    with park.sessions.begin() as db:
        register_gate(db, PARK, "g1", 1)
    ticket = sell(ho, channel="ota")
    ship(ho, park)
    ship(park, ho)
    _entry(park, ticket)  # the link is down: head office does not hear of it
    with ho.sessions.begin() as db:
        refund_ticket(db, ticket.id, actor="ho-clerk", reason="asked by phone")
    up = ship(park, ho)  # the park's "used" reaches head office first: the refund stands there
    assert up.rows and status(ho, ticket.id) == "refunded"
    down = ship(ho, park)
    assert down.conflicts == 1 and status(park, ticket.id) == "refunded"
    ship(park, ho)
    for s in (ho, park):
        with s.sessions() as db:
            conflicts = db.execute(select(Conflict.event_id, Conflict.reason, Conflict.gate)).all()
        assert conflicts == [(f"refund:{ticket.ref}", replication.REFUNDED_AFTER_USE, "g1")], s.name
    assert ship(ho, park).conflicts == 0  # sent again: still one


def test_the_earliest_resolution_stands_on_both_sides(pair):
    ho, park = pair
    with park.sessions.begin() as db:
        register_gate(db, PARK, "g1", 1)
    ticket = sell(ho)
    ship(ho, park)
    _entry(park, ticket)
    with ho.sessions.begin() as db:
        refund_ticket(db, ticket.id)
    ship(ho, park)
    ship(park, ho)
    for s, who, note in ((park, "park-manager", "charged at the gate"), (ho, "ho-manager", "OTA charged back")):
        with s.sessions.begin() as db:
            (conflict,) = db.scalars(select(Conflict)).all()
            resolve_conflict(db, PARK, conflict.id, "followed_up", note, actor=who)
    ship(park, ho)
    ship(ho, park)
    seen = []
    for s in (ho, park):
        with s.sessions() as db:
            seen.append(db.execute(select(Conflict.resolved_by, Conflict.resolution_note)).one())
    assert seen[0] == seen[1] == ("park-manager", "charged at the gate")


def _batch_of(change: tuple[str, dict], pos: int) -> replication.Pending:
    table, row = change
    return replication.Pending(pos - 1, pos, [(pos, table, "U", json.dumps(row))])


def test_a_park_server_changes_only_its_own_parks_and_never_a_signing_key(pair):
    ho, park = pair
    with ho.sessions.begin() as db:
        ensure_site(db, "elsewhere", name="Another park")
        define_ticket_type(db, "elsewhere", TicketTypeSpec(name="Day", id=9, entries=1))
    after = _after(ho, "lake")
    forged = {"id": 9, "site_id": "elsewhere", "name": "Free for all", "entries": None, "zones": [], "weekdays": [],
              "same_person": False, "anti_passback": False, "min_gap_s": 0, "slot_grace_min": 15, "real_name": False,
              "validity_days": 365, "price": 0, "min_headcount": 1, "max_headcount": 255, "active": True,
              "staff_check": False, "id_face": False, "bind_finger": False, "created_at": utcnow().isoformat()}
    result = deliver(park, ho, replication.Pending(after, after + 2, [
        (after + 1, "ticket_types", "U", json.dumps(forged)),
        (after + 2, "signing_keys", "U", json.dumps({"key_id": 77, "public": "\\x" + "00" * 32, "grace_s": 0,
                                                      "created_at": utcnow().isoformat(), "retired_at": None}))]))
    assert result.parked == 2 and result.applied == after + 2
    with ho.sessions() as db:
        assert db.execute(text("SELECT name FROM ticket_types WHERE id = 9")).scalar() == "Day"
        assert db.execute(text("SELECT count(*) FROM signing_keys WHERE key_id = 77")).scalar() == 0
        errors = db.scalars(select(ReplicationParked.error).order_by(ReplicationParked.seq)).all()
    assert "not the home server of park 'elsewhere'" in errors[0] and "head office" in errors[1]
    # a table that is not replicated (the head office's staff and their roles) is never written from outside
    sneaky = deliver(park, ho, replication.Pending(after + 2, after + 3, [
        (after + 3, "staff_users", "U", json.dumps({"id": 1, "username": "admin", "role": "admin"}))]))
    assert sneaky.parked == 1 and sneaky.applied == after + 3
    with ho.sessions() as db:
        assert "not replicated here" in db.scalar(select(ReplicationParked.error).order_by(ReplicationParked.id.desc()))


def test_a_row_this_database_refuses_is_kept_and_the_rest_of_the_batch_applies(pair):
    ho, park = pair
    day = tomorrow().date()
    for s in (ho, park):  # both set the same slot while apart: the database allows one per start time
        with s.sessions.begin() as db:
            vb.set_slot(db, PARK, "manager", day=day, start=time(9), end=time(11), capacity=10)
    ticket = sell(ho)
    result = ship(ho, park)
    assert result.parked == 1 and status(park, ticket.id) == "valid"
    with park.sessions() as db:
        (parked,) = db.scalars(select(ReplicationParked)).all()
    assert parked.tbl == "slot_quotas" and "uq_slot_quotas_site_start" in parked.error and parked.row["capacity"] == 10


def test_places_booked_on_both_sides_count_on_both_sides(pair):
    ho, park = pair
    day = tomorrow().date()
    with ho.sessions.begin() as db:
        define_ticket_type(db, PARK, TicketTypeSpec(name="Booked visit", id=7, real_name=True))
        vb.update_settings(db, PARK, "manager", ticket_type_id=7, days_ahead=7, party_max=5, cancel_before_min=60,
                           close_before_min=0, retention_days=30, face_entry=False)
        slot = vb.set_slot(db, PARK, "manager", day=day, start=time(9), end=time(11), capacity=10).id
    ship(ho, park)

    def book(s: Srv, persons, channel):
        with s.sessions.begin() as db:
            return vb.make_booking(db, PARK, vb.BookingRequest(quota_id=slot, persons=persons, phone="13800138000",
                                                               consent=True, channel=channel))

    online = book(ho, party(ZHANG, LI), "web")
    book(park, party(WANG), "desk")  # the park's desk, while the line is down

    def counts(s: Srv):
        with s.sessions() as db:
            return db.get(SlotQuota, slot).booked, db.scalar(select(BookingDay.booked).where(BookingDay.day == day))

    assert counts(ho) == (2, 2) and counts(park) == (1, 1)
    ship(ho, park)
    ship(park, ho)
    ship(ho, park)
    assert counts(ho) == counts(park) == (3, 3)
    with ho.sessions.begin() as db:
        vb.cancel_booking(db, PARK, db.get(vb.Booking, online.id), actor="visitor")
    ship(ho, park)
    ship(park, ho)
    assert counts(ho) == counts(park) == (1, 1)
    with park.sessions() as db:
        assert not db.scalars(select(ReplicationParked)).all()


def on_broker(pair, broker) -> tuple[CentralConfig, CentralConfig, str]:
    """The pair's configs on a real broker, under server names of this test's own (the broker is shared):
    (head office's, the park's, the names' suffix)."""
    from dataclasses import replace

    ho, park = pair
    names = uuid.uuid4().hex[:6]
    mqtt = MqttConfig(host=broker.host, port=broker.port, client_id=f"r{names}")
    ho_cfg = replace(ho.config, mqtt=replace(mqtt, client_id=mqtt.client_id + "h"),
                     replication=replace(ho.config.replication, server=f"ho{names}", parks=(f"lake{names}:{PARK}",)))
    park_cfg = replace(park.config, mqtt=replace(mqtt, client_id=mqtt.client_id + "p"),
                       replication=replace(park.config.replication, server=f"lake{names}", head_office=f"ho{names}"))
    return ho_cfg, park_cfg, names


# --- the replicator: what arrives is checked -------------------------------------------------------


def test_the_replicator_ignores_what_is_not_a_peers_batch_and_goes_on(pair, mosquitto):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from central.bus.replicator import Replicator, changes_topic

    ho, park = pair
    ho_cfg, park_cfg, topic_root = on_broker(pair, mosquitto)
    replicators = [Replicator(ho_cfg, ho.sessions).start(), Replicator(park_cfg, park.sessions).start()]
    try:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"x{uuid.uuid4().hex[:6]}")
        client.connect(mosquitto.host, mosquitto.port)
        client.loop_start()
        to_park = changes_topic(f"lake{topic_root}", f"ho{topic_root}")
        for topic, payload in ((to_park, b"\xff not json"), (to_park, b'{"origin": "ho", "after": "x"}'),
                               (changes_topic(f"lake{topic_root}", "stranger"), b"{}"),
                               (to_park, msgspec.json.encode({"origin": "someone-else", "after": 0, "upto": 9,
                                                              "changes": []}))):
            client.publish(topic, payload, qos=1).wait_for_publish(10)
        client.disconnect()
        client.loop_stop()
        poll(lambda: replicators[1].stats["refused"] >= 4, 20, what="the four messages refused")
        ticket = sell(ho)
        poll(lambda: status(park, ticket.id) == "valid", 20, what="a real sale after them")
        assert replicators[1].alive
    finally:
        for r in replicators:
            r.stop()


# --- configuration and the bridge ----------------------------------------------------------------------


@pytest.mark.parametrize(("toml", "says"), [
    ('database_url = "sqlite:///x.db"\n[replication]\nserver = "ho"\nnumber = 1\nparks = ["a"]', "PostgreSQL"),
    ('[replication]\nserver = "ho"\nnumber = 64\nparks = ["a"]', "1-63"),
    ('[replication]\nserver = "ho"\nnumber = 1\nparks = ["a"]\nhead_office = "x"', "one of the two"),
    ('[replication]\nserver = "ho"\nnumber = 1', "one of the two"),
    ('[replication]\nserver = "a b"\nnumber = 1\nhead_office = "ho"', "replication.server"),
    ('[replication]\nserver = "ho"\nnumber = 1\nparks = ["ho"]', "its own peer"),
    ('[replication]\nhead_office = "ho"', "replication.server names this server"),
])
def test_a_replication_setting_that_cannot_work_is_named(toml, says):
    if not toml.startswith("database_url"):
        toml = 'database_url = "postgresql+psycopg://x@/y"\n' + toml
    with pytest.raises(ConfigError, match=says):
        load_config_text(toml, "central.toml", env={})


def test_the_head_offices_parks_and_a_park_servers_home():
    ho = load_config_text('database_url = "postgresql+psycopg://x@/y"\nsite = "hq"\n[replication]\nserver = "ho"\n'
                          'number = 1\nparks = ["north:n1+n2", "south"]', "ho.toml", env={})
    assert ho.replication.peers() == {"north": ("n1", "n2"), "south": ("south",)}
    assert not ho.is_home("n1") and not ho.is_home("south") and ho.is_home("hq")
    park = load_config_text('database_url = "postgresql+psycopg://x@/y"\nsite = "n1"\n[replication]\n'
                            'server = "north"\nnumber = 2\nhead_office = "ho"', "park.toml", env={})
    assert park.replication.peers() == {"ho": None} and park.is_home("n1") and not park.is_home("n2")


def test_the_park_brokers_bridge_carries_the_replication_both_ways_and_no_gate_traffic():
    """A park server's gates are its own: forwarded to head office as well, each passage would count twice."""
    from pathlib import Path

    topics_ = [line for line in bridge_config("north", "ho.example.cn", 8883, replication=("north", "ho")).splitlines()
               if line.startswith("topic ")]
    assert topics_ == ["topic gates/v1/repl/ho/+/north out 1", "topic gates/v1/repl/north/# in 1"]
    with pytest.raises(ValueError):
        bridge_config("north", "ho.example.cn", 8883, replication=("north", "ho/#"))
    with pytest.raises(ValueError):
        bridge_config("north", "ho.example.cn", 8883, replication=("north", "ho"), manage_from_head_office=True)
    # the shipped example says the same as the command (its replication lines commented out)
    example = Path(__file__).resolve().parents[2].joinpath("config", "mosquitto", "bridge-to-head-office.conf")
    lines = example.read_text().replace("PARK_SITE_ID", "north").splitlines()
    managed = [line for line in bridge_config("north", "h", 1, manage_from_head_office=True).splitlines()
               if line.startswith("topic ")]
    assert sorted(line for line in lines if line.startswith("topic ")) == sorted(managed)
    assert [line[2:] for line in lines if line.startswith("# topic ")] == [
        t.replace("/ho/", "/HEAD_OFFICE/").replace("north", "PARK_SERVER") for t in topics_]


def test_head_office_leaves_a_park_servers_gates_alerts_and_days_to_it(pair):
    from central.config import AlertsConfig
    from central.models import Alert, DailyReport, Gate
    from central.services import alerting
    from central.services.jobs import heartbeat_check, roll_over_all

    ho, park = pair
    with park.sessions.begin() as db:
        register_gate(db, PARK, "g1", 1)
        db.execute(text("UPDATE gates SET online = true, last_seen_at = now() - interval '1 hour'"))
    with park.sessions.begin() as db:
        assert [g.name for g in heartbeat_check(db, 60)] == ["g1"]  # the park hears its gates: g1 is silent
        alerting.check(db, AlertsConfig())
    ship(park, ho)
    remote = ho.config.replication.remote_sites()
    assert remote == {PARK}
    later = utcnow() + timedelta(days=2)
    with ho.sessions.begin() as db:
        db.execute(text("UPDATE gates SET online = true"))  # as the park said before; head office must not judge
        assert heartbeat_check(db, 60, skip=remote) == []
        alerting.check(db, AlertsConfig(), skip=remote)
        assert roll_over_all(db, later, skip=remote) == []
    with ho.sessions() as db:
        assert db.scalar(select(Gate.online)) is True
        alerts = db.execute(select(Alert.kind, Alert.resolved_at)).all()
        assert alerts == [("gate_down", None)]  # the park's, still open: only the park clears it
        assert not db.scalars(select(DailyReport)).all()


@pytest.mark.parametrize(("language", "linked", "silent", "head_office"), [
    ("en", "Linked", "No word for over a minute", "Head office"),
    ("zh-CN", "已连接", "超过一分钟没有消息", "总部"),
])
def test_managers_see_each_link_in_their_language(pair, language, linked, silent, head_office):
    from central.app import create_app
    from central.services.users import create_user
    from tests.web.conftest import Browser

    ho, park = pair
    sell(park)
    ship(park, ho)
    ship(ho, park)
    for s in (ho, park):
        with s.sessions.begin() as db:
            create_user(db, "head", "manager", "tea by the west lake", all_sites=True, one_time=False)

    def page(s: Srv) -> str:
        browser = Browser(create_app(s.config, context=s.ctx).test_client())
        browser.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
        browser.get("/login")
        assert browser.post("/login", {"username": "head", "password": "tea by the west lake"}).status_code == 302
        return browser.get("/parks/").get_data(as_text=True)

    at_ho = page(ho)
    assert 'data-peer="lake" data-up="yes"' in at_ho and linked in at_ho
    assert head_office in page(park)  # the park server's view: its link with head office
    with ho.sessions.begin() as db:
        db.execute(text("UPDATE repl_applied SET applied_at = now() - interval '5 minutes'"))
        db.execute(text("UPDATE repl_peers SET acked_at = now() - interval '5 minutes'"))
    later = page(ho)
    assert 'data-peer="lake" data-up="no"' in later and silent in later


def test_batches_lost_on_the_way_are_sent_again(pair, mosquitto):
    """Head office's replicator sends while nobody at the park listens (a broker that lost its queue):
    the park's server, once there, gets every change all the same, once."""
    from central.bus.replicator import Replicator

    ho, park = pair
    ho_cfg, park_cfg, names = on_broker(pair, mosquitto)
    sender = Replicator(ho_cfg, ho.sessions).start()
    receiver = None
    try:
        sold = [sell(ho) for _ in range(3)]
        poll(lambda: sender.stats["sent_batches"] >= 1, 20, what="head office sending into the void")
        receiver = Replicator(park_cfg, park.sessions).start()
        poll(lambda: all(status(park, t.id) == "valid" for t in sold), 30, what="every sale at the park")
        with park.sessions() as db:
            assert db.scalar(select(func.count()).select_from(Ticket).where(Ticket.id.in_([t.id for t in sold]))) == 3
    finally:
        for r in (sender, receiver):
            if r is not None:
                r.stop()


def test_the_example_configs_replication_blocks_are_valid():
    """config/central.example.toml shows a park server's and the head office's [replication]: both load."""
    import re
    from pathlib import Path

    text_ = Path(__file__).resolve().parents[2].joinpath("config", "central.example.toml").read_text()
    base = "\n".join(line for line in text_.splitlines() if not line.startswith("#"))
    blocks = re.findall(r"^# \[replication\]\n((?:# \w+ = .*\n)+)", text_, re.M)
    assert len(blocks) == 2
    roles = []
    for block in blocks:
        body = "\n".join(line[2:] for line in block.splitlines())
        config = load_config_text(base + "\n[replication]\n" + body, "central.example.toml", env={})
        roles.append("park" if config.replication.head_office else "head office")
    assert roles == ["park", "head office"]


def test_head_offices_ingest_keeps_a_park_servers_gate_traffic_apart(pair, mosquitto):
    """A bridge set up the old way forwards the park's passages to head office, which already gets them
    from the park server: they are parked with the reason, never counted a second time."""
    from dataclasses import replace

    from central.bus.ingest_worker import IngestWorker
    from central.models import ParkedMessage, PassageEventRecord
    from tests.deploy.helpers import publish_passages

    ho, _park = pair
    config = replace(ho.config, mqtt=MqttConfig(host=mosquitto.host, port=mosquitto.port,
                                                client_id=f"i{uuid.uuid4().hex[:6]}"))
    config = replace(config, ingest=replace(config.ingest, group=f"g{uuid.uuid4().hex[:6]}"))
    worker = IngestWorker(config, ho.sessions, worker_id="ho").start()
    try:
        publish_passages(mosquitto, PARK, "g1", 3)
        assert worker.wait_idle(timeout=30, quiet=1.0)
        with ho.sessions() as db:
            errors = db.scalars(select(ParkedMessage.error).where(ParkedMessage.topic.contains(f"/{PARK}/"))).all()
            stored = db.scalar(select(func.count()).select_from(PassageEventRecord))
    finally:
        worker.stop()
    assert len(errors) == 3 and all("has its own server" in e for e in errors) and stored == 0


@pytest.mark.mosquitto
def test_a_park_servers_bridge_on_head_offices_broker_sends_only_its_own_replication(pair, tmp_path, mosquitto_factory):
    import os
    import re

    from central.cli import _bridge_credentials
    from central.services.mosquitto import write_mosquitto_files
    from protocol import topics
    from tests.security.test_mqtt_acl import NOT_AUTHORIZED, Client

    ho, park = pair
    with park.sessions.begin() as db:
        _gate, cred = register_gate(db, PARK, "g1", 1)
    ship(park, ho)  # head office holds the park's gate row, with its MQTT user
    printed = _bridge_credentials(ho.ctx, ho.config, "lake")
    password = re.search(r"password (\S+) \(shown once\)", printed).group(1)
    with pytest.raises(ConfigError):
        _bridge_credentials(ho.ctx, ho.config, "nobody")
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    with ho.sessions() as db:
        assert write_mosquitto_files(db, ho.config, passwd, acl) == 0  # the park's gate is the park broker's
    assert password not in passwd.read_text() and cred.username not in acl.read_text()
    run_as = "user root\n" if os.geteuid() == 0 else ""
    broker = mosquitto_factory(extra_config=f"{run_as}allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n")
    bridge = Client(broker, "bridge-lake", password)
    try:
        assert not bridge.connack.is_failure
        assert bridge.publish("gates/v1/repl/ho/changes/lake") < 0x80
        assert bridge.publish("gates/v1/repl/ho/ack/lake") < 0x80
        for forged in ("gates/v1/repl/ho/changes/south", "gates/v1/repl/south/changes/ho",
                       topics.event(PARK, "g1")):
            assert bridge.publish(forged) == NOT_AUTHORIZED, forged
        assert bridge.subscribe("gates/v1/repl/lake/#") == 1
    finally:
        bridge.close()
    wrong = Client(broker, "bridge-lake", "not the password")
    try:
        assert wrong.connack.is_failure
    finally:
        wrong.close()


def test_head_offices_real_name_sales_reach_the_parks_gates_and_plain_codes_need_nothing(pair):
    from central.models import SyncChange
    from protocol.messages import Delta, decode

    ho, park = pair
    with ho.sessions.begin() as db:
        define_ticket_type(db, PARK, TicketTypeSpec(name="Real name", id=7, real_name=True))
    plain = sell(ho)
    named = sell(ho, ticket_type=7, holder_name="Zhang San", id_number=ZHANG)
    ship(ho, park)
    with park.sessions() as db:
        deltas = [decode(Delta, p) for p in db.scalars(select(SyncChange.payload).where(SyncChange.site_id == PARK))]
        digest = db.get(Ticket, named.id).id_digest
    sent = {c.ticket_id: c for d in deltas for c in d.changes if hasattr(c, "ticket_id")}
    assert named.id in sent and sent[named.id].id_digest == digest and digest
    assert plain.id not in sent  # its signed code passes the gates by itself


def test_head_office_does_not_configure_a_park_servers_gates_and_says_where_to(pair):
    from central.app import create_app
    from central.services.users import create_token, create_user
    from tests.web.conftest import Browser

    ho, park = pair
    with park.sessions.begin() as db:
        register_gate(db, PARK, "g1", 1)
    ship(park, ho)
    with ho.sessions.begin() as db:
        _t, token = create_token(db, "ho-ops", "admin")
        create_user(db, "tech", "technician", "tea by the west lake", all_sites=True, one_time=False)
    app = create_app(ho.config, context=ho.ctx)
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    for method, url, body in (("post", f"/api/v1/gates/g1/mode?site={PARK}", {"mode": "locked"}),
                              ("post", f"/api/v1/gates?site={PARK}", {"name": "g2", "zone": 1}),
                              ("post", f"/api/v1/gates/g1/command?site={PARK}", {"kind": "open_once"})):
        res = getattr(api, method)(url, json=body)
        assert res.status_code == 409 and res.get_json()["error"] == "gates_elsewhere", (url, res.get_json())
        assert "(lake)" in res.get_json()["detail"]
    assert api.get(f"/api/v1/gates?site={PARK}").status_code == 200  # looking is fine
    browser = Browser(app.test_client())
    browser.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
    browser.get("/login")
    assert browser.post("/login", {"username": "tech", "password": "tea by the west lake"}).status_code == 302
    browser.get("/", follow_redirects=True)  # the session is new: so is its CSRF token
    browser.post("/parks/switch", {"site": PARK})
    page = browser.post("/gates/g1/mode", {"mode": "locked"}, follow_redirects=True).get_data(as_text=True)
    assert "由该景区自己的服务器（lake）管理" in page
    with ho.sessions() as db:
        assert db.execute(text("SELECT mode FROM gates WHERE name = 'g1'")).scalar() == "normal"


def test_a_link_silent_too_long_is_an_alert_on_both_sides_and_recovers(pair):
    from central.config import AlertsConfig
    from central.models import Alert
    from central.services import alerting

    ho, park = pair
    sell(park)
    ship(park, ho)
    ship(ho, park)
    quiet = AlertsConfig(link_quiet_s=60)
    sides = ((ho, ho.config.replication.remote_sites(), ()), (park, set(), (PARK,)))

    def check(s, skip, home):
        with s.sessions.begin() as db:
            alerting.check(db, quiet, skip=skip, peers=s.config.replication.peers(), home=home)
        with s.sessions() as db:
            return db.execute(select(Alert.site_id, Alert.gate, Alert.resolved_at)
                              .where(Alert.kind == "link_down")).all()

    for s, skip, home in sides:
        assert check(s, skip, home) == []  # heard from a moment ago
        with s.sessions.begin() as db:
            db.execute(text("UPDATE repl_applied SET applied_at = now() - interval '10 minutes'"))
            db.execute(text("UPDATE repl_peers SET acked_at = now() - interval '10 minutes'"))
    (at_ho,), (at_park,) = check(ho, *sides[0][1:]), check(park, *sides[1][1:])
    assert at_ho[:2] == (PARK, "lake") and at_park[:2] == (PARK, "ho") and at_ho[2] is None is at_park[2]
    with ho.sessions() as db:
        alert = db.scalar(select(Alert).where(Alert.kind == "link_down"))
        words = alerting.alert_text(alert, "zh", "Asia/Shanghai")
    assert "没有收到服务器 lake" in words and PARK in words
    ship(park, ho)
    ship(ho, park)  # the link is back
    resolved = {(s.name, gate): at for s, skip, home in sides for _site, gate, at in check(s, skip, home)}
    assert resolved[("ho", "lake")] is not None and resolved[("lake", "ho")] is not None
    ship(park, ho)  # the park's own alert about head office travels up, resolved: it is the park's to clear
    assert {gate: at is not None for _site, gate, at in check(ho, *sides[0][1:])} == {"lake": True, "ho": True}


def test_a_server_restored_from_a_backup_gets_again_what_it_lost_and_its_new_changes_count(pair, mosquitto):
    """The park's database is restored from a backup taken before head office's last sales reached it and
    before its own last desk sales went up: its replicator (started as `park-central replicate` starts
    it) gets head office's sales again, a seed at head office gives it back its own, and the changes it
    makes from then on are not mistaken at head office for ones it already holds."""
    from central.bus.replicator import Replicator

    ho, park = pair
    ho_cfg, park_cfg, names = on_broker(pair, mosquitto)
    sender = Replicator(ho_cfg, ho.sessions).start()
    receiver = Replicator(park_cfg, park.sessions).start()
    try:
        first = sell(ho)
        poll(lambda: status(park, first.id) == "valid", 30, what="the first sale at the park")
        with park.sessions() as db:  # the backup is taken here
            applied = db.get(ReplicationApplied, f"ho{names}").seq
            position = db.execute(text("SELECT last_value FROM repl_pos")).scalar()
            confirmed = db.execute(text("SELECT acked_seq FROM repl_peers")).scalar()
        later = [sell(ho) for _ in range(3)]
        desk = [sell(park) for _ in range(5)]
        poll(lambda: all(status(park, t.id) == "valid" for t in later), 30, what="the later sales at the park")
        poll(lambda: all(status(ho, t.id) == "valid" for t in desk), 30, what="the park's sales at head office")
        receiver.stop()
        with park.sessions.begin() as db:  # the restore: the park's database as it was at the backup
            db.execute(text("DELETE FROM tickets WHERE id = ANY(:ids)"), {"ids": [t.id for t in later + desk]})
            db.execute(text("DELETE FROM repl_outbox WHERE pos > :p OR pos IS NULL"), {"p": position})
            db.execute(text("SELECT setval('repl_pos', :p)"), {"p": position})
            db.execute(text("UPDATE repl_applied SET seq = :s"), {"s": applied})
            db.execute(text("UPDATE repl_peers SET acked_seq = :c"), {"c": confirmed})
        with park.ctx.engine.begin() as conn:
            replication.setup(conn, 2)
        receiver = Replicator(park_cfg, park.sessions).start()
        poll(lambda: all(status(park, t.id) == "valid" for t in later), 60, what="head office's sales again")
        after_restore = sell(park)
        poll(lambda: status(ho, after_restore.id) == "valid", 30, what="the park's new sale at head office")
        with ho.sessions.begin() as db:
            replication.seed(db, [PARK], tables=["tickets"])  # what the park had sent, back to it
        poll(lambda: all(status(park, t.id) == "valid" for t in desk), 30, what="the park's own sales back")
    finally:
        sender.stop()
        receiver.stop()


def test_a_row_changed_twice_in_one_batch_applies_as_its_last_change(pair):
    ho, park = pair
    ticket = sell(ho)
    with ho.sessions.begin() as db:
        refund_ticket(db, ticket.id)
    batch = pending_for(ho, park)
    assert [c[1] for c in batch.changes].count("tickets") == 2  # its sale and its refund, one batch
    done = deliver(ho, park, batch)
    assert (done.parked, status(park, ticket.id)) == (0, "refunded")
