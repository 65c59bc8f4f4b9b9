"""One request stack for the pages and the JSON API: the running central, the request's database
session, who is asking, the role guard, and the commit that publishes.

    current_context()  the CentralContext the app factory keeps (config, sessions, signer, publisher)
    db()               the request's session: one unit of work, rolled back and closed at teardown
    commit()           commit it; the gates then learn what changed (deltas, configs) from the one
                       after-commit hook of request sessions (`central.context.publish_after_commit`)
    current_user()     the staff user of a live server-side session (`staff_sessions`), or None
    actor()            who is asking: that user, or under /api/ a bearer token
    require(*roles)    only these roles (and admin); anonymous: JSON 401 under /api/, else the login page;
                       another role: JSON 403 under /api/, else the 403 page
    visible_sites()    the parks the asker works for (a user's parks, a token's park, or every park)
    site_id()          the park this request is about: the one chosen in the header's park switch
                       (kept in the session), else the central's own, else the asker's first park

Tokens count only under /api/ (a page never takes one); a session cookie counts everywhere, and its
POSTs carry the CSRF token (`central.web`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import abort, current_app, g, redirect, request, session, url_for
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from central.config import CentralConfig
from central.context import PUBLISH, CentralContext
from central.db import restrict_to_sites
from central.i18n import _l
from central.models import StaffUser
from central.services import ServiceError
from central.services import users as user_service
from central.services.replica import UNAVAILABLE, StandbyState, standby_state

log = logging.getLogger(__name__)

EXTENSION = "central"  # app.extensions key of the CentralContext
PASSWORD_PAGES = frozenset({"auth.change_password", "auth.logout", "i18n.set_language"})
HUB = "central_web_hub"  # app.extensions key of the live hub
API_PREFIX = "/api/"


class Unauthorised(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


def gates_served_here(site: str) -> None:
    """A head office does not configure a park server's gates: they take their config from the park's own
    central (a change here would never reach them). Refused, saying where to go."""
    from central.i18n import _l
    from central.services import Refused

    cfg = config()
    if cfg.is_home(site):
        return
    server = next((name for name, sites in cfg.replication.peers().items() if sites and site in sites), "?")
    raise Refused("gates_elsewhere", _l("The gates of %(site)s are served by its own park server (%(server)s): "
                                        "configure them there.", site=site, server=server))


@dataclass(frozen=True)
class Actor:
    """Who is asking: `name` goes into the audit log (a username, or token:<name>)."""

    role: str
    name: str
    user: StaffUser | None = None
    customer_id: int | None = None  # a channel's token: scoped to this customer ...
    site: str | None = None  # ... and this site


def current_context() -> CentralContext:
    return current_app.extensions[EXTENSION]


ctx = current_context


def config() -> CentralConfig:
    return current_context().config


SITE_KEY = "site"  # the session key of the park chosen in the header


def visible_sites() -> list[str]:
    """The parks the asker may see and act for (see the module doc); a visitor's page: the central's."""
    if "sites" not in g:
        who = actor()
        if who is None:
            sites = [config().site]
        elif who.user is not None:
            sites = user_service.user_site_ids(db(), who.user)
        else:
            sites = user_service.token_site_ids(db(), g.token)
        g.sites = sites
        restrict_to_sites(db(), sites)  # from here on this request reads only these parks' rows
    return g.sites


def site_id() -> str:
    """The park of this request (see the module doc); `require` has refused an asker with no park."""
    if "site_id" not in g:
        sites = visible_sites()
        chosen = session.get(SITE_KEY) if current_user() is not None else None
        own = config().site
        g.site_id = chosen if chosen in sites else own if own in sites or not sites else sites[0]
    return g.site_id


def may_see_site(site: str) -> bool:
    return site in visible_sites()


def live_hub():
    return current_app.extensions.get(HUB)


def is_api() -> bool:
    return request.path.startswith(API_PREFIX)


def db() -> Session:
    """The request's session; a view commits what it changed (`commit`), teardown rolls back the rest."""
    if "db" not in g:
        g.db = current_context().sessions()
    return g.db


def report_db() -> tuple[Session, StandbyState | None]:
    """The session reports read, and what to say about it: the standby's when `[database] read_url`
    names one and it answers, else the request's own (the primary), with a note that the standby is away."""
    read_sessions = current_context().read_sessions
    if read_sessions is None:
        return db(), None
    if "read_db" not in g:
        session = read_sessions()
        try:
            g.standby = standby_state(session)
        except OperationalError:
            session.invalidate()
            g.read_db, g.standby = db(), UNAVAILABLE
        else:
            restrict_to_sites(session, visible_sites())  # the asker's parks only, as on the primary
            g.read_db = session
    return g.read_db, g.standby


def database_away(exc: OperationalError):
    """The database did not answer (a primary failing over to its standby): 503 and "try again", never a
    500. A page of its own, not base.html: that one asks the database who is logged in."""
    from flask import jsonify, make_response, render_template
    from flask_babel import force_locale

    log.warning("database not answering for %s: %s", request.endpoint, exc.__class__.__name__)
    g.database_away = True  # the page's language and time zone: without asking the database
    for key in ("read_db", "db"):
        session = g.pop(key, None)
        if session is not None:
            session.invalidate()
    text = _l("The database is not answering (it may be switching to its standby server). Nothing you "
              "entered was saved: wait a minute and try again.")
    if is_api():
        with force_locale("en"):
            response = jsonify({"error": "database_unavailable", "detail": str(text)})
    else:
        response = make_response(render_template("database_unavailable.html", text=text))
    response.status_code = 503
    response.headers["Retry-After"] = "30"
    return response


def commit() -> None:
    """Commit the request's work; the after-commit hook then publishes what the gates must learn."""
    session = db()
    session.info[PUBLISH] = True
    try:
        session.commit()
    finally:
        session.info.pop(PUBLISH, None)


def close_db(_exc: BaseException | None = None) -> None:
    read = g.pop("read_db", None)
    if read is not None and read is not g.get("db"):
        read.close()
    session = g.pop("db", None)
    if session is not None:
        session.rollback()
        session.close()


def _commit_touch(session: Session, pending: bool) -> None:
    """Keep a session's or token's last-seen time: committed at once when the view has nothing yet."""
    if not pending and session.dirty:
        session.commit()


def current_user() -> StaffUser | None:
    """The user of this request's session cookie, if its server-side session is still live."""
    if "user" not in g:
        user = None
        if session.get("user_id") is not None or session.get("sid") is not None:
            session_db = db()
            pending = bool(session_db.new or session_db.dirty or session_db.deleted)
            user = user_service.session_user(session_db, session.get("sid"))
            if user is None:
                session.clear()  # revoked, expired or unknown: the cookie is worth nothing now
            else:
                _commit_touch(session_db, pending)
        g.user = user
    return g.user


def signed_in() -> StaffUser:
    """The logged-in user of a page that `require` let through (pages take no API tokens: there is one)."""
    user = current_user()
    if user is None:
        abort(401)
    return user


def actor() -> Actor | None:
    """Who is asking (see the module doc); None when nobody is logged in and no token counts."""
    if "who" not in g:
        who = None
        header = request.headers.get("Authorization", "")
        if is_api() and header.startswith("Bearer "):
            session_db = db()
            pending = bool(session_db.new or session_db.dirty or session_db.deleted)
            token = user_service.token_for(session_db, header[7:].strip())
            if token is None:
                g.auth_error = ("bad_token", "unknown or revoked token")
            else:
                who = Actor(token.role, f"token:{token.name}", customer_id=token.customer_id, site=token.site_id)
                g.token = token
                _commit_touch(session_db, pending)
        else:
            user = current_user()
            if user is not None:
                who = Actor(user.role, user.username, user)
        g.who = who
    return g.who


def has_role(*roles: str) -> bool:
    who = actor()
    return who is not None and (who.role == "admin" or who.role in roles)


def require(*roles: str) -> Callable:
    """Only these roles (and admin) may use the view (see the module doc); sets g.actor and g.role."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any):
            who = actor()
            if who is None:
                if is_api():
                    code, detail = g.get("auth_error") or ("login_required",
                                                            "send Authorization: Bearer <token> or log in")
                    raise Unauthorised(code, detail)
                if request.accept_mimetypes.best == "text/event-stream" or request.headers.get("HX-Request"):
                    abort(401)
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if who.user is not None and who.user.must_change_password and request.endpoint not in PASSWORD_PAGES:
                # A one-time password (generated at creation or reset): nothing else until it is replaced.
                if is_api():
                    raise Forbidden("password_change_required", _l("Choose your own password first."))
                return redirect(url_for("auth.change_password", next=request.full_path.rstrip("?")))
            if who.role != "admin" and who.role not in roles:
                if is_api():
                    raise Forbidden("forbidden", _l("Your role may not do this."))
                abort(403)
            if not visible_sites():
                if is_api():
                    raise Forbidden("no_sites", _l("You work for no park yet: ask an administrator."))
                abort(403)
            g.actor, g.role = who.name, who.role
            return view(*args, **kwargs)

        # Marks on the view function: functools.wraps' type has no such attributes.
        guarded.roles = roles  # type: ignore[attr-defined]  # read by the role-matrix tests
        guarded.api_roles = roles  # type: ignore[attr-defined]  # and by the OpenAPI document (x-roles)
        return guarded

    return decorate


__all__ = ["Actor", "Forbidden", "Unauthorised", "actor", "close_db", "commit", "config", "ctx", "current_context",
           "current_user", "database_away", "db", "has_role", "is_api", "live_hub", "may_see_site", "report_db",
           "require", "signed_in", "site_id", "visible_sites"]
