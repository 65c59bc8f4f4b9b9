"""PostgreSQL clusters of a test's own: a primary, a streaming hot standby made from it, WAL archives.

    PgServer.primary(dir)        initdb as the `postgres` user (PostgreSQL refuses root), trust auth
    PgServer.standby_of(p, dir)  pg_basebackup -R -C -S <slot>: a hot standby streaming from `p`
    server.promote()             pg_ctl promote: the standby becomes the writable primary
    server.stop("immediate")     as a crash: no shutdown checkpoint, nothing more sent to the standby

Every server listens on 127.0.0.1 on a free port and on a socket in its own folder, never on the
machine's shared cluster (5432). `fsync=off`: these servers die by `pg_ctl stop -m immediate`, never by a
power cut, so the OS cache keeps what they wrote and the tests run faster on a shared machine.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.services import free_port, wait_port

PG_BIN = Path(os.environ.get("GATES_PG_BIN", "/usr/lib/postgresql/15/bin"))


def have_pg_server() -> bool:
    return (PG_BIN / "initdb").exists() and (os.geteuid() != 0 or shutil.which("runuser") is not None)


def as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def scratch_dir(prefix: str) -> Path:
    """A folder the `postgres` user owns (tests run as root here)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


class PgServer:
    def __init__(self, base: Path, name: str, settings: dict[str, str] | None = None) -> None:
        self.base, self.name = base, name
        self.data = base / name
        self.log = base / f"{name}.log"
        self.port = free_port()
        self._started = False  # reached once: its port is known to others and stays
        self.settings = {"listen_addresses": "127.0.0.1", "max_connections": "80", "fsync": "off",
                         "wal_level": "replica", "max_wal_senders": "8", "max_replication_slots": "8",
                         "hot_standby": "on", "cluster_name": name, "wal_keep_size": "64MB",
                         **(settings or {})}

    # -- making one --
    @classmethod
    def primary(cls, base: Path, name: str = "db1", settings: dict[str, str] | None = None,
                database: str = "central") -> PgServer:
        server = cls(base, name, settings)
        server.run("initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        server.start()
        if database:
            server.sql(f"CREATE DATABASE {database}", db="postgres")
        return server

    @classmethod
    def standby_of(cls, primary: PgServer, base: Path, name: str = "db2",
                   settings: dict[str, str] | None = None) -> PgServer:
        """A hot standby of `primary` through a physical replication slot named after it (so the primary
        keeps the WAL the standby has not received, however long it is away)."""
        server = cls(base, name, {**primary.settings, **(settings or {}), "cluster_name": name})
        server.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                   "-D", str(server.data), "-R", "-C", "-S", name, "-X", "stream", "--no-sync", "--checkpoint=fast",
                   timeout=180)
        server.start()
        return server

    # -- running it --
    def run(self, tool: str, *args: str, timeout: float = 90, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(as_postgres([str(PG_BIN / tool), *args]), capture_output=True, text=True,
                              timeout=timeout, check=check)

    def ctl(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        options = " ".join([f"-p {self.port}", f"-k {self.base}"] +
                           [f"-c {k}={shlex.quote(v)}" for k, v in self.settings.items()])  # pg_ctl hands them to sh
        return self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "80",
                        *args, timeout=timeout)

    def start(self) -> None:
        for attempt in range(3):
            try:
                self.ctl("start")
                break
            except subprocess.CalledProcessError as exc:
                log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                # Another test process took the free port between free_port() and the bind (the suite
                # runs in several processes): a server nobody has reached yet takes another port.
                if attempt < 2 and not self._started and "could not bind" in log:
                    self.port = free_port()
                    continue
                raise AssertionError(f"{self.name} did not start ({exc.stderr.strip()}):\n{log}") from exc
        self._started = True
        assert wait_port("127.0.0.1", self.port, 20), self.log.read_text()[-2000:]

    def stop(self, mode: str = "fast") -> None:
        self.ctl("stop", "-m", mode)

    def promote(self) -> None:
        self.ctl("promote")

    @property
    def running(self) -> bool:
        return self.run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    # -- talking to it --
    def libpq(self, db: str = "central") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def url(self, db: str = "central") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def sql(self, statement: str, *, db: str = "central"):
        """Run one statement in autocommit; its first row (or None)."""
        import psycopg

        with psycopg.connect(self.libpq(db), autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchone() if cur.description else None


def both_hosts_url(*servers: PgServer, db: str = "central") -> str:
    """The central's URL naming every server, connecting only to the writable one (libpq multi-host)."""
    hosts = "&".join(f"host=127.0.0.1:{s.port}" for s in servers)
    return f"postgresql+psycopg://postgres@/{db}?{hosts}&target_session_attrs=read-write"


def make_synchronous(primary: PgServer, standby: PgServer) -> None:
    """A commit on the primary returns once the standby has it on disk: a crash of the primary loses
    no committed passage. Set on the primary only (after the base backup): the promoted standby then
    runs alone, not waiting for a standby it does not have."""
    primary.sql(f"ALTER SYSTEM SET synchronous_standby_names = '{standby.name}'", db="postgres")
    primary.sql("SELECT pg_reload_conf()", db="postgres")


def remove(server_base: Path) -> None:
    shutil.rmtree(server_base, ignore_errors=True)
