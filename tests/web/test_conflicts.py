"""A manager decides each conflict from offline gates, with a note: the decision, who and when are kept,
a revoking decision reaches the ticket, a decided conflict stays decided, and the API does the same."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from central.models import AuditEntry, Conflict, Ticket, utcnow
from central.services.gates import register_gate
from central.services.ingest import ingest_batch
from central.services.tickets import IssueRequest, issue_ticket
from central.services.users import create_token
from protocol.ids import new_event_id
from protocol.messages import PassageEvent
from tests.web.conftest import login


def _two_gates_one_ticket(web_ctx, n: int = 1) -> list[int]:
    """n single-entry tickets each used at two gates that could not reach each other: n conflicts."""
    site = web_ctx.config.site
    now = utcnow()
    with web_ctx.sessions.begin() as db:
        for gate in ("east-1", "east-2"):
            register_gate(db, site, gate, 1)
        tickets = [issue_ticket(db, site, IssueRequest(ticket_type=1)) for _ in range(n)]
        ingest_batch(db, [PassageEvent(id=new_event_id(), site=site, gate=gate, zone=1,
                                       at=now - timedelta(minutes=5 - i), direction="in", credential_kind="qr",
                                       credential_ref=t.ref, decision="granted", reason="ok", passed=True,
                                       offline=True, ticket_type=1)
                          for t in tickets for i, gate in enumerate(("east-1", "east-2"))])
        return [t.id for t in tickets]


def _text(res) -> str:
    return res.get_data(as_text=True)


def test_a_manager_revokes_the_shared_ticket_with_a_note_and_the_decision_is_kept(app, web_ctx):
    (ticket_id,) = _two_gates_one_ticket(web_ctx)
    manager = login(app, "manager")
    page = _text(manager.get("/reports/conflicts"))
    (conflict_id,) = re.findall(r'<tr data-conflict="(\d+)" data-state="open">', page)
    assert "Open (1)" in page and "east-2" in page

    res = manager.post(f"/reports/conflicts/{conflict_id}/resolve", {"decision": "", "note": "code shared on WeChat"})
    assert res.status_code == 422
    assert 'data-field="decision"' in _text(res) and 'value="code shared on WeChat"' in _text(res)  # kept
    res = manager.post(f"/reports/conflicts/{conflict_id}/resolve", {"decision": "credential_revoked", "note": " "})
    assert res.status_code == 422 and "Say in a few words" in _text(res)

    res = manager.post(f"/reports/conflicts/{conflict_id}/resolve",
                       {"decision": "credential_revoked", "note": "code shared on WeChat"}, follow_redirects=True)
    assert "resolved: ticket revoked or pass suspended" in _text(res)
    assert "Open (0)" in _text(res)
    page = _text(manager.get("/reports/conflicts?state=resolved"))
    assert f'<tr data-conflict="{conflict_id}" data-state="resolved">' in page
    assert "code shared on WeChat" in page and "manager, " in page
    with web_ctx.sessions() as db:
        assert db.get(Ticket, ticket_id).status == "revoked"  # every gate refuses it from now on
        conflict = db.get(Conflict, int(conflict_id))
        assert (conflict.resolution, conflict.resolved_by) == ("credential_revoked", "manager")
        assert db.scalar(select(AuditEntry).where(AuditEntry.action == "conflict.resolve")).actor == "manager"

    res = manager.post(f"/reports/conflicts/{conflict_id}/resolve", {"decision": "accepted", "note": "oops"})
    assert res.status_code == 422 and "manager already resolved this conflict" in _text(res)
    with web_ctx.sessions() as db:
        assert db.get(Conflict, int(conflict_id)).resolution == "credential_revoked"  # not overwritten


def test_the_api_resolves_a_conflict_for_a_manager_only(app, web_ctx):
    _two_gates_one_ticket(web_ctx, 2)
    with web_ctx.sessions.begin() as db:
        manager = create_token(db, "ops", "manager")[1]
        staff = create_token(db, "desk", "staff")[1]
    client = app.test_client()
    listed = client.get("/api/v1/conflicts", headers={"Authorization": f"Bearer {manager}"}).get_json()["conflicts"]
    assert len(listed) == 2 and all(c["resolved_at"] is None for c in listed)
    first = listed[0]["id"]
    url = f"/api/v1/conflicts/{first}/resolve"
    body = {"decision": "accepted", "note": "a family let through twice at the same minute"}
    assert client.post(url, json=body, headers={"Authorization": f"Bearer {staff}"}).status_code == 403
    res = client.post(url, json={**body, "decision": "maybe"}, headers={"Authorization": f"Bearer {manager}"})
    assert res.status_code == 400 and res.get_json()["field"] == "decision"  # refused at the edge
    res = client.post(url, json=body, headers={"Authorization": f"Bearer {manager}"})
    assert res.status_code == 200
    assert (res.get_json()["resolution"], res.get_json()["resolved_by"]) == ("accepted", "token:ops")
    res = client.post(url, json=body, headers={"Authorization": f"Bearer {manager}"})
    assert res.status_code == 409 and res.get_json()["error"] == "conflict_resolved"
    with web_ctx.sessions() as db:
        assert {t.status for t in db.scalars(select(Ticket))} == {"used"}  # accepting revokes nothing
