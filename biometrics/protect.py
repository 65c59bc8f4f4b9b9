"""Templates at rest: AES-256-GCM with the holder and the template kind bound to every record.

A record is ``key_id (1 byte) | nonce (12 random bytes) | ciphertext + 16-byte tag``. The associated
data names the holder and the kind ("face" or "fingerprint"), so a record copied onto another holder's
row, or a fingerprint record read as a face, fails to decrypt instead of matching the wrong person.
The key comes from configuration (never from the database that stores the records); several keys may
be loaded at once, by id, so records written under an old key still decrypt while `reencrypt` moves
them to the current one.

Errors:

    ValueError
     +-- KeyConfigError          a configured key is missing, not base64url, or not 32 bytes
    TemplateDecryptError         a record is truncated, under an unknown key id, or fails authentication
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_BYTES",
    "KeyConfigError",
    "TemplateCipher",
    "TemplateDecryptError",
    "TemplateKind",
    "generate_key",
    "load_key",
]

KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_AAD_PREFIX = b"scenic-gates/biometric-template/v1"

# "photo": a pass holder's small photo for staff at the gate (kept with consent, sealed like the templates);
# "frame": a gate camera's view sent with a request for staff help.
TemplateKind = Literal["face", "fingerprint", "photo", "frame"]
_KINDS = ("face", "fingerprint", "photo", "frame")


class KeyConfigError(ValueError):
    """A template key from configuration is unusable; the message names the setting and the fault."""


class TemplateDecryptError(Exception):
    """A stored template record cannot be decrypted (wrong key, other holder or kind, tampered)."""


def generate_key() -> str:
    """A new random 256-bit key, base64url-encoded, to paste into the configuration."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def load_key(value: str | None, setting: str = "biometrics.template_key") -> bytes:
    """The 32-byte key from its base64url text in configuration; `KeyConfigError` says what is wrong."""
    if value is None or not str(value).strip():
        raise KeyConfigError(
            f"{setting} is not set: generate one with "
            "`python -c 'from biometrics import generate_key; print(generate_key())'`"
        )
    text = str(value).strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        # base64url as generate_key writes it; standard base64 (+ and /) is accepted too.
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigError(f"{setting} is not base64url text (A-Z, a-z, 0-9, - and _)") from None
    if len(raw) != KEY_BYTES:
        raise KeyConfigError(f"{setting} decodes to {len(raw)} bytes, a template key is {KEY_BYTES} bytes")
    return raw


class TemplateCipher:
    """Encrypts and decrypts template records; `TemplateCipher(key)` or `TemplateCipher({id: key}, current=id)`."""

    def __init__(self, keys: bytes | Mapping[int, bytes], current: int | None = None) -> None:
        if isinstance(keys, bytes | bytearray):
            keys = {0 if current is None else current: bytes(keys)}
        if not keys:
            raise KeyConfigError("no template key configured")
        self._aead: dict[int, AESGCM] = {}
        for key_id, key in keys.items():
            if not 0 <= key_id <= 255:
                raise KeyConfigError(f"template key id must be 0-255, got {key_id}")
            if len(key) != KEY_BYTES:
                raise KeyConfigError(f"template key {key_id} is {len(key)} bytes, {KEY_BYTES} are needed")
            self._aead[key_id] = AESGCM(bytes(key))
        if current is None:
            if len(self._aead) > 1:
                raise KeyConfigError("several template keys configured: say which one is current")
            current = next(iter(self._aead))
        if current not in self._aead:
            raise KeyConfigError(f"the current template key id {current} is not among the configured keys")
        self.current = current

    def __repr__(self) -> str:
        return f"TemplateCipher(key ids {sorted(self._aead)}, current={self.current})"

    @staticmethod
    def _aad(key_id: int, holder_id: str, kind: str) -> bytes:
        if kind not in _KINDS:
            raise ValueError(f"template kind must be one of {_KINDS}, got {kind!r}")
        if not holder_id:
            raise ValueError("a template record needs a holder_id")
        return b"\0".join((_AAD_PREFIX, bytes([key_id]), kind.encode(), holder_id.encode("utf-8")))

    def encrypt(self, template: bytes, holder_id: str, kind: TemplateKind) -> bytes:
        """A record of `template` for `holder_id`, under the current key and a fresh random nonce."""
        key_id = self.current
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead[key_id].encrypt(nonce, bytes(template), self._aad(key_id, holder_id, kind))
        return bytes([key_id]) + nonce + sealed

    def decrypt(self, record: bytes, holder_id: str, kind: TemplateKind) -> bytes:
        """The template in `record`, if it was written for this holder and kind under a known key."""
        if len(record) < 1 + _NONCE_BYTES + _TAG_BYTES:
            raise TemplateDecryptError(f"{kind} template record is truncated ({len(record)} bytes)")
        key_id = record[0]
        aead = self._aead.get(key_id)
        if aead is None:
            raise TemplateDecryptError(f"{kind} template record is under key id {key_id}, not configured")
        nonce, sealed = record[1 : 1 + _NONCE_BYTES], record[1 + _NONCE_BYTES :]
        try:
            return aead.decrypt(nonce, sealed, self._aad(key_id, holder_id, kind))
        except InvalidTag:
            raise TemplateDecryptError(
                f"{kind} template record fails authentication: tampered, or not this holder's"
            ) from None

    def key_id_of(self, record: bytes) -> int:
        if not record:
            raise TemplateDecryptError("empty template record")
        return record[0]

    def needs_rotation(self, record: bytes) -> bool:
        """True if `record` is under an older key than the current one."""
        return self.key_id_of(record) != self.current

    def reencrypt(self, record: bytes, holder_id: str, kind: TemplateKind) -> bytes:
        """The same template under the current key (key rotation: run over every row, then drop the old key)."""
        return self.encrypt(self.decrypt(record, holder_id, kind), holder_id, kind)

    @classmethod
    def from_config(cls, keys: Mapping[int | str, str], current: int | str,
                    setting: str = "biometrics.template_keys") -> TemplateCipher:
        """From configuration text: `{key_id: base64url key, ...}` and the current key id."""
        try:
            parsed = {int(k): load_key(v, f"{setting}.{k}") for k, v in keys.items()}
            current_id = int(current)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, KeyConfigError):
                raise
            raise KeyConfigError(f"{setting}: key ids must be integers 0-255 ({exc})") from None
        return cls(parsed, current=current_id)
