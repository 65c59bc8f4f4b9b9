"""The central's one web stack: the JSON API and the server-rendered pages, on one request stack.

    request    the request's session and its commit, who is asking (session or token), the role guard
    api        /api/v1/...                         machines and staff   (api_schema: what each call reads)
    openapi    /api/v1/openapi.json                anyone    the API's OpenAPI document
    auth       /login /logout /account/password   everyone   server-side sessions, login throttling
    dashboard  /dashboard                          manager   live occupancy, passages per minute, gates
    live       /live/stream (server-sent events)   manager   fed by the LiveHub's MQTT subscription
    desk       /desk/...                           staff     tickets, look-ups, refunds, persons, passes, enrolment
    gate_pages /gates/...                          technician register, hardware, push config, modes, health
    reports    /reports/...                        manager   per day/hour/gate/type, settlement, CSV, print
    admin      /admin/audit /admin/users           admin     audit log, staff accounts, lock-outs, tokens
    customers  /customers/...                      sales     customers, contract prices, group orders
    finance    /finance/...                        finance   statements, refund approvals, shift reports, revenue
    shifts     /shifts/...                         staff     the box office: open, sell, refund, close a shift
    i18n       /language                           everyone  the page language; dates in the park's time
    booking    /book/...                           visitors  book a slot for a party, see, find, cancel (no login)
    booking_admin /bookings/...                    manager   booking calendar, settings, blocklist, report, desk
    alerts     /alerts                             manager, technician   open alerts, resolved by a person
    metrics    /metrics                            allowed networks or the metrics token (Prometheus)

`register(app, pages=...)` is called by `central.app.create_app`. Admin may go everywhere. Every POST needs the
CSRF token (a form field, or the X-CSRFToken header for htmx); machine calls to /api/v1 that carry
`Authorization: Bearer` are exempt, staff calls to /api/v1 with the session cookie are not.
Front-end pieces (htmx, uPlot) are served from `static/vendor/`, never from a CDN.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from flask import Blueprint, Flask, jsonify, render_template, request
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import OperationalError

from central.web.stack import EXTENSION, HUB, close_db, current_user, database_away, has_role, site_id

log = logging.getLogger(__name__)
csrf = CSRFProtect()
assets = Blueprint("web", __name__, static_folder="static", static_url_path="/static",
                   template_folder="templates")

CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
       "connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'none'")


HSTS = "max-age=31536000"  # a year; no includeSubDomains: other hosts of the park's domain are not ours


def register(app: Flask, pages: bool = True) -> None:
    """Plug the web stack into the central's app: the request stack, CSRF, the API, and with `pages`
    the browser pages (cookies, headers, languages, login throttling, the live hub)."""
    from central.web import i18n
    from central.web.api import api

    app.teardown_appcontext(close_db)
    i18n.init_app(app)  # every text, the API's error details too, comes from the one catalogue
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # checked below, so machine API calls can be exempt
    csrf.init_app(app)

    @app.before_request
    def _check_csrf():
        if request.method in ("GET", "HEAD", "OPTIONS", "TRACE") or request.routing_exception is not None:
            return None  # nothing to forge: a safe method, or no view will run (404, 405)
        # By path, not blueprint: a wrong method on an API route matches no blueprint, and is then a 405.
        if request.path.startswith("/api/") and request.headers.get("Authorization", "").startswith("Bearer "):
            return None  # a machine with a token: no cookie, so no cross-site request to forge
        csrf.protect()
        return None

    from central.web import api_finance  # noqa: F401  (customers, group orders, statements, shifts: on `api`)

    app.register_blueprint(api)
    from central.web import metrics_view

    metrics_view.init_app(app)  # /metrics for Prometheus, and every request counted
    if pages:
        _register_pages(app)


def _register_pages(app: Flask) -> None:
    from central.web import (
        admin,
        auth,
        dashboard,
        desk,
        gate_pages,
        i18n,
        live,
        openapi,
        parks,
        reporting,
        security,
        staff_help,
        ticket_types,
    )
    from central.web import customers as customer_pages
    from central.web import finance as finance_pages
    from central.web import shifts as shift_pages

    context = app.extensions[EXTENSION]  # the CentralContext create_app made
    config = context.config
    secure = bool(getattr(config.web, "secure_cookies", False)) or os.environ.get("PARK_CENTRAL_SECURE_COOKIES") == "1"
    app.config["SESSION_COOKIE_SECURE"] = app.config.get("SESSION_COOKIE_SECURE") or secure
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config.setdefault("PERMANENT_SESSION_LIFETIME", timedelta(hours=12))
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 12 * 3600)
    app.config.setdefault("MAX_PHOTO_BYTES", 8 * 1024 * 1024)
    # Live streams each hold a server thread: their cap follows waitress's thread count.
    app.config.setdefault("LIVE_STREAMS_MAX", live.stream_cap(getattr(config.web, "threads", 32)))
    for bp in (assets, auth.bp, dashboard.bp, live.bp, desk.bp, gate_pages.bp, reporting.bp, admin.bp, openapi.bp,
               ticket_types.bp, parks.bp, customer_pages.bp, finance_pages.bp, shift_pages.bp, staff_help.bp):
        app.register_blueprint(bp)
    limiter = security.init_limiter(app, getattr(config.web, "ratelimit_storage", "memory://"))
    from central.web import alerts_page, booking, booking_admin

    app.register_blueprint(alerts_page.bp)
    app.register_blueprint(booking.bp)  # the public booking site, /book/
    app.register_blueprint(booking_admin.bp)  # its calendar, settings, blocklist and report for managers
    booking.init_limits(app, limiter)
    booking_admin.init_app(app)

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if secure:  # served over HTTPS (a TLS proxy in front): browsers must not fall back to plain HTTP
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        if response.mimetype == "text/html":
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _page(status: int, error: str, title, text):
        """An error page in the reader's language; under /api/ the JSON error as before (English)."""
        if request.path.startswith("/api/"):
            with force_locale("en"):
                return jsonify({"error": error, "detail": str(text)}), status
        return render_template("error.html", status=status, title=title, text=text), status

    @app.errorhandler(CSRFError)
    def _csrf(exc):
        return _page(400, "form_expired", _l("Form expired"), _l("The form was missing its security token or it "
                     "expired: go back, reload the page and try again."))

    @app.errorhandler(403)
    def _forbidden(_exc):
        return _page(403, "forbidden", _l("Forbidden"), _l("Your role does not allow this page."))

    @app.errorhandler(404)
    def _not_found(_exc):
        return _page(404, "not_found", _l("Not found"), _l("There is no such page."))

    @app.errorhandler(401)
    def _unauthorised(_exc):
        return _page(401, "login_required", _l("Login required"), _l("Please log in."))

    @app.errorhandler(429)
    def _too_many(exc):
        text = getattr(exc, "description", None) or _l("Too many requests: wait a little and try again.")
        if request.endpoint == "auth.login":
            return render_template("login.html", error=text), 429
        return _page(429, "too_many_requests", _l("Too many requests"), text)

    @app.errorhandler(413)
    def _too_large(_exc):
        return _page(413, "too_large", _l("Too large"), _l("The upload is too large."))

    app.register_error_handler(OperationalError, database_away)

    def emergency_gates() -> list[str]:
        """The gates of this site in emergency, for the banner every page shows while there are any."""
        from central.services.gates import in_emergency
        from central.web.stack import db, site_id

        return in_emergency(db(), site_id())

    def my_parks() -> list[tuple[str, str]]:
        """(id, name) of the parks the user works for, for the header's park switch."""
        from central.web.queries import sites
        from central.web.stack import db, visible_sites

        mine = set(visible_sites())  # and the request's session is scoped to them from here on
        return [(s.id, s.name or s.id) for s in sites(db()) if s.id in mine]

    app.jinja_env.globals.update(current_user=current_user, has_role=has_role, reason_text=i18n.reason_text,
                                 emergency_gates=emergency_gates, my_parks=my_parks, current_site=site_id)

    if app.config.get("LIVE_HUB", True) and context.link is not None:
        try:
            app.extensions[HUB] = live.start_hub(app, config.mqtt, context.sessions)
        except Exception:  # the pages work without it; the dashboard then says "not live"
            log.exception("live hub not started")


__all__ = ["register"]
