"""人证核验 in the shared rules: where a site or ticket type asks for it, an ID-card entry needs the camera's
face to match the card's photo at every entry; nothing is bound; other credentials are not asked."""

from __future__ import annotations

from datetime import UTC, datetime

from protocol.messages import TicketTypeRules
from protocol.reasons import Reason
from protocol.rules import Biometric, Credential, SitePolicy, Usage, ZoneState, biometric_step, decide

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
CARD = Credential(kind="id_card", ref="T1", ticket_type=6)
CHECKED = TicketTypeRules(id=6, name="实名票", entries=2, id_face=True)
PLAIN = TicketTypeRules(id=6, name="day", entries=2)


def enter(credential=CARD, rules=CHECKED, site=SitePolicy(), usage=Usage(), biometric=None):
    return decide(credential=credential, rules=rules, usage=usage, zone=ZoneState(zone=1), direction="in", now=NOW,
                  site=site, biometric=biometric)


def test_an_id_card_entry_of_a_checked_type_needs_the_face_first():
    assert biometric_step(CARD, CHECKED, Usage(), SitePolicy()) == "face"
    assert enter().reason == Reason.LOOK_AT_CAMERA


def test_a_face_that_is_not_the_cards_is_refused_even_at_the_first_entry_and_nothing_is_bound():
    refused = enter(biometric=Biometric(kind="face", matched=False, distance=0.8))
    assert refused.reason == Reason.NOT_SAME_PERSON
    granted = enter(biometric=Biometric(kind="face", matched=True, distance=0.3))
    assert granted.granted and not granted.bind


def test_the_site_asks_it_of_every_id_card_entry_and_of_nothing_else():
    site = SitePolicy(id_face=True)
    assert enter(rules=PLAIN, site=site).reason == Reason.LOOK_AT_CAMERA
    assert enter(rules=PLAIN).granted  # the site does not ask, the type does not: the card alone
    qr = Credential(kind="qr", ref="T2", ticket_type=6)
    assert biometric_step(qr, CHECKED, Usage(), site) is None
