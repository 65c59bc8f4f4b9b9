"""Mosquitto credentials for gates: password hashes in Mosquitto's own format, and the files.

Gate passwords are never kept in clear: `register_gate` stores the hash Mosquitto checks
(`$7$`: PBKDF2-SHA512, the format `mosquitto_passwd -U` writes), so `park-central acl` can write
the password file at any time. The ACL comes from `protocol.topics.acl_for_gate`: a gate publishes
only below its own topic.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.config import CentralConfig
from central.models import Gate
from protocol import topics

ITERATIONS = 101  # mosquitto_passwd's default for $7$


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)  # group mosquitto may read
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_mosquitto_files(session: Session, config: CentralConfig, passwords: Path, acl: Path) -> int:
    """Write the password file and the ACL for every registered gate and the central; returns gates."""
    gates = list(session.scalars(select(Gate).where(Gate.mqtt_username.is_not(None)).order_by(Gate.site_id, Gate.name)))
    lines = []
    blocks = []
    central_user = config.mqtt.username or "central"
    if config.mqtt.password:
        lines.append(f"{central_user}:{mosquitto_hash(config.mqtt.password)}")
    blocks.append(topics.acl_for_central(central_user))
    for gate in gates:
        if gate.mqtt_password_hash and gate.mqtt_password_hash.startswith("$7$"):
            lines.append(f"{gate.mqtt_username}:{gate.mqtt_password_hash}")
        blocks.append(topics.acl_for_gate(gate.site_id, gate.name, gate.mqtt_username))
    _write_private(passwords, "\n".join(lines) + "\n")
    _write_private(acl, "# written by park-central acl\n\n" + "\n".join(blocks))
    return len(gates)
