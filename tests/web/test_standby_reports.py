"""Reports read from the hot standby (`[database] read_url`) and say how far behind it is, in both languages."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from central.app import create_app
from central.config import DatabaseConfig
from central.models import utcnow
from central.services.ingest import ingest_batch
from protocol.ids import new_event_id
from protocol.messages import PassageEvent
from tests.central.conftest import add_gates, make_config, prepare
from tests.support.waiting import poll
from tests.web.conftest import login, seed

pytestmark = [pytest.mark.postgres]


def _entries(ctx, count: int) -> None:
    start = utcnow() - timedelta(minutes=5)
    events = [PassageEvent(id=new_event_id(), site=ctx.config.site, gate="east1", zone=1,
                           at=start + timedelta(seconds=i), direction="in", credential_kind="none", passed=True,
                           mode="free") for i in range(count)]
    with ctx.sessions.begin() as db:
        ingest_batch(db, events)


def _stored_on(server) -> int:
    return server.sql("SELECT count(*) FROM passage_events")[0]


@pytest.fixture
def standby_app(pg_pair, tmp_path):
    primary, standby = pg_pair
    config = make_config(primary.url(), tmp_path)
    config = replace(config, database=DatabaseConfig(read_url=standby.url()))
    ctx = prepare(config, mqtt_on=False)
    seed(ctx)
    add_gates(ctx, config.site, "east1")
    app = create_app(config, context=ctx)
    app.config["TESTING"] = True
    yield app, ctx, primary, standby
    ctx.close()


def _entries_shown(html: str) -> int:
    import re

    row = re.search(r'<table id="per-day">.*?<td class="num">([\d,]+)</td>', html, re.S)
    return int(row.group(1).replace(",", "")) if row else 0


def test_reports_read_from_the_standby_say_it_is_up_to_date_then_how_far_behind(standby_app):
    app, ctx, primary, standby = standby_app
    _entries(ctx, 12)
    poll(lambda: _stored_on(standby) == 12, 20, what="the standby replaying the passages")
    english = login(app, "manager", "en")
    page = english.get("/reports/").get_data(as_text=True)
    assert "Read from the standby database server, which is up to date with the primary." in page
    assert _entries_shown(page) == 12
    chinese = login(app, "manager", "zh-CN,zh;q=0.9")
    assert "报表读自备用数据库服务器，与主服务器同步。" in chinese.get("/reports/").get_data(as_text=True)

    standby.sql("SELECT pg_wal_replay_pause()")  # the standby falls behind (a long report query would do so too)
    _entries(ctx, 5)
    assert _stored_on(primary) == 17

    def behind() -> str | None:
        html = english.get("/reports/").get_data(as_text=True)
        return html if "s behind the primary: the latest passages may be missing." in html else None

    page = poll(behind, 20, every=0.2, what="the page saying the standby is behind")
    assert _entries_shown(page) == 12  # what the standby holds, and the page says so
    assert "落后于主服务器" in chinese.get("/reports/").get_data(as_text=True)
    daily = english.get("/reports/daily").get_data(as_text=True)
    assert "s behind the primary" in daily

    standby.sql("SELECT pg_wal_replay_resume()")
    poll(lambda: "up to date with the primary" in english.get("/reports/").get_data(as_text=True), 20,
         every=0.2, what="the standby caught up")


def test_reports_fall_back_to_the_primary_when_the_standby_is_down(standby_app):
    app, ctx, primary, standby = standby_app
    _entries(ctx, 7)
    manager = login(app, "manager", "en")
    # The primary must not wait for a standby that is gone before the standby is stopped.
    primary.sql("ALTER SYSTEM RESET synchronous_standby_names", db="postgres")
    primary.sql("SELECT pg_reload_conf()", db="postgres")
    standby.stop("immediate")
    res = manager.get("/reports/")
    assert res.status_code == 200
    page = res.get_data(as_text=True)
    assert "The standby database server is not answering: these figures were read from the primary." in page
    assert _entries_shown(page) == 7
    zh = login(app, "manager", "zh-CN,zh;q=0.9").get("/reports/").get_data(as_text=True)
    assert "备用数据库服务器没有响应" in zh


@pytest.fixture
def solo_pg():
    from tests.support.pg_pair import PgServer, have_pg_server, remove, scratch_dir
    from tests.support.services import need

    need(have_pg_server(), "PostgreSQL server binaries not found (apt-get install postgresql)")
    base = scratch_dir("gates-solo-")
    server = PgServer.primary(base, "solo")
    yield server
    if server.running:
        server.stop("immediate")
    remove(base)


def test_a_page_asked_while_no_database_answers_says_try_again_in_the_readers_language(solo_pg, tmp_path):
    ctx = prepare(make_config(solo_pg.url(), tmp_path), mqtt_on=False)
    seed(ctx)
    app = create_app(ctx.config, context=ctx)
    app.config["TESTING"] = True
    try:
        chinese, english = login(app, "manager", "zh-CN,zh;q=0.9"), login(app, "manager", "en")
        solo_pg.stop("immediate")
        res = chinese.get("/reports/")
        assert res.status_code == 503 and res.headers["Retry-After"] == "30"
        assert "数据库没有响应" in res.get_data(as_text=True)
        res = english.get("/reports/daily")
        assert res.status_code == 503
        assert "Nothing you entered was saved: wait a minute and try again." in res.get_data(as_text=True)
        solo_pg.start()  # back: the next page works, nobody restarted the web
        assert english.get("/reports/").status_code == 200
    finally:
        ctx.close()
