"""The ticket signing key: an Ed25519 seed in a file of its own (0600), made on first use."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.orm import Session

from central.config import CentralConfig
from central.models import SigningKey
from protocol.ticket_code import TicketSigner, generate_signing_seed


def load_or_create_seed(path: str | Path) -> bytes:
    """The 32-byte seed in `path` (hex); generated with 0600 permissions when the file is missing."""
    path = Path(path)
    if path.exists():
        text = path.read_text().strip()
        try:
            seed = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"{path}: not a hex Ed25519 seed") from None
        if len(seed) != 32:
            raise ValueError(f"{path}: an Ed25519 seed is 32 bytes, found {len(seed)}")
        return seed
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = generate_signing_seed()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(seed.hex() + "\n")
    return seed


def signer_from_config(config: CentralConfig) -> TicketSigner:
    return TicketSigner.from_seed(config.keys.signing_key_id, load_or_create_seed(config.keys.signing_key_file))


def register_public_key(session: Session, signer: TicketSigner) -> SigningKey:
    """Make sure gates will learn the signer's public key (idempotent)."""
    row = session.get(SigningKey, signer.key_id)
    public = signer.public_key_bytes()
    if row is None:
        row = SigningKey(key_id=signer.key_id, public=public)
        session.add(row)
    elif row.public != public:
        raise ValueError(f"signing key id {signer.key_id} already registered with another public key: "
                         "use a new keys.signing_key_id when rotating")
    return row
