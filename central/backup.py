"""Back up and restore the central's database.

PostgreSQL goes through its own tools (`pg_dump --format=custom`, `pg_restore --clean`), so a backup is
consistent while the central keeps running and restores into any server of the same or a newer major
version. A SQLite file is copied with SQLite's online backup API, which is consistent under WAL while
writers go on (a plain `cp` of a live WAL database is not).

    park-central backup --out var/backups/central-2026-11-23.dump
    park-central restore var/backups/central-2026-11-23.dump     # stop web, ingest and scheduler first

Continuous archiving and point-in-time recovery (pgBackRest) are in `central.pitr`.
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
        _restore_pg(_libpq(database_url), source)
    else:
        raise BackupError(f"no restore method for {backend}")


# `pg_restore --clean` cannot drop the constraints a partition inherits ("cannot drop inherited
# constraint"): the schemas are dropped and made again instead, in the same transaction as the restore.
_EMPTY_SCHEMAS = b"DROP SCHEMA IF EXISTS archive CASCADE;\nDROP SCHEMA public CASCADE;\nCREATE SCHEMA public;\n"


def _restore_pg(conninfo: str, source: Path) -> None:
    """The dump as SQL (pg_restore) into psql, in one transaction: all of it or nothing."""
    for tool in ("pg_restore", "psql"):
        if shutil.which(tool) is None:
            raise BackupError(f"{tool} is not installed (Debian package postgresql-client)")
    dump = subprocess.Popen(["pg_restore", "--no-owner", "--file", "-", str(source)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    load = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", conninfo],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert dump.stdout is not None and load.stdin is not None
    try:
        load.stdin.write(_EMPTY_SCHEMAS)
        shutil.copyfileobj(dump.stdout, load.stdin, 1 << 20)
    except BrokenPipeError:
        pass  # psql stopped at an error: reported below
    finally:
        load.stdin.close()
    dump_err = dump.stderr.read().decode(errors="replace") if dump.stderr else ""
    load_err = load.stderr.read().decode(errors="replace") if load.stderr else ""
    if dump.wait() != 0:
        load.wait()
        raise BackupError(f"pg_restore failed ({dump.returncode}): {dump_err.strip()[:500]}")
    if load.wait() != 0:
        raise BackupError(f"psql failed ({load.returncode}), nothing was changed: {load_err.strip()[:500]}")


def _run(argv: list[str]) -> None:
    if shutil.which(argv[0]) is None:
        raise BackupError(f"{argv[0]} is not installed (Debian package postgresql-client)")
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[:500]}")
