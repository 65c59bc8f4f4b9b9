"""Login for staff: password check with lock-out, recorded per user in the audit log.

Five failed attempts for one username within 15 minutes lock that username for 15 minutes from the
last failure; a successful login (or an admin's unlock) starts the count afresh. The failures are audit entries
(`auth.failed`, target = the username tried), so the lock-out survives a restart, holds across
worker processes, and the audit page shows who was hammering at which account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from central.models import AuditEntry, StaffUser, utcnow
from central.services.audit import audit
from central.services.users import authenticate

MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)


@dataclass(frozen=True)
class LoginResult:
    user: StaffUser | None
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.user is not None


def _failures_since(session: Session, username: str, since: datetime) -> tuple[int, datetime | None]:
    last_ok = session.scalar(select(func.max(AuditEntry.at)).where(
        AuditEntry.action.in_(("auth.login", "auth.unlock")), AuditEntry.target == username))
    if last_ok is not None and last_ok > since:
        since = last_ok
    count, last = session.execute(select(func.count(AuditEntry.id), func.max(AuditEntry.at)).where(
        AuditEntry.action == "auth.failed", AuditEntry.target == username, AuditEntry.at > since)).one()
    return int(count or 0), last


def locked_until(session: Session, username: str, now: datetime | None = None) -> datetime | None:
    """When the lock on `username` ends, or None when it may try to log in."""
    now = now or utcnow()
    count, last = _failures_since(session, username, now - LOCK_FOR)
    if count >= MAX_FAILURES and last is not None:
        return last + LOCK_FOR
    return None


def login(session: Session, username: str, password: str, remote: str = "") -> LoginResult:
    """Check a login; records success or failure in the audit log (the caller commits)."""
    username = (username or "").strip()[:128]
    now = utcnow()
    until = locked_until(session, username, now)
    if until is not None:
        audit(session, "anonymous", "auth.refused_locked", username, remote=remote)
        return LoginResult(None, until)
    user = authenticate(session, username, password or "") if username else None
    if user is None:
        audit(session, "anonymous", "auth.failed", username, remote=remote)
        session.flush()
        until = locked_until(session, username, now)
        if until is not None:
            audit(session, "system", "auth.locked", username, minutes=int(LOCK_FOR.total_seconds() // 60))
        return LoginResult(None, until)
    audit(session, user.username, "auth.login", user.username, remote=remote)
    return LoginResult(user)


def unlock(session: Session, username: str, actor: str) -> None:
    """An admin lifts a lock-out: the failure count starts afresh after this entry."""
    audit(session, actor, "auth.unlock", username)
