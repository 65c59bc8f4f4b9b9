"""Everything a central process shares: configuration, database, signer, template cipher, MQTT
publisher. The web app, the ingest worker, the scheduler and the CLI each build one.

The one after-commit hook: a session whose commit is marked `session.info[PUBLISH]` (the web's
`commit()`) has the publisher send, once the commit succeeded, the deltas and gate configs that the
change made (`Publisher.flush_soon`: in the publisher's own thread, so the request does not wait).
Other commits (the ingest's batches, the scheduler's jobs, the publisher's own bookkeeping) publish on
their own paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from central.bus.link import MqttLink
from central.bus.publisher import Publisher
from central.config import CentralConfig
from central.db import make_engine, scope_sessions_by_site, session_factory
from central.keys import register_public_key, signer_from_config
from protocol.ticket_code import TicketSigner

PUBLISH = "publish_after_commit"  # session.info key: this commit's changes are for the gates too


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
    read_sessions: sessionmaker[Session] | None = None  # the hot standby the reports read ([database] read_url)

    def __post_init__(self) -> None:
        publisher = self.publisher

        def publish_after_commit(session: Session) -> None:
            if session.info.get(PUBLISH):
                publisher.flush_soon()  # in the publisher's thread: the request does not wait for the broker

        event.listen(self.sessions, "after_commit", publish_after_commit)
        scope_sessions_by_site(self.sessions)  # a request's session reads only its asker's parks
        if self.read_sessions is not None:
            scope_sessions_by_site(self.read_sessions)  # and so do the reports it reads from the standby

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
        read_sessions = session_factory(make_engine(config.database.read_url)) if config.database.read_url else None
        return cls(config, engine, sessions, signer, cipher, link, Publisher(sessions, link, cipher), read_sessions)

    def close(self) -> None:
        self.publisher.stop()
        if self.link is not None:
            self.link.stop()
        self.engine.dispose()
        if self.read_sessions is not None:
            self.read_sessions.kw["bind"].dispose()
