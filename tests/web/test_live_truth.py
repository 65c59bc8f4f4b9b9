"""One truth on the dashboard: entries per minute and refusals come from what the central stored, the
same as occupancy. A gate's resend of an event it had no acknowledgement for counts once, an event
the central flagged as implausible counts nowhere, and a raw event nobody stored is not on the page."""

from __future__ import annotations

import queue
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import PassageEvent, encode
from tests.central.conftest import add_gates, make_config, prepare

pytestmark = pytest.mark.mosquitto


def _free_passage(site: str, gate: str = "east-1", **kw) -> PassageEvent:
    values = dict(id=new_event_id(), site=site, gate=gate, zone=1, at=datetime.now(UTC), direction="in",
                  credential_kind="none", passed=True, mode="free", reason="free_passage")
    values.update(kw)
    return PassageEvent(**values)


def _passages(listener: queue.Queue, until_id: str, timeout: float = 15.0) -> list[str]:
    """The passage ids the dashboard's stream got, up to and including `until_id`."""
    seen: list[str] = []
    while True:
        data = listener.get(timeout=timeout)
        if data["type"] == "passage":
            seen.append(data["id"])
            if data["id"] == until_id:
                return seen


def test_a_resent_or_flagged_event_never_counts_twice_or_at_all_on_an_open_dashboard(db_url, tmp_path, mosquitto):
    from central.bus.ingest_worker import IngestWorker
    from central.web.live import LiveHub

    ctx = prepare(make_config(db_url, tmp_path, mosquitto), mqtt_on=True)
    site = ctx.config.site
    add_gates(ctx, site, "east-1")
    hub = LiveHub(ctx.config.mqtt, {site: "Asia/Shanghai"}).start()
    worker = IngestWorker(ctx.config, ctx.sessions, ctx.link, cipher=ctx.cipher).start()
    gate = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gate-{new_event_id()[:8]}")
    gate.connect(mosquitto.host, mosquitto.port)
    gate.loop_start()
    listener = hub.listen()
    try:
        assert hub.wait_connected(10)

        def send(event: PassageEvent) -> None:
            gate.publish(topics.event(site, event.gate), encode(event), qos=1).wait_for_publish(10)

        first = _free_passage(site)
        send(first)
        assert _passages(listener, first.id) == [first.id]
        send(first)  # the gate heard no EventAck in time and sends the same event again
        send(first)
        forged = _free_passage(site, gate="no-such-gate")  # flagged at the central: counted nowhere
        send(forged)
        second = _free_passage(site, direction="out")
        send(second)
        assert _passages(listener, second.id) == [second.id]  # neither the resends nor the forged event
        ids = {data.get("id") for data in _drain(listener)}
        assert first.id not in ids and forged.id not in ids
    finally:
        gate.loop_stop()
        gate.disconnect()
        worker.stop()
        hub.stop()
        ctx.close()


def _drain(listener: queue.Queue) -> list[dict]:
    out = []
    while True:
        try:
            out.append(listener.get(timeout=1.0))
        except queue.Empty:
            return out
