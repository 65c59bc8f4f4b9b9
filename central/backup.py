"""Back up and restore the central's database.

PostgreSQL goes through its own tools (`pg_dump --format=custom`, `pg_restore --clean`), so a backup is
consistent while the central keeps running and restores into any server of the same or a newer major
version. A SQLite file is copied with SQLite's online backup API, which is consistent under WAL while
writers go on (a plain `cp` of a live WAL database is not).

    park-central backup --out var/backups/central-2026-11-23.dump
    park-central restore var/backups/central-2026-11-23.dump     # stop web, ingest and scheduler first
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from protocol.host import sqlite_copy


class BackupError(RuntimeError):
    """A backup or restore that did not complete; the message says which tool failed and why."""


def libpq_conninfo(database_url: str) -> str:
    """The SQLAlchemy URL as a libpq URI for PostgreSQL's own tools, the multi-host form too
    (`?host=db1:5432&host=db2:5432` becomes `db1:5432,db2:5432`)."""
    url = make_url(database_url).set(drivername="postgresql")
    hosts = url.query.get("host")
    if not hosts:
        return url.render_as_string(hide_password=False)
    hosts = (hosts,) if isinstance(hosts, str) else tuple(hosts)
    query = {k: v for k, v in url.query.items() if k != "host"}
    plain = url.set(host=None, port=None, query=query).render_as_string(hide_password=False)
    scheme, rest = plain.split("://", 1)
    userinfo, _, tail = rest.rpartition("@")
    return f"{scheme}://{userinfo + '@' if userinfo else ''}{','.join(hosts)}{tail}"


_libpq = libpq_conninfo


def _sqlite_path(database_url: str) -> Path:
    database = make_url(database_url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(database)


def backup(database_url: str, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    backend = make_url(database_url).get_backend_name()
    if backend == "sqlite":
        sqlite_copy(_sqlite_path(database_url), out)
    elif backend == "postgresql":
        _run(["pg_dump", "--format=custom", "--no-owner", "--file", str(out), "--dbname", _libpq(database_url)])
    else:
        raise BackupError(f"no backup method for {backend}")
    out.chmod(0o600)  # it holds personal data (names, encrypted templates)
    return out


def restore(database_url: str, source: str | Path) -> None:
    """Replace the database's content with the backup's (the central's services must be stopped)."""
    source = Path(source)
    if not source.is_file():
        raise BackupError(f"no backup file at {source}")
    backend = make_url(database_url).get_backend_name()
    if backend == "sqlite":
        target = _sqlite_path(database_url)
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        sqlite_copy(source, target)
    elif backend == "postgresql":
        _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction",
              "--dbname", _libpq(database_url), str(source)])
    else:
        raise BackupError(f"no restore method for {backend}")


def _run(argv: list[str]) -> None:
    if shutil.which(argv[0]) is None:
        raise BackupError(f"{argv[0]} is not installed (Debian package postgresql-client)")
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[:500]}")
