"""Login for staff: password check with throttling by client address, by (user, address) and by user.

A stranger must not be able to lock staff out, and nobody may guess passwords quickly. Three layers,
each answering a different attacker:

    layer                      limit                                        answer
    client address             10 failed POST /login a minute, 100 an hour   429 + Retry-After (Flask-Limiter)
    (user, client address)     5 failures in 15 minutes                     that user locked *from that address*
                                                                            for 15 minutes (an admin may lift it)
    user, from all addresses   from the 20th failure in 15 minutes          a short, growing delay (1, 2, 4 ...
                                                                            at most 60 s) before the next attempt

Why not lock the account itself, as before (five failures locked a username for everyone): then
anyone who can reach the login page can keep any account locked, the admin's included, with five
requests every 15 minutes. Locking the (user, address) pair keeps a typing user's own mistakes
expensive for them, while the real user at another address still gets in. One address alone reaches
5 counted failures per user in 15 minutes (the pair lock stops it, and the address limit stops it
trying many users quickly), so the per-user layer only comes in when many addresses try one account,
a distributed guess: then every attempt for that account waits a little, which slows guessing to about
one a minute but never shuts the real user out for long.

Only failed attempts count against an address (Flask-Limiter's `deduct_when`), so an office behind
one NAT address does not run out of logins. Behind a reverse proxy set `[web] proxy_hops`, or every
visitor has the proxy's address and one stranger throttles them all. Counters: the address limit
lives in Flask-Limiter's storage (`[web] ratelimit_storage`: "memory://" per process, or
"redis://host:6379" shared by several web processes); failures per user and pair are rows of
`login_failures` (shared, surviving restarts), keyed by a keyed hash of the address, never the
address itself. Every failure, lock and refusal is also an audit entry (`auth.failed`, `auth.locked`,
`auth.slowed`, `auth.refused_locked`, `auth.refused_slowed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from central.models import LoginFailure, StaffUser, utcnow
from central.services.audit import audit
from central.services.users import authenticate

PAIR_MAX_FAILURES = 5
PAIR_LOCK_FOR = timedelta(minutes=15)
USER_WINDOW = timedelta(minutes=15)
USER_SLOW_AFTER = 20
USER_MAX_DELAY_S = 60
KEEP_FAILURES = timedelta(hours=1)  # longer than every window above
ADDRESS_LIMIT = "10 per minute;100 per hour"
ADDRESS_MESSAGE = ("Too many failed logins from your address: wait a minute and try again. "
                   "If you share this address with others, ask an admin.")
NO_CLIENT = "-"

# Backwards-compatible names (the admin page and older callers).
MAX_FAILURES = PAIR_MAX_FAILURES
LOCK_FOR = PAIR_LOCK_FOR


@dataclass(frozen=True)
class LoginResult:
    user: StaffUser | None
    locked_until: datetime | None = None  # this user is locked from this address until then
    retry_after_s: int | None = None  # this user is slowed down (many addresses failed): wait this long

    @property
    def ok(self) -> bool:
        return self.user is not None


@dataclass(frozen=True)
class LockState:
    """What the admin page shows for a user: addresses locked out and any per-user delay."""

    locked_addresses: int
    locked_until: datetime | None
    slowed_until: datetime | None

    def __bool__(self) -> bool:
        return self.locked_until is not None or self.slowed_until is not None


def user_delay_s(failures: int) -> int:
    """Seconds to wait after the user's latest failure: 0 below the threshold, then 1, 2, 4 ... 60."""
    if failures < USER_SLOW_AFTER:
        return 0
    return min(2 ** (failures - USER_SLOW_AFTER), USER_MAX_DELAY_S)


def _pair(session: Session, username: str, client: str, now: datetime) -> tuple[int, datetime | None]:
    count, last = session.execute(select(func.count(LoginFailure.id), func.max(LoginFailure.at)).where(
        LoginFailure.username == username, LoginFailure.client_hash == client,
        LoginFailure.at > now - PAIR_LOCK_FOR)).one()
    return int(count or 0), last


def _user(session: Session, username: str, now: datetime) -> tuple[int, datetime | None]:
    count, last = session.execute(select(func.count(LoginFailure.id), func.max(LoginFailure.at)).where(
        LoginFailure.username == username, LoginFailure.at > now - USER_WINDOW)).one()
    return int(count or 0), last


def pair_locked_until(session: Session, username: str, client: str, now: datetime | None = None) -> datetime | None:
    """When the lock of `username` from `client` ends, or None when it may try."""
    now = now or utcnow()
    count, last = _pair(session, username, client or NO_CLIENT, now)
    if count >= PAIR_MAX_FAILURES and last is not None and last + PAIR_LOCK_FOR > now:
        return last + PAIR_LOCK_FOR
    return None


def slowed_until(session: Session, username: str, now: datetime | None = None) -> datetime | None:
    """Until when every attempt for `username` waits (many addresses failed), or None."""
    now = now or utcnow()
    count, last = _user(session, username, now)
    delay = user_delay_s(count)
    if delay and last is not None and last + timedelta(seconds=delay) > now:
        return last + timedelta(seconds=delay)
    return None


def lock_state(session: Session, username: str, now: datetime | None = None) -> LockState:
    now = now or utcnow()
    rows = session.execute(select(LoginFailure.client_hash, func.count(LoginFailure.id), func.max(LoginFailure.at))
                           .where(LoginFailure.username == username, LoginFailure.at > now - PAIR_LOCK_FOR)
                           .group_by(LoginFailure.client_hash)).all()
    ends = [last + PAIR_LOCK_FOR for _client, count, last in rows if count >= PAIR_MAX_FAILURES]
    return LockState(len(ends), max(ends) if ends else None, slowed_until(session, username, now))


def locked_until(session: Session, username: str, now: datetime | None = None) -> datetime | None:
    """The latest end of any address's lock on `username` (None: no address is locked out)."""
    return lock_state(session, username, now).locked_until


def login(session: Session, username: str, password: str, remote: str = "", client: str | None = None,
          now: datetime | None = None) -> LoginResult:
    """Check a login; records success or failure (the caller commits). `client` is the keyed hash of
    the address (`central.web.auth.client_hash`); `remote` only goes into the audit entries."""
    username = (username or "").strip()[:128]
    client = client or NO_CLIENT
    now = now or utcnow()
    until = pair_locked_until(session, username, client, now)
    if until is not None:
        audit(session, "anonymous", "auth.refused_locked", username, remote=remote)
        return LoginResult(None, locked_until=until)
    slow = slowed_until(session, username, now)
    if slow is not None:
        audit(session, "anonymous", "auth.refused_slowed", username, remote=remote)
        return LoginResult(None, retry_after_s=max(1, int((slow - now).total_seconds() + 0.999)))
    user = authenticate(session, username, password or "") if username else None
    if user is None:
        audit(session, "anonymous", "auth.failed", username, remote=remote)
        session.execute(delete(LoginFailure).where(LoginFailure.at < now - KEEP_FAILURES))
        session.add(LoginFailure(username=username, client_hash=client, at=now))
        session.flush()
        until = pair_locked_until(session, username, client, now)
        if until is not None and _pair(session, username, client, now)[0] == PAIR_MAX_FAILURES:
            audit(session, "system", "auth.locked", username, remote=remote,
                  minutes=int(PAIR_LOCK_FOR.total_seconds() // 60))
        count, _last = _user(session, username, now)
        if count == USER_SLOW_AFTER:
            audit(session, "system", "auth.slowed", username, failures=count)
        return LoginResult(None, locked_until=until)
    # The user's own address starts afresh; failures from other addresses keep counting.
    session.execute(delete(LoginFailure).where(LoginFailure.username == username, LoginFailure.client_hash == client))
    audit(session, user.username, "auth.login", user.username, remote=remote)
    return LoginResult(user)


def unlock(session: Session, username: str, actor: str) -> None:
    """An admin lifts every lock and delay on `username`: its failure counts start afresh."""
    session.execute(delete(LoginFailure).where(LoginFailure.username == username))
    audit(session, actor, "auth.unlock", username)


def init_limiter(app: Flask, storage_uri: str) -> Limiter:
    """Flask-Limiter for this app, limiting failed POST /login per client address.

    One Limiter per app (not a module global): each app keeps its own counters.
    """
    limiter = Limiter(get_remote_address, app=app, storage_uri=storage_uri, strategy="moving-window",
                      headers_enabled=True, default_limits=[], key_prefix="park-central")
    rate = app.config.get("LOGIN_RATE_LIMIT", ADDRESS_LIMIT)

    @limiter.request_filter
    def _not_limited() -> bool:
        """Only the login is limited by decorator (the booking site takes from its limits itself): every
        other request skips the limiter's lookup of limits, a tenth of a booking's answer under a rush."""
        return request.endpoint != "auth.login"

    view = app.view_functions["auth.login"]
    # Flask-Limiter types its decorator's result for async views too; the login view it wraps is a plain one.
    app.view_functions["auth.login"] = limiter.limit(  # type: ignore[assignment]
        rate, methods=["POST"], error_message=ADDRESS_MESSAGE,
        deduct_when=lambda response: response.status_code != 302)(view)  # a success costs nothing
    return limiter
