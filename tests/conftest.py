"""Fixtures for real services: a fresh database per test (PostgreSQL; SQLite where a test runs on
both, or everywhere with GATES_TEST_DB=sqlite), a Mosquitto broker of the session's own, the shared
face photos."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.services import (
    Mosquitto,
    NatsCluster,
    NatsMqtt,
    create_pg_database,
    drop_pg_database,
    have_mosquitto,
    have_nats,
    need,
    pg_admin_url,
    pg_reachable,
)

FACES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "faces"


@pytest.fixture(scope="session")
def pg_admin() -> str:
    url = pg_admin_url()
    need(pg_reachable(url), f"PostgreSQL not reachable at {url} (set GATES_TEST_PG)")
    return url


@pytest.fixture
def pg_url(pg_admin: str):
    """A new, empty PostgreSQL database for this test, dropped afterwards."""
    url, name = create_pg_database(pg_admin)
    yield url
    drop_pg_database(pg_admin, name)


@pytest.fixture
def db_url(request, tmp_path):
    """The central's database for one test: PostgreSQL, the production database, unless
    GATES_TEST_DB=sqlite (a quick run on a machine without it). SQLite, the demo's and small sites'
    store, is tested by every `any_db_url` test and the demo's."""
    if os.environ.get("GATES_TEST_DB", "postgres") == "sqlite" and not request.node.get_closest_marker("postgres"):
        yield f"sqlite:///{tmp_path / 'central.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_url(request, tmp_path):
    """Runs the test on both stores the central supports."""
    if request.param == "postgres":
        yield request.getfixturevalue("pg_url")
    else:
        yield f"sqlite:///{tmp_path / 'central.db'}"


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory) -> Mosquitto:
    """A real Mosquitto for the whole session, on a free port, anonymous access."""
    need(have_mosquitto(), "the mosquitto binary is not installed (apt-get install mosquitto)")
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path):
    """Start brokers of the test's own (ACLs, restarts, bridges); all stopped afterwards."""
    need(have_mosquitto(), "the mosquitto binary is not installed (apt-get install mosquitto)")
    started: list[Mosquitto] = []

    def make(**kwargs) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"broker{len(started)}", **kwargs).start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    # Skipped locally, failed under CI=true (`need`): a missing folder must never pass silently.
    need(FACES_DIR.is_dir(), f"shared face photos not found at {FACES_DIR} (they are never copied into the project)")
    return FACES_DIR


@pytest.fixture
def nats_cluster(tmp_path):
    """Three NATS servers in one cluster with JetStream and MQTT listeners (tests.support.services.NatsCluster)."""
    need(have_nats(), "nats-server is not installed (apt-get install nats-server)")
    cluster = NatsCluster(tmp_path / "nats-cluster").start()
    yield cluster
    cluster.stop()


@pytest.fixture
def nats_mqtt(tmp_path):
    """A NATS server with its MQTT listener (3.1.1), for tests that must not rely on Mosquitto."""
    need(have_nats(), "nats-server is not installed (apt-get install nats-server)")
    server = NatsMqtt(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
def pg_pair():
    """A PostgreSQL primary and its hot standby of the test's own (streaming, synchronous, a replication slot)."""
    from tests.support.pg_pair import PgServer, have_pg_server, make_synchronous, remove, scratch_dir
    from tests.support.waiting import poll

    need(have_pg_server(), "PostgreSQL server binaries not found (apt-get install postgresql; or set GATES_PG_BIN)")
    base = scratch_dir("gates-pair-")
    servers: list = []
    try:
        primary = PgServer.primary(base, "db1")
        servers.append(primary)
        standby = PgServer.standby_of(primary, base, "db2")
        servers.append(standby)
        make_synchronous(primary, standby)
        poll(lambda: primary.sql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                                 db="postgres")[0] == 1, 20, what="the standby streaming synchronously")
        yield primary, standby
    finally:
        for server in servers:
            if server.running:
                server.stop("immediate")
        remove(base)


FAULTS_DIR = Path(__file__).resolve().parent / "reliability"


def pytest_collection_modifyitems(config, items) -> None:
    """The fault tests (tests/reliability: kills, outages, restarts, each timing a recovery) are marked
    `faults`. `make test` runs the suite in two phases (GATES_TEST_PHASE): `parallel`, everything else
    in several processes, then `faults`, those alone on the machine, not beside three other workers.
    Unset: everything, as plain `pytest` collects it."""
    phase = os.environ.get("GATES_TEST_PHASE", "")
    keep, drop = [], []
    for item in items:
        fault = FAULTS_DIR in Path(str(item.fspath)).resolve().parents
        if fault:
            item.add_marker(pytest.mark.faults)
        (drop if (phase == "parallel" and fault) or (phase == "faults" and not fault) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
