"""The schema: migrations bring an empty store to the models' shape, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from central.db import make_engine
from central.migrate import current, downgrade, include_name, upgrade
from central.models import Base


def test_migrations_bring_an_empty_store_to_exactly_the_models(any_db_url):
    upgrade(any_db_url)
    assert current(any_db_url) is not None
    engine = make_engine(any_db_url)
    try:
        with engine.connect() as conn:
            opts = {"compare_type": True, "include_name": include_name}  # not the monthly partitions
            diff = compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
    finally:
        engine.dispose()


def test_migrations_go_down_and_up_again(any_db_url):
    upgrade(any_db_url)
    downgrade(any_db_url, "base")
    assert current(any_db_url) is None
    upgrade(any_db_url)
    assert current(any_db_url) is not None
