"""Watches a zone's count the way a manager's dashboard does: the central's web app (its LiveHub on
MQTT) streaming /live/stream as server-sent events; prints one JSON line per change of the zone's
entries_today, with the monotonic time it arrived.

    python -m tests.bench.live_observer CONFIG_TOML ZONE [mqtt]

`mqtt` (or a web package that cannot start) falls back to the retained Occupancy message on MQTT,
and says so in its first line.
"""

from __future__ import annotations

import json
import sys
import threading
import time


def _emit(**kw) -> None:
    print(json.dumps(kw), flush=True)


def watch_sse(config, zone: int) -> None:
    from central.app import create_app
    from central.context import CentralContext
    from central.models import StaffUser
    from central.services.users import create_user, start_session

    ctx = CentralContext.create(config, mqtt=True, client_suffix="bench-web")
    app = create_app(config, context=ctx)
    hub = app.extensions.get("central_web_hub")
    if hub is None or not hub.wait_connected(10):
        raise RuntimeError("the web app has no live hub")
    with ctx.sessions.begin() as db:
        user = db.query(StaffUser).filter_by(username="bench-manager").one_or_none()
        if user is None:
            # Not one-time: a one-time password would send the stream to /account/password (302).
            user, _ = create_user(db, "bench-manager", "manager", all_sites=True, one_time=False)
        uid = user.id
        sid = start_session(db, user)  # a server-side session record, as a login makes
    client = app.test_client()
    with client.session_transaction() as s:
        s["user_id"] = uid
        s["sid"] = sid
    _emit(ready=True, via="sse")
    last = None
    drops = 0
    while True:
        response = client.get("/live/stream", buffered=False)
        if response.status_code != 200:
            raise RuntimeError(f"/live/stream answered {response.status_code}")
        for chunk in response.response:
            text = chunk.decode() if isinstance(chunk, bytes) else chunk
            t = time.monotonic()
            for line in text.splitlines():
                if not line.startswith("data: ") or ('"occupancy"' not in line):
                    continue
                data = json.loads(line[6:])
                occ = data["occupancy"] if data.get("type") == "snapshot" else data
                for z in occ.get("zones", []):
                    if z["zone"] == zone and z["entries_today"] != last:
                        last = z["entries_today"]
                        _emit(t=t, entries=last)
        drops += 1  # the hub dropped this stream (a full queue): reconnect as a browser would
        _emit(dropped=drops, t=time.monotonic())


def watch_mqtt(config, zone: int) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol import topics
    from protocol.messages import Occupancy, decode

    last = [None]

    def on_message(_c, _u, msg):
        t = time.monotonic()
        occ = decode(Occupancy, msg.payload)
        for z in occ.zones:
            if z.zone == zone and z.entries_today != last[0]:
                last[0] = z.entries_today
                _emit(t=t, entries=z.entries_today)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_connect = lambda c, *_a: c.subscribe(topics.occupancy(config.site), 1)
    client.connect(config.mqtt.host, config.mqtt.port)
    client.loop_start()
    _emit(ready=True, via="mqtt")
    threading.Event().wait()


def main(argv: list[str]) -> int:
    from central.config import load_config

    config = load_config(argv[0], env={})
    zone = int(argv[1])
    if len(argv) > 2 and argv[2] == "mqtt":
        watch_mqtt(config, zone)
        return 0
    try:
        watch_sse(config, zone)
    except Exception as exc:  # noqa: BLE001 - the web package is still being built: say so, measure MQTT
        _emit(sse_failed=f"{type(exc).__name__}: {exc}"[:300])
        watch_mqtt(config, zone)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
