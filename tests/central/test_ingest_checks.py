"""The central checks each fact a gate reports before it counts it: a forged or impossible passage is
kept, flagged and alerted on, and moves nothing (zone counts, usage, used-up tickets, Deltas)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from central.models import Alert, Conflict, CredentialUsage, PassageEventRecord, SyncChange, Ticket, Zone, utcnow
from central.services.alerts import IMPLAUSIBLE_EVENT, open_alert_count, open_alerts, resolve_alert
from central.services.gates import ensure_site
from central.services.ingest import ingest_batch
from central.services.occupancy import as_json, occupancy
from central.services.passes import create_pass, create_person
from central.services.tickets import IssueRequest, TicketTypeSpec, define_ticket_type, issue_tickets
from protocol.ids import new_event_id
from protocol.messages import PassageEvent
from tests.central.conftest import add_gates, make_config, prepare


@pytest.fixture
def park(any_db_url, tmp_path):
    """A site with gates east1 (zone 1, in and out), cave1 (zone 2, capacity 50, in only) and tickets."""
    config = make_config(any_db_url, tmp_path)
    ctx = prepare(config, mqtt_on=False)
    site = config.site
    add_gates(ctx, site, "east1", "east2", zone=1)
    add_gates(ctx, site, "cave1", zone=2, direction="in")
    with ctx.sessions.begin() as db:
        single = define_ticket_type(db, site, TicketTypeSpec(name="Single", entries=1))
        cave_only = define_ticket_type(db, site, TicketTypeSpec(name="Cave", entries=1, zones=[2]))
        in_three_days = (utcnow() + timedelta(days=3)).date()
        # Valid around now, not for the park's calendar day: just after the park's midnight (16:00 UTC)
        # the events of a few minutes ago would be yesterday's, before a today ticket's validity.
        today = {"valid_from": utcnow() - timedelta(hours=2), "valid_to": utcnow() + timedelta(hours=22)}
        tickets = issue_tickets(db, site, [IssueRequest(ticket_type=single.id, **today)] * 4
                                + [IssueRequest(ticket_type=single.id, headcount=4, **today)]
                                + [IssueRequest(ticket_type=cave_only.id, **today)]
                                + [IssueRequest(ticket_type=single.id, visit_date=in_three_days)])
        person = create_person(db, site, "Holder")
        annual = create_pass(db, site, person_id=person.id, valid_from=utcnow() - timedelta(days=1),
                             valid_to=utcnow() + timedelta(days=300))
        ids = {"plain": [t.id for t in tickets[:4]], "group": tickets[4].id, "cave": tickets[5].id,
               "later": tickets[6].id, "pass": annual.id, "types": (single.id, cave_only.id)}
        ensure_site(db, "otherpark", name="Other Park")
        other_type = define_ticket_type(db, "otherpark", TicketTypeSpec(name="Other", entries=1))
        ids["other_site"] = issue_tickets(db, "otherpark", [IssueRequest(ticket_type=other_type.id)])[0].id
    yield ctx, site, ids
    ctx.close()


def _entry(site, gate, zone, ref, *, kind="qr", at=None, **kw) -> PassageEvent:
    return PassageEvent(id=new_event_id(), site=site, gate=gate, zone=zone, at=at or utcnow(), direction="in",
                        credential_kind=kind, credential_ref=ref, passed=True, **kw)


def _ingest(ctx, events):
    with ctx.sessions.begin() as db:
        return ingest_batch(db, events, utcnow())


def _zone(db, site, number) -> Zone:
    return db.scalar(select(Zone).where(Zone.site_id == site, Zone.number == number))


def _flag(db, event_id) -> str | None:
    return db.scalar(select(PassageEventRecord.flag).where(PassageEventRecord.event_id == event_id))


def test_a_forged_passage_for_tickets_the_gate_cannot_have_seen_uses_up_nothing_and_alerts_naming_the_gate(park):
    ctx, site, ids = park
    with ctx.sessions() as db:
        deltas_before = db.scalar(select(func.count()).select_from(SyncChange))
    real = _entry(site, "east1", 1, f"T{ids['plain'][0]}")
    forged = [
        _entry(site, "east1", 1, f"T{ids['other_site']}"),  # another park's ticket
        _entry(site, "east1", 1, f"T{ids['cave']}"),  # a ticket for the cave only, "used" at the plaza
        _entry(site, "east1", 1, f"T{ids['later']}"),  # a ticket for a visit in three days
    ]
    result = _ingest(ctx, [real, *forged])
    assert result.flagged == {forged[0].id: "unknown_credential", forged[1].id: "credential_zone",
                              forged[2].id: "outside_validity"}
    with ctx.sessions() as db:
        # Stored (the passage may have been real), flagged, and counted nowhere.
        assert db.scalar(select(func.count()).select_from(PassageEventRecord)) == 4
        assert [_flag(db, e.id) for e in forged] == ["unknown_credential", "credential_zone", "outside_validity"]
        for ticket_id in (ids["other_site"], ids["cave"], ids["later"]):
            assert db.get(Ticket, ticket_id).status == "valid"
            assert db.get(CredentialUsage, (site, f"T{ticket_id}")) is None
        assert db.get(Ticket, ids["plain"][0]).status == "used"  # the real passage counts
        assert (_zone(db, site, 1).inside, _zone(db, site, 1).entries_today) == (1, 1)
        # Only the real passage's used-up ticket reaches the gates.
        assert db.scalar(select(func.count()).select_from(SyncChange)) == deltas_before + 1
        alerts = open_alerts(db, site)
        assert [(a.gate, a.kind, a.count) for a in alerts] == [("east1", IMPLAUSIBLE_EVENT, 3)]
        assert forged[2].id in alerts[0].detail and "outside_validity" in alerts[0].detail
        assert open_alert_count(db, site) == 1
        assert as_json(occupancy(db, site), open_alerts=open_alert_count(db, site))["open_alerts"] == 1


def test_a_large_headcount_does_not_push_the_zone_past_capacity(park):
    ctx, site, ids = park
    group = f"T{ids['group']}"
    huge = _entry(site, "cave1", 2, f"T{ids['plain'][1]}", headcount=200)  # a single ticket for 200
    five = _entry(site, "cave1", 2, group, headcount=5)  # a group of 4 reported as 5
    group_passages = [_entry(site, "cave1", 2, group) for _ in range(4)]  # how a gate reports a group
    result = _ingest(ctx, [huge, five, *group_passages])
    assert result.flagged == {huge.id: "headcount", five.id: "headcount"}
    with ctx.sessions() as db:
        zone = _zone(db, site, 2)
        assert zone.capacity == 50
        assert (zone.inside, zone.peak) == (4, 4)
        assert not as_json(occupancy(db, site))["full_zones"]
        assert db.get(Ticket, ids["plain"][1]).status == "valid"
        assert db.get(Ticket, ids["group"]).status == "used"


@pytest.mark.parametrize("case, flag", [
    ("unknown ticket", "unknown_credential"),
    ("unknown pass", "unknown_credential"),
    ("zone the gate does not serve", "gate_zone"),
    ("far in the future", "future_time"),
    ("unregistered gate", "unknown_gate"),
    ("out of an in-only gate", "gate_direction"),
    ("no credential in normal mode", "no_credential"),
    ("counters outside free passage", "credential_kind"),
    ("a pass read as a QR code", "credential_kind"),
    ("another ticket type than the code's", "ticket_type"),
    ("a refusal that let someone in", "refused_passed"),
    ("a locked gate letting someone in", "locked_mode"),
])
def test_an_implausible_fact_is_flagged_and_counts_nothing(park, case, flag):
    ctx, site, ids = park
    ticket = f"T{ids['plain'][2]}"
    single_type, _cave_type = ids["types"]
    event = {
        "unknown ticket": lambda: _entry(site, "east1", 1, "T999999999"),
        "unknown pass": lambda: _entry(site, "east1", 1, "P999999", kind="annual_pass"),
        "zone the gate does not serve": lambda: _entry(site, "east1", 2, ticket),
        "far in the future": lambda: _entry(site, "east1", 1, ticket, at=utcnow() + timedelta(hours=2)),
        "unregistered gate": lambda: _entry(site, "west9", 1, ticket),
        "out of an in-only gate": lambda: PassageEvent(
            id=new_event_id(), site=site, gate="cave1", zone=2, at=utcnow(), direction="out", credential_kind="qr",
            credential_ref=ticket, passed=True),
        "no credential in normal mode": lambda: _entry(site, "east1", 1, ""),
        "counters outside free passage": lambda: _entry(site, "east1", 1, "", kind="none"),
        "a pass read as a QR code": lambda: _entry(site, "east1", 1, f"P{ids['pass']}"),
        "another ticket type than the code's": lambda: _entry(site, "east1", 1, ticket, ticket_type=single_type + 7),
        "a refusal that let someone in": lambda: _entry(site, "east1", 1, ticket, decision="refused",
                                                        reason="used_up"),
        "a locked gate letting someone in": lambda: _entry(site, "east1", 1, ticket, mode="locked"),
    }[case]()
    result = _ingest(ctx, [event])
    assert result.flagged == {event.id: flag}
    with ctx.sessions() as db:
        assert _flag(db, event.id) == flag
        assert sum(z.inside + z.entries_today + z.exits_today for z in db.scalars(select(Zone))) == 0
        assert db.get(Ticket, ids["plain"][2]).status == "valid"
        assert db.scalar(select(func.count()).select_from(CredentialUsage)) == 0
        assert [(a.gate, a.count) for a in open_alerts(db, site)] == [(event.gate, 1)]


def test_real_passages_of_every_kind_still_count_and_offline_conflicts_are_still_found(park):
    ctx, site, ids = park
    now = utcnow()
    first, second = ids["plain"][3], ids["plain"][0]
    events = [
        # Within CLOCK_SKEW of today's tickets' validity whatever the hour the test runs at.
        _entry(site, "east1", 1, f"T{first}", at=now - timedelta(minutes=3), offline=True),
        _entry(site, "east2", 1, f"T{first}", at=now - timedelta(minutes=2), offline=True),  # the same ticket
        _entry(site, "east1", 1, f"T{second}", kind="id_card", at=now - timedelta(minutes=1)),
        _entry(site, "east1", 1, f"P{ids['pass']}", kind="annual_pass"),
        _entry(site, "east1", 1, "", kind="none", mode="free"),  # free passage: the controller's counter
        _entry(site, "cave1", 2, "", kind="none", mode="emergency"),
        PassageEvent(id=new_event_id(), site=site, gate="east1", zone=1, at=now, direction="out",
                     credential_kind="qr", passed=True),  # exits are never refused: no credential needed
        PassageEvent(id=new_event_id(), site=site, gate="east1", zone=0, at=now, direction="in",
                     credential_kind="qr", decision="refused", reason="gate_locked"),  # before its first config
        _entry(site, "cave1", 2, f"T{ids['cave']}", at=now + timedelta(minutes=2)),  # a gate clock a bit ahead
    ]
    result = _ingest(ctx, events)
    assert result.flagged == {}
    with ctx.sessions() as db:
        assert (_zone(db, site, 1).entries_today, _zone(db, site, 1).exits_today) == (5, 1)
        assert _zone(db, site, 2).entries_today == 2
        conflicts = db.scalars(select(Conflict)).all()
        assert [(c.credential_ref, c.reason, c.gate, c.other_gate) for c in conflicts] == [
            (f"T{first}", "used_up", "east2", "east1")]
        assert db.get(Ticket, ids["cave"]).status == "used"
        assert open_alerts(db, site) == []


def test_a_gates_alert_is_one_row_while_open_and_a_new_one_after_it_is_resolved(park):
    ctx, site, _ids = park
    _ingest(ctx, [_entry(site, "east1", 1, "T999999999") for _ in range(3)])
    _ingest(ctx, [_entry(site, "east1", 1, "T999999998"), _entry(site, "east2", 1, "T999999997")])
    with ctx.sessions.begin() as db:
        alerts = {a.gate: a for a in open_alerts(db, site)}
        assert {g: a.count for g, a in alerts.items()} == {"east1": 4, "east2": 1}
        assert alerts["east1"].first_at <= alerts["east1"].last_at
        resolve_alert(db, alerts["east1"].id, actor="staff1")
    _ingest(ctx, [_entry(site, "east1", 1, "T999999996")])
    with ctx.sessions() as db:
        assert {a.gate: a.count for a in open_alerts(db, site)} == {"east1": 1, "east2": 1}
        assert db.scalar(select(func.count()).select_from(Alert)) == 3
        # No personal data or ticket codes in an alert: the check's name and the event id.
        assert all(a.detail.startswith("last: unknown_credential (event ") for a in open_alerts(db, site))


@pytest.mark.mosquitto
def test_through_the_broker_a_forged_passage_is_stored_flagged_and_no_delta_tells_the_gates_its_ticket_is_used(
        live_config, live_ctx, mosquitto, listen):
    from central.bus.ingest_worker import IngestWorker
    from protocol import topics
    from protocol.messages import Delta, EventAck, decode, encode
    from tests.central.test_ingest import GatePublisher

    site = live_config.site
    add_gates(live_ctx, site, "east1")
    with live_ctx.sessions.begin() as db:
        single = define_ticket_type(db, site, TicketTypeSpec(name="Single", entries=1))
        real, burnt = (t.id for t in issue_tickets(db, site, [IssueRequest(ticket_type=single.id)] * 2))
    deltas, acks = listen(topics.deltas(site)), listen(topics.event_ack(site, "east1"))
    worker = IngestWorker(live_config, live_ctx.sessions, worker_id="checks", cipher=live_ctx.cipher).start()
    gate = GatePublisher(mosquitto, site, "east1")
    try:
        forged = _entry(site, "east1", 1, f"T{burnt}", headcount=255)
        genuine = _entry(site, "east1", 1, f"T{real}")
        gate.publish_all([encode(forged), encode(genuine)])
        assert worker.wait_idle(timeout=30)
        acked: set[str] = set()
        while not {forged.id, genuine.id} <= acked:  # both stored, so the gate may drop both
            acked |= set(decode(EventAck, acks.get().payload).ids)
        delta = decode(Delta, deltas.get().payload)
        assert [c.ticket_id for c in delta.changes] == [real]
        with live_ctx.sessions() as db:
            assert _flag(db, forged.id) == "headcount" and _flag(db, genuine.id) is None
            assert db.get(Ticket, burnt).status == "valid"
            assert _zone(db, site, 1).inside == 1
            assert [(a.gate, a.count) for a in open_alerts(db, site)] == [("east1", 1)]
        assert worker.stats.flagged == 1
    finally:
        gate.close()
        worker.stop()
