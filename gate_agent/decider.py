"""From a raw credential to a decision: resolve it against the local store, then `protocol.rules.decide`.

    QR text        -> KeyRing.verify (CodeError -> refused with its reason) + the store's status overlay
    ID number      -> id_number_digest(salt, number) -> today's booking (none -> NO_BOOKING)
    card UID       -> the annual pass (unknown -> UNKNOWN_CREDENTIAL)
    face probe     -> 1:N among enrolled holders -> the holder's pass
    fingerprint    -> the holder matched on the module -> the holder's pass

The biometric step (1:1 face or fingerprint) is asked of a `BiometricCapture` only when
`protocol.rules.biometric_step` says the rules need it. The zone's live count comes from the central's
retained `Occupancy` plus the site's passages seen since.
"""

from __future__ import annotations

import logging
import threading
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

from protocol import messages as m
from protocol.errors import CodeError
from protocol.ids import id_number_digest, is_ticket_ref, pass_ref, ref_number, ticket_ref
from protocol.reasons import Reason
from protocol.rules import (
    Biometric,
    Credential,
    SitePolicy,
    Usage,
    Verdict,
    ZoneState,
    biometric_step,
    decide,
    id_face_check,
    refused,
)
from protocol.ticket_code import KeyRing, PublicKey
from protocol.ticket_code import TicketClaims as Claims

from .store import PassRow, Store, TicketRow

if TYPE_CHECKING:
    from biometrics.face import FaceIndex  # numpy only on a gate with a camera

log = logging.getLogger(__name__)

AttemptKind = Literal["qr", "id_card", "annual_pass", "face", "fingerprint"]
KINDS: tuple[str, ...] = ("qr", "id_card", "annual_pass", "face", "fingerprint")


@dataclass(frozen=True)
class Attempt:
    """One presentation at a reader: the raw value never leaves the gate (no codes or ID numbers in events)."""

    kind: AttemptKind
    value: object  # QR text, ID number, card UID hex, a FaceTemplate, a holder id (fingerprint)
    direction: m.Direction = "in"
    source: str = ""
    # An ID card's photo as the reader's SDK decoded it: in memory for 人证核验 only, never stored or sent.
    photo: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def repeat_key(self) -> tuple[str, str, object]:
        value = self.value
        if isinstance(value, str):
            value = value.strip().upper()
        elif not isinstance(value, int | bytes):
            value = id(value)  # a face probe is never "the same scan"
        return self.kind, self.direction, value


@dataclass
class Resolved:
    """What the store says of an attempt, before the rules run."""

    kind: m.CredentialKind
    ref: str = ""
    credential: Credential | None = None
    rules: m.TicketTypeRules | None = None
    usage: Usage = field(default_factory=Usage)
    binding: bytes | None = None  # the face template bound at first entry, if any
    holder_id: str | None = None
    refusal: Reason | None = None  # refused before the rules could run
    card_photo: bytes | None = field(default=None, repr=False)  # an ID card's photo (memory only)
    first_photo: bytes | None = field(default=None, repr=False)  # the camera's view as a finger is bound


@dataclass
class Outcome:
    """The decision and what the biometric step measured."""

    resolved: Resolved
    verdict: Verdict
    biometric: Biometric | None = None
    probe: bytes | None = None  # the template captured now (bound at a first entry)


BiometricCapture = Callable[[str, Resolved, "ActiveConfig"], tuple[Biometric | None, bytes | None]]


class CardPhotoUnreadable(Exception):
    """The ID card's photo holds no face the gate can compare (人证核验 cannot be done)."""


class ConfigInvalid(ValueError):
    """A GateConfig that parses but cannot be applied; the message is the ConfigAck error."""


class ActiveConfig:
    """A validated GateConfig with what the gate derives from it (key ring, rules by type)."""

    def __init__(self, cfg: m.GateConfig, payload: bytes) -> None:
        self.cfg = cfg
        self.payload = payload
        self.keyring = KeyRing([
            PublicKey(k.key_id, k.public, k.retired_at, timedelta(seconds=k.grace_s)) for k in cfg.keys
        ])
        self.rules = {t.id: t for t in cfg.ticket_types}
        self.policy = SitePolicy(timezone=cfg.timezone, opens=cfg.opening.opens, closes=cfg.opening.closes,
                                 pass_biometric=cfg.pass_biometric, id_face=cfg.id_face)

    def rules_for(self, ticket_type: int | None) -> m.TicketTypeRules | None:
        if ticket_type is None:
            return None  # annual passes: unlimited within validity
        # A type this gate was not told about: one entry, never "unlimited" by omission.
        return self.rules.get(ticket_type) or m.TicketTypeRules(id=ticket_type, name="unknown")


def validate(cfg: m.GateConfig, site: str, gate: str, profile_check: Callable[[str], None] | None = None) -> None:
    """Semantic checks beyond the schema; raises ConfigInvalid naming the field."""
    if cfg.site != site or cfg.gate != gate:
        raise ConfigInvalid(f"$.gate: config for {cfg.site}/{cfg.gate}, this is {site}/{gate}")
    try:
        zoneinfo.ZoneInfo(cfg.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigInvalid(f"$.timezone: unknown time zone {cfg.timezone!r}") from None
    if cfg.opening.opens >= cfg.opening.closes:
        raise ConfigInvalid("$.opening: opens must come before closes")
    for key in (cfg.opening.opens, cfg.opening.closes):
        hours, minutes = int(key[:2]), int(key[3:])
        if minutes > 59 or hours > 24 or (hours == 24 and minutes):
            raise ConfigInvalid(f"$.opening: {key!r} is not a time of day")
    if not cfg.keys:
        raise ConfigInvalid("$.keys: no ticket-code public key")
    ids = [k.key_id for k in cfg.keys]
    if len(set(ids)) != len(ids):
        raise ConfigInvalid("$.keys: duplicate key id")
    types = [t.id for t in cfg.ticket_types]
    if len(set(types)) != len(types):
        raise ConfigInvalid("$.ticket_types: duplicate ticket type id")
    for t in cfg.ticket_types:
        if t.zones and cfg.zone not in t.zones and cfg.direction == "in":
            log.info("ticket type %s is not valid in this gate's zone %s", t.id, cfg.zone)
    if cfg.id_salt == b"\x00" * 16:
        raise ConfigInvalid("$.id_salt: the site's ID-number salt is not set")
    try:
        KeyRing([PublicKey(k.key_id, k.public) for k in cfg.keys])
    except ValueError as exc:
        raise ConfigInvalid(f"$.keys: {exc}") from None
    if profile_check is not None and cfg.hardware.controller_profile:
        try:
            profile_check(cfg.hardware.controller_profile)
        except Exception as exc:
            raise ConfigInvalid(f"$.hardware.controller_profile: {exc}") from None


class ZoneTracker:
    """The zone's live count: the central's last Occupancy plus the site's passages seen since."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._base: dict[int, tuple[datetime | None, int, int | None]] = {}
        self._since: list[tuple[datetime, int, int]] = []  # (at, zone, +1/-1)

    def occupancy(self, occ: m.Occupancy) -> None:
        with self._lock:
            for z in occ.zones:
                self._base[z.zone] = (occ.at, z.inside, z.capacity)
            self._since = [p for p in self._since if p[0] > occ.at or p[1] not in self._base]

    def passage(self, event: m.PassageEvent) -> None:
        if not event.passed:
            return
        with self._lock:
            self._since.append((event.at, event.zone, event.headcount if event.direction == "in" else -event.headcount))
            del self._since[:-100_000]

    def state(self, zone: int) -> ZoneState:
        with self._lock:
            at, inside, capacity = self._base.get(zone, (None, 0, None))
            inside += sum(d for t, z, d in self._since if z == zone and (at is None or t > at))
        return ZoneState(zone=zone, inside=max(0, inside), capacity=capacity)


class FaceSource(Protocol):
    """Where the decider finds enrolled faces (`gate_agent.faces.FaceMatcher`)."""

    @property
    def index(self) -> FaceIndex | None: ...

    def identify(self, probe, threshold: float | None): ...


class Decider:
    """Resolves attempts against the store and decides with the shared rules."""

    def __init__(self, store: Store, zones: ZoneTracker | None = None, faces: FaceSource | None = None) -> None:
        self.store = store
        self.zones = zones or ZoneTracker()
        self.face_source = faces  # gate_agent.faces.FaceMatcher: the 1:N index, built on the first face attempt

    @property
    def faces(self):
        """The 1:N face index (a biometrics.face.FaceIndex), or None while it is not built."""
        return self.face_source.index if self.face_source is not None else None

    # -- resolution ----------------------------------------------------------------------------

    def resolve(self, attempt: Attempt, active: ActiveConfig, now: datetime) -> Resolved:
        kind = attempt.kind
        if kind == "qr":
            return self._qr(str(attempt.value), active, now)
        if kind == "id_card":
            resolved = self._id_card(str(attempt.value), active, now)
            resolved.card_photo = attempt.photo
            return resolved
        if kind == "annual_pass":
            uid = str(attempt.value).strip().upper()
            row = self.store.pass_by_uid(uid) if uid else None
            if row is None:
                return Resolved("annual_pass", refusal=Reason.UNKNOWN_CREDENTIAL)
            return self._pass(row, "annual_pass")
        if kind == "face":
            return self._face(attempt.value, active)
        if kind == "fingerprint":
            holder = str(attempt.value)
            passes = self.store.passes_of(holder)
            if not passes:
                return Resolved("fingerprint", refusal=Reason.UNKNOWN_CREDENTIAL)
            return self._pass(passes[0], "fingerprint")
        raise ValueError(f"unknown attempt kind {kind!r}")

    def _with_usage(self, resolved: Resolved) -> Resolved:
        resolved.usage, resolved.binding = self.store.usage(resolved.ref)
        return resolved

    def _qr(self, text: str, active: ActiveConfig, now: datetime) -> Resolved:
        try:
            claims: Claims = active.keyring.verify(text, now)
        except CodeError as exc:
            return Resolved("qr", refusal=Reason(exc.reason))
        row = self.store.ticket(claims.ticket_id)
        credential = Credential(
            kind="qr", ref=claims.ref, ticket_type=claims.ticket_type, status=row.status if row else "valid",
            valid_from=claims.valid_from, valid_to=claims.valid_to, slot_start=claims.slot_start,
            slot_end=claims.slot_end, headcount=claims.headcount, zones=claims.zones,
        )
        return self._with_usage(Resolved("qr", claims.ref, credential, active.rules_for(claims.ticket_type)))

    def _ticket(self, row: TicketRow, kind: m.CredentialKind, active: ActiveConfig) -> Resolved:
        ref = ticket_ref(row.ticket_id)
        credential = Credential(
            kind=kind, ref=ref, ticket_type=row.ticket_type, status=row.status, valid_from=row.valid_from,
            valid_to=row.valid_to, slot_start=row.slot_start, slot_end=row.slot_end, headcount=row.headcount,
            zones=row.zones,
        )
        return self._with_usage(Resolved(kind, ref, credential, active.rules_for(row.ticket_type)))

    def _id_card(self, number: str, active: ActiveConfig, now: datetime) -> Resolved:
        digest = id_number_digest(active.cfg.id_salt, number)
        rows = self.store.tickets_by_digest(digest)
        if not rows:
            return Resolved("id_card", refusal=Reason.NO_BOOKING)
        today = now.astimezone(zoneinfo.ZoneInfo(active.cfg.timezone)).date()
        tz = zoneinfo.ZoneInfo(active.cfg.timezone)

        def preference(row: TicketRow) -> tuple:
            day = (row.slot_start or row.valid_from)
            is_today = day is not None and day.astimezone(tz).date() == today
            started = row.valid_from is None or row.valid_from <= now
            current = started and (row.valid_to is None or now <= row.valid_to)
            return (row.status != "valid", not is_today, not current, abs((day - now).total_seconds()) if day else 0)

        # The booking the visitor most likely means: a valid one for today, the nearest slot first.
        candidates = sorted(rows, key=preference)
        return self._ticket(candidates[0], "id_card", active)

    def _pass(self, row: PassRow, kind: m.CredentialKind) -> Resolved:
        ref = pass_ref(row.pass_id)
        credential = Credential(kind=kind, ref=ref, status=row.status, valid_from=row.valid_from,
                                valid_to=row.valid_to, zones=row.zones, holder_bound=True)
        return self._with_usage(Resolved(kind, ref, credential, None, holder_id=row.holder_id))

    def _face(self, probe, active: ActiveConfig) -> Resolved:
        match = self.face_source.identify(probe, active.cfg.face_threshold) if self.face_source is not None else None
        if match is None or not match.ok or match.holder_id is None:
            return Resolved("face", refusal=Reason.UNKNOWN_CREDENTIAL)
        if is_ticket_ref(match.holder_id):  # a booked person's face (face entry at booking): their ticket
            row = self.store.ticket(ref_number(match.holder_id) or 0)
            if row is None:
                return Resolved("face", refusal=Reason.UNKNOWN_CREDENTIAL)
            return self._ticket(row, "face", active)
        passes = self.store.passes_of(match.holder_id)
        if not passes:
            return Resolved("face", refusal=Reason.UNKNOWN_CREDENTIAL)
        return self._pass(passes[0], "face")

    # -- deciding ------------------------------------------------------------------------------

    def decide(self, attempt: Attempt, active: ActiveConfig, *, now: datetime, mode: m.Mode,
               capture: BiometricCapture | None = None) -> Outcome:
        cfg = active.cfg
        if cfg.direction != "both" and attempt.direction != cfg.direction and mode != "emergency":
            return Outcome(Resolved(attempt.kind), refused(Reason.WRONG_DIRECTION))
        resolved = self.resolve(attempt, active, now)
        if resolved.refusal is not None:
            if attempt.direction == "out" or mode in ("emergency", "free"):
                # Exits are never refused, and free passage admits whoever comes.
                verdict = decide(credential=None, rules=None, usage=Usage(), zone=ZoneState(zone=cfg.zone),
                                 direction=attempt.direction, now=now, site=active.policy, mode=mode)
                return Outcome(resolved, verdict)
            return Outcome(resolved, refused(resolved.refusal))
        zone = self.zones.state(cfg.zone)
        biometric, probe = None, None
        step = None
        if attempt.direction == "in" and mode in ("normal", "locked") and resolved.credential is not None:
            step = biometric_step(resolved.credential, resolved.rules, resolved.usage, active.policy)
        if step is not None and mode == "normal":
            # Spare the camera when the rules refuse anyway.
            plain = decide(credential=resolved.credential, rules=resolved.rules, usage=resolved.usage, zone=zone,
                           direction=attempt.direction, now=now, site=active.policy, mode=mode,
                           biometric=Biometric(kind="face" if step != "fingerprint" else "fingerprint", matched=True))
            if plain.granted and resolved.credential is not None \
                    and id_face_check(resolved.credential, resolved.rules, active.policy) \
                    and resolved.card_photo is None:
                # 人证核验 asked, and the reader gave no photo (no SDK decoder, a read without one): staff decide.
                return Outcome(resolved, refused(Reason.CARD_PHOTO_UNREADABLE))
            if plain.granted and capture is not None:
                try:
                    biometric, probe = capture(step, resolved, active)
                except CardPhotoUnreadable:
                    return Outcome(resolved, refused(Reason.CARD_PHOTO_UNREADABLE))
        verdict = decide(credential=resolved.credential, rules=resolved.rules, usage=resolved.usage, zone=zone,
                         direction=attempt.direction, now=now, site=active.policy, mode=mode, biometric=biometric)
        return Outcome(resolved, verdict, biometric, probe)


__all__ = ["ActiveConfig", "Attempt", "CardPhotoUnreadable", "ConfigInvalid",
           "Decider", "Outcome", "Resolved", "ZoneTracker", "validate"]
