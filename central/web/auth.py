"""Staff login and logout, and one's own password (the current user and the role guard every page
and API call uses are `central.web.stack`).

Roles: `admin` may go everywhere; `manager` the dashboard and reports; `staff` the desk (tickets,
passes, enrolment); `technician` the gates. An anonymous visitor is sent to the login page, a
logged-in user of another role gets 403.

Sessions are server-side records (`central.services.users`, table `staff_sessions`): Flask's signed
cookie only names one (`session["sid"]`), and the cookie counts only while that record is live. So
logout, a password change (`/account/password`) and a deactivation end sessions at once, on every
web process, however long the cookie itself would have lasted.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for

from central.i18n import _
from central.models import StaffUser
from central.services import ServiceError
from central.services import users as user_service
from central.web import security
from central.web.i18n import local_time
from central.web.stack import commit, current_user, db, has_role, require

bp = Blueprint("auth", __name__)

HOME = {"admin": "dashboard.index", "manager": "dashboard.index", "staff": "desk.index",
        "technician": "gates.index", "finance": "finance.index", "sales": "customers.index"}


def client_hash() -> str | None:
    """The keyed hash of this request's client address (sessions, login throttling)."""
    secret = current_app.secret_key
    if secret is None:
        raise RuntimeError("the app has no secret key (create_app sets one)")
    return user_service.client_hash(secret, request.remote_addr)


def start_session(user: StaffUser) -> None:
    """A fresh session for `user`: whatever the visitor carried before (a planted cookie) is gone."""
    lifetime = current_app.permanent_session_lifetime
    sid = user_service.start_session(db(), user, client=client_hash(), lifetime=lifetime)
    session.clear()
    session["user_id"] = user.id
    session["sid"] = sid
    session.permanent = True
    g.user = user
    g.pop("who", None)  # the request's actor is this user from now on


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
        commit()
        if result.ok:
            user = result.user
            start_session(user)
            commit()
            target = _safe_next(request.args.get("next")) or url_for(HOME.get(user.role, "auth.login"))
            if user.must_change_password:
                flash(_("You logged in with a one-time password: choose your own now."))
                return redirect(url_for("auth.change_password", next=target))
            return redirect(target)
        if result.locked_until is not None:
            error = _("Too many failed attempts: this account is locked on this device until %(time)s (or until an "
                      "admin unlocks it).", time=local_time(result.locked_until))
        elif result.retry_after_s is not None:
            error = _("Too many failed attempts for this account: wait %(n)s seconds and try again.",
                      n=result.retry_after_s)
        else:
            error = _("Wrong username or password.")
    elif current_user() is not None:
        return redirect(url_for(HOME.get(current_user().role, "auth.login")))
    return render_template("login.html", error=error), (401 if error else 200)


@bp.route("/logout", methods=["POST"])
def logout():
    user_service.end_session(db(), session.get("sid"), "logout")
    commit()
    session.clear()
    flash(_("You are logged out."))
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@require(*HOME)
def change_password():
    """Change one's own password: every session of the user ends, this browser gets a fresh one. A
    user with a one-time password comes here first, whatever page they asked for (`next`)."""
    error = None
    user = current_user()
    if request.method == "POST":
        new = request.form.get("new_password", "")
        if new != request.form.get("confirm_password", ""):
            error = _("The two new passwords differ.")
        else:
            try:
                user_service.change_own_password(db(), user, request.form.get("current_password", ""), new)
                start_session(user)
                commit()
                flash(_("Password changed: every other session of yours has ended."))
                return redirect(_safe_next(request.args.get("next")) or url_for("auth.home"))
            except ServiceError as exc:
                db().rollback()
                error = exc.text
    return render_template("account_password.html", error=error, one_time=user.must_change_password), \
        (400 if error else 200)


@bp.route("/")
def home():
    user = current_user()
    if user is None:
        return redirect(url_for("auth.login"))
    return redirect(url_for(HOME.get(user.role, "auth.login")))


__all__ = ["HOME", "bp", "client_hash", "current_user", "has_role", "require", "start_session"]
