"""Sites, zones and gates: registration, the versioned GateConfig, status, acknowledgements, commands.

A gate's config version is bumped on every change it must learn (its own settings, the site's,
ticket types, signing keys); `Publisher.flush()` publishes, retained, every config whose version is
newer than the one last published.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from central.i18n import _l
from central.models import (
    CommandRecord,
    Gate,
    GateStatusRecord,
    SigningKey,
    Site,
    TicketType,
    Zone,
    utcnow,
)
from central.services import Invalid, NotFound, Refused, limits
from central.services.audit import audit
from protocol import messages as m
from protocol import topics
from protocol.controllers import SHIPPED_PROFILES
from protocol.ids import new_event_id
from protocol.messages import (
    Command,
    CommandAck,
    ConfigAck,
    FireAlarm,
    GateConfig,
    GateStatus,
    HardwareParams,
    OpeningHours,
    PublicKeyInfo,
    TicketTypeRules,
    encode,
)

MODES = ("normal", "free", "locked", "emergency")
DIRECTIONS = ("in", "out", "both")


# --- sites and zones ---------------------------------------------------------------------------


def ensure_site(session: Session, site_id: str, *, name: str = "", timezone: str = "Asia/Shanghai",
                **settings) -> Site:
    """The site `site_id`, created with a fresh ID salt when missing."""
    topics.check_name("site", site_id)
    site = session.get(Site, site_id)
    if site is None:
        site = Site(id=site_id, name=name or site_id, timezone=timezone, id_salt=os.urandom(32), **settings)
        session.add(site)
        session.flush()
    return site


def get_site(session: Session, site_id: str) -> Site:
    try:
        topics.check_name("site", site_id)
    except ValueError:
        raise Invalid("bad_site", _l("A park id is 1 to 64 letters, digits, _ and -.")) from None
    site = session.get(Site, site_id)
    if site is None:
        raise NotFound("no_site", _l('There is no park %(site_id)s.', site_id=site_id))
    return site


_SITE_CHECKS = {
    "overnight": lambda v: v in ("exit_all", "carry_over"),
    "claim_policy": lambda v: v in ("local", "central"),
    "claim_deadline_ms": lambda v: isinstance(v, int) and 10 <= v <= 10_000,  # GateConfig's bounds
    "pass_biometric": lambda v: v in ("none", "face", "fingerprint", "either"),
    "fire_scope": lambda v: v in ("gate", "zone", "site"),
    "id_face": lambda v: isinstance(v, bool),
    "language": lambda v: v in m.LANGUAGES,  # what the gates speak (GateConfig.language)
}


def update_site(session: Session, site_id: str, actor: str | None = None, **settings) -> Site:
    """Change site settings gates apply (opening hours, time zone, language, policies)."""
    site = get_site(session, site_id)
    allowed = {"name", "timezone", "language", "opens", "closes", "claim_policy", "pass_biometric", "face_threshold",
               "overnight", "claim_deadline_ms", "fire_scope", "id_face"}
    for key, value in settings.items():
        if key not in allowed:
            raise Invalid("bad_field", _l('There is no park setting “%(key)s”.', key=key))
        check = _SITE_CHECKS.get(key)
        if check is not None and not check(value):
            raise Invalid("bad_value", _l('The park setting “%(key)s” does not allow this value.', key=key))
        setattr(site, key, value)
    bump_site_configs(session, site_id)
    audit(session, actor, "site.update", site_id, fields=sorted(settings))
    return site


def ensure_zone(session: Session, site_id: str, number: int, *, name: str = "",
                capacity: int | None = None) -> Zone:
    limits.integer("bad_zone", "zone", number, 1, limits.ZONE)
    zone = session.scalar(select(Zone).where(Zone.site_id == site_id, Zone.number == number))
    if zone is None:
        zone = Zone(site_id=site_id, number=number, name=name or f"Zone {number}", capacity=capacity)
        session.add(zone)
        session.flush()
    return zone


def get_zone(session: Session, site_id: str, number: int) -> Zone:
    """One of the park's zones; a gate may only serve a zone the park has (no phantom zones)."""
    limits.integer("bad_zone", "zone", number, 1, limits.ZONE)
    zone = session.scalar(select(Zone).where(Zone.site_id == site_id, Zone.number == number))
    if zone is None:
        raise Invalid("no_zone", _l("The park has no zone %(number)s: add the zone first.", number=number))
    return zone


def set_zone_capacity(session: Session, site_id: str, number: int, capacity: int | None,
                      actor: str | None = None) -> Zone:
    zone = session.scalar(select(Zone).where(Zone.site_id == site_id, Zone.number == number))
    if zone is None:
        raise NotFound("no_zone", _l('The park has no zone %(number)s.', number=number))
    if capacity is not None:
        limits.integer("bad_capacity", "capacity", capacity, 0, limits.CAPACITY)
    zone.capacity = capacity
    audit(session, actor, "zone.capacity", f"{site_id}/{number}", capacity=capacity)
    return zone


# --- gates -------------------------------------------------------------------------------------


def gate_name(name: str) -> str:
    """`name` if it can be a gate's name (it becomes an MQTT topic level), else Invalid('bad_gate_name')."""
    try:
        return topics.check_name("gate", name)
    except ValueError:
        raise Invalid("bad_gate_name", _l("A gate name is 1 to 64 letters, digits, _ and -.")) from None


def get_gate(session: Session, site_id: str, name: str) -> Gate:
    gate_name(name)
    gate = session.scalar(select(Gate).where(Gate.site_id == site_id, Gate.name == name))
    if gate is None:
        raise NotFound("no_gate", _l('There is no gate %(name)s.', name=name))
    return gate


@dataclass(frozen=True)
class GateCredentials:
    username: str
    password: str


def register_gate(session: Session, site_id: str, name: str, zone: int, *, direction: str = "both",
                  hardware: dict | None = None, actor: str | None = None,
                  profiles: tuple[str, ...] = SHIPPED_PROFILES) -> tuple[Gate, GateCredentials]:
    """Register a gate and make its MQTT credentials (the password is returned once). A controller
    profile in `hardware` must be one of `profiles` (the central's `[gates] known_profiles`)."""
    gate_name(name)
    get_site(session, site_id)
    if not isinstance(direction, str) or direction not in DIRECTIONS:
        raise Invalid("bad_direction", _l('A direction is in, out or both.'))
    if session.scalar(select(Gate).where(Gate.site_id == site_id, Gate.name == name)):
        raise Refused("gate_exists", _l('There is already a gate %(name)s.', name=name))
    get_zone(session, site_id, zone)
    hardware = _check_hardware(hardware or {}, profiles)
    username = f"gate-{site_id}-{name}"
    password = secrets.token_urlsafe(18)
    from central.services.mosquitto import mosquitto_hash

    gate = Gate(site_id=site_id, name=name, zone_number=zone, direction=direction, hardware=hardware,
                mqtt_username=username, mqtt_password_hash=mosquitto_hash(password), config_version=1)
    session.add(gate)
    audit(session, actor, "gate.register", f"{site_id}/{name}", zone=zone, direction=direction)
    session.flush()
    return gate, GateCredentials(username, password)


def _check_hardware(hardware: dict, profiles: tuple[str, ...]) -> dict:
    import msgspec

    if not isinstance(hardware, dict):
        raise Invalid("bad_hardware", _l("The hardware settings are a set of named values."))
    # An unknown key would be stored, then break every GateConfig built from it (HardwareParams(**...)).
    unknown = sorted(str(key)[:64] for key in hardware if key not in HardwareParams.__struct_fields__)
    if unknown:
        raise Invalid("bad_hardware", _l('Unknown hardware settings: %(names)s.', names=', '.join(unknown)))
    try:
        params = msgspec.convert(hardware, HardwareParams)
    except msgspec.ValidationError as exc:
        raise Invalid("bad_hardware", str(exc)) from None
    if params.controller_profile and params.controller_profile not in profiles:
        # A typo would be pushed, refused by the gate, and leave its turnstile undriven.
        raise Invalid("bad_profile", _l('There is no controller profile “%(profile)s” (known: %(known)s).',
                                        profile=params.controller_profile,
                                          known=', '.join(profiles)))
    return dict(hardware)


def update_gate(session: Session, site_id: str, name: str, *, zone: int | None = None,
                direction: str | None = None, hardware: dict | None = None, mode: str | None = None,
                actor: str | None = None, profiles: tuple[str, ...] = SHIPPED_PROFILES) -> Gate:
    gate = get_gate(session, site_id, name)
    if zone is not None:
        get_zone(session, site_id, zone)
        gate.zone_number = zone
    if direction is not None:
        if not isinstance(direction, str) or direction not in DIRECTIONS:
            raise Invalid("bad_direction", _l('A direction is in, out or both.'))
        gate.direction = direction
    if hardware is not None:
        gate.hardware = _check_hardware(hardware, profiles)
    if mode is not None:
        if not isinstance(mode, str) or mode not in MODES:
            raise Invalid("bad_mode", _l('A mode is normal, free passage, locked or emergency.'))
        gate.mode = mode
    gate.config_version += 1
    audit(session, actor, "gate.update", f"{site_id}/{name}", zone=zone, direction=direction, mode=mode,
          hardware=hardware is not None)
    return gate


def start_site_emergency(session: Session, site_id: str, actor: str | None = None) -> list[Gate]:
    """Every gate of the site to emergency (free passage); each remembers its mode to go back to."""
    gates = list(session.scalars(select(Gate).where(Gate.site_id == site_id).order_by(Gate.name)))
    for gate in gates:
        if gate.mode_before_emergency is None:
            gate.mode_before_emergency = gate.mode if gate.mode != "emergency" else "normal"
        update_gate(session, site_id, gate.name, mode="emergency", actor=actor)
    audit(session, actor, "site.emergency", site_id, state="on", gates=len(gates))
    return gates


def end_site_emergency(session: Session, site_id: str, actor: str | None = None) -> list[Gate]:
    """The emergency is over: each gate goes back to the mode it had before it (a locked gate locked).
    The new config version also clears a mode set by the emergency's site command at the gates."""
    # A fire input latched at the gates themselves (central mode unchanged) ends with this time in their config.
    get_site(session, site_id).emergency_ended_at = utcnow()
    gates = list(session.scalars(select(Gate).where(Gate.site_id == site_id).order_by(Gate.name)))
    for gate in gates:
        back = gate.mode_before_emergency or ("normal" if gate.mode == "emergency" else gate.mode)
        gate.mode_before_emergency = None
        update_gate(session, site_id, gate.name, mode=back, actor=actor)
    audit(session, actor, "site.emergency", site_id, state="off", gates=len(gates))
    return gates


def in_emergency(session: Session, site_id: str) -> list[str]:
    """The gates of the site in emergency, by the central's mode or as they report it (a fire input)."""
    return list(session.scalars(select(Gate.name).where(
        Gate.site_id == site_id, (Gate.mode == "emergency") | (Gate.reported_mode == "emergency"))
        .order_by(Gate.name)))


def update_zone(session: Session, site_id: str, number: int, *, name: str | None = None,
                capacity: int | None = None, actor: str | None = None) -> Zone:
    """A zone's name and capacity (None: no limit)."""
    zone = get_zone(session, site_id, number)
    if name is not None:
        zone.name = limits.text("bad_name", "name", name.strip(), limits.NAME, required=True) or zone.name
    if capacity is not None:
        limits.integer("bad_capacity", "capacity", capacity, 0, limits.CAPACITY)
    zone.capacity = capacity  # gates learn it with the next occupancy message
    audit(session, actor, "zone.update", f"{site_id}/{number}", capacity=capacity)
    return zone


def add_zone(session: Session, site_id: str, *, name: str, capacity: int | None = None,
             actor: str | None = None) -> Zone:
    """A new zone with the next free number (1-32)."""
    get_site(session, site_id)
    used = set(session.scalars(select(Zone.number).where(Zone.site_id == site_id)))
    number = next((n for n in range(1, limits.ZONE + 1) if n not in used), None)
    if number is None:
        raise Refused("too_many_zones", _l("A park has at most %(n)s zones.", n=limits.ZONE))
    limits.text("bad_name", "name", (name or "").strip(), limits.NAME, required=True)
    if capacity is not None:
        limits.integer("bad_capacity", "capacity", capacity, 0, limits.CAPACITY)
    zone = ensure_zone(session, site_id, number, name=name.strip(), capacity=capacity)
    audit(session, actor, "zone.add", f"{site_id}/{number}", capacity=capacity)
    return zone


def remove_zone(session: Session, site_id: str, number: int, actor: str | None = None) -> None:
    """Remove a zone no gate serves (a zone made by mistake)."""
    zone = get_zone(session, site_id, number)
    serving = list(session.scalars(select(Gate.name).where(Gate.site_id == site_id, Gate.zone_number == number)))
    if serving:
        raise Refused("zone_in_use", _l("Gates %(gates)s serve this zone: move them to another zone first.",
                                        gates=", ".join(serving)))
    session.delete(zone)
    audit(session, actor, "zone.remove", f"{site_id}/{number}")


def set_gate_mode(session: Session, site_id: str, name: str, mode: str, actor: str | None = None) -> Gate:
    return update_gate(session, site_id, name, mode=mode, actor=actor)


def bump_site_configs(session: Session, site_id: str | None = None) -> None:
    """Every gate (of the site) must learn a new config version."""
    stmt = update(Gate).values(config_version=Gate.config_version + 1)
    if site_id is not None:
        stmt = stmt.where(Gate.site_id == site_id)
    session.execute(stmt)


def ticket_type_rules(tt: TicketType | Row[Any]) -> TicketTypeRules:
    """The rules of a ticket type, from its ORM object or a Core row of its table (the ingest's)."""
    return TicketTypeRules(id=tt.id, name=tt.name[:256], entries=tt.entries, same_person=tt.same_person,
                           anti_passback=tt.anti_passback, min_gap_s=tt.min_gap_s, zones=list(tt.zones or []),
                           weekdays=list(tt.weekdays or []), slot_grace_min=tt.slot_grace_min,
                           staff_check=bool(tt.staff_check), id_face=bool(tt.id_face),
                           bind_finger=bool(tt.bind_finger))


def build_gate_config(session: Session, gate: Gate) -> GateConfig:
    site = get_site(session, gate.site_id)
    types = session.scalars(select(TicketType).where(TicketType.site_id == gate.site_id, TicketType.active.is_(True))
                            .order_by(TicketType.id))
    keys = session.scalars(select(SigningKey).order_by(SigningKey.key_id))
    return GateConfig(
        version=gate.config_version, site=gate.site_id, gate=gate.name, zone=gate.zone_number,
        direction=m.choose(gate.direction, m.GATE_DIRECTIONS, "gate direction"),
        mode=m.choose(gate.mode, m.MODES, "gate mode"),
        claim=m.choose(site.claim_policy, m.CLAIM_POLICIES, "claim"),
        claim_deadline_ms=site.claim_deadline_ms, timezone=site.timezone,
        language=m.choose(site.language, m.LANGUAGES, "site language"),
        opening=OpeningHours(opens=site.opens, closes=site.closes),
        face_threshold=site.face_threshold,
        pass_biometric=m.choose(site.pass_biometric, m.PASS_BIOMETRICS, "pass biometric"),
        ticket_types=[ticket_type_rules(t) for t in types],
        keys=[PublicKeyInfo(key_id=k.key_id, public=k.public, retired_at=k.retired_at, grace_s=k.grace_s)
              for k in keys],
        id_salt=site.id_salt, hardware=HardwareParams(**(gate.hardware or {})),
        fire_scope=m.choose(site.fire_scope or "zone", m.FIRE_SCOPES, "fire scope"),
        emergency_ended_at=site.emergency_ended_at, id_face=bool(site.id_face),
    )


def record_config_ack(session: Session, site_id: str, ack: ConfigAck) -> None:
    gate = session.scalar(select(Gate).where(Gate.site_id == site_id, Gate.name == ack.gate))
    if gate is None:
        return
    if ack.applied:
        gate.config_acked = max(gate.config_acked, ack.version)
        gate.config_error = None
    else:
        gate.config_error = (ack.error or "refused")[:256]


# --- status and heartbeat ---------------------------------------------------------------------


def record_status(session: Session, status: GateStatus, received_at: datetime | None = None) -> None:
    """Store a gate's status into its history and its current row (the heartbeat)."""
    received_at = received_at or utcnow()
    gate = session.scalar(select(Gate).where(Gate.site_id == status.site, Gate.name == status.gate))
    session.add(GateStatusRecord(
        site_id=status.site, gate=status.gate, at=status.at, online=status.online, mode=status.mode,
        detail={"outbox": status.outbox, "store_seq": status.store_seq, "config_version": status.config_version,
                "controller_ok": status.controller_ok, "alarms": list(status.alarms),
                "readers": [{"name": r.name, "ok": r.ok, "detail": r.detail} for r in status.readers]},
    ))
    if gate is None:
        return
    gate.last_seen_at = received_at
    if gate.online != status.online:
        gate.offline_since = None if status.online else received_at
    gate.online = status.online
    gate.reported_mode = status.mode  # set at the box, by a command or the fire input: shown at the central
    gate.store_seq = status.store_seq
    gate.outbox = status.outbox
    gate.alarms = list(status.alarms)
    gate.agent_version = status.agent_version


def record_fire_alarm(session: Session, alarm: FireAlarm) -> None:
    """A gate's fire input went up (its zone or site opened at the gates) or down: in the audit log. The
    banner every page shows follows from the gates' reported mode; ending it is `end_site_emergency`."""
    audit(session, f"gate:{alarm.gate}", "gate.fire", f"{alarm.site}/{alarm.gate}",
          state="on" if alarm.active else "off", zone=alarm.zone, scope=alarm.scope, at=alarm.at.isoformat())


def mark_stale_gates_offline(session: Session, timeout_s: int, now: datetime | None = None,
                             skip: Collection[str] = ()) -> list[Gate]:
    """Gates online with no heartbeat for `timeout_s` seconds: marked offline, recorded, returned (not
    those of the parks in `skip`)."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=timeout_s)
    query = select(Gate).where(Gate.online.is_(True), (Gate.last_seen_at.is_(None)) | (Gate.last_seen_at < cutoff))
    if skip:
        query = query.where(Gate.site_id.not_in(list(skip)))
    stale = list(session.scalars(query))
    for gate in stale:
        gate.online = False
        gate.offline_since = now
        session.add(GateStatusRecord(site_id=gate.site_id, gate=gate.name, at=now, online=False, mode=gate.mode,
                                     source="heartbeat", detail={"last_seen_at": str(gate.last_seen_at)}))
        audit(session, None, "gate.offline", f"{gate.site_id}/{gate.name}", timeout_s=timeout_s)
    return stale


# --- commands ----------------------------------------------------------------------------------


def create_command(session: Session, site_id: str, gate: str | None, kind: str, *, mode: str | None = None,
                   direction: str = "in", actor: str | None = None,
                   help_id: str | None = None) -> tuple[CommandRecord, Command, str]:
    """A command for one gate, or for the whole site when `gate` is None; returns (record, message, topic)."""
    get_site(session, site_id)
    if gate is not None:
        get_gate(session, site_id, gate)
    try:
        command = m.choose(kind, m.COMMAND_KINDS, "command")
    except ValueError:
        raise Invalid("bad_command", _l("Unknown command.")) from None
    try:
        new_mode = m.choose(mode, m.MODES, "mode") if (kind == "set_mode" or mode is not None) else None
    except ValueError:
        raise Invalid("bad_mode", _l('A mode is normal, free passage, locked or emergency.')) from None
    try:
        towards = m.choose(direction, m.DIRECTIONS, "direction")
    except ValueError:
        raise Invalid("bad_direction", _l("A direction is in or out.")) from None
    message = Command(id=new_event_id(), kind=command, direction=towards, mode=new_mode, at=utcnow(),
                      help_id=help_id)
    record = CommandRecord(id=message.id, site_id=site_id, gate=gate, kind=kind, payload=encode(message),
                           issued_by=actor)
    session.add(record)
    audit(session, actor, f"command.{kind}", f"{site_id}/{gate or '*'}", mode=mode)
    topic = topics.command(site_id, gate) if gate else topics.site_command(site_id)
    return record, message, topic


def record_command_ack(session: Session, ack: CommandAck) -> None:
    record = session.get(CommandRecord, ack.id)
    if record is None:
        return
    acks = dict(record.acks or {})
    acks[ack.gate] = {"ok": ack.ok, "error": ack.error, "at": utcnow().isoformat()}
    record.acks = acks
