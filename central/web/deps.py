"""What the web views need from the running central, found on the Flask app.

The app factory (`central.app.create_app`) keeps a `CentralContext` (configuration, session factory,
ticket signer, template cipher, MQTT link, publisher); `central.web.register` adds the live hub. The
views reach both through the small functions below and a session per request.
"""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from central.config import CentralConfig
from central.context import CentralContext

HUB = "central_web_hub"


def ctx() -> CentralContext:
    from central.app import current_context

    return current_context()


def config() -> CentralConfig:
    return ctx().config


def site_id() -> str:
    return ctx().config.site


def live_hub():
    return current_app.extensions.get(HUB)


def db() -> Session:
    """The request's session; views commit what they changed, teardown rolls back the rest."""
    if "db" not in g:
        g.db = ctx().sessions()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.rollback()
        session.close()
