"""Engine and session factory for the central's store: a SQLite file by default, PostgreSQL in production.

SQLite runs in WAL mode with foreign keys on and a busy timeout, and every transaction starts with
BEGIN IMMEDIATE so two writers queue for the lock instead of failing when one upgrades a read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import CursorResult, Engine, Result, Table, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def table(model: type[Any]) -> Table:
    """A mapped class's Table, for Core statements (the ORM types `__table__` as any FromClause)."""
    found = model.__table__
    if not isinstance(found, Table):
        raise TypeError(f"{model.__name__} is not mapped to one table")
    return found


def rowcount(result: Result[Any]) -> int:
    """The rows an INSERT, UPDATE or DELETE matched: `Session.execute` is typed as returning a Result,
    and for these statements it is a CursorResult, which counts them."""
    return (result.rowcount or 0) if isinstance(result, CursorResult) else 0


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for `url`; creates the SQLite file's folder when needed.

    `hide_parameters`: a failed statement's error (and so its log) never shows the row's values, which
    are names, phones, card UIDs."""
    if is_sqlite(url):
        db_path = make_url(url).database
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, hide_parameters=True,
                               connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_pragmas(engine)
        return engine
    return create_engine(url, echo=echo, hide_parameters=True, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
