"""Conflicts from offline gates, and a manager's decision on each.

A conflict is a passage the central's rules would have refused (a single-entry ticket used at two gates
while they could not reach each other, an exit before its entry...). It is recorded by the ingest; a
manager then decides, with a note in their own words:

    accepted             the passage stands (a family let through twice at the same minute)
    credential_revoked   the ticket is revoked, the annual pass suspended, from now on (a shared code)
    followed_up          settled outside the system (the visitor or the channel charged, a word with staff)

Who decided and when are kept beside the decision, and the audit log has it too. A decision is final:
resolving a resolved conflict is refused, so nobody overwrites another manager's record.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from central.i18n import _l
from central.models import CONFLICT_DECISIONS, Conflict, utcnow
from central.services import Invalid, NotFound, Refused
from central.services.audit import audit
from protocol.ids import PASS, TICKET, ref_kind, ref_number

NOTE_MAX = 500
PAGE = 100


@dataclass(frozen=True)
class ConflictPage:
    rows: list[Conflict]
    open_count: int
    next_before: int | None  # the id to page on from (older rows), None at the end


def list_conflicts(session: Session, site_id: str, *, state: str = "open", before_id: int | None = None,
                   limit: int = PAGE) -> ConflictPage:
    """Newest first; `state` open, resolved or all."""
    query = select(Conflict).where(Conflict.site_id == site_id)
    if state == "open":
        query = query.where(Conflict.resolved_at.is_(None))
    elif state == "resolved":
        query = query.where(Conflict.resolved_at.is_not(None))
    if before_id is not None:
        query = query.where(Conflict.id < before_id)
    rows = list(session.scalars(query.order_by(Conflict.id.desc()).limit(limit + 1)))
    open_count = session.scalar(select(func.count()).select_from(Conflict).where(
        Conflict.site_id == site_id, Conflict.resolved_at.is_(None))) or 0
    more = len(rows) > limit
    rows = rows[:limit]
    return ConflictPage(rows, open_count, rows[-1].id if more and rows else None)


def resolve_conflict(session: Session, site_id: str, conflict_id: int, decision: str, note: str,
                     actor: str) -> Conflict:
    """Record a manager's decision (see the module doc); `credential_revoked` also revokes the ticket or
    suspends the pass the conflict names, so every gate refuses it within seconds."""
    if decision not in CONFLICT_DECISIONS:
        raise Invalid("bad_decision", _l("Choose what was decided."))
    note = (note or "").strip()
    if not note:
        raise Invalid("bad_note", _l("Say in a few words what was decided and why."))
    if len(note) > NOTE_MAX:
        raise Invalid("bad_note", _l("The note is at most %(n)s characters.", n=NOTE_MAX))
    conflict = session.scalar(select(Conflict).where(Conflict.id == conflict_id, Conflict.site_id == site_id)
                              .with_for_update())
    if conflict is None:
        raise NotFound("no_conflict", _l("There is no such conflict."))
    if conflict.resolved_at is not None:
        raise Refused("conflict_resolved", _l("%(user)s already resolved this conflict.",
                                              user=conflict.resolved_by or "?"))
    if decision == "credential_revoked":
        _end_credential(session, conflict.credential_ref, actor, note)
    conflict.resolved_at = utcnow()
    conflict.resolved_by = actor
    conflict.resolution = decision
    conflict.resolution_note = note
    audit(session, actor, "conflict.resolve", conflict.credential_ref, conflict=conflict.id, decision=decision)
    return conflict


def _end_credential(session: Session, ref: str, actor: str, note: str) -> None:
    from central.services.passes import get_pass, suspend_pass
    from central.services.tickets import revoke_ticket

    kind, number = ref_kind(ref), ref_number(ref)
    if kind == TICKET and number is not None:
        revoke_ticket(session, number, actor=actor, reason=note[:200])
    elif kind == PASS and number is not None:
        if get_pass(session, number).status == "active":
            suspend_pass(session, number, actor=actor)
    else:
        raise Refused("no_credential", _l("This conflict names no ticket or pass that could be revoked."))


__all__ = ["ConflictPage", "list_conflicts", "resolve_conflict"]
