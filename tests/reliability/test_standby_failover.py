"""The primary database dies under load; its hot standby is promoted; the park goes on with nothing lost.

Two PostgreSQL clusters of the test's own: a primary and a streaming hot standby made from it with
`pg_basebackup -R` through a replication slot, synchronous (a commit returns once the standby has it).
The central (ingest worker in its own process, the web app under waitress, the claim server on the
broker) names both hosts in its URL with `target_session_attrs=read-write`. Gate agents admit visitors
over real Mosquitto; the primary is killed (`pg_ctl stop -m immediate`); the standby is promoted by
hand (`pg_ctl promote`, what an operator or a fencing script runs: see the README for why not Patroni).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest

from central.models import Claim, utcnow
from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import ClaimReply, ClaimRequest, decode, encode
from tests.reliability.conftest import Visitors, poll
from tests.reliability.test_broker_outage import check_park
from tests.support.pg_pair import both_hosts_url

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.postgres]


class Web:
    """The central's app under waitress on a free port (as `park-central serve`), with an API token."""

    def __init__(self, ctx) -> None:
        from waitress import create_server

        from central.app import create_app
        from central.services.users import create_token

        self.app = create_app(ctx.config, context=ctx, web=True)
        with ctx.sessions.begin() as db:
            _token, self.token = create_token(db, "failover-test", "manager")
        self._server = create_server(self.app, host="127.0.0.1", port=0, threads=4)
        self.url = f"http://127.0.0.1:{self._server.effective_port}"
        threading.Thread(target=self._server.run, daemon=True).start()

    def get(self, path: str) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def inside(self) -> int | None:
        status, body = self.get("/api/v1/occupancy")
        if status != 200:
            return None
        return next(z["inside"] for z in body["zones"] if z["zone"] == 1)

    def close(self) -> None:
        self._server.close()
        hub = self.app.extensions.get("central_web_hub")
        if hub is not None:
            hub.stop()


class Claimer:
    """Asks the claim server over the broker as a gate would, and waits for its reply."""

    def __init__(self, broker, site: str, gates: tuple[str, ...]) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.site = site
        self.replies: dict[str, ClaimReply] = {}
        self._got = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"claimer-{new_event_id()[:8]}",
                                  protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe([(topics.claim_reply(site, gate), 1) for gate in gates])
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c, _u, msg) -> None:
        reply = decode(ClaimReply, msg.payload)
        with self._got:
            self.replies[reply.id] = reply
            self._got.notify_all()

    def claim(self, ticket, gate: str, timeout: float = 10.0) -> ClaimReply | None:
        request = ClaimRequest(id=new_event_id(), site=self.site, gate=gate, zone=1, credential_kind="qr",
                               credential_ref=ticket.ref, ticket_type=ticket.ticket_type_id,
                               headcount=ticket.headcount, allowed=1, at=utcnow(), deadline_ms=3000)
        self.client.publish(topics.claim(self.site, gate), encode(request), qos=1)
        with self._got:
            self._got.wait_for(lambda: request.id in self.replies, timeout)
            return self.replies.get(request.id)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _tickets(park, count: int) -> list:
    from central.services.tickets import IssueRequest, issue_tickets

    now = utcnow()
    with park.ctx.sessions.begin() as db:
        return issue_tickets(db, park.site, [IssueRequest(ticket_type=park.single, valid_from=now - timedelta(hours=1),
                                                          valid_to=now + timedelta(days=1))] * count)


def test_primary_database_killed_under_load_standby_promoted_nothing_lost(
        tmp_path, pg_pair, mosquitto_factory, park_factory, gate_procs, witness_factory):
    from central.bus.claim_server import ClaimServer

    primary, standby = pg_pair
    broker = mosquitto_factory(persistence=True)
    park = park_factory(both_hosts_url(primary, standby), broker, tickets=1200)
    witness = witness_factory(broker, park.site)
    park.start_ingest()
    web = Web(park.ctx)
    claims = ClaimServer(park.config, park.ctx.sessions, workers=2).start()
    claimer = Claimer(broker, park.site, park.gates)
    try:
        held, fresh = _tickets(park, 2)
        before = claimer.claim(held, "g1")
        assert before is not None and before.granted  # the claim server answers on the primary

        gates = [gate_procs(broker, park.site, name).start() for name in park.gates]
        poll(lambda: all(g.ready() for g in gates), 40, what="gates configured and synced")
        visitors = [Visitors(g, park.codes[i * 600:(i + 1) * 600], replay_every=12, pace_s=0.05)
                    for i, g in enumerate(gates)]
        for v in visitors:
            v.start()
        poll(lambda: park.rows() >= 60, 60, what="passages stored on the primary")
        assert web.inside() > 0

        primary.stop("immediate")  # the primary's machine dies, mid-batch
        admitted = sum(len(v.decisions) for v in visitors)
        poll(lambda: sum(len(v.decisions) for v in visitors) >= admitted + 20, 30,
             what="gates admitting while the central has no database")
        status, body = web.get("/api/v1/occupancy")
        assert (status, body.get("error")) == (503, "database_unavailable")  # "try again", never a 500

        outage_decisions = sum(len(v.decisions) for v in visitors) - admitted
        # Every commit the primary acknowledged is on the standby (synchronous): read it there, read-only.
        stored = standby.sql(f"SELECT count(*) FROM passage_events WHERE site_id = '{park.site}'")[0]
        promoted_at = time.monotonic()
        standby.promote()
        poll(lambda: (web.inside() or 0) > 0, 30, what="the web app answering from the promoted standby")
        poll(lambda: park.rows() > stored, 60, what="the ingest storing on the new primary")
        recovered_s = round(time.monotonic() - promoted_at, 1)
        poll(lambda: park.rows() >= stored + 30, 60, what="the ingest keeping up on the new primary")
        after = claimer.claim(fresh, "g2")
        assert after is not None and after.granted  # claims are answered by the new primary
        with park.ctx.sessions() as db:  # the claim granted before the failover survived it (synchronous)
            assert db.get(Claim, before.id) is not None

        for v in visitors:
            v.finish()
        check_park(park, gates, visitors, witness, "primary-database-failover", promoted="db2",
                   decided_without_database=outage_decisions, ingest_back_after_promote_s=recovered_s)
        assert park.ingest.poll() is None, "the ingest worker died with the primary"
        assert web.inside() == park.zone(1).inside
        assert standby.sql("SELECT pg_is_in_recovery()")[0] is False
    finally:
        claimer.close()
        claims.stop()
        web.close()
