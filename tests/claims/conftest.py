"""Fixtures for central claims: a migrated central store with a site, zones and ticket types."""

from __future__ import annotations

from datetime import timedelta

import pytest

from central.models import utcnow
from central.services.tickets import IssueRequest, TicketTypeSpec, define_ticket_type, issue_tickets
from protocol.ids import new_event_id
from protocol.messages import ClaimRequest
from tests.central.conftest import add_gates, make_config, prepare

SINGLE, GROUP, REENTRY = 1, 3, 2


def define_types(ctx) -> None:
    with ctx.sessions.begin() as db:
        define_ticket_type(db, ctx.config.site, TicketTypeSpec(name="day ticket", id=SINGLE, entries=1))
        define_ticket_type(db, ctx.config.site, TicketTypeSpec(name="re-entry", id=REENTRY, entries=3,
                                                               anti_passback=True))
        define_ticket_type(db, ctx.config.site, TicketTypeSpec(name="group", id=GROUP, entries=1))


def issue(ctx, count: int, *, ticket_type: int = SINGLE, headcount: int = 1) -> list:
    now = utcnow()
    with ctx.sessions.begin() as db:
        return issue_tickets(db, ctx.config.site, [
            IssueRequest(ticket_type=ticket_type, headcount=headcount, valid_from=now - timedelta(hours=1),
                         valid_to=now + timedelta(days=1)) for _ in range(count)])


def request(ctx, ticket, gate: str, *, allowed: int = 1, deadline_ms: int = 5000, at=None) -> ClaimRequest:
    return ClaimRequest(id=new_event_id(), site=ctx.config.site, gate=gate, zone=1, credential_kind="qr",
                        credential_ref=ticket.ref, ticket_type=ticket.ticket_type_id, headcount=ticket.headcount,
                        allowed=allowed, at=at or utcnow(), deadline_ms=deadline_ms)


@pytest.fixture
def claim_ctx(any_db_url, tmp_path):
    context = prepare(make_config(any_db_url, tmp_path), mqtt_on=False)
    add_gates(context, context.config.site, *(f"g{i}" for i in range(8)))
    define_types(context)
    yield context
    context.close()
