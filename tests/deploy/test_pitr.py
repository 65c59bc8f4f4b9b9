"""Backups that restore: WAL archived continuously with pgBackRest, a restore to a moment between two
passages finds exactly the first, and `park-central restore-drill` proves the latest backup while the
park keeps selling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from central.models import utcnow
from central.pitr import Archive, ScratchServer, archive_now, full_backup, restore
from central.services.ingest import ingest_batch
from protocol.ids import new_event_id
from protocol.messages import PassageEvent
from tests.central.conftest import add_gates, make_config, prepare
from tests.support.pg_pair import PgServer, have_pg_server, remove, scratch_dir
from tests.support.services import need

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def archived_pg():
    """A primary whose WAL pgBackRest archives (stanza `park`), with a full backup taken."""
    import shutil

    need(have_pg_server(), "PostgreSQL server binaries not found (apt-get install postgresql)")
    need(shutil.which("pgbackrest") is not None, "pgbackrest is not installed (apt-get install pgbackrest)")
    base = scratch_dir("gates-pitr-")
    conf = base / "pgbackrest.conf"
    primary = PgServer.primary(base, "db1", settings={
        "archive_mode": "on", "archive_command": f"pgbackrest --config={conf} --stanza=park archive-push %p"})
    conf.write_text(
        f"[global]\nrepo1-path={base}/repo\nlog-path={base}/log\nlock-path={base}/lock\nspool-path={base}/spool\n"
        "start-fast=y\nlog-level-console=warn\nlog-level-file=info\nrepo1-retention-full=2\ncompress-type=lz4\n\n"
        f"[park]\npg1-path={primary.data}\npg1-port={primary.port}\npg1-socket-path={base}\npg1-user=postgres\n")
    for folder in ("repo", "log", "lock", "spool"):
        (base / folder).mkdir()
        if os.geteuid() == 0:
            shutil.chown(base / folder, "postgres", "postgres")
    archive = Archive(stanza="park", config=conf)
    try:
        archive.pgbackrest("stanza-create")
        archive.pgbackrest("check")  # archive_command reaches the repository
        yield primary, archive, base
    finally:
        if primary.running:
            primary.stop("immediate")
        remove(base)


def _passage(site: str, gate: str = "east1") -> PassageEvent:
    return PassageEvent(id=new_event_id(), site=site, gate=gate, zone=1, at=utcnow() - timedelta(seconds=1),
                        direction="in", credential_kind="none", passed=True, mode="free")


def _after_backup(archive) -> None:
    """Wait out the second the backup ended in: pgBackRest picks for a time target a backup that ended
    before it, and keeps backup times in whole seconds (a real target is hours after last night's)."""
    info = json.loads(archive.pgbackrest("--output=json", "info"))
    stop = info[0]["backup"][-1]["timestamp"]["stop"]
    time.sleep(max(0.0, stop + 1.1 - time.time()))


def _count(conninfo: str, sql: str):
    import psycopg

    with psycopg.connect(conninfo) as conn:
        return conn.execute(sql).fetchall()


def test_restore_to_a_moment_between_two_passages_finds_exactly_the_first(archived_pg, tmp_path):
    primary, archive, base = archived_pg
    config = make_config(primary.url(), tmp_path)
    ctx = prepare(config, mqtt_on=False)
    try:
        add_gates(ctx, config.site, "east1")
        full_backup(archive)  # last night's backup; the day's passages are only in the WAL archive
        _after_backup(archive)
        first, second = _passage(config.site), _passage(config.site)
        with ctx.sessions.begin() as db:
            ingest_batch(db, [first])
        moment = primary.sql("SELECT clock_timestamp()")[0]  # after the first commit, before the second
        with ctx.sessions.begin() as db:
            ingest_batch(db, [second])
        archive_now(primary.url())
    finally:
        ctx.close()
    primary.stop("immediate")  # the server is lost; only the repository is left

    restore(archive, base / "restored", target_time=moment)
    server = ScratchServer(archive, base / "restored").start()
    try:
        rows = _count(server.conninfo("central"), "SELECT event_id FROM passage_events")
        inside = _count(server.conninfo("central"), "SELECT inside FROM zones WHERE number = 1")
    finally:
        server.close()
    assert [r[0] for r in rows] == [first.id]
    assert inside == [(1,)]  # the zone's count as it was at that moment, not after the second


def test_restore_drill_restores_the_latest_backup_and_every_count_matches_while_the_park_sells(archived_pg, tmp_path):
    primary, archive, base = archived_pg
    config = make_config(primary.url(), tmp_path)
    ctx = prepare(config, mqtt_on=False)
    add_gates(ctx, config.site, "east1", "west1")
    full_backup(archive)
    stop = threading.Event()
    written = []

    def sell() -> None:  # the gates' passages keep arriving during the drill
        while not stop.is_set():
            batch = [_passage(config.site, gate) for gate in ("east1", "west1")]
            with ctx.sessions.begin() as db:
                ingest_batch(db, batch)
            written.extend(batch)
            stop.wait(0.01)

    seller = threading.Thread(target=sell, daemon=True)
    seller.start()
    toml = tmp_path / "central.toml"
    toml.write_text(f'database_url = "{config.database_url}"\nsite = "{config.site}"\n')
    try:
        done = subprocess.run([sys.executable, "-m", "central.cli", "--config", str(toml), "restore-drill",
                               "--stanza", "park", "--pgbackrest-config", str(archive.config),
                               "--scratch", str(base / "drill")], cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
    finally:
        stop.set()
        seller.join(10)
        ctx.close()
    assert done.returncode == 0, done.stderr + done.stdout
    line = next(x for x in done.stdout.splitlines() if x.startswith("passage_events"))
    live = int(line.split("live=")[1].split()[0])
    assert 0 < live < len(written) and line.endswith("ok")  # restored up to the drill's mark, sales went on
    assert "restore drill passed" in done.stdout
    assert not (base / "drill").exists()  # the scratch copy is removed


def test_restore_drill_says_clearly_when_the_archive_is_not_configured(tmp_path, pg_url):
    toml = tmp_path / "central.toml"
    toml.write_text(f'database_url = "{pg_url}"\n')
    done = subprocess.run([sys.executable, "-m", "central.cli", "--config", str(toml), "restore-drill",
                           "--pgbackrest-config", str(tmp_path / "missing.conf"), "--scratch",
                           str(tmp_path / "drill")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("restore drill failed:")
    assert "Traceback" not in done.stderr
