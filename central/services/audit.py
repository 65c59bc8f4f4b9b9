"""The audit log: who did what to which record (never personal data in the detail)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Insert, insert
from sqlalchemy.orm import Session

from central.db import table
from central.models import AuditEntry


def audit(session: Session, actor: str | None, action: str, target: str = "", **detail: Any) -> AuditEntry:
    entry = AuditEntry(actor=actor or "system", action=action, target=target, detail=detail)
    session.add(entry)
    return entry


@functools.cache
def _insert_sql() -> Insert:
    return insert(table(AuditEntry))


def audit_rows(session: Session, entries: list[tuple[str | None, str, str, dict[str, Any]]]) -> None:
    """Several entries (actor, action, target, detail) in one INSERT, without the ORM (a booking's)."""
    session.execute(_insert_sql(), [{"actor": actor or "system", "action": action, "target": target,
                                                  "detail": detail} for actor, action, target, detail in entries])
