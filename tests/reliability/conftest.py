"""The pieces of a park for fault tests, each a real process where the fault needs one.

    Park          the central in this process (database, signer, publisher of configs) with an ingest
                  worker running as `park-central ingest` in its own process (kill, restart)
    GateProc      `gate-agent run` in its own process, with a turnstile simulator (Modbus TCP) and a QR
                  scanner on a pseudo-terminal held here; the gate's own SQLite file is read, never written
    Visitors      a thread per gate that shows ticket codes to the scanner one after another and waits
                  for each decision (the gate's outbox sequence moves once per decision)
    Witness       an MQTT subscriber with a persistent session: every copy of every event on the wire
    PrivatePostgres  a PostgreSQL cluster of the test's own (initdb, pg_ctl), so it can be restarted
                  without touching the machine's shared server

Ground truth is what the turnstile simulators counted and what the test showed; each fault test ends
with `report(...)`, whose line is printed and collected for the README's reliability section.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from drivers.sim.serial_sim import QrScannerSim
from drivers.sim.turnstile_sim import TurnstileSimulator
from protocol import messages as m
from protocol import topics
from tests.support.services import free_port, need, wait_port
from tests.support.waiting import poll

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("GATES_PG_BIN", "/usr/lib/postgresql/15/bin"))
FIGURES: list[str] = []


def report(name: str, *, sent: int, received: int, duplicates_dropped: int, lost: int, **extra) -> str:
    """One line of figures for a fault: printed, kept for the terminal summary (and $RELIABILITY_FIGURES)."""
    more = "".join(f" {k}={v}" for k, v in extra.items())
    line = (f"FAULT {name}: sent={sent} received={received} duplicates_dropped={duplicates_dropped} "
            f"lost={lost}{more}")
    print(line)
    FIGURES.append(line)
    target = os.environ.get("RELIABILITY_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return line


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)




def stop_process(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GATE_AGENT_TEST_HOLD_PUBLISH", None)
    return env


# --- PostgreSQL of the test's own --------------------------------------------------------------------


@dataclass
class PrivatePostgres:
    """A throw-away cluster: initdb as the `postgres` user (PostgreSQL refuses root), trust auth."""

    datadir: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/central"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)

    def init(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.datadir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.datadir / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self.start()
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE central")
        return self

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c max_connections=50"
        self._run("pg_ctl", "-D", str(self.datadir / "data"), "-l", str(self.datadir / "pg.log"), "-o", options,
                  "-w", "-t", "60", action, *extra)

    def start(self) -> None:
        self._ctl("start")
        assert wait_port("127.0.0.1", self.port, 20)

    def restart(self) -> None:
        """What an operator's `systemctl restart postgresql` does: every connection is cut."""
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        try:
            self._ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass


@pytest.fixture
def private_pg():
    need((PG_BIN / "initdb").exists() and (os.geteuid() != 0 or shutil.which("runuser") is not None),
         f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql; or set GATES_PG_BIN)")
    need(_have_psycopg(), "psycopg is not installed")
    datadir = Path(tempfile.mkdtemp(prefix="gates-pg-"))
    pg = PrivatePostgres(datadir)
    try:
        pg.init()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(datadir, ignore_errors=True)


def _have_psycopg() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


# --- the central ----------------------------------------------------------------------------------


class Park:
    """The central of one test: its database and configs here, its ingest worker in its own process."""

    def __init__(self, tmp_path: Path, db_url: str, broker, *, gates: tuple[str, ...] = ("g1", "g2"),
                 tickets: int = 0) -> None:
        from central.models import Gate
        from central.services.gates import register_gate
        from central.services.tickets import TicketTypeSpec, define_ticket_type
        from tests.central.conftest import make_config, prepare

        self.tmp_path = tmp_path
        self.broker = broker
        self.config = make_config(db_url, tmp_path, broker)
        self.site = self.config.site
        self.ctx = prepare(self.config, mqtt_on=True)
        self.config_path = self._write_config(tmp_path / "central.toml")
        with self.ctx.sessions.begin() as db:
            self.single = define_ticket_type(db, self.site, TicketTypeSpec(name="Single entry", entries=1)).id
            for name in gates:
                register_gate(db, self.site, name, 1, direction="both", hardware={"passage_timeout_s": 3.0})
            db.flush()
            self.gates = gates
            assert db.scalar(select(func.count()).select_from(Gate).where(Gate.site_id == self.site)) == len(gates)
        self.codes: list[str] = []
        if tickets:
            self.codes = self.issue(tickets)
        assert self.ctx.link.wait_connected(10)
        self.ctx.publisher.flush()
        self.ingest: subprocess.Popen | None = None
        self.ingest_log = tmp_path / "ingest.log"

    def issue(self, count: int, **request) -> list[str]:
        from central.services.tickets import IssueRequest, issue_tickets, ticket_code

        with self.ctx.sessions.begin() as db:
            tickets = issue_tickets(db, self.site, [IssueRequest(ticket_type=self.single, **request)] * count)
            return [ticket_code(t, self.ctx.signer) for t in tickets]

    def _write_config(self, path: Path) -> Path:
        c = self.config
        path.write_text(
            f'database_url = "{c.database_url}"\nsite = "{c.site}"\n'
            f'[mqtt]\nhost = "{c.mqtt.host}"\nport = {c.mqtt.port}\nclient_id = "{c.mqtt.client_id}"\n'
            f'[keys]\nsigning_key_file = "{c.keys.signing_key_file}"\nsigning_key_id = {c.keys.signing_key_id}\n'
            f'template_key = "{c.keys.template_key}"\n'
            f'[ingest]\nbatch_size = 200\nbatch_ms = 20\ngroup = "{c.ingest.group}"\n')
        return path

    def start_ingest(self, wait: bool = True) -> subprocess.Popen:
        """`park-central ingest`; waits until it is subscribed (it logs `running`): gates' sync requests need it."""
        before = self.ingest_log.read_text().count(" running") if self.ingest_log.exists() else 0
        log = self.ingest_log.open("ab")
        self.ingest = subprocess.Popen(
            [sys.executable, "-m", "central.cli", "--config", str(self.config_path), "ingest", "--worker-id", "w1"],
            cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            poll(lambda: self.ingest_log.read_text().count(" running") > before or self.ingest.poll() is not None,
                 30, what="the ingest worker subscribed")
            assert self.ingest.poll() is None, self.ingest_log.read_text()[-2000:]
        return self.ingest

    def kill_ingest(self) -> None:
        self.ingest.send_signal(signal.SIGKILL)
        self.ingest.wait(10)

    # -- what the central holds --
    def rows(self, gate: str | None = None, *, passed: bool | None = None) -> int:
        from central.models import PassageEventRecord as E

        q = select(func.count()).select_from(E).where(E.site_id == self.site)
        if gate is not None:
            q = q.where(E.gate == gate)
        if passed is not None:
            q = q.where(E.passed.is_(passed))
        with self.ctx.sessions() as db:
            return db.scalar(q)

    def event_ids(self) -> set[str]:
        from central.models import PassageEventRecord as E

        with self.ctx.sessions() as db:
            return set(db.scalars(select(E.event_id).where(E.site_id == self.site)))

    def zone(self, number: int = 1):
        from central.models import Zone

        with self.ctx.sessions() as db:
            return db.scalar(select(Zone).where(Zone.site_id == self.site, Zone.number == number))

    def conflicts(self) -> list:
        from central.models import Conflict

        with self.ctx.sessions() as db:
            return list(db.scalars(select(Conflict).where(Conflict.site_id == self.site)))

    def close(self) -> None:
        stop_process(self.ingest)
        self.ctx.close()


# --- gates ------------------------------------------------------------------------------------------


class GateProc:
    """`gate-agent run` for one gate, its turnstile simulator and QR scanner held by the test."""

    def __init__(self, tmp_path: Path, broker, site: str, gate: str, *, extra_toml: str = "",
                 broker_toml: str | None = None) -> None:
        self.site, self.gate = site, gate
        self.dir = tmp_path / gate
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sim = TurnstileSimulator("tripod-coil", transport="tcp").start()
        self.sim.pass_delay_s = 0.03
        self.scanner = QrScannerSim()
        host, port = self.sim.tcp_address
        broker_toml = broker_toml or f'host = "{broker.host}"\nport = {broker.port}\n'
        self.config = self.dir / "gate.toml"
        self.config.write_text(
            f'[gate]\nid = "{gate}"\nsite = "{site}"\nlanguage = "en"\nheartbeat_s = 1\n\n'
            f'[broker]\n{broker_toml}keepalive_s = 5\nresend_after_s = 5\n\n'
            f'[store]\npath = "gate.db"\n\n'
            f'[control]\nsocket = "/tmp/gate-{uuid.uuid4().hex[:12]}.sock"\n\n'
            f'[devices.turnstile]\nprofile = "tripod-coil"\ntcp = "{host}:{port}"\ntimeout_s = 0.3\n\n'
            f'[devices.qr]\nport = "{self.scanner.device_path}"\n{extra_toml}')
        self.store_path = self.dir / "gate.db"
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "agent.log"
        self.kills = 0

    def start(self) -> GateProc:
        log = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gate_agent.cli", "run", "--config", str(self.config)],
                                     cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no clean-up, no last status, as a crash or a power cut."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> None:
        stop_process(self.proc)

    def close(self) -> None:
        self.stop()
        self.scanner.close()
        self.sim.stop()

    # -- the gate's own file, read-only --
    def _query(self, sql: str, default=0):
        if not self.store_path.exists():
            return default
        try:
            conn = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True, timeout=5)
            try:
                row = conn.execute(sql).fetchone()
            finally:
                conn.close()
        except sqlite3.OperationalError:
            return default  # the schema is being created
        return row[0] if row and row[0] is not None else default

    def written(self) -> int:
        """Events the gate ever wrote to its outbox (its AUTOINCREMENT counter): one per decision."""
        return self._query("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")

    def outbox(self) -> int:
        return self._query("SELECT count(*) FROM outbox")

    def meta(self, key: str):
        return self._query(f"SELECT value FROM meta WHERE key = '{key}'", None)

    def ready(self) -> bool:
        return self.proc.poll() is None and self.meta("config_version") not in (None, "0") and \
            self.meta("snapshot_id") is not None

    @property
    def passed_in(self) -> int:
        return self.sim.counters[0]


@dataclass
class Decision:
    gate: str
    code: str
    expect: str  # "granted" or "refused"
    seq: int  # the gate's outbox counter after the decision


class Visitors(threading.Thread):
    """Show codes at a gate one after another; each waits for its decision (one outbox row).

    Every `replay_every`-th visitor shows an earlier visitor's single-entry code again: a refusal.
    After a gate restart a scan may be lost while the scanner port reopens, as with a real cable: the
    visitor scans again after `rescan_s`.
    """

    def __init__(self, gate: GateProc, codes: list[str], *, replay_every: int = 0, pace_s: float = 0.0,
                 rescan_s: float = 4.0) -> None:
        super().__init__(name=f"visitors-{gate.gate}", daemon=True)
        self.gate, self.codes = gate, list(codes)
        self.replay_every, self.pace_s, self.rescan_s = replay_every, pace_s, rescan_s
        self.decisions: list[Decision] = []
        self.shown = 0
        self._halt = threading.Event()
        self.paused = threading.Event()
        self.paused.set()  # set = running
        self.error: BaseException | None = None
        self.rescans = 0

    def run(self) -> None:
        try:
            used: list[str] = []
            i = 0
            while not self._halt.is_set() and self.codes:
                self.paused.wait()
                if self.replay_every and used and i % self.replay_every == self.replay_every - 1:
                    code, expect = random.choice(used[:-2] or used), "refused"
                else:
                    code, expect = self.codes.pop(0), "granted"
                i += 1
                seq = self._show(code)
                if seq is None:
                    break
                self.decisions.append(Decision(self.gate.gate, code, expect, seq))
                if expect == "granted":
                    used.append(code)
                if self.pace_s:
                    self._halt.wait(self.pace_s)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    def _show(self, code: str) -> int | None:
        before = self.gate.written()
        while True:
            self.gate.scanner.scan(code)
            self.shown += 1
            deadline = time.monotonic() + self.rescan_s
            while time.monotonic() < deadline:  # a code shown is waited for, even when told to finish
                now = self.gate.written()
                if now > before:
                    return now
                time.sleep(0.02)
            if self._halt.is_set():
                return None
            self.rescans += 1

    def finish(self, timeout: float = 30) -> list[Decision]:
        self._halt.set()
        self.paused.set()
        self.join(timeout)
        if self.error:
            raise self.error
        return self.decisions


# --- the wire -------------------------------------------------------------------------------------


class Witness:
    """Every copy of every passage event the broker delivers (persistent session, QoS 1)."""

    def __init__(self, broker, site: str) -> None:
        self.copies: list[str] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"witness-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_connect = lambda c, *_a: c.subscribe(topics.all_events(site), qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 2)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        assert subscribed.wait(10), "witness could not subscribe"

    def _on_message(self, _c, _u, msg) -> None:
        try:
            event = m.decode(m.PassageEvent, msg.payload)
        except Exception:
            return
        with self._lock:
            self.copies.append(event.id)

    @property
    def sent(self) -> int:
        with self._lock:
            return len(self.copies)

    @property
    def unique(self) -> int:
        with self._lock:
            return len(set(self.copies))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def park_factory(tmp_path):
    made: list = []

    def make(db_url: str, broker, **kwargs) -> Park:
        park = Park(tmp_path, db_url, broker, **kwargs)
        made.append(park)
        return park

    yield make
    for park in made:
        park.close()


@pytest.fixture
def gate_procs(tmp_path):
    made: list[GateProc] = []

    def make(broker, site: str, gate: str, **kwargs) -> GateProc:
        g = GateProc(tmp_path, broker, site, gate, **kwargs)
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


@pytest.fixture
def witness_factory():
    made: list[Witness] = []

    def make(broker, site: str) -> Witness:
        made.append(Witness(broker, site))
        return made[-1]

    yield make
    for w in made:
        w.close()

