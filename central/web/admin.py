"""The admin's pages: the audit log (who did what), staff accounts, lock-outs and machine tokens.

Every change is a POST form with the CSRF token and a confirmation prompt (`data-confirm`), and is
audited by the service it calls: deactivating a user ends their sessions at once, revoking a token
makes its next request a 401.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from central.i18n import _
from central.models import ROLES
from central.services import ServiceError
from central.services import users as user_service
from central.services.users import create_user
from central.web import queries, security
from central.web.stack import commit, db, require, signed_in, site_id

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/audit")
@require()
def audit():
    args = request.args
    before = args.get("before", type=int)
    entries = queries.audit_entries(db(), actor=args.get("actor", "").strip(), action=args.get("action", "").strip(),
                                    target=args.get("target", "").strip(), before_id=before)
    return render_template("admin/audit.html", entries=entries, args=args)


def _users_page(status: int = 200, **extra):
    rows = queries.staff_users(db())
    locks = {u.username: security.lock_state(db(), u.username) for u in rows}
    sessions = {u.username: user_service.live_sessions(db(), u.id) for u in rows}
    parks = {u.username: user_service.user_site_ids(db(), u) for u in rows}
    return render_template("admin/users.html", users=rows, roles=ROLES, locks=locks, sessions=sessions,
                           tokens=user_service.list_tokens(db()), me=signed_in().username, parks=parks,
                           sites=queries.sites(db()), this_site=site_id(),
                           **({"password": None, "form": {}, "errors": {}} | extra)), status


@bp.route("/users")
@require()
def users():
    return _users_page()


@bp.post("/users")
@require()
def add_user():
    form = request.form
    if not form.get("role"):
        return _users_page(form=form, errors={"role": _("Choose the user's role.")}, status=422)
    try:
        user, password = create_user(db(), (form.get("username") or "").strip(), form.get("role", ""),
                                     form.get("password") or None, actor=signed_in().username,
                                     sites=form.getlist("sites"), all_sites=form.get("all_sites") == "1")
        commit()
    except ServiceError as exc:
        db().rollback()
        field = {"bad_username": "username", "user_exists": "username", "bad_password": "password",
                 "bad_role": "role", "no_sites": "sites", "bad_site": "sites"}.get(exc.code, "form")
        return _users_page(form=form, errors={field: exc.text}, status=422)
    shown = None if request.form.get("password") else password  # a generated password is shown once
    return _users_page(password=shown, new_user=user.username)


@bp.post("/users/<username>/unlock")
@require()
def unlock(username: str):
    security.unlock(db(), username, signed_in().username)
    commit()
    flash(_("%(user)s may log in again.", user=username))
    return redirect(url_for(".users"))


def _change(action, done: str):
    try:
        action()
        commit()
        flash(done)
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
    return redirect(url_for(".users"))


@bp.post("/users/<username>/deactivate")
@require()
def deactivate(username: str):
    return _change(lambda: user_service.deactivate_user(db(), username, actor=signed_in().username),
                   _("%(user)s is deactivated: their sessions have ended.", user=username))


@bp.post("/users/<username>/sites")
@require()
def set_sites(username: str):
    form = request.form
    return _change(lambda: user_service.set_user_sites(db(), username, form.getlist("sites"),
                                                       all_sites=form.get("all_sites") == "1",
                                                       actor=signed_in().username),
                   _("Parks saved for %(user)s: their next page shows only those.", user=username))


@bp.post("/users/<username>/reactivate")
@require()
def reactivate(username: str):
    return _change(lambda: user_service.reactivate_user(db(), username, actor=signed_in().username),
                   _("%(user)s may log in again.", user=username))


@bp.post("/tokens/<int:token_id>/revoke")
@require()
def revoke_token(token_id: int):
    try:
        token = user_service.revoke_token(db(), token_id, actor=signed_in().username)
        commit()
        flash(_("Token %(name)s is revoked: it no longer opens the API.", name=token.name))
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
    return redirect(url_for(".users"))
