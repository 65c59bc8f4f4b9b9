"""Backups: the central's database and a gate's store come back from a backup with every passage."""

from __future__ import annotations

import stat
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select

from central.backup import backup, restore
from central.models import PassageEventRecord, Zone, utcnow
from central.services.ingest import ingest_batch
from gate_agent.backup import backup as gate_backup
from gate_agent.backup import restore as gate_restore
from gate_agent.store import Store
from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import PassageEvent
from tests.central.conftest import make_config, prepare


def _events(site: str, count: int) -> list[PassageEvent]:
    start = utcnow() - timedelta(minutes=30)
    return [PassageEvent(id=new_event_id(), site=site, gate=f"g{i % 4}", zone=1, at=start + timedelta(seconds=i),
                         direction="in" if i % 3 else "out", credential_kind="none", passed=True, mode="free")
            for i in range(count)]


def test_central_database_restored_from_backup_has_every_passage(any_db_url, tmp_path):
    config = make_config(any_db_url, tmp_path)
    ctx = prepare(config, mqtt_on=False)
    events = _events(config.site, 500)
    try:
        with ctx.sessions.begin() as db:
            ingest_batch(db, events)
        with ctx.sessions() as db:
            inside = db.scalar(select(Zone.inside).where(Zone.site_id == config.site, Zone.number == 1))
        dump = backup(any_db_url, tmp_path / "backups" / "central.dump")
        assert stat.S_IMODE(dump.stat().st_mode) == 0o600

        # Disaster: the passages are gone and the counts are wrong.
        with ctx.sessions.begin() as db:
            db.execute(delete(PassageEventRecord))
            db.execute(Zone.__table__.update().values(inside=0))
        ctx.engine.dispose()
        restore(any_db_url, dump)

        with ctx.sessions() as db:
            ids = set(db.scalars(select(PassageEventRecord.event_id)))
            restored_inside = db.scalar(select(Zone.inside).where(Zone.site_id == config.site, Zone.number == 1))
            assert db.scalar(select(func.count()).select_from(PassageEventRecord)) == len(events)
        assert ids == {e.id for e in events}
        assert restored_inside == inside
    finally:
        ctx.close()


def test_gate_store_restored_from_backup_keeps_its_queued_passages(tmp_path):
    store = Store(tmp_path / "gate.db")
    site, gate = "park" + uuid.uuid4().hex[:6], "east1"
    events = _events(site, 40)
    for event in events:
        store.record(event, topics.event(site, gate))
    saved = gate_backup(tmp_path / "gate.db", tmp_path / "backups" / "gate.db")
    store.close()

    (tmp_path / "gate.db").write_bytes(b"")  # the box's disk was replaced
    gate_restore(saved, tmp_path / "gate.db")

    restored = Store(tmp_path / "gate.db")
    try:
        rows = restored.outbox_after(0, limit=1000)
        assert [r.event_id for r in rows] == [e.id for e in events]  # in order, none lost
        assert restored.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        restored.close()


@pytest.mark.postgres
def test_restore_refuses_a_missing_file_with_a_clear_error(pg_url, tmp_path):
    from central.backup import BackupError

    with pytest.raises(BackupError, match="no backup file"):
        restore(pg_url, tmp_path / "nothing.dump")


def test_gate_cli_backs_up_and_restores_the_store_with_its_queue(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    site = "park" + uuid.uuid4().hex[:6]
    config = tmp_path / "gate.toml"
    config.write_text(f'[gate]\nid = "east1"\nsite = "{site}"\n[broker]\nhost = "127.0.0.1"\nport = 1\n'
                      f'[store]\npath = "{tmp_path}/gate.db"\n')
    store = Store(tmp_path / "gate.db")
    events = _events(site, 5)
    for event in events:
        store.record(event, topics.event(site, "east1"))
    store.close()
    cli = str(Path(sys.executable).parent / "gate-agent")
    done = subprocess.run([cli, "backup", str(tmp_path / "copy.db"), "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (tmp_path / "gate.db").unlink()
    done = subprocess.run([cli, "restore", str(tmp_path / "copy.db"), "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    restored = Store(tmp_path / "gate.db")
    try:
        assert [r.event_id for r in restored.outbox_after(0, 100)] == [e.id for e in events]
    finally:
        restored.close()
