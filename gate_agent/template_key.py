"""The key that seals biometric templates in the gate's store, from the gate's TOML.

    [store]
    template_key = "base64url..."                      # inline, or:
    template_key_file = "/etc/scenic-gates/template.key"  # default: next to the store, <store>.key

With neither set, the key file next to the store is used and created on first start (32 random bytes,
base64url, mode 0600). A key file that others may read is refused, as ssh refuses a private key. Keep
the key out of the store's backups: a backup then holds sealed templates that nobody can read alone.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from .config import ConfigError, GateFileConfig


def key_file(cfg: GateFileConfig) -> Path:
    """Where the template key lives: `store.template_key_file`, or `<store>.key` beside the store."""
    if cfg.store.template_key_file:
        return Path(cfg.store.template_key_file)
    return cfg.store_path.with_suffix(".key")


def load_template_cipher(cfg: GateFileConfig):
    """The gate's `TemplateCipher`; raises ConfigError naming the file and the key when it is unusable."""
    from biometrics.protect import KeyConfigError, TemplateCipher, generate_key, load_key

    inline = cfg.store.template_key
    if inline:
        try:
            return TemplateCipher(load_key(inline, "store.template_key"))
        except KeyConfigError as exc:
            raise ConfigError(f"{cfg.source}: {exc}") from None
    path = key_file(cfg)
    if not path.exists():
        _create(path, generate_key())
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{cfg.source}: store.template_key_file: {path} may be read by others "
                          f"(mode {stat.S_IMODE(mode):o}): chmod 600 it")
    try:
        return TemplateCipher(load_key(path.read_text(encoding="ascii"), f"store.template_key_file ({path})"))
    except (KeyConfigError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{cfg.source}: {exc}") from None


def _create(path: Path, text: str) -> None:
    """Write the new key atomically with mode 0600; a gate starting beside us may have won the race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # never replaces an existing key: that would orphan every sealed record
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["key_file", "load_template_cipher"]
