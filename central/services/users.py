"""Staff users (session login for the web UI) and machine tokens (`Authorization: Bearer`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.models import ROLES, ApiToken, StaffUser, utcnow
from central.services import Invalid, Refused
from central.services.audit import audit

_N, _R, _P = 2**14, 8, 1


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
        raise Invalid("bad_role", f"role must be one of {', '.join(ROLES)}")
    return role


def create_user(session: Session, username: str, role: str, password: str | None = None,
                actor: str | None = None) -> tuple[StaffUser, str]:
    """A new staff user; returns the user and the password (generated when not given)."""
    _check_role(role)
    if not username or len(username) > 128:
        raise Invalid("bad_username", "a username is 1-128 characters")
    if session.scalar(select(StaffUser).where(StaffUser.username == username)):
        raise Refused("user_exists", f"user {username} exists")
    password = password or secrets.token_urlsafe(12)
    user = StaffUser(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    audit(session, actor, "user.create", username, role=role)
    session.flush()
    return user, password


def authenticate(session: Session, username: str, password: str) -> StaffUser | None:
    user = session.scalar(select(StaffUser).where(StaffUser.username == username, StaffUser.active.is_(True)))
    if user is None or not check_password(user.password_hash, password):
        return None
    user.last_login_at = utcnow()
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, role: str, actor: str | None = None) -> tuple[ApiToken, str]:
    """A machine token; the plaintext is returned once and stored only as its SHA-256."""
    _check_role(role)
    plaintext = "pc_" + secrets.token_urlsafe(32)
    token = ApiToken(name=name, token_hash=_token_hash(plaintext), role=role)
    session.add(token)
    audit(session, actor, "token.create", name, role=role)
    session.flush()
    return token, plaintext


def token_for(session: Session, plaintext: str) -> ApiToken | None:
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(plaintext)))
    if token is None or token.revoked_at is not None:
        return None
    token.last_used_at = utcnow()
    return token


def revoke_token(session: Session, token_id: int, actor: str | None = None) -> None:
    token = session.get(ApiToken, token_id)
    if token is not None and token.revoked_at is None:
        token.revoked_at = utcnow()
        audit(session, actor, "token.revoke", token.name)
