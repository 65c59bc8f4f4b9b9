"""Everything a central process shares: configuration, database, signer, template cipher, MQTT
publisher. The web app, the ingest worker, the scheduler and the CLI each build one."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralConfig
from central.db import make_engine, session_factory
from central.keys import register_public_key, signer_from_config
from central.mqtt import MqttLink
from central.publisher import Publisher
from protocol.ticket_code import TicketSigner

log = logging.getLogger(__name__)


def template_cipher(config: CentralConfig):
    """The TemplateCipher for `keys.template_key`, or None when no key is configured."""
    if not config.keys.template_key:
        return None
    from biometrics.protect import TemplateCipher, load_key

    return TemplateCipher(load_key(config.keys.template_key, f"{config.source}: keys.template_key"))


@dataclass
class CentralContext:
    config: CentralConfig
    engine: Engine
    sessions: sessionmaker[Session]
    signer: TicketSigner
    cipher: object | None
    link: MqttLink | None
    publisher: Publisher

    @classmethod
    def create(cls, config: CentralConfig, *, mqtt: bool = True, client_suffix: str = "web") -> CentralContext:
        engine = make_engine(config.database_url)
        sessions = session_factory(engine)
        signer = signer_from_config(config)
        with sessions.begin() as session:
            from central.models import SigningKey
            from central.services.gates import bump_site_configs

            new_key = session.get(SigningKey, signer.key_id) is None
            register_public_key(session, signer)
            if new_key:
                bump_site_configs(session)
        cipher = template_cipher(config)
        link = None
        if mqtt:
            client_id = f"{config.mqtt.client_id}-{client_suffix}-{os.getpid()}"
            link = MqttLink(config.mqtt, client_id=client_id).start(wait=5)
        return cls(config, engine, sessions, signer, cipher, link, Publisher(sessions, link, cipher))

    def close(self) -> None:
        if self.link is not None:
            self.link.stop()
        self.engine.dispose()
