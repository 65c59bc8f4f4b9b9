"""Central claims: one credential, one decision at a time, across every gate of a site.

`handle_claim` runs in the caller's transaction (one per request):

0. a credential the central holds no ticket or pass of the request's site for is refused
   `unknown_credential` (pretix's server refuses an unknown secret): the central grants only what it
   can name;
1. the credential's usage row is locked: PostgreSQL inserts it if missing (ON CONFLICT DO NOTHING)
   and takes SELECT ... FOR UPDATE; on SQLite every transaction of the central begins IMMEDIATE
   (`central.db`), which serialises writers. Two claims on one credential therefore queue, and the
   second sees what the first granted;
2. a repeated request id answers what was granted for it (a redelivery, or a second claim server
   without a shared subscription);
3. usage = confirmed passages (`credential_usage`, kept by the ingest) + the passages of open claims.
   A claim is open until it expires; the passages the ingest has already counted for it (the
   claiming gate's unflagged events carrying its `claim_id`, stored in the same transaction as the
   usage they add) are taken off, so a passage never counts twice, and a "nobody walked through"
   event for it releases it at once;
4. `protocol.rules.decide` runs with that usage, the zone's live count and capacity, and the biometric
   step assumed done (the gate did it);
5. granted: a Claim row holds min(allowed, verdict.passages) entries until the turnstile's timeout for
   each passage plus a margin has passed. Refused: `claimed_elsewhere` when only the open claims stand
   in the way, otherwise the rules' reason (used_up, revoked, ...).

The caller drops requests whose deadline has passed (the gate has already decided alone).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
from sqlalchemy import Engine, case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from central.db import rowcount, table
from central.models import AnnualPass, Claim, CredentialUsage, Gate, PassageEventRecord, Site, Ticket, TicketType, Zone
from central.services.facts import pass_credential, site_policy, ticket_credential
from central.services.gates import ticket_type_rules
from protocol.ids import HOLDER, PASS, TICKET, ref_kind, ref_number
from protocol.messages import ClaimReply, ClaimRequest, HardwareParams, TicketTypeRules
from protocol.reasons import Reason
from protocol.rules import Biometric, Credential, SitePolicy, Usage, ZoneState, biometric_step, decide

CLAIM_EVENTS_SKEW = timedelta(days=1)
MARGIN_S = 10.0  # beyond the turnstile's timeout: the passage event's way to the central
_USAGE = table(CredentialUsage)
_EVENTS = table(PassageEventRecord)


@dataclass(frozen=True)
class OpenClaims:
    """Entries held by other gates' claims that no confirmed passage accounts for yet."""

    passages: int = 0
    latest_at: datetime | None = None


def expired(request: ClaimRequest, now: datetime) -> bool:
    """The gate stopped waiting at `at + deadline_ms` (by its clock): it has decided alone."""
    return now > request.at + timedelta(milliseconds=request.deadline_ms)


def handle_claim(session: Session, request: ClaimRequest, now: datetime, at: datetime | None = None) -> ClaimReply:
    """Grant or refuse one claim in the caller's transaction (see the module doc).

    `now` (the wall clock) times the claim's lease; `at` (the park's time, `protocol.clock`, `now` unless
    given) is when the entry happens, for the rules. They differ only under the demo's simulated clock."""
    at = now if at is None else at
    policy = _site_policy(session, request.site)
    if policy is None:
        return ClaimReply(id=request.id, granted=False, reason=str(Reason.UNKNOWN_CREDENTIAL))
    found = _credential(session, request)  # before the lock: no usage row for a ref nobody issued
    if found is None:
        return ClaimReply(id=request.id, granted=False, reason=str(Reason.UNKNOWN_CREDENTIAL))
    credential, rules = found
    usage = _lock_usage(session, request.site, request.credential_ref)
    held, earlier = open_claims(session, request.site, request.credential_ref, now, request.id)
    if earlier is not None:
        return ClaimReply(id=request.id, granted=True, reason=str(Reason.OK), passages=earlier)
    zone = session.execute(select(Zone.inside, Zone.capacity)
                           .where(Zone.site_id == request.site, Zone.number == request.zone)).first()
    zone_state = ZoneState(zone=request.zone, inside=max(0, zone.inside) if zone else 0,
                           capacity=zone.capacity if zone else None)

    def verdict_with(extra: OpenClaims):
        last = usage.last_entry_at
        if extra.latest_at is not None and (last is None or extra.latest_at > last):
            last = extra.latest_at
        counted = msgspec.structs.replace(usage, entries=usage.entries + extra.passages, last_entry_at=last)
        step = biometric_step(credential, rules, counted, policy)
        done = Biometric(kind="fingerprint" if step == "fingerprint" else "face", matched=True)
        return decide(credential=credential, rules=rules, usage=counted, zone=zone_state, direction="in", now=at,
                      site=policy, mode="normal", biometric=done)

    verdict = verdict_with(held)
    if not verdict.granted:
        reason = verdict.reason
        if held.passages and verdict_with(OpenClaims()).granted:
            reason = Reason.CLAIMED_ELSEWHERE
        return ClaimReply(id=request.id, granted=False, reason=str(reason))
    passages = max(1, min(request.allowed, verdict.passages))
    timeout_s = _passage_timeout(session, request.site, request.gate)
    session.add(Claim(id=request.id, site_id=request.site, credential_ref=request.credential_ref, gate=request.gate,
                      zone=request.zone, passages=passages, created_at=at,
                      expires_at=now + timedelta(seconds=timeout_s * passages + MARGIN_S)))
    return ClaimReply(id=request.id, granted=True, reason=str(Reason.OK), passages=passages)


def open_claims(session: Session, site_id: str, ref: str, now: datetime,
                own_id: str | None = None) -> tuple[OpenClaims, int | None]:
    """Passages held by unexpired claims on `ref`, less those the ingest has confirmed; and the
    passages already granted to the claim `own_id` (a repeated request), if any."""
    claims = list(session.execute(
        select(Claim.id, Claim.gate, Claim.passages, Claim.created_at)
        .where(Claim.site_id == site_id, Claim.credential_ref == ref, Claim.expires_at > now)))
    earlier = next((c.passages for c in claims if c.id == own_id), None)
    if not claims or earlier is not None:
        return OpenClaims(), earlier
    # By the credential's own index: a credential has few events, a site millions.
    # Only the claiming gate's own events, and none the ingest flagged: another gate cannot release
    # or use up a claim it does not hold by naming its id.
    counted = {
        (row.claim_id, row.gate): (row.confirmed or 0, row.closed or 0)
        for row in session.execute(
            select(_EVENTS.c.claim_id, _EVENTS.c.gate,
                   func.sum(case((_EVENTS.c.passed, _EVENTS.c.headcount), else_=0)).label("confirmed"),
                   func.max(case((_EVENTS.c.passed, 0), else_=1)).label("closed"))
            .where(_EVENTS.c.credential_ref == ref, _EVENTS.c.site_id == site_id,
                   _EVENTS.c.claim_id.in_([c.id for c in claims]), _EVENTS.c.flag.is_(None),
                   # A claim's passages come after it: on PostgreSQL this reads this month's partition
                   # (two at a month's turn), not every month of the years stored. A gate clock a day
                   # behind only keeps its claim open until it expires (seconds), never grants twice.
                   _EVENTS.c.at >= min(c.created_at for c in claims) - CLAIM_EVENTS_SKEW)
            .group_by(_EVENTS.c.claim_id, _EVENTS.c.gate))
    }
    held, latest = 0, None
    for claim_id, gate, passages, created_at in claims:
        confirmed, closed = counted.get((claim_id, gate), (0, 0))
        if closed:
            continue  # the gate said nobody walked through: released at once
        left = max(0, passages - confirmed)
        if left:
            held += left
            latest = created_at if latest is None or created_at > latest else latest
    return OpenClaims(held, latest), None


def prune_claims(session: Session, before: datetime) -> int:
    """Forget claims that expired before `before` (their passages live on as usage)."""
    return rowcount(session.execute(delete(Claim).where(Claim.expires_at < before)))


def _insert(session: Session, table):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _lock_usage(session: Session, site_id: str, ref: str) -> Usage:
    """The usage row, created if missing and locked, in one round trip: the no-op DO UPDATE takes the
    row lock (as SELECT ... FOR UPDATE would) and RETURNING reads the row under it."""
    stmt = _insert(session, _USAGE).values(site_id=site_id, ref=ref, entries=0, exits=0, bound=False)
    stmt = stmt.on_conflict_do_update(index_elements=["site_id", "ref"], set_={"entries": _USAGE.c.entries})
    row = session.execute(stmt.returning(_USAGE.c.entries, _USAGE.c.exits, _USAGE.c.last_entry_at,
                                         _USAGE.c.bound)).one()
    last = row.last_entry_at
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)  # SQLite's RETURNING skips the column type's result processing
    return Usage(entries=row.entries, exits=row.exits, last_entry_at=last, bound=row.bound)


_CACHE_S = 10.0
_cache: dict[tuple, tuple[float, object]] = {}


def _cached(session: Session, key: tuple, load):
    """Site policies, ticket type rules and gate timeouts change rarely: read them every 10 s at most."""
    bind = session.get_bind()
    key = (str(bind.url if isinstance(bind, Engine) else bind.engine.url), *key)
    hit = _cache.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < _CACHE_S:
        return hit[1]
    value = load()
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[key] = (now, value)
    return value


def _site_policy(session: Session, site_id: str) -> SitePolicy | None:
    def load():
        site = session.get(Site, site_id)
        return None if site is None else site_policy(site)
    return _cached(session, ("site", site_id), load)


def _type_rules(session: Session, type_id: int) -> TicketTypeRules:
    def load():
        tt = session.get(TicketType, type_id)
        return ticket_type_rules(tt) if tt else TicketTypeRules(id=type_id, name="unknown")
    return _cached(session, ("type", type_id), load)


def _credential(session: Session, request: ClaimRequest) -> tuple[Credential, TicketTypeRules | None] | None:
    """The central's facts for the claimed credential of the request's site; None when it has none."""
    ref = request.credential_ref
    kind, number = ref_kind(ref), ref_number(ref)
    if kind == TICKET and number is not None:
        t = session.execute(select(Ticket.site_id, Ticket.ticket_type_id, Ticket.status, Ticket.valid_from,
                                   Ticket.valid_to, Ticket.slot_start, Ticket.slot_end, Ticket.headcount,
                                   Ticket.zones).where(Ticket.id == number)).first()
        if t is not None and t.site_id == request.site:
            # `used` is the ingest's summary of usage: let the usage (with the open claims) speak.
            status = "valid" if t.status == "used" else t.status
            return (ticket_credential(t, kind=request.credential_kind, ref=ref, status=status),
                    _type_rules(session, t.ticket_type_id))
    if kind in (PASS, HOLDER) and number is not None:
        query = select(AnnualPass).where(AnnualPass.site_id == request.site)
        query = (query.where(AnnualPass.id == number) if kind == PASS
                 else query.where(AnnualPass.person_id == number).order_by(AnnualPass.valid_to.desc()).limit(1))
        p = session.scalars(query).first()
        if p is not None:
            return pass_credential(p, kind=request.credential_kind, ref=ref, status=p.status), None
    # A gate's facts alone are no ground for a grant: a gate's identity may be in other hands.
    return None


def _passage_timeout(session: Session, site_id: str, gate_name: str) -> float:
    def load():
        hardware = session.scalar(select(Gate.hardware).where(Gate.site_id == site_id, Gate.name == gate_name))
        try:
            return msgspec.convert(hardware or {}, HardwareParams).passage_timeout_s
        except msgspec.ValidationError:
            return HardwareParams().passage_timeout_s
    return _cached(session, ("gate", site_id, gate_name), load)


__all__ = ["MARGIN_S", "OpenClaims", "expired", "handle_claim", "open_claims", "prune_claims"]
