"""Staff login and logout, the current user, and the role guard every page uses.

Roles: `admin` may go everywhere; `manager` the dashboard and reports; `staff` the desk (tickets,
passes, enrolment); `technician` the gates. An anonymous visitor is sent to the login page, a
logged-in user of another role gets 403.

Sessions are server-side records (`central.services.users`, table `staff_sessions`): Flask's signed
cookie only names one (`session["sid"]`), and the cookie counts only while that record is live. So
logout, a password change (`/account/password`) and a deactivation end sessions at once, on every
web process, however long the cookie itself would have lasted.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for

from central.models import StaffUser
from central.services import ServiceError
from central.services import users as user_service
from central.web import security
from central.web.deps import db

bp = Blueprint("auth", __name__)

HOME = {"admin": "dashboard.index", "manager": "dashboard.index", "staff": "desk.index",
        "technician": "gates.index"}


def current_user() -> StaffUser | None:
    """The user of this request's session, if that session is still live (see the module doc)."""
    if "user" not in g:
        user = None
        if session.get("user_id") is not None or session.get("sid") is not None:
            session_db = db()
            pending = bool(session_db.new or session_db.dirty or session_db.deleted)
            user = user_service.session_user(session_db, session.get("sid"))
            if user is None:
                session.clear()  # revoked, expired or unknown: the cookie is worth nothing now
            elif not pending and session_db.dirty:
                session_db.commit()  # only the session's last-seen time: nothing of the view's yet
        g.user = user
    return g.user


def client_hash() -> str | None:
    """The keyed hash of this request's client address (sessions, login throttling)."""
    return user_service.client_hash(current_app.secret_key, request.remote_addr)


def start_session(user: StaffUser) -> None:
    """A fresh session for `user`: whatever the visitor carried before (a planted cookie) is gone."""
    lifetime = current_app.permanent_session_lifetime
    sid = user_service.start_session(db(), user, client=client_hash(), lifetime=lifetime)
    session.clear()
    session["user_id"] = user.id
    session["sid"] = sid
    session.permanent = True
    g.user = user


def has_role(*roles: str) -> bool:
    user = current_user()
    return user is not None and (user.role == "admin" or user.role in roles)


def require(*roles: str) -> Callable:
    """Only these roles (and admin) may use the view; anonymous users go to the login page."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any):
            user = current_user()
            if user is None:
                if request.accept_mimetypes.best == "text/event-stream" or request.headers.get("HX-Request"):
                    abort(401)
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if not has_role(*roles):
                abort(403)
            return view(*args, **kwargs)

        guarded.roles = roles  # read by the role-matrix test
        return guarded

    return decorate


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site: never an absolute URL an attacker chose."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        result = security.login(db(), request.form.get("username", ""), request.form.get("password", ""),
                                remote=request.remote_addr or "", client=client_hash())
        db().commit()
        if result.ok:
            user = result.user
            start_session(user)
            db().commit()
            return redirect(_safe_next(request.args.get("next")) or url_for(HOME.get(user.role, "auth.login")))
        if result.locked_until is not None:
            error = (f"Too many failed attempts: this account is locked on this device until "
                     f"{result.locked_until.strftime('%H:%M')} UTC (or until an admin unlocks it).")
        elif result.retry_after_s is not None:
            error = (f"Too many failed attempts for this account: wait {result.retry_after_s} seconds "
                     "and try again.")
        else:
            error = "Wrong username or password."
    elif current_user() is not None:
        return redirect(url_for(HOME.get(current_user().role, "auth.login")))
    return render_template("login.html", error=error), (401 if error else 200)


@bp.route("/logout", methods=["POST"])
def logout():
    user_service.end_session(db(), session.get("sid"), "logout")
    db().commit()
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@require(*HOME)
def change_password():
    """Change one's own password: every session of the user ends, this browser gets a fresh one."""
    error = None
    if request.method == "POST":
        user = current_user()
        new = request.form.get("new_password", "")
        if new != request.form.get("confirm_password", ""):
            error = "The two new passwords differ."
        else:
            try:
                user_service.change_own_password(db(), user, request.form.get("current_password", ""), new)
                start_session(user)
                db().commit()
                flash("Password changed: every other session of yours has ended.")
                return redirect(url_for("auth.home"))
            except ServiceError as exc:
                db().rollback()
                error = exc.detail or exc.code
    return render_template("account_password.html", error=error), (400 if error else 200)


@bp.route("/")
def home():
    user = current_user()
    if user is None:
        return redirect(url_for("auth.login"))
    return redirect(url_for(HOME.get(user.role, "auth.login")))
