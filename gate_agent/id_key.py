"""The site's ID-number salt, kept in a key file of its own and never in the store.

    [store]
    id_key_file = "/var/lib/scenic-gates/gate.idkey"   # default: next to the store, <store>.idkey

The salt arrives in the central's GateConfig (`id_salt`); the gate keys `protocol.ids.id_number_digest`
with it to find a booking by the ID card read. The store keeps the digests of every booking, so with the
salt beside them a stolen store could be searched offline through the whole space of ID numbers. The
agent therefore writes the salt here (base64url, mode 0600, replaced atomically when the site's salt
changes) and saves the config in the store without it (`Store.save_config`); at start it puts the two
back together. A key file that others may read is refused, as the template key is. Keep this file out
of the store's backups, as the template key: `gate-agent backup` copies the store alone.

What this does not do: a thief with the whole box has both files, and the digests are then only as
strong as an HMAC over the 18-character ID-number space (about 10^11 plausible numbers: region,
birth date, sequence, check character), with the salt known.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from .config import ConfigError, GateFileConfig

MIN_SALT, MAX_SALT = 16, 64  # protocol.messages.GateConfig.id_salt


def id_key_file(cfg: GateFileConfig) -> Path:
    """Where the salt lives: `store.id_key_file`, or `<store>.idkey` beside the store."""
    if cfg.store.id_key_file:
        return Path(cfg.store.id_key_file)
    return cfg.store_path.with_suffix(".idkey")


def load_id_salt(cfg: GateFileConfig) -> bytes | None:
    """The salt from the key file; None when there is none yet; ConfigError naming the file if unusable."""
    path = id_key_file(cfg)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{cfg.source}: store.id_key_file: {path} may be read by others "
                          f"(mode {stat.S_IMODE(mode):o}): chmod 600 it")
    try:
        text = path.read_text(encoding="ascii").strip()
        salt = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (UnicodeDecodeError, binascii.Error, ValueError):
        raise ConfigError(f"{cfg.source}: store.id_key_file: {path} is not base64url") from None
    if not MIN_SALT <= len(salt) <= MAX_SALT:
        raise ConfigError(f"{cfg.source}: store.id_key_file: {path} holds {len(salt)} bytes, "
                          f"not {MIN_SALT}-{MAX_SALT}")
    return salt


def save_id_salt(cfg: GateFileConfig, salt: bytes) -> None:
    """Write the salt with mode 0600, atomically (a crash leaves the old file or the new, never half)."""
    path = id_key_file(cfg)
    try:
        if load_id_salt(cfg) == salt:
            return
    except ConfigError:
        pass  # an unreadable or loose file is replaced by a good one
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(base64.urlsafe_b64encode(salt).decode().rstrip("=") + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)  # O_CREAT's mode is only for a new file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["id_key_file", "load_id_salt", "save_id_salt"]
