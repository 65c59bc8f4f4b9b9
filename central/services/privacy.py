"""A person's data on request: everything the central holds about one pass holder, in one document.

    person      name, phone, last four ID digits, when created
    passes      card UID, status, validity, zones, channel, price
    templates   kind, finger, version, created: metadata only, never the template (nor its sealed record)
    passages    the passage events of their passes, with refusals
    usage       the central's count of their passes' passages
    conflicts   passages of their passes the central's rules would have refused
    audit       the audit entries about the person and their passes

The export itself is an audit entry (`person.export`), written in the caller's transaction.
Deletion on request is `central.services.passes.forget_person`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from central.models import (
    AnnualPass,
    AuditEntry,
    BiometricTemplate,
    Conflict,
    CredentialUsage,
    PassageEventRecord,
    utcnow,
)
from central.services.audit import audit
from central.services.passes import get_person

__all__ = ["PersonExport", "export_person"]


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


@dataclass(frozen=True)
class PersonExport:
    """What `export_person` found, ready for JSON (`as_json`)."""

    person: dict[str, Any]
    passes: list[dict[str, Any]]
    templates: list[dict[str, Any]]
    passages: list[dict[str, Any]]
    usage: list[dict[str, Any]]
    conflicts: list[dict[str, Any]]
    audit: list[dict[str, Any]]
    exported_at: str

    def as_json(self) -> dict[str, Any]:
        return {"exported_at": self.exported_at, "person": self.person, "passes": self.passes,
                "templates": self.templates, "passages": self.passages, "usage": self.usage,
                "conflicts": self.conflicts, "audit": self.audit}


def export_person(session: Session, person_id: int, actor: str | None = None,
                  now: datetime | None = None) -> PersonExport:
    """Everything held about `person_id` (NotFound once forgotten); records the export in the audit log."""
    person = get_person(session, person_id)
    holder = person.holder_ref
    passes = list(session.scalars(select(AnnualPass).where(AnnualPass.person_id == person_id)
                                  .order_by(AnnualPass.id)))
    refs = [p.ref for p in passes]
    templates = session.scalars(select(BiometricTemplate).where(BiometricTemplate.person_id == person_id)
                                .order_by(BiometricTemplate.kind, BiometricTemplate.finger))
    passages = list(session.scalars(select(PassageEventRecord).where(
        PassageEventRecord.site_id == person.site_id, PassageEventRecord.credential_ref.in_(refs))
        .order_by(PassageEventRecord.at, PassageEventRecord.id))) if refs else []
    usage = list(session.scalars(select(CredentialUsage).where(
        CredentialUsage.site_id == person.site_id, CredentialUsage.ref.in_(refs)))) if refs else []
    conflicts = list(session.scalars(select(Conflict).where(
        Conflict.site_id == person.site_id, Conflict.credential_ref.in_(refs)).order_by(Conflict.at))) if refs else []
    entries = session.scalars(select(AuditEntry).where(or_(AuditEntry.target == holder, AuditEntry.target.in_(refs)))
                              .order_by(AuditEntry.at, AuditEntry.id))
    out = PersonExport(
        person={"id": person.id, "holder": holder, "site": person.site_id, "name": person.name,
                "phone": person.phone, "id_last4": person.id_last4, "created_at": _iso(person.created_at)},
        passes=[{"id": p.id, "ref": p.ref, "card_uid": p.card_uid, "status": p.status,
                 "valid_from": _iso(p.valid_from), "valid_to": _iso(p.valid_to), "zones": list(p.zones or []),
                 "channel": p.channel, "price": str(p.price), "created_at": _iso(p.created_at),
                 "status_changed_at": _iso(p.status_changed_at)} for p in passes],
        templates=[{"kind": t.kind, "finger": t.finger, "version": t.version, "created_at": _iso(t.created_at)}
                   for t in templates],
        passages=[{"event_id": e.event_id, "gate": e.gate, "zone": e.zone, "at": _iso(e.at),
                   "direction": e.direction, "credential_kind": e.credential_kind, "credential_ref": e.credential_ref,
                   "decision": e.decision, "reason": e.reason, "passed": e.passed, "headcount": e.headcount,
                   "offline": e.offline} for e in passages],
        usage=[{"ref": u.ref, "entries": u.entries, "exits": u.exits, "last_entry_at": _iso(u.last_entry_at),
                "last_gate": u.last_gate} for u in usage],
        conflicts=[{"event_id": c.event_id, "credential_ref": c.credential_ref, "reason": c.reason, "gate": c.gate,
                    "other_gate": c.other_gate, "at": _iso(c.at), "offline": c.offline} for c in conflicts],
        audit=[{"at": _iso(a.at), "actor": a.actor, "action": a.action, "target": a.target, "detail": a.detail}
               for a in entries],
        exported_at=_iso(now or utcnow()) or "",
    )
    audit(session, actor, "person.export", holder, passes=len(out.passes), passages=len(out.passages))
    return out
