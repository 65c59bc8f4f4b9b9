"""The admin's pages: the audit log (who did what), staff accounts and lifting lock-outs."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from central.models import ROLES
from central.services import ServiceError
from central.services.users import create_user
from central.web import queries, security
from central.web.auth import current_user, require
from central.web.deps import db

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/audit")
@require()
def audit():
    args = request.args
    before = args.get("before", type=int)
    entries = queries.audit_entries(db(), actor=args.get("actor", "").strip(), action=args.get("action", "").strip(),
                                    target=args.get("target", "").strip(), before_id=before)
    return render_template("admin/audit.html", entries=entries, args=args)


@bp.route("/users")
@require()
def users():
    rows = queries.staff_users(db())
    locks = {u.username: security.lock_state(db(), u.username) for u in rows}
    return render_template("admin/users.html", users=rows, roles=ROLES, locks=locks, password=None)


@bp.post("/users")
@require()
def add_user():
    try:
        user, password = create_user(db(), (request.form.get("username") or "").strip(), request.form.get("role", ""),
                                     request.form.get("password") or None, actor=current_user().username)
        db().commit()
    except ServiceError as exc:
        db().rollback()
        flash(exc.detail or exc.code, "error")
        return redirect(url_for(".users"))
    rows = queries.staff_users(db())
    locks = {u.username: security.lock_state(db(), u.username) for u in rows}
    shown = None if request.form.get("password") else password  # a generated password is shown once
    return render_template("admin/users.html", users=rows, roles=ROLES, locks=locks, password=shown,
                           new_user=user.username)


@bp.post("/users/<username>/unlock")
@require()
def unlock(username: str):
    security.unlock(db(), username, current_user().username)
    db().commit()
    flash(f"{username} may log in again.")
    return redirect(url_for(".users"))
