"""Staff users (session login for the web UI), their sessions, and machine tokens (`Authorization: Bearer`).

A browser's login is a `StaffSession` row: the signed cookie carries its random id, the table its
SHA-256. `session_user` admits a cookie only while that row exists, is unrevoked and unexpired, and
its user is active, so a session ends at once, on every web process, when

    logout               end_session            that session
    password change      set_password           every session of the user
    deactivation         deactivate_user        every session of the user

The request stack (`central.web.stack.current_user`, for pages and the API alike)
both call `session_user`. Tokens: `revoke_tokens` ends every active token of a name at once (the
next request with it gets 401).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from central.db import rowcount
from central.i18n import _l
from central.models import ROLES, ApiToken, Customer, Site, StaffSession, StaffUser, StaffUserSite, utcnow
from central.services import Invalid, NotFound, Refused
from central.services.audit import audit

_N, _R, _P = 2**14, 8, 1
SESSION_LIFETIME = timedelta(hours=12)  # as the cookie's (PERMANENT_SESSION_LIFETIME)
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often per session
MAX_PASSWORD = 1024  # scrypt reads all of it: bound the work one request can ask for


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(got, base64.b64decode(digest))


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise Invalid("bad_role", _l('Choose a role from the list.'))
    return role


def create_user(session: Session, username: str, role: str, password: str | None = None,
                actor: str | None = None, one_time: bool | None = None, *, sites: list[str] | None = None,
                all_sites: bool = False) -> tuple[StaffUser, str]:
    """A new staff user; returns the user and the password. A generated password (none given) is
    one-time: the user must choose their own at first login (`one_time` says so for a given one).
    The user works for `sites` (park ids), or every park with `all_sites` (head office)."""
    _check_role(role)
    wanted = _check_sites(session, sites or [], all_sites or role == "admin")
    if not isinstance(username, str) or not username.strip() or len(username) > 128:
        raise Invalid("bad_username", _l("A username is 1 to 128 characters."))
    if session.scalar(select(StaffUser).where(StaffUser.username == username)):
        raise Refused("user_exists", _l('There is already a user %(username)s.', username=username))
    if one_time is None:
        one_time = password is None
    password = _check_new_password(password, username) if password is not None else generate_password()
    user = StaffUser(username=username, password_hash=hash_password(password), role=role,
                     must_change_password=one_time, all_sites=all_sites)
    session.add(user)
    session.flush()
    session.add_all(StaffUserSite(user_id=user.id, site_id=site) for site in wanted)
    audit(session, actor, "user.create", username, role=role, sites="*" if all_sites else ",".join(wanted))
    session.flush()
    return user, password


def _check_sites(session: Session, sites: list[str], any_allowed: bool) -> list[str]:
    """The parks named, each one existing; at least one unless the user sees every park."""
    known = set(session.scalars(select(Site.id)))
    unknown = sorted(set(sites) - known)
    if unknown:
        raise Invalid("bad_site", _l("There is no park %(site_id)s.", site_id=", ".join(unknown)))
    if not sites and not any_allowed:
        raise Invalid("no_sites", _l("Choose the parks this user works for."))
    return sorted(set(sites))


def user_site_ids(session: Session, user: StaffUser) -> list[str]:
    """The parks a user works for, in id order: every park for an admin or a head-office user."""
    if user.role == "admin" or user.all_sites:
        return list(session.scalars(select(Site.id).order_by(Site.id)))
    return list(session.scalars(select(StaffUserSite.site_id).where(StaffUserSite.user_id == user.id)
                                .order_by(StaffUserSite.site_id)))


def set_user_sites(session: Session, username: str, sites: list[str], all_sites: bool = False,
                   actor: str | None = None) -> StaffUser:
    """Change the parks a user works for (audited); their next request sees only those."""
    user = get_user(session, username)
    wanted = _check_sites(session, sites, all_sites or user.role == "admin")
    session.query(StaffUserSite).filter(StaffUserSite.user_id == user.id).delete()
    session.add_all(StaffUserSite(user_id=user.id, site_id=site) for site in wanted)
    user.all_sites = all_sites
    audit(session, actor, "user.sites", username, sites="*" if all_sites else ",".join(wanted))
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> StaffUser | None:
    user = session.scalar(select(StaffUser).where(StaffUser.username == username, StaffUser.active.is_(True)))
    if user is None or len(password) > MAX_PASSWORD or not check_password(user.password_hash, password):
        return None
    user.last_login_at = utcnow()
    return user


def get_user(session: Session, username: str) -> StaffUser:
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    if user is None:
        raise NotFound("no_user", _l('There is no user %(username)s.', username=username))
    return user


def list_users(session: Session) -> list[StaffUser]:
    return list(session.scalars(select(StaffUser).order_by(StaffUser.username)))


MIN_PASSWORD = 10
# Passwords people pick first and attackers try first (at least MIN_PASSWORD long; shorter ones are
# refused by length anyway). NIST SP 800-63B: length and a list of known-bad passwords, no composition rules.
COMMON_PASSWORDS = frozenset({
    "1234567890", "0123456789", "12345678910", "0987654321", "1111111111", "1234512345", "1q2w3e4r5t",
    "1qaz2wsx3edc", "123456789a", "a123456789", "abc1234567", "abcd123456", "abcdefghij", "qwertyuiop",
    "asdfghjkl;", "zxcvbnm123", "password12", "password123", "password1!", "passw0rd12", "admin12345",
    "admin123456", "administrator", "welcome123", "welcome1234", "iloveyou12", "qwerty1234", "qwerty12345",
    "letmein123", "changeme12", "p@ssw0rd12", "woaini1314", "5201314520", "a1b2c3d4e5", "aa12345678",
    "zhang123456", "wang1234567", "li12345678", "huangshan123", "scenicpark1", "park123456", "ticket1234",
    "gate123456",
})


def generate_password() -> str:
    """A one-time password for a new or reset account (16 characters, about 96 bits)."""
    return secrets.token_urlsafe(12)


def _check_new_password(password: str, username: str | None = None) -> str:
    """The password policy: at least MIN_PASSWORD characters, not a known-bad one, not the username,
    not one character repeated."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        raise Invalid("bad_password", _l('A password is at most %(n)s characters.', n=MAX_PASSWORD))
    if len(password) < MIN_PASSWORD:
        raise Invalid("bad_password", _l("A password has at least %(n)s characters: a short sentence is easy to "
                                         "remember and hard to guess.", n=MIN_PASSWORD))
    lowered = password.lower()
    # Mostly the username ("admin12345" for admin) is as good as the username alone.
    around_name = lowered.replace(username.lower(), "") if username else lowered
    if lowered in COMMON_PASSWORDS or len(set(password)) < 3 or len(around_name) < 6:
        raise Invalid("bad_password", _l("This password is too easy to guess (a common one, the username, or one "
                                         "character repeated): choose another."))
    return password


def set_password(session: Session, user: StaffUser, password: str | None = None,
                 actor: str | None = None) -> str:
    """A new password for `user` (generated when not given: one-time, to be changed at the next
    login); every session of theirs ends."""
    generated = password is None
    password = _check_new_password(password, user.username) if password is not None else generate_password()
    user.password_hash = hash_password(password)
    user.must_change_password = generated
    ended = revoke_sessions(session, user.id, "password")
    audit(session, actor, "user.password", user.username, sessions_ended=ended)
    return password


def change_own_password(session: Session, user: StaffUser, current: str, new: str) -> None:
    """The user changes their own password: the current one must be right."""
    if len(current) > MAX_PASSWORD or not check_password(user.password_hash, current):
        raise Refused("wrong_password", _l("The current password is wrong."))
    set_password(session, user, new, actor=user.username)


def deactivate_user(session: Session, username: str, actor: str | None = None) -> StaffUser:
    """The user may no longer log in, and every session of theirs ends at once."""
    user = get_user(session, username)
    if actor == username:
        raise Refused("own_account", _l("You cannot deactivate your own account."))
    if user.role == "admin" and user.active:
        admins = session.scalars(select(StaffUser.id).where(StaffUser.role == "admin", StaffUser.active.is_(True)))
        if len(list(admins)) <= 1:
            raise Refused("last_admin", _l("The last active admin cannot be deactivated."))
    was_active = user.active
    user.active = False
    ended = revoke_sessions(session, user.id, "deactivated")
    if was_active or ended:
        audit(session, actor, "user.deactivate", username, sessions_ended=ended)
    return user


def reactivate_user(session: Session, username: str, actor: str | None = None) -> StaffUser:
    user = get_user(session, username)
    if not user.active:
        user.active = True
        audit(session, actor, "user.reactivate", username)
    return user


# --- browser sessions ---------------------------------------------------------------------------


def _sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def client_hash(secret: str | bytes, address: str | None) -> str | None:
    """A short keyed hash of a client address: tells clients apart without storing addresses."""
    if not address:
        return None
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, address.encode(), hashlib.sha256).hexdigest()[:16]


def start_session(session: Session, user: StaffUser, *, client: str | None = None,
                  lifetime: timedelta = SESSION_LIFETIME, now: datetime | None = None) -> str:
    """A new session for `user`; returns its id, for the cookie only (the table keeps its hash)."""
    now = now or utcnow()
    sid = secrets.token_urlsafe(32)
    session.add(StaffSession(sid_hash=_sid_hash(sid), user_id=user.id, created_at=now, last_seen_at=now,
                             expires_at=now + lifetime, client_hash=client))
    session.flush()
    return sid


def session_user(session: Session, sid: str | None, now: datetime | None = None) -> StaffUser | None:
    """The active user of a live session, or None (no such session, revoked, expired, user inactive).

    Marks the session seen (at most once a minute); the caller commits.
    """
    if not sid or not isinstance(sid, str) or len(sid) > 128:
        return None
    now = now or utcnow()
    row = session.scalar(select(StaffSession).where(StaffSession.sid_hash == _sid_hash(sid)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    user = session.get(StaffUser, row.user_id)
    if user is None or not user.active:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return user


def end_session(session: Session, sid: str | None, why: str = "logout") -> bool:
    """Revoke one session (logout); False when it was not live."""
    if not sid or not isinstance(sid, str):
        return False
    result = session.execute(update(StaffSession).where(
        StaffSession.sid_hash == _sid_hash(sid), StaffSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_why=why))
    return bool(rowcount(result))


def revoke_sessions(session: Session, user_id: int, why: str) -> int:
    """End every live session of a user; returns how many there were."""
    result = session.execute(update(StaffSession).where(
        StaffSession.user_id == user_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_why=why))
    return rowcount(result)


def live_sessions(session: Session, user_id: int, now: datetime | None = None) -> int:
    now = now or utcnow()
    return len(list(session.scalars(select(StaffSession.id).where(
        StaffSession.user_id == user_id, StaffSession.revoked_at.is_(None), StaffSession.expires_at > now))))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, role: str, actor: str | None = None, customer_id: int | None = None,
                 site_id: str | None = None) -> tuple[ApiToken, str]:
    """A machine token; the plaintext is returned once and stored only as its SHA-256. With `site_id`
    it acts for that park only; without, for every park (a head office's own integration).

    A channel's token (an OTA, an agency) names its customer and site: what it orders is that
    customer's, at that site only (`central.web.api_finance`)."""
    _check_role(role)
    if customer_id is not None:
        customer = session.get(Customer, customer_id)
        if customer is None:
            raise NotFound("no_customer", _l("There is no such customer."))
        site_id = site_id or customer.site_id
        if site_id != customer.site_id:
            raise Invalid("bad_site", _l("The customer belongs to another park."))
    if site_id is not None:
        _check_sites(session, [site_id], False)
    plaintext = "pc_" + secrets.token_urlsafe(32)
    token = ApiToken(name=name, token_hash=_token_hash(plaintext), role=role, customer_id=customer_id,
                     site_id=site_id)
    session.add(token)
    audit(session, actor, "token.create", name, role=role, customer=customer_id, site=site_id or "*")
    session.flush()
    return token, plaintext


def token_for(session: Session, plaintext: str) -> ApiToken | None:
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(plaintext)))
    if token is None or token.revoked_at is not None:
        return None
    token.last_used_at = utcnow()
    return token


def token_site_ids(session: Session, token: ApiToken) -> list[str]:
    """The parks a token acts for: its one park, or every park."""
    if token.site_id is not None:
        return [token.site_id]
    return list(session.scalars(select(Site.id).order_by(Site.id)))


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.name, ApiToken.id)))


def revoke_token(session: Session, token_id: int, actor: str | None = None) -> ApiToken:
    """Revoke one token by id (the admin page's button); the next request with it gets 401."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound("no_token", _l('There is no such token.'))
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit(session, actor, "token.revoke", token.name, token_id=token.id)
    return token


def revoke_tokens(session: Session, name: str, actor: str | None = None) -> list[ApiToken]:
    """Revoke every active token named `name` (names need not be unique); NotFound when none is."""
    tokens = list(session.scalars(select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))))
    if not tokens:
        raise NotFound("no_token", _l('There is no active token named %(name)s.', name=name))
    for token in tokens:
        revoke_token(session, token.id, actor)
    return tokens
