"""Engine and session factory for the central's store: a SQLite file by default, PostgreSQL in production.

SQLite runs in WAL mode with foreign keys on and a busy timeout, and every transaction starts with
BEGIN IMMEDIATE so two writers queue for the lock instead of failing when one upgrades a read.

PostgreSQL with a hot standby: `database_url` names both servers and asks for the writable one,

    postgresql+psycopg://park@/park?host=db1:5432&host=db2:5432&target_session_attrs=read-write

so libpq tries them in turn and connects only to the primary. When the primary dies, pooled
connections to it are dead: `pool_pre_ping` finds them on checkout, the pool drops every connection
older than the failure, and the next connection goes to whichever server is now writable. A
transaction cut by the failure raises an error `is_transient()` recognises; the ingest and the claim
server retry such a transaction, the web answers 503 "try again" (never a 500).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from sqlalchemy import CursorResult, Engine, Result, Table, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

# SQLSTATE classes of a failure that a retry on a fresh connection may not meet again: connection
# exceptions (08), a transaction rolled back by the server (40: deadlock, serialization), the server
# shutting down or starting up (57P01-57P03), a read-only transaction (25006: a demoted primary).
_TRANSIENT_STATES = ("08", "40", "57P01", "57P02", "57P03", "25006")
_TRANSIENT_WORDS = ("deadlock", "could not serialize", "database is locked", "connection", "server closed",
                    "terminating", "read-only", "hot standby", "shutting down", "starting up", "recovery")


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
    # connect_timeout: a primary whose machine is gone (no "refused", only silence) costs each new
    # connection 3 s before libpq tries the next host, not the kernel's minutes.
    connect_args = {} if "connect_timeout" in url else {"connect_timeout": 3}
    return create_engine(url, echo=echo, hide_parameters=True, pool_pre_ping=True, pool_size=5, max_overflow=10,
                         connect_args=connect_args)


def is_transient(exc: BaseException) -> bool:
    """The database was away or busy, not the statement at fault: the same transaction may be retried."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", exc)
    state = getattr(orig, "sqlstate", None) or ""
    if state.startswith(_TRANSIENT_STATES):
        return True
    text = str(orig).lower()
    return any(word in text for word in _TRANSIENT_WORDS)


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


# --- one park's staff see one park's rows ---------------------------------------------------------
# A request's session carries the parks its asker works for (`restrict_to_sites`); every ORM SELECT
# it runs, Session.get included, then reads only rows of those parks, as SQLAlchemy's documented
# global-criteria pattern does (do_orm_execute + with_loader_criteria). A ticket, pass or gate of
# another park is then simply not found (404), on every page and endpoint, without a check per view.
VISIBLE_SITES = "visible_sites"  # Session.info key


def restrict_to_sites(session: Session, sites: list[str]) -> None:
    session.info[VISIBLE_SITES] = tuple(sites)


def _site_scoped_classes() -> list[Any]:  # mapped classes with a site_id column
    from central.models import ApiToken, Base, StaffUserSite

    unscoped = {ApiToken, StaffUserSite}  # administration of the parks themselves: admins only
    return [m.class_ for m in Base.registry.mappers if "site_id" in m.columns and m.class_ not in unscoped]


def scope_sessions_by_site(factory: sessionmaker[Session]) -> None:
    """Install the park filter on a session factory (once; sessions without VISIBLE_SITES are unfiltered)."""
    from sqlalchemy.orm import with_loader_criteria

    from central.models import Site

    classes = _site_scoped_classes()

    # One set of options per set of parks, built once: building the criteria of every site-scoped class
    # for each SELECT took a quarter of a booking request's time (the booking rush's profile). The options
    # are immutable and only read by the statements they are attached to, so threads share them.
    @functools.lru_cache(maxsize=1024)
    def criteria(sites: tuple[str, ...]) -> tuple[Any, ...]:
        return (with_loader_criteria(Site, Site.id.in_(sites)),
                *(with_loader_criteria(cls, cls.site_id.in_(sites)) for cls in classes))

    @event.listens_for(factory, "do_orm_execute")
    def _only_visible_sites(state) -> None:
        sites = state.session.info.get(VISIBLE_SITES)
        # Criteria apply to ORM entities only: a Core statement (of a Table) would carry the options for
        # nothing but their cache-key cost.
        if sites is None or not state.is_select or not state.is_orm_statement or state.is_column_load \
                or state.is_relationship_load:
            return
        state.statement = state.statement.options(*criteria(tuple(sites)))
