"""The Flask app factory: `create_app(config)` builds the app, its shared context and `/healthz`, and
has `central.web.register` add the one web stack: the JSON API at /api/v1 and, unless `web=False`
(API-only processes, API tests), the browser pages. Views stay thin: they call `central.services`
through `central.web.stack` (the request's session, who is asking, `commit()`).
"""

from __future__ import annotations

import logging
import secrets

from flask import Flask, jsonify
from sqlalchemy import text

from central.config import CentralConfig
from central.context import CentralContext
from central.web import register
from central.web.stack import EXTENSION, current_context

log = logging.getLogger(__name__)


class CentralFlask(Flask):
    """Flask, logging an unhandled exception by its types and stack, not its message (`central.logs`)."""

    def log_exception(self, exc_info) -> None:
        from flask import request

        from central.logs import stack_without_messages

        # Like Flask: the path (no query string, no body) and the method; then the stack, without messages.
        self.logger.error("Exception on %s [%s]\n%s", request.path, request.method,
                          stack_without_messages(exc_info[1]))


def create_app(config: CentralConfig, *, context: CentralContext | None = None, mqtt: bool = True,
               web: bool = True) -> Flask:
    """Build the central's web app; pass `context` to share one with the ingest and scheduler;
    `web=False` leaves out the browser pages (API-only processes, API tests)."""
    app = CentralFlask("central", static_folder=None)
    app.config["SECRET_KEY"] = config.web.secret_key or secrets.token_hex(32)
    if not config.web.secret_key:
        log.warning("web.secret_key is not set: sessions end when the process restarts")
    app.config["JSON_SORT_KEYS"] = False
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["CENTRAL_CONFIG"] = config
    if config.web.proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = config.web.proxy_hops
        # Flask's documented way to put WSGI middleware in front of the app.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.extensions[EXTENSION] = context or CentralContext.create(config, mqtt=mqtt)

    @app.get("/healthz")
    def healthz():
        ctx = current_context()
        db_ok = True
        try:
            with ctx.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            db_ok = False
        mqtt_ok = ctx.link is not None and ctx.link.connected
        status = 200 if db_ok else 503
        return jsonify({"ok": db_ok, "database": db_ok, "mqtt": mqtt_ok}), status

    register(app, pages=web)
    return app


__all__ = ["create_app", "current_context"]
