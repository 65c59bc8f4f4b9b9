"""Back up and restore a gate's store (one SQLite file in WAL mode).

The copy goes through SQLite's online backup API, so it is consistent while the agent runs. A restored
store brings back the credential cache, usage and the outbox: queued passages are sent after restore
(the central drops any it already has, by event id). Stop the agent before `restore`.

A backup never holds the site's ID-number salt (`gate_agent.id_key`): the store does not keep it, and a
store not yet opened by an agent that moves it out gets it stripped from the copy. Nor the template key.

    gate-agent backup --config /etc/gate-agent/gate.toml --out /var/backups/gate.db
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from protocol.host import sqlite_copy


def backup(store_path: str | Path, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sqlite_copy(Path(store_path), out)
    out.chmod(0o600)
    _strip_id_salt(out)
    return out


def restore(backup_path: str | Path, store_path: str | Path) -> None:
    source, target = Path(backup_path), Path(store_path)
    if not source.is_file():
        raise FileNotFoundError(f"no backup file at {source}")
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    sqlite_copy(source, target)


def _strip_id_salt(path: Path) -> None:
    """Rewrite the copy's saved config without the salt; VACUUM leaves no old page with it."""
    from .store import without_id_salt

    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        if row is None or not row[0]:
            return
        stripped = without_id_salt(row[0].encode()).decode()
        if stripped == row[0]:
            return
        with conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'config'", (stripped,))
        conn.execute("VACUUM")
    finally:
        conn.close()
