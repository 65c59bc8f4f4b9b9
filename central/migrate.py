"""Run the central's Alembic migrations from code (`park-central db upgrade`, tests, the demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def include_name(name: str | None, type_: str, _parents: Any) -> bool:
    """What the schema comparison looks at: not the monthly partitions of passage_events (made by the
    scheduler, not by migrations) nor the indexes PostgreSQL gives them."""
    if type_ in ("table", "index") and name and name.startswith("passage_events_"):
        rest = name[len("passage_events_"):]
        return not (rest.startswith("default") or (rest[:1] == "y" and rest[1:5].isdigit()))
    return True


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at `database_url` to `revision` (default: the newest)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from central.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head() -> str:
    from alembic.script import ScriptDirectory

    newest = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if newest is None:
        raise RuntimeError("the central's migrations are missing from the installation")
    return newest
