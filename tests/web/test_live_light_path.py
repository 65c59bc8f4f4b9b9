"""The live counts' light path: while the ingest is behind on the full events, the dashboard adds what
the gates say they counted (`GateCounts`, a few bytes a second per gate, retained) to what the central
has stored, says so in the manager's language, and drops the difference as the stored events catch up,
with the same numbers: nothing counted twice, a flagged passage cancelled by its stored copy, another
gate's or yesterday's counts never added."""

from __future__ import annotations

import json
import queue
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import GateCounts, GateSeen, Occupancy, PassageEvent, ZoneCount, ZoneTally, encode
from tests.web.test_browser import chromium, log_in, publisher, server  # noqa: F401  (fixtures)

TZ = ZoneInfo("Asia/Shanghai")


def _today():
    return datetime.now(TZ).date()


def _counts(site: str, gate: str, zone: int, entries: int, exits: int = 0, *, day=None, at=None) -> GateCounts:
    return GateCounts(site=site, gate=gate, day=day or _today(), at=at or datetime.now(UTC),
                      zones=[ZoneTally(zone=zone, entries=entries, exits=exits)])


def _free(site: str, gate: str, zone: int, direction: str = "in") -> PassageEvent:
    return PassageEvent(id=new_event_id(), site=site, gate=gate, zone=zone, at=datetime.now(UTC), direction=direction,
                        credential_kind="none", mode="free", reason="free_passage", passed=True)


def test_what_the_gates_counted_beyond_what_is_stored_is_added_and_nothing_else() -> None:
    from central.services.occupancy import with_gate_counts

    day = _today()
    stored = Occupancy(site="p1", at=datetime.now(UTC), day=day, zones=[
        ZoneCount(zone=1, inside=10, entries_today=12, exits_today=2, peak=11, capacity=20),
        ZoneCount(zone=2, inside=0, capacity=5)],
        gates=[GateSeen(gate="east-1", zone=1, entries=12, exits=2)])
    shown, pending = with_gate_counts(stored, [
        _counts("p1", "east-1", 1, 15, 3),  # 3 entries and 1 exit not stored yet
        _counts("p1", "west-1", 2, 2),  # a gate the central has stored nothing of yet
        _counts("p1", "old-1", 1, 50, day=day - timedelta(days=1)),  # yesterday's: never added
        _counts("p2", "east-1", 1, 99),  # another park's
    ])
    assert pending == 3 + 1 + 2
    zone1, zone2 = shown.zones
    assert (zone1.inside, zone1.entries_today, zone1.exits_today, zone1.peak) == (12, 15, 3, 12)
    assert (zone2.inside, zone2.entries_today) == (2, 2)
    # A gate whose own count is behind what is stored (it lost its store) never takes a passage away.
    shown, pending = with_gate_counts(stored, [_counts("p1", "east-1", 1, 5, 0)])
    assert pending == 0 and shown.zones[0].inside == 10


def _occupancy(listener: queue.Queue, want, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        data = listener.get(timeout=max(0.1, deadline - time.monotonic()))
        if data["type"] == "occupancy" and want(data):
            return data


@pytest.mark.mosquitto
def test_the_hub_believes_a_gates_counts_only_from_its_own_topic_and_newer_than_the_last(db_url, tmp_path, mosquitto,
                                                                                       publisher):  # noqa: F811
    from central.bus.ingest_worker import IngestWorker
    from central.web.live import LiveHub
    from tests.central.conftest import add_gates, make_config, prepare

    ctx = prepare(make_config(db_url, tmp_path, mosquitto), mqtt_on=True)
    site = ctx.config.site
    add_gates(ctx, site, "east-1", zone=2)
    hub = LiveHub(ctx.config.mqtt, {site: "Asia/Shanghai"}).start()
    worker = IngestWorker(ctx.config, ctx.sessions, ctx.link, cipher=ctx.cipher, occupancy_interval=0.05).start()
    listener = hub.listen()
    try:
        assert hub.wait_connected(10)
        warm = _free(site, "east-1", 2)  # the ingest publishes its (stored) occupancy: the hub knows the park
        publisher.publish(topics.event(site, "east-1"), encode(warm), qos=1).wait_for_publish(10)
        _occupancy(listener, lambda d: d["zones"][1]["inside"] == 1)

        def counts(topic_gate: str, message: GateCounts) -> None:
            publisher.publish(topics.counts(site, topic_gate), encode(message), qos=1, retain=True).wait_for_publish(10)

        counts("east-1", _counts(site, "east-1", 2, 4))
        data = _occupancy(listener, lambda d: d["source"] == "gates")
        assert (data["pending"], data["zones"][1]["inside"], data["entries_today"]) == (3, 4, 4)
        # Another gate's topic carrying east-1's name, and an older copy of east-1's own: neither counts.
        counts("west-9", _counts(site, "east-1", 2, 40))
        counts("east-1", _counts(site, "east-1", 2, 30, at=datetime.now(UTC) - timedelta(minutes=5)))
        counts("east-1", _counts(site, "east-1", 2, 5))
        data = _occupancy(listener, lambda d: d["pending"] != 3)
        assert (data["pending"], data["zones"][1]["inside"]) == (4, 5)
        assert (site, "west-9") not in hub.counts
    finally:
        worker.stop()
        hub.stop()
        ctx.close()


@pytest.mark.browser
@pytest.mark.mosquitto
def test_a_manager_sees_the_gates_counts_at_once_and_the_stored_ones_once_they_catch_up(server, chromium,  # noqa: F811
                                                                                      publisher):  # noqa: F811
    from playwright.sync_api import expect

    from central.bus.ingest_worker import IngestWorker
    from central.services.gates import register_gate

    ctx = server.ctx
    site = ctx.config.site
    with ctx.sessions.begin() as db:
        register_gate(db, site, "east-1", 2)
    ingest = IngestWorker(ctx.config, ctx.sessions, cipher=ctx.cipher, occupancy_interval=0.05).start()
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        log_in(page, server, "manager")
        page.wait_for_selector("#dashboard[data-ready='1']")
        zone = page.locator("#zone-2")
        expect(zone).to_have_attribute("data-inside", "0")
        note = page.locator("#count-source")
        expect(note).to_be_hidden()

        # A rush: the gate has let 3 visitors in and 1 out; the central has stored none of it yet.
        publisher.publish(topics.counts(site, "east-1"), encode(_counts(site, "east-1", 2, 3, 1)), qos=1, retain=True)
        expect(zone).to_have_attribute("data-inside", "2")
        expect(page.locator("#t-entries")).to_have_text("3")
        expect(note).to_be_visible()
        expect(note).to_contain_text("4")
        expect(note).to_contain_text("闸机")  # in the manager's language
        assert page.locator("#dashboard").get_attribute("data-count-source") == "gates"

        # The ingest stores the same passages: the same numbers, now the stored ones, and the note goes.
        for direction in ("in", "in", "in", "out"):
            publisher.publish(topics.event(site, "east-1"), encode(_free(site, "east-1", 2, direction)), qos=1)
        expect(page.locator("#dashboard")).to_have_attribute("data-count-source", "stored")
        expect(note).to_be_hidden()
        expect(zone).to_have_attribute("data-inside", "2")
        expect(page.locator("#t-entries")).to_have_text("3")
        expect(page.locator("#t-exits")).to_have_text("1")

        # A passage the central flags (the gate reports it in a zone it does not serve): its stored copy
        # cancels the gate's count, and it counts nowhere.
        publisher.publish(topics.counts(site, "east-1"), encode(GateCounts(
            site=site, gate="east-1", day=_today(), at=datetime.now(UTC),
            zones=[ZoneTally(zone=2, entries=3, exits=1), ZoneTally(zone=1, entries=1)])), qos=1, retain=True)
        expect(page.locator("#dashboard")).to_have_attribute("data-count-source", "gates")
        expect(page.locator("#zone-1")).to_have_attribute("data-inside", "1")
        publisher.publish(topics.event(site, "east-1"), encode(_free(site, "east-1", 1)), qos=1)
        expect(page.locator("#dashboard")).to_have_attribute("data-count-source", "stored")
        expect(page.locator("#zone-1")).to_have_attribute("data-inside", "0")
        snapshot = json.loads(page.evaluate("fetch(document.getElementById('dashboard').dataset.snapshot)"
                                            ".then(r => r.text())"))
        assert (snapshot["occupancy"]["source"], snapshot["occupancy"]["pending"]) == ("stored", 0)
    finally:
        context.close()
        ingest.stop()


def test_what_two_ingest_workers_stored_of_a_gate_is_one_sum_flagged_passages_included(db_url, tmp_path) -> None:
    from central.services.ingest import ingest_batch
    from central.services.occupancy import occupancy
    from tests.central.conftest import add_gates, make_config, prepare

    ctx = prepare(make_config(db_url, tmp_path), mqtt_on=False)
    site = ctx.config.site
    add_gates(ctx, site, "east-1", zone=2)
    try:
        with ctx.sessions.begin() as db:  # each worker adds to rows of its own: no waiting on each other
            ingest_batch(db, [_free(site, "east-1", 2), _free(site, "east-1", 2, "out")], shard="1")
            ingest_batch(db, [_free(site, "east-1", 2), _free(site, "east-1", 1)], shard="2")  # zone 1: flagged
        with ctx.sessions() as db:
            message = occupancy(db, site)
        assert message.day == _today()
        assert sorted((g.gate, g.zone, g.entries, g.exits) for g in message.gates) == [
            ("east-1", 1, 1, 0), ("east-1", 2, 2, 1)]
        zones = {z.zone: z for z in message.zones}
        assert (zones[2].inside, zones[1].inside) == (1, 0)  # the flagged passage counts in no zone
    finally:
        ctx.close()
