"""Staff login and logout, the current user, and the role guard every page uses.

Roles: `admin` may go everywhere; `manager` the dashboard and reports; `staff` the desk (tickets,
passes, enrolment); `technician` the gates. An anonymous visitor is sent to the login page, a
logged-in user of another role gets 403.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for

from central.models import StaffUser
from central.web import security
from central.web.deps import db

bp = Blueprint("auth", __name__)

HOME = {"admin": "dashboard.index", "manager": "dashboard.index", "staff": "desk.index",
        "technician": "gates.index"}


def current_user() -> StaffUser | None:
    if "user" not in g:
        user = None
        uid = session.get("user_id")
        if uid is not None:
            user = db().get(StaffUser, uid)
            if user is None or not user.active:
                session.clear()
                user = None
        g.user = user
    return g.user


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
                                remote=request.remote_addr or "")
        db().commit()
        if result.ok:
            user = result.user
            # A new session on login: whatever the visitor carried before (a planted cookie) is gone.
            session.clear()
            session["user_id"] = user.id
            session["sid"] = secrets.token_urlsafe(16)
            session.permanent = True
            return redirect(_safe_next(request.args.get("next")) or url_for(HOME.get(user.role, "auth.login")))
        if result.locked_until is not None:
            error = (f"Too many failed attempts: this account is locked until "
                     f"{result.locked_until.strftime('%H:%M')} UTC.")
        else:
            error = "Wrong username or password."
    elif current_user() is not None:
        return redirect(url_for(HOME.get(current_user().role, "auth.login")))
    return render_template("login.html", error=error), (401 if error else 200)


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))


@bp.route("/")
def home():
    user = current_user()
    if user is None:
        return redirect(url_for("auth.login"))
    return redirect(url_for(HOME.get(user.role, "auth.login")))
