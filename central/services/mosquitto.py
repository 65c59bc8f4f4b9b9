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


def _group_id(path: Path, group: str | None) -> int | None:
    """The group the broker reads the file as: the one named, else the file's current group (kept on
    every rewrite), else `mosquitto` where that group exists; None leaves the writer's own group."""
    import grp

    if group:
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"no group {group!r} on this machine") from None
    try:
        return path.stat().st_gid
    except FileNotFoundError:
        pass
    try:
        return grp.getgrnam("mosquitto").gr_gid
    except KeyError:
        return None


def write_broker_file(path: Path, text: str, group: str | None = None) -> None:
    """Replace `path` atomically with mode 0640 and the broker's group, so Mosquitto (its own user)
    can read it at every reload: a temporary file in the same folder gets owner, group and mode, is
    synced, and is renamed over the old one. A broker reloading meanwhile sees the old or the new
    file, never a half-written or unreadable one."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    gid = _group_id(path, group)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o640)
            if gid is not None and gid != os.getegid():
                try:
                    os.fchown(fh.fileno(), -1, gid)  # root may give any group; others only one of their own
                except PermissionError:
                    if group:
                        raise ValueError(f"cannot give {path} to group {group!r}: run as root or a member") from None
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_mosquitto_files(session: Session, config: CentralConfig, passwords: Path, acl: Path,
                          group: str | None = None) -> int:
    """Write the password file and the ACL for every registered gate and the central, and at a head
    office for each park server's bridge (see `write_broker_file` for owner, mode and atomicity); returns
    the number of gates."""
    remote = config.replication.remote_sites()  # a park server's gates use its own broker, not this one
    gates = [g for g in session.scalars(select(Gate).where(Gate.mqtt_username.is_not(None))
                                        .order_by(Gate.site_id, Gate.name)) if g.site_id not in remote]
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
    if remote:  # the head office: each park server's bridge, with its own password (`replication credentials`)
        from central.models import ReplicationPeer

        hashes = {p.peer: p.mqtt_password_hash for p in session.scalars(select(ReplicationPeer))}
        for server in config.replication.peers():
            if hashes.get(server):
                lines.append(f"{topics.replication_user(server)}:{hashes[server]}")
                blocks.append(topics.acl_for_park_server(config.replication.server, server))
    write_broker_file(passwords, "\n".join(lines) + "\n", group)
    write_broker_file(acl, "# written by park-central acl\n\n" + "\n".join(blocks), group)
    return len(gates)
