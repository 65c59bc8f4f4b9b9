"""A central of the benchmark's own: a Mosquitto broker on a free port, a PostgreSQL database made for
this run (dropped afterwards), the central's TOML, and tickets bulk-loaded with COPY."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from protocol.messages import MAX_PACKET_BYTES
from tests.support.services import Mosquitto, free_port, have_mosquitto, pg_admin_url, pg_reachable

ROOT = Path(__file__).resolve().parents[2]
SITE = "benchpark"
TICKET_TYPE = 1


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def park_central() -> str:
    return str(Path(sys.executable).parent / "park-central")


class Central:
    """Broker + database + config; `start_ingest()` runs `park-central ingest` as its own process."""

    def __init__(self, work: Path) -> None:
        if not have_mosquitto():
            raise RuntimeError("the mosquitto binary is not installed")
        admin = pg_admin_url()
        if not pg_reachable(admin):
            raise RuntimeError(f"PostgreSQL not reachable at {admin} (set GATES_TEST_PG)")
        import psycopg

        self.work = work
        self.admin = admin
        self.db_name = f"bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(libpq(admin), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.db_url = f"{admin.rpartition('/')[0]}/{self.db_name}"
        # Persistence off: with `autosave_interval 1` a backlog of a million messages would be written
        # out every second, which measures the disk, not the ingest. Production turns it on.
        self.broker = Mosquitto(work / "broker", persistence=False,
                                extra_config=f"max_packet_size {MAX_PACKET_BYTES}\n").start()
        self.config_path = work / "central.toml"
        self.config_path.write_text(
            f'database_url = "{self.db_url}"\nsite = "{SITE}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.broker.port}\nclient_id = "bench{os.getpid()}"\n'
            f'[keys]\nsigning_key_file = "{work / "signing.key"}"\nsigning_key_id = 1\n'
            f'[ingest]\nbatch_size = 500\nbatch_ms = 50\ngroup = "bench-ingest"\n'
        )
        from central.config import load_config
        from central.migrate import upgrade

        self.config = load_config(self.config_path, env={})
        upgrade(self.db_url)
        self.procs: list[subprocess.Popen] = []
        self._ctx = None

    @property
    def ctx(self):
        """A CentralContext in this process (database, signer, publisher on its own MQTT link)."""
        if self._ctx is None:
            from central.context import CentralContext

            self._ctx = CentralContext.create(self.config, mqtt=True, client_suffix="bench")
        return self._ctx

    def prepare_site(self, zones: dict[int, int | None], *, site: str = SITE, ticket_type: int = TICKET_TYPE) -> None:
        from central.services.gates import ensure_site, ensure_zone
        from central.services.tickets import TicketTypeSpec, define_ticket_type

        with self.ctx.sessions.begin() as db:
            ensure_site(db, site, name=f"Bench Park {site}", timezone="UTC", pass_biometric="none")
            for number, capacity in zones.items():
                ensure_zone(db, site, number, name=f"Zone {number}", capacity=capacity)
            define_ticket_type(db, site, TicketTypeSpec(name="day", id=ticket_type, entries=1, real_name=True))

    def register_gates(self, gates: dict[str, int], *, site: str = SITE) -> None:
        """Register gates (name -> zone): the ingest counts only what registered gates report."""
        from central.services.gates import register_gate

        with self.ctx.sessions.begin() as db:
            for name, zone in gates.items():
                register_gate(db, site, name, zone)

    def id_salt(self) -> bytes:
        from central.models import Site

        with self.ctx.sessions() as db:
            return db.get(Site, SITE).id_salt  # real-name tickets: the bench park's only

    def copy_tickets(self, first: int, count: int, *, real_name: bool, site: str = SITE,
                     ticket_type: int = TICKET_TYPE) -> float:
        """COPY `count` valid tickets with ids first.. (real-name: with an ID digest); returns seconds."""
        import psycopg

        from protocol.ids import id_number_digest
        from tests.bench.gatekit import id_number

        salt = self.id_salt() if real_name else b""
        now = datetime.now(UTC)
        vf, vt = now - timedelta(hours=2), now + timedelta(hours=22)
        started = time.perf_counter()
        cols = ("id", "site_id", "ticket_type_id", "status", "valid_from", "valid_to", "headcount", "zones",
                "id_digest", "channel", "price", "issued_at")
        with psycopg.connect(libpq(self.db_url)) as conn:
            with conn.cursor().copy(f"COPY tickets ({', '.join(cols)}) FROM STDIN") as copy:
                for i in range(first, first + count):
                    digest = id_number_digest(salt, id_number(i)) if real_name else None
                    copy.write_row((i, site, ticket_type, "valid", vf, vt, 1, "[]", digest, "bench", 0, now))
            conn.execute("SELECT setval(pg_get_serial_sequence('tickets', 'id'), (SELECT max(id) FROM tickets))")
            conn.execute("ANALYZE tickets")
        return time.perf_counter() - started

    def sql(self, query: str, *params):
        import psycopg

        with psycopg.connect(libpq(self.db_url), autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def start_ingest(self, worker_id: str = "1") -> subprocess.Popen:
        log = open(self.work / f"ingest-{worker_id}.log", "ab")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen([park_central(), "--config", str(self.config_path), "ingest", "--worker-id", worker_id],
                                cwd=ROOT, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.procs.append(proc)
        return proc

    def spawn(self, module: str, *args: str, log_name: str) -> subprocess.Popen:
        log = open(self.work / log_name, "ab")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=log, text=True)
        self.procs.append(proc)
        return proc

    def stop_process(self, proc: subprocess.Popen, timeout: float = 20) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for proc in self.procs:
            self.stop_process(proc, 10)
        if self._ctx is not None:
            self._ctx.close()
        self.broker.stop()
        import psycopg

        try:
            with psycopg.connect(libpq(self.admin), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001 - a leftover database must not hide the figures
            print(f"could not drop {self.db_name}: {exc}", file=sys.stderr)


class Lines:
    """Collects a child's JSON stdout lines in a thread."""

    def __init__(self, proc) -> None:
        self.proc = proc
        self.lines: list[dict] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            self.lines.append(data)
            if "ready" in data or "start" in data:
                self.ready.set()

    def last(self, key: str) -> dict | None:
        return next((d for d in reversed(self.lines) if key in d), None)


def workdir(name: str) -> Path:
    path = ROOT / "var" / "bench" / "tmp" / f"{name}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


__all__ = ["Central", "Lines", "free_port", "workdir"]
