"""Scheduled jobs, run with a chosen clock: roll-over, heartbeat timeout, expiry, template retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from central.models import BiometricTemplate, DailyReport, Gate, GateStatusRecord, Site, Ticket, Zone
from central.services import jobs
from central.services.gates import record_status, register_gate
from central.services.ingest import ingest_batch
from central.services.passes import bind_template, create_pass, create_person
from central.services.tickets import IssueRequest, TicketTypeSpec, define_ticket_type, issue_tickets
from protocol.ids import new_event_id
from protocol.messages import GateStatus, PassageEvent
from tests.central.conftest import add_gates

# 2031-03-10 23:30 in Shanghai
EVENING = datetime(2031, 3, 10, 15, 30, tzinfo=UTC)


def _passage(site, direction, at, **kw):
    """A free-passage count (the controller's counters): no credential."""
    return PassageEvent(id=new_event_id(), site=site, gate="g1", zone=1, at=at, direction=direction,
                        credential_kind="none", passed=True, mode="free", **kw)


@pytest.mark.parametrize("overnight, inside_after", [("carry_over", 4), ("exit_all", 0)])
def test_the_roll_over_at_local_midnight_closes_the_day_and_carries_visitors_still_inside(
        ctx, config, overnight, inside_after):
    site = config.site
    add_gates(ctx, site, "g1")
    with ctx.sessions.begin() as db:
        db.get(Site, site).overnight = overnight
        jobs.roll_over(db, site, EVENING - timedelta(hours=12))  # opens the business day 2031-03-10
        events = [_passage(site, "in", EVENING) for _ in range(7)] + [_passage(site, "out", EVENING)
                                                                     for _ in range(3)]
        events.append(PassageEvent(id=new_event_id(), site=site, gate="g1", zone=1, at=EVENING, direction="in",
                                   credential_kind="qr", decision="refused", reason="expired"))
        ingest_batch(db, events, received_at=EVENING)
    with ctx.sessions.begin() as db:
        assert jobs.roll_over(db, site, EVENING + timedelta(minutes=29)) == []  # 23:59 local: not yet
    with ctx.sessions.begin() as db:
        reports = jobs.roll_over(db, site, EVENING + timedelta(minutes=31))  # 00:01 local
        assert len(reports) == 2  # both zones
    with ctx.sessions() as db:
        report = db.scalar(select(DailyReport).where(DailyReport.site_id == site, DailyReport.zone == 1))
        assert (report.day.isoformat(), report.entries, report.exits, report.peak, report.carried_over) == \
            ("2031-03-10", 7, 3, 7, 4)
        assert report.refused == 1 and report.denials == {"expired": 1}
        zone = db.scalar(select(Zone).where(Zone.site_id == site, Zone.number == 1))
        assert (zone.inside, zone.entries_today, zone.exits_today, zone.peak) == (inside_after, 0, 0, inside_after)
        assert db.get(Site, site).business_date.isoformat() == "2031-03-11"
    with ctx.sessions.begin() as db:  # run again the same night: nothing more happens
        assert jobs.roll_over(db, site, EVENING + timedelta(minutes=45)) == []
        assert db.scalar(select(func.count()).select_from(DailyReport)) == 2


def test_a_gate_silent_past_the_heartbeat_timeout_is_marked_offline(ctx, config):
    site = config.site
    now = datetime.now(UTC)
    with ctx.sessions.begin() as db:
        register_gate(db, site, "g1", 1)
        register_gate(db, site, "g2", 1)
        for gate, silent_s in (("g1", 90), ("g2", 5)):
            record_status(db, GateStatus(site=site, gate=gate, online=True, at=now),
                          received_at=now - timedelta(seconds=silent_s))
    with ctx.sessions.begin() as db:
        stale = jobs.heartbeat_check(db, 60, now)
        assert [g.name for g in stale] == ["g1"]
    with ctx.sessions() as db:
        gates = {g.name: g for g in db.scalars(select(Gate).where(Gate.site_id == site))}
        assert gates["g1"].online is False and gates["g1"].offline_since == now
        assert gates["g2"].online is True
        marks = db.scalars(select(GateStatusRecord).where(GateStatusRecord.source == "heartbeat")).all()
        assert [(m.gate, m.online) for m in marks] == [("g1", False)]


def test_tickets_and_passes_past_their_validity_expire(ctx, config):
    site = config.site
    now = datetime.now(UTC)
    with ctx.sessions.begin() as db:
        tt = define_ticket_type(db, site, TicketTypeSpec(name="Day"))
        old, new = issue_tickets(db, site, [
            IssueRequest(ticket_type=tt.id, valid_from=now - timedelta(days=3), valid_to=now - timedelta(days=2),
                         allow_past=True),
            IssueRequest(ticket_type=tt.id)])
        person = create_person(db, site, "Zhao")
        create_pass(db, site, person_id=person.id, valid_from=now - timedelta(days=400),
                    valid_to=now - timedelta(days=35))
    with ctx.sessions.begin() as db:
        assert jobs.expire(db, now) == (1, 1)
    with ctx.sessions() as db:
        assert db.get(Ticket, old.id).status == "expired" and db.get(Ticket, new.id).status == "valid"


def test_templates_are_deleted_when_the_retention_period_after_the_pass_has_passed(ctx, config):
    site = config.site
    now = datetime.now(UTC)
    with ctx.sessions.begin() as db:
        gone, kept = create_person(db, site, "Ended"), create_person(db, site, "Current")
        for person, ended_days_ago in ((gone, 31), (kept, 5)):
            create_pass(db, site, person_id=person.id, valid_from=now - timedelta(days=400),
                        valid_to=now - timedelta(days=ended_days_ago))
        for person in (gone, kept):
            bind_template(db, ctx.cipher, person.id, "face", b"\x00" * 512)
    with ctx.sessions.begin() as db:
        assert jobs.retention(db, 30, now) == [gone.id]
    with ctx.sessions() as db:
        assert list(db.scalars(select(BiometricTemplate.person_id))) == [kept.id]


def test_a_site_claim_deadline_reaches_its_gates_config_and_nonsense_is_refused(ctx, config):
    from central.services import Invalid
    from central.services.gates import build_gate_config, update_site

    with ctx.sessions.begin() as db:
        gate, _ = register_gate(db, config.site, "g9", 1)
        update_site(db, config.site, claim_policy="central", claim_deadline_ms=800)
        message = build_gate_config(db, gate)
        assert (message.claim, message.claim_deadline_ms) == ("central", 800)
        for bad in ({"claim_deadline_ms": 5}, {"overnight": "sometimes"}, {"claim_policy": "maybe"}):
            with pytest.raises(Invalid):
                update_site(db, config.site, **bad)
