"""The central's /metrics as a park's monitoring reads it: passages, refusals, occupancy, gates; only
from the allowed networks or with the token; never a person's data in a label."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from central.app import create_app
from central.bus.ingest_worker import IngestWorker
from central.config import ConfigError, MetricsConfig, load_config_text
from central.models import utcnow
from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import PassageEvent, encode
from tests.central.conftest import add_gates

SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
            out[(match["name"], labels)] = float(match["value"])
    return out


def value(found, name: str, **labels) -> float:
    want = frozenset(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and want <= ls)


def _publish(broker, site: str, gate: str, events: list[PassageEvent]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for e in events:
            client.publish(topics.event(site, gate), encode(e), qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def _event(site, gate, zone, **kw) -> PassageEvent:
    return PassageEvent(id=new_event_id(), site=site, gate=gate, zone=zone, at=kw.pop("at", None) or utcnow(),
                        direction=kw.pop("direction", "in"), credential_kind=kw.pop("kind", "qr"), **kw)


def test_after_passages_the_metrics_show_them_by_zone_and_the_refusals_by_reason(live_config, live_ctx, mosquitto):
    site = live_config.site
    add_gates(live_ctx, site, "east", zone=2)
    app = create_app(live_config, context=live_ctx, web=False)
    client = app.test_client()
    before = samples(client.get("/metrics").text)
    worker = IngestWorker(live_config, live_ctx.sessions, worker_id=uuid.uuid4().hex[:6]).start()
    try:
        secret_ref = "T" + uuid.uuid4().hex  # what a credential reference looks like: it must not show
        events = [_event(site, "east", 2, passed=True, kind="none", mode="free") for _ in range(3)]
        events.append(_event(site, "east", 2, decision="refused", reason="already_used", credential_ref=secret_ref))
        _publish(mosquitto, site, "east", events)
        assert worker.wait_idle(timeout=30)
    finally:
        worker.stop()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    after = samples(response.text)
    grew = {k: value(after, k, site=site) - value(before, k, site=site)
            for k in ("park_passages_total", "park_refusals_total")}
    assert grew == {"park_passages_total": 3, "park_refusals_total": 1}
    assert value(after, "park_passages_total", site=site, zone="2", direction="in") >= 3
    assert value(after, "park_refusals_total", site=site, reason="already_used") >= 1
    assert value(after, "park_zone_occupancy", site=site, zone="2") == 3
    assert value(after, "park_zone_capacity", site=site, zone="2") == 50
    assert value(after, "park_ingest_events_total", outcome="stored") - \
        value(before, "park_ingest_events_total", outcome="stored") >= 4
    assert value(after, "park_ingest_batch_seconds_count") > value(before, "park_ingest_batch_seconds_count")
    assert value(after, "park_ingest_lag_seconds_count") > value(before, "park_ingest_lag_seconds_count")
    assert (("park_gate_up", frozenset({("site", site), ("gate", "east")}))) in after
    assert value(after, "park_claim_deadline_seconds", site=site) == 0.3
    assert value(after, "park_conflicts_total", site=site) == 0
    assert value(after, "park_http_requests_total", endpoint="prometheus_metrics", status="200") >= 1
    assert secret_ref not in response.text


def test_metrics_are_refused_outside_the_allowed_networks_unless_the_token_is_sent(config, ctx):
    config = replace(config, metrics=MetricsConfig(allow=("10.1.0.0/16",), token="s3cret-token"))
    app = create_app(config, context=ctx, web=False)
    client = app.test_client()
    outside = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert outside.status_code == 403
    assert "[metrics]" in outside.text
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 403  # not listed here
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.4.7"}).status_code == 200
    wrong = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"},
                       headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    right = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"},
                       headers={"Authorization": "Bearer s3cret-token"})
    assert right.status_code == 200 and "park_zone_occupancy" in right.text


def test_a_metrics_network_that_is_not_one_is_refused_naming_the_key():
    try:
        load_config_text('[metrics]\nallow = ["10.0.0.0/8", "the office"]\n', "central.toml", env={})
    except ConfigError as exc:
        assert "metrics.allow" in str(exc) and "the office" in str(exc)
    else:
        raise AssertionError("accepted")


def test_the_multiprocess_folder_forgets_the_files_of_processes_that_are_gone(tmp_path):
    import os

    from central.metrics import _forget_dead

    gone, alive = tmp_path / "counter_999999999.db", tmp_path / f"histogram_{os.getpid()}.db"
    gone.write_bytes(b"x")
    alive.write_bytes(b"x")
    _forget_dead(tmp_path)
    assert not gone.exists() and alive.exists()
