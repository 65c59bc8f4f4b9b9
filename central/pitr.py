"""Continuous archiving with pgBackRest, point-in-time recovery, and the restore drill.

    primary --archive_command: pgbackrest archive-push %p--> repository (WAL, checksummed, compressed)
    pgbackrest backup (nightly full, or diff/incr)       --> repository (base backups, expired by retention)
    restore(..., target_time=T)  --> a data directory replayed up to T (the first commit after T is not there)
    drill(...)                   --> a restore point on the live database, the backup restored up to it in a
                                     scratch cluster, every table counted on both sides

Why pgBackRest (Debian `pgbackrest`, maintained by Crunchy Data) over PostgreSQL's own `archive_command
= cp` with `pg_receivewal` and `pg_basebackup`: one tool does the whole chain: archive-push checks
and fsyncs every segment (a `cp` does neither), base backups and WAL are expired together by one
retention setting, and a restore to a time is one command that writes the `restore_command` and the
recovery target itself. PostgreSQL's own tools leave each of those to a script of the site's own.

Every PostgreSQL and pgBackRest command here runs as the `postgres` user when the caller is root
(PostgreSQL refuses to run as root; the repository belongs to `postgres`).

The drill's counts are exact although the park keeps selling: the live counts are taken in a snapshot
exported by a transaction that holds SHARE locks on every table (no writer commits in between)
while it writes the restore point; the locks last milliseconds, the counting runs afterwards in the
imported snapshot.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from central.backup import BackupError, libpq_conninfo

DEFAULT_PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class Archive:
    """Where the backups are: pgBackRest's config file and the stanza (one per database cluster)."""

    stanza: str
    config: Path
    pg_bin: Path = DEFAULT_PG_BIN

    def pgbackrest(self, *args: str, timeout: float = 600) -> str:
        return _run(["pgbackrest", f"--config={self.config}", f"--stanza={self.stanza}", *args], timeout)


@dataclass
class DrillResult:
    restore_point: str
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)  # table: (live, restored)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.tables) and all(live == restored for live, restored in self.tables.values())

    @property
    def mismatches(self) -> dict[str, tuple[int, int]]:
        return {t: c for t, c in self.tables.items() if c[0] != c[1]}


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], timeout: float = 600) -> str:
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        raise BackupError(f"{argv[0]} is not installed (Debian packages pgbackrest, postgresql)")
    done = subprocess.run(_as_postgres(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} failed ({done.returncode}): "
                          f"{(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


def full_backup(archive: Archive) -> None:
    archive.pgbackrest("--type=full", "backup", timeout=3600)


def latest_backup(archive: Archive) -> str:
    """The label of the newest backup in the stanza; BackupError when there is none."""
    import json

    info = json.loads(archive.pgbackrest("--output=json", "info", timeout=120) or "[]")
    backups = [b for stanza in info for b in stanza.get("backup", [])]
    if not backups:
        status = info[0].get("status", {}).get("message", "no stanza") if info else "no stanza"
        raise BackupError(f"no backup in stanza {archive.stanza} ({status}): run `pgbackrest backup` first")
    return backups[-1]["label"]


def archive_now(live_url: str, timeout: float = 60) -> None:
    """Close the current WAL segment and wait until the archiver has stored it: what was committed
    before this call can be restored."""
    import psycopg

    with psycopg.connect(libpq_conninfo(live_url), autocommit=True) as conn:
        segment = _first(conn.execute("SELECT pg_walfile_name(pg_switch_wal())"))
        deadline = time.monotonic() + timeout
        while True:
            archived, failed = _row(conn.execute("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver"))
            if archived is not None and archived >= segment:
                return
            if time.monotonic() > deadline:
                raise BackupError(f"WAL segment {segment} not archived after {timeout:.0f} s "
                                  f"(last archived {archived}, last failed {failed}): check archive_command")
            time.sleep(0.1)


def restore(archive: Archive, data_dir: Path, *, target_time: datetime | None = None,
            target_name: str | None = None) -> None:
    """Restore the latest backup into the empty (or missing) `data_dir`, replaying WAL up to a time,
    a named restore point, or the end of the archive; the restored server then starts as a primary."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
    data_dir.chmod(0o700)
    target: list[str] = []
    if target_time is not None:
        moment = target_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        target = ["--type=time", f"--target={moment}", "--target-action=promote"]
    elif target_name is not None:
        target = ["--type=name", f"--target={target_name}", "--target-action=promote"]
    archive.pgbackrest(f"--pg1-path={data_dir}", *target, "restore", timeout=3600)


class ScratchServer:
    """A restored data directory started on a free local port, archiving off (it must not write
    into the repository it came from), stopped and removed by `close()`."""

    def __init__(self, archive: Archive, data_dir: Path) -> None:
        self.archive, self.data_dir = archive, data_dir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.socket_dir = data_dir.parent

    def start(self, timeout: float = 300) -> ScratchServer:
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c archive_mode=off "
                   "-c hot_standby=on -c cluster_name=restore-drill")
        _run([str(self.archive.pg_bin / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.data_dir.parent /
              "drill.log"), "-o", options, "-w", "-t", str(int(timeout)), "start"], timeout + 30)
        import psycopg

        deadline = time.monotonic() + timeout
        while True:  # pg_ctl returns once it accepts connections; recovery may still be replaying
            try:
                with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
                    if not _first(conn.execute("SELECT pg_is_in_recovery()")):
                        return self
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise BackupError(f"the restored server did not finish recovery in {timeout:.0f} s "
                                  f"(see {self.data_dir.parent / 'drill.log'})")
            time.sleep(0.2)

    def conninfo(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def close(self) -> None:
        try:
            _run([str(self.archive.pg_bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
                 120)
        except BackupError:
            pass


def _tables(conn) -> list[str]:
    rows = conn.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
                        "ORDER BY c.relname").fetchall()
    return [r[0] for r in rows]


def _count(conn, tables: list[str]) -> dict[str, int]:
    return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}  # noqa: S608 - catalogue names


LOCK_TRY_MS = 500  # each try's wait for one table's lock: under PostgreSQL's deadlock_timeout (1 s)


def mark(live_url: str, name: str, lock_timeout_s: int = 10) -> dict[str, int]:
    """Write the restore point `name` on the live database and count every table exactly as of it.

    The tables are locked one after the other while the park writes to them in its own order (the
    ingest: events, then usage, refusals, gate and zone counts): a writer holding one table and wanting
    the next can close a cycle with the drill. Each try waits at most LOCK_TRY_MS for a lock, less than
    PostgreSQL takes to see a deadlock, so the drill always steps back first (the park's writer goes on)
    and tries again, for up to `lock_timeout_s` in all."""
    import psycopg
    from psycopg import errors

    info = libpq_conninfo(live_url)
    with psycopg.connect(info, autocommit=True) as conn:
        tables = _tables(conn)
    deadline = time.monotonic() + lock_timeout_s
    tries = 0
    while True:
        tries += 1
        try:
            return _mark_once(info, name, tables)
        except (errors.LockNotAvailable, errors.DeadlockDetected):
            if time.monotonic() >= deadline:
                raise
            time.sleep(min(1.0, 0.05 * tries))


def _mark_once(info: str, name: str, tables: list[str]) -> dict[str, int]:
    import psycopg

    with psycopg.connect(info) as locker, psycopg.connect(info) as counter:
        # The LOCK before any query: a REPEATABLE READ snapshot is taken by the first query, so it
        # sees every commit up to the lock and none after it.
        locker.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        locker.execute(f"SET LOCAL lock_timeout = '{LOCK_TRY_MS}ms'")
        locker.execute("LOCK TABLE " + ", ".join(f'"{t}"' for t in tables) + " IN SHARE MODE")
        snapshot = _first(locker.execute("SELECT pg_export_snapshot(), pg_create_restore_point(%s)", (name,)))
        counter.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        counter.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        locker.commit()  # the writers go on; the counter still sees the restore point's state
        counts = _count(counter, tables)
        counter.commit()
    return counts


def drill(live_url: str, archive: Archive, scratch: Path, *, keep: bool = False) -> DrillResult:
    """Prove the backups restore: mark the live database, restore the latest backup and its WAL up to
    the mark into `scratch`, and compare every table's row count with the live one's at the mark."""
    started = time.monotonic()
    latest_backup(archive)  # no repository, no stanza, no backup: said before anything is touched
    if scratch.exists() and any(scratch.iterdir()):
        raise BackupError(f"{scratch} is not empty: the drill restores into a folder of its own")
    scratch.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(scratch, "postgres", "postgres")
    name = f"drill-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    import psycopg

    try:
        live = mark(live_url, name)
        archive_now(live_url)
    except psycopg.Error as exc:
        raise BackupError(f"the live database refused the restore point: {exc}".strip()[:800]) from None
    data = scratch / "data"
    restore(archive, data, target_name=name)
    server = ScratchServer(archive, data).start()
    try:
        import psycopg

        database = libpq_database(live_url)
        with psycopg.connect(server.conninfo(database)) as conn:
            restored = _count(conn, list(live))
    finally:
        server.close()
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return DrillResult(restore_point=name, tables={t: (live[t], restored[t]) for t in live},
                       seconds=round(time.monotonic() - started, 1))


def libpq_database(database_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(database_url).database or "postgres"


__all__ = ["Archive", "DrillResult", "ScratchServer", "archive_now", "drill", "full_backup", "latest_backup", "mark",
           "restore"]


def _row(cursor: Any) -> tuple[Any, ...]:
    """The one row a query of PostgreSQL's own functions always returns."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("the server returned no row")
    return tuple(row)


def _first(cursor: Any) -> Any:
    return _row(cursor)[0]
