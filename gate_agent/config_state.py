"""The central's config as the gate takes it: checked before it is applied, and the last good one
found again at start (with the site's ID-number salt from its own key file, `gate_agent.id_key`).

    check(payload, ...)   the GateConfig, or the ConfigAck that refuses it with the reason
    saved(...)            the last good config from the store, or None (then the gate waits, locked)
"""

from __future__ import annotations

import logging

import msgspec

from protocol import messages as m
from protocol.errors import MessageError

from .config import GateFileConfig
from .decider import ActiveConfig, ConfigInvalid, validate
from .id_key import id_key_file, load_id_salt, save_id_salt
from .store import NO_SALT, Store

log = logging.getLogger(__name__)


def check(payload: bytes, file_cfg: GateFileConfig) -> m.GateConfig | m.ConfigAck:
    """Decode and validate a config for this gate; a refusal comes back as the ack to send."""
    gate = file_cfg.gate_id
    try:
        # The payload is kept as text (store meta); msgspec skips unknown fields without checking
        # them, so a stray non-UTF-8 byte would pass decoding and fail half-way through applying.
        bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        return m.ConfigAck(gate, 0, False, "malformed: the payload is not UTF-8")
    try:
        cfg = m.decode(m.GateConfig, payload)
    except MessageError as exc:
        error = f"{exc.reason}: {exc.field or exc.detail}"[:256]
        return m.ConfigAck(gate, _peek_version(payload), False, error)
    turnstile = file_cfg.devices.turnstile
    try:
        validate(cfg, file_cfg.site, gate, profile_check=_profile_check(turnstile.profile_dirs if turnstile else ()))
    except ConfigInvalid as exc:
        log.warning("config version %s refused: %s", cfg.version, exc)
        return m.ConfigAck(gate, cfg.version, False, str(exc)[:256])
    return cfg


def saved(store: Store, file_cfg: GateFileConfig) -> ActiveConfig | None:
    """The last good config: the store's, with the site's ID-number salt from its own key file."""
    payload = store.saved_config()
    if payload is None:
        return None
    try:
        cfg = m.decode(m.GateConfig, payload)
    except MessageError as exc:
        log.error("the saved config is unusable (%s); waiting for the central's", exc)
        return None
    if cfg.id_salt != NO_SALT:
        # A store written before the salt had a file of its own: move the salt out of it.
        save_id_salt(file_cfg, cfg.id_salt)
        store.save_config(payload, cfg.version)
        store.checkpoint()
        log.info("the ID-number salt moved from the store to %s", id_key_file(file_cfg))
    else:
        salt = load_id_salt(file_cfg)
        if salt is None:
            log.error("the ID-number salt file %s is missing; waiting for the central's config", id_key_file(file_cfg))
            return None
        cfg = msgspec.structs.replace(cfg, id_salt=salt)
    try:
        validate(cfg, file_cfg.site, file_cfg.gate_id)
    except ConfigInvalid as exc:
        log.error("the saved config is unusable (%s); waiting for the central's", exc)
        return None
    log.info("using the last good config, version %s", cfg.version)
    # As the central sends it: the retained config that arrives at connect then changes nothing.
    return ActiveConfig(cfg, m.encode(cfg))


def _profile_check(profile_dirs: tuple[str, ...]):
    def check_profile(name: str) -> None:
        from drivers.turnstile import ControllerProfile

        ControllerProfile.load(name, profile_dirs)

    return check_profile


def _peek_version(payload: bytes) -> int:
    try:
        value = msgspec.json.decode(payload).get("version", 0)
        return value if isinstance(value, int) and value >= 0 else 0
    except (msgspec.DecodeError, AttributeError):
        return 0


__all__ = ["check", "saved"]
