"""The claim server alone, on SQLite and PostgreSQL: concurrent claims on one credential from threads,
as eight gates' requests would arrive at once, grant each entry exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import msgspec
import pytest

from central.bus.claim_server import ClaimServer
from central.models import Claim, utcnow
from central.services.claims import handle_claim
from central.services.ingest import ingest_batch
from protocol.ids import new_event_id
from protocol.messages import ClaimReply, PassageEvent
from tests.claims.conftest import GROUP, REENTRY, issue, request


def claim_at_once(server: ClaimServer, requests) -> list[ClaimReply]:
    """Every request answered by its own thread, all released together."""
    start = threading.Barrier(len(requests))
    replies: list[ClaimReply | None] = [None] * len(requests)

    def one(i: int) -> None:
        start.wait()
        replies[i] = server.answer(requests[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in replies)
    return replies


def passage(ctx, ticket, gate: str, claim_id: str | None, *, passed: bool = True) -> PassageEvent:
    event = PassageEvent(id=new_event_id(), site=ctx.config.site, gate=gate, zone=1, at=utcnow(), direction="in",
                         credential_kind="qr", credential_ref=ticket.ref, passed=passed,
                         ticket_type=ticket.ticket_type_id, claim_id=claim_id)
    with ctx.sessions.begin() as db:
        ingest_batch(db, [event])
    return event


@pytest.fixture
def server(claim_ctx):
    return ClaimServer(claim_ctx.config, claim_ctx.sessions)  # not started: answer() is called directly


def test_a_single_entry_ticket_claimed_at_eight_gates_at_once_is_granted_once(claim_ctx, server):
    for ticket in issue(claim_ctx, 5):
        replies = claim_at_once(server, [request(claim_ctx, ticket, f"g{i}") for i in range(8)])
        assert Counter((r.granted, r.reason) for r in replies) == {(True, "ok"): 1, (False, "claimed_elsewhere"): 7}
        assert sum(r.passages for r in replies) == 1


def test_a_group_of_five_claimed_at_four_gates_gets_exactly_five_passages(claim_ctx, server):
    (ticket,) = issue(claim_ctx, 1, ticket_type=GROUP, headcount=5)
    # Each gate asks for what its own view allows: two of the group at two gates, the rest at the others.
    allowed = (2, 2, 5, 5)
    replies = claim_at_once(server, [request(claim_ctx, ticket, f"g{i}", allowed=a) for i, a in enumerate(allowed)])
    assert sum(r.passages for r in replies if r.granted) == 5
    assert all(r.reason == "claimed_elsewhere" for r in replies if not r.granted)


def test_a_confirmed_passage_counts_once_and_then_the_ticket_is_used_up(claim_ctx, server):
    (ticket,) = issue(claim_ctx, 1)
    first = request(claim_ctx, ticket, "g1")
    assert server.answer(first).granted
    passage(claim_ctx, ticket, "g1", first.id)
    reply = server.answer(request(claim_ctx, ticket, "g2"))
    assert (reply.granted, reply.reason) == (False, "used_up")  # usage, not the claim as well


def test_a_claim_whose_visitor_never_walks_through_is_released(claim_ctx, server):
    walked_away, expired_one = issue(claim_ctx, 2)
    first = request(claim_ctx, walked_away, "g1")
    assert server.answer(first).granted
    assert not server.answer(request(claim_ctx, walked_away, "g2")).granted
    passage(claim_ctx, walked_away, "g1", first.id, passed=False)  # the turnstile timed out: the gate says so
    assert server.answer(request(claim_ctx, walked_away, "g2")).granted

    assert server.answer(request(claim_ctx, expired_one, "g1")).granted
    with claim_ctx.sessions.begin() as db:  # the gate's event never comes: the claim expires
        hold = db.query(Claim).filter_by(credential_ref=expired_one.ref).one()
        later = hold.expires_at + timedelta(seconds=1)
        assert handle_claim(db, request(claim_ctx, expired_one, "g2", at=later), later).granted


def test_a_request_past_its_deadline_is_not_answered_and_a_repeat_gets_the_same_grant(claim_ctx, server):
    old, fresh = issue(claim_ctx, 2)
    late = request(claim_ctx, old, "g1", deadline_ms=300, at=utcnow() - timedelta(seconds=1))
    assert server.answer(late) is None
    assert server.answer(request(claim_ctx, old, "g2")).granted  # the late one held nothing
    first = request(claim_ctx, fresh, "g1")
    assert server.answer(first).granted
    again = server.answer(first)
    assert (again.granted, again.passages) == (True, 1)
    assert not server.answer(request(claim_ctx, fresh, "g2")).granted


def test_anti_passback_re_entry_is_granted_once_per_exit(claim_ctx, server):
    (ticket,) = issue(claim_ctx, 1, ticket_type=REENTRY)
    replies = claim_at_once(server, [request(claim_ctx, ticket, f"g{i}") for i in range(4)])
    assert sum(r.granted for r in replies) == 1


def test_a_claim_for_a_credential_the_central_holds_nothing_for_is_refused_unknown_credential(claim_ctx, server):
    from central.models import CredentialUsage
    from central.services.gates import ensure_site
    from central.services.tickets import IssueRequest, TicketTypeSpec, define_ticket_type, issue_tickets

    with claim_ctx.sessions.begin() as db:
        ensure_site(db, "elsewhere")
        other_type = define_ticket_type(db, "elsewhere", TicketTypeSpec(name="Other", entries=1))
        (foreign,) = issue_tickets(db, "elsewhere", [IssueRequest(ticket_type=other_type.id)])
        foreign_ref = foreign.ref
    (mine,) = issue(claim_ctx, 1)
    site = claim_ctx.config.site
    for ref, kind in ((f"T{mine.id + 1000}", "qr"), (foreign_ref, "qr"), ("P424242", "annual_pass"),
                      ("H424242", "face"), ("T" + "9" * 25, "qr"), ("T²", "qr")):
        claim = request(claim_ctx, mine, "g1")
        claim = msgspec.structs.replace(claim, credential_ref=ref, credential_kind=kind)
        reply = server.answer(claim)
        assert (reply.granted, reply.reason, reply.passages) == (False, "unknown_credential", 0), ref
    with claim_ctx.sessions() as db:
        assert db.query(Claim).count() == 0
        assert db.query(CredentialUsage).filter(CredentialUsage.site_id == site).count() == 0  # nothing locked
    assert server.answer(request(claim_ctx, mine, "g1")).granted  # a ticket it issued is still granted


def test_another_gates_event_naming_a_claim_neither_releases_nor_confirms_it(claim_ctx, server):
    (ticket,) = issue(claim_ctx, 1)
    first = request(claim_ctx, ticket, "g1")
    assert server.answer(first).granted
    passage(claim_ctx, ticket, "g2", first.id, passed=False)  # forged: "nobody walked through" at g1's claim
    assert server.answer(request(claim_ctx, ticket, "g3")).reason == "claimed_elsewhere"
