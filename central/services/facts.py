"""The one mapping from the central's rows to the facts the shared rules decide on
(`protocol.rules`): a site's policy, a ticket's or an annual pass's credential. The ingest's replay
and the claim server both read the database through it, so both decide on the same facts.

Rows may be ORM objects or Core rows with the same attribute names (`tickets`, `annual_passes`,
`sites` columns). What a credential's status *means* at a given moment (a ticket used up since, a
refund after the entry) is the caller's to say: `status` is passed in.
"""

from __future__ import annotations

from typing import Any

from protocol.rules import Credential, SitePolicy


def site_policy(site: Any) -> SitePolicy:
    return SitePolicy(timezone=site.timezone, opens=site.opens, closes=site.closes,
                      pass_biometric=site.pass_biometric)


def ticket_credential(ticket: Any, *, kind: str, ref: str, status: str) -> Credential:
    return Credential(kind=kind, ref=ref, ticket_type=ticket.ticket_type_id, status=status,  # type: ignore[arg-type]
                      valid_from=ticket.valid_from, valid_to=ticket.valid_to, slot_start=ticket.slot_start,
                      slot_end=ticket.slot_end, headcount=ticket.headcount, zones=frozenset(ticket.zones or ()))


def pass_credential(annual_pass: Any, *, kind: str, ref: str, status: str) -> Credential:
    """An annual pass is bound to its holder: by policy the gate checks the holder too."""
    return Credential(kind=kind, ref=ref, status=status, valid_from=annual_pass.valid_from,  # type: ignore[arg-type]
                      valid_to=annual_pass.valid_to, zones=frozenset(annual_pass.zones or ()), holder_bound=True)


__all__ = ["pass_credential", "site_policy", "ticket_credential"]
