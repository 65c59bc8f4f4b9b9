"""The audit log: who did what to which record (never personal data in the detail)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from central.models import AuditEntry


def audit(session: Session, actor: str | None, action: str, target: str = "", **detail: Any) -> AuditEntry:
    entry = AuditEntry(actor=actor or "system", action=action, target=target, detail=detail)
    session.add(entry)
    return entry
