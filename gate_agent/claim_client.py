"""Central claims at the gate (site policy `claim: central`): ask the central before opening.

    local verdict grants an entry --ClaimRequest (QoS 1, id, deadline)--> central
        reply granted    -> open `reply.passages` times; the passage events carry `claim_id`
        reply refused    -> refuse with the central's reason (claimed_elsewhere, used_up, ...)
        no reply in time -> the local verdict stands, the events say `offline=True`, and the
                            central records a conflict if another gate admitted the same entry

Exits, free passage and emergencies never wait for the central.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import UTC, datetime

import msgspec

from protocol import messages as m
from protocol import topics
from protocol.errors import MessageError
from protocol.ids import new_event_id
from protocol.reasons import GRANTING, Reason
from protocol.rules import refused

from .decider import ActiveConfig, Attempt, Outcome
from .link import Link

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Settled:
    """The outcome after the claim, the claim's id (granted or refused by the central), and
    whether the gate decided alone because no answer came in time."""

    outcome: Outcome
    claim_id: str | None = None
    alone: bool = False


class ClaimClient:
    """Sends ClaimRequests on the gate's link and waits for the matching ClaimReply."""

    def __init__(self, link: Link, site: str, gate: str) -> None:
        self.link = link
        self.site, self.gate = site, gate
        self._waiting: dict[str, tuple[threading.Event, list[m.ClaimReply]]] = {}
        self._lock = threading.Lock()
        link.subscribe(topics.claim_reply(site, gate), self._on_reply)

    def _on_reply(self, _topic: str, payload: bytes) -> None:
        try:
            reply = m.decode(m.ClaimReply, payload)
        except MessageError as exc:
            log.warning("claim reply refused: %s", exc)
            return
        with self._lock:
            waiting = self._waiting.get(reply.id)
        if waiting is None:
            return  # a reply after the deadline: the gate has decided alone
        waiting[1].append(reply)
        waiting[0].set()

    def claim(self, request: m.ClaimRequest, timeout_s: float) -> m.ClaimReply | None:
        """The central's answer, or None when none came within `timeout_s` (or the link is down)."""
        done, box = threading.Event(), list[m.ClaimReply]()
        with self._lock:
            self._waiting[request.id] = (done, box)
        try:
            if not self.link.publish(topics.claim(self.site, self.gate), m.encode(request), qos=1):
                return None
            return box[0] if done.wait(timeout_s) else None
        finally:
            with self._lock:
                self._waiting.pop(request.id, None)

    def settle(self, active: ActiveConfig, attempt: Attempt, outcome: Outcome, mode: m.Mode,
               now: datetime) -> Settled:
        """Claim the entry a local verdict granted, when the site asks for it; see the module doc."""
        if not wants_claim(active, attempt, outcome, mode):
            return Settled(outcome)
        cfg, verdict, resolved = active.cfg, outcome.verdict, outcome.resolved
        credential = resolved.credential
        request = m.ClaimRequest(
            id=new_event_id(), site=self.site, gate=self.gate, zone=cfg.zone, credential_kind=resolved.kind,
            credential_ref=resolved.ref, ticket_type=credential.ticket_type if credential else None,
            headcount=min(255, credential.headcount if credential else 1), allowed=min(255, verdict.passages),
            at=datetime.now(UTC), deadline_ms=cfg.claim_deadline_ms)  # the wall clock: it times the wait
        reply = self.claim(request, cfg.claim_deadline_ms / 1000)
        if reply is None:
            log.info("no claim answer within %d ms: deciding alone", cfg.claim_deadline_ms)
            return Settled(outcome, None, alone=True)
        if reply.granted and reply.passages > 0:
            passages = min(verdict.passages, reply.passages)
            granted = msgspec.structs.replace(verdict, passages=passages)
            return Settled(dataclasses.replace(outcome, verdict=granted), request.id)
        try:
            reason = Reason(reply.reason)
        except ValueError:
            reason = Reason.CLAIMED_ELSEWHERE  # a reason this gate's version does not know
        if reason in GRANTING:
            reason = Reason.CLAIMED_ELSEWHERE
        return Settled(dataclasses.replace(outcome, verdict=refused(reason)), request.id)


def wants_claim(active: ActiveConfig, attempt: Attempt, outcome: Outcome, mode: m.Mode) -> bool:
    """An entry by a known credential at a site with `claim: central`, in normal mode."""
    return (active.cfg.claim == "central" and mode == "normal" and attempt.direction == "in"
            and outcome.verdict.granted and outcome.verdict.reason == Reason.OK and bool(outcome.resolved.ref))


__all__ = ["ClaimClient", "Settled", "wants_claim"]
