"""What the web views need from the running central: the configuration, a database session per
request, the ticket signer, the template cipher and the MQTT link, found once on the Flask app.

`init_app` in `central.web` stores a `WebContext` on `app.extensions["central_web"]`; the views reach
it through the small functions below, so none of them knows how the app was built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from flask import current_app, g
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralConfig


@dataclass
class WebContext:
    config: CentralConfig
    sessions: sessionmaker[Session]
    mqtt: Any = None  # central.mqtt.MqttLink, or None when the web runs without a broker
    hub: Any = None  # central.web.live.LiveHub
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def signer(self):
        from central.keys import signer_from_config

        return signer_from_config(self.config)

    @cached_property
    def cipher(self):
        """The template cipher, or None when keys.template_key is not configured."""
        if not self.config.keys.template_key:
            return None
        from biometrics.protect import TemplateCipher, load_key

        return TemplateCipher(load_key(self.config.keys.template_key, "keys.template_key"))


def ctx() -> WebContext:
    return current_app.extensions["central_web"]


def config() -> CentralConfig:
    return ctx().config


def site_id() -> str:
    return ctx().config.site


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
