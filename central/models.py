"""The central's data model: SQLAlchemy 2 typed mappings, one class per table.

Times are stored in UTC and always come back timezone-aware (`UTCDateTime`), on SQLite too.
National ID numbers are never stored: a real-name ticket keeps the site-salted digest gates know
(`protocol.ids.id_number_digest`) and the last four characters for staff lookup. Biometric templates
are stored encrypted (`biometrics.protect.TemplateCipher`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from protocol.ids import holder_ref, pass_ref, ticket_ref

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only autoincrements INTEGER PRIMARY KEY; BigInteger ids stay 64-bit on PostgreSQL.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored: the central keeps aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[int]: JSON, bytes: LargeBinary}


PARKED_PAYLOAD_BYTES = 4096

# --- sites, zones, gates ----------------------------------------------------------------------


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    language: Mapped[str] = mapped_column(String(8), default="zh")
    opens: Mapped[str] = mapped_column(String(5), default="00:00")
    closes: Mapped[str] = mapped_column(String(5), default="24:00")
    claim_policy: Mapped[str] = mapped_column(String(16), default="local")
    # claim = central: past this the gate decides alone (and the central records any conflict)
    claim_deadline_ms: Mapped[int] = mapped_column(default=300, server_default="300")
    pass_biometric: Mapped[str] = mapped_column(String(16), default="face")
    face_threshold: Mapped[float | None]
    id_salt: Mapped[bytes] = mapped_column(LargeBinary(64))
    sync_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    business_date: Mapped[date | None] = mapped_column(Date)
    # At the nightly roll-over: "exit_all" counts everyone still inside as gone (pretix's exit_all_at:
    # without it occupancy drifts with every missed exit); "carry_over" keeps them inside (overnight stays).
    overnight: Mapped[str] = mapped_column(String(16), default="exit_all", server_default="exit_all")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    zones: Mapped[list[Zone]] = relationship(back_populates="site", order_by="Zone.number")


class Zone(Base):
    __tablename__ = "zones"
    __table_args__ = (UniqueConstraint("site_id", "number", name="uq_zones_site_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    number: Mapped[int]
    name: Mapped[str] = mapped_column(String(200), default="")
    capacity: Mapped[int | None]
    inside: Mapped[int] = mapped_column(default=0)  # raw entries minus exits; shown as max(0, inside)
    entries_today: Mapped[int] = mapped_column(default=0)
    exits_today: Mapped[int] = mapped_column(default=0)
    refused_today: Mapped[int] = mapped_column(default=0)
    peak: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime | None]

    site: Mapped[Site] = relationship(back_populates="zones")


class Gate(Base):
    __tablename__ = "gates"
    __table_args__ = (UniqueConstraint("site_id", "name", name="uq_gates_site_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(64))  # the gate id on the wire
    zone_number: Mapped[int]
    direction: Mapped[str] = mapped_column(String(4), default="both")
    mode: Mapped[str] = mapped_column(String(16), default="normal")
    hardware: Mapped[dict[str, Any]] = mapped_column(default=dict)
    mqtt_username: Mapped[str | None] = mapped_column(String(128))
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(256))
    config_version: Mapped[int] = mapped_column(default=1)
    config_published: Mapped[int] = mapped_column(default=0)
    config_acked: Mapped[int] = mapped_column(default=0)
    config_error: Mapped[str | None] = mapped_column(String(256))
    online: Mapped[bool] = mapped_column(default=False)
    last_seen_at: Mapped[datetime | None]
    offline_since: Mapped[datetime | None]
    store_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    outbox: Mapped[int] = mapped_column(default=0)
    alarms: Mapped[list[str]] = mapped_column(JSON, default=list)
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    # The mode the gate says it is in (its status): the central's `mode` unless overridden at the box,
    # by a command (a site emergency) or by the controller's fire input.
    reported_mode: Mapped[str | None] = mapped_column(String(16))
    # While the site is in emergency: the mode to go back to when it ends (None: not in a site emergency).
    mode_before_emergency: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GateStatusRecord(Base):
    """Gate status history: every status a gate published, and the central's offline marks."""

    __tablename__ = "gate_status_history"
    __table_args__ = (Index("ix_gate_status_history_gate_at", "site_id", "gate", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64))
    gate: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    online: Mapped[bool]
    mode: Mapped[str] = mapped_column(String(16), default="normal")
    source: Mapped[str] = mapped_column(String(16), default="gate")  # gate | heartbeat
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SigningKey(Base):
    """Public halves of the ticket signing keys, published to gates with their retirement."""

    __tablename__ = "signing_keys"

    key_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    public: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]
    grace_s: Mapped[int] = mapped_column(default=0)


# --- tickets ----------------------------------------------------------------------------------


class TicketType(Base):
    __tablename__ = "ticket_types"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)  # 0-65535, in the code
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(200))
    # None: unlimited within validity. No Python default: SQLAlchemy would fill it in for an explicit None.
    entries: Mapped[int | None]
    same_person: Mapped[bool] = mapped_column(default=False)
    anti_passback: Mapped[bool] = mapped_column(default=False)
    min_gap_s: Mapped[int] = mapped_column(default=0)
    zones: Mapped[list[int]] = mapped_column(default=list)
    weekdays: Mapped[list[int]] = mapped_column(default=list)
    slot_grace_min: Mapped[int] = mapped_column(default=15)
    real_name: Mapped[bool] = mapped_column(default=False)
    validity_days: Mapped[int] = mapped_column(default=1)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    # The headcounts one ticket of this type may carry: 1-1 a single ticket, 10-60 a group ticket.
    min_headcount: Mapped[int] = mapped_column(default=1, server_default="1")
    max_headcount: Mapped[int] = mapped_column(default=255, server_default="255")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


CHANNELS = ("box_office", "web", "ota", "agency", "group", "other")
TICKET_STATUSES = ("valid", "used", "refunded", "revoked", "expired")


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_site_status_valid_to", "site_id", "status", "valid_to"),
        Index("ix_tickets_id_digest", "id_digest"),
        Index("ix_tickets_channel_issued", "channel", "issued_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    ticket_type_id: Mapped[int] = mapped_column(ForeignKey("ticket_types.id"))
    status: Mapped[str] = mapped_column(String(16), default="valid")
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime]
    slot_start: Mapped[datetime | None]
    slot_end: Mapped[datetime | None]
    headcount: Mapped[int] = mapped_column(default=1)
    zones: Mapped[list[int]] = mapped_column(default=list)
    holder_name: Mapped[str | None] = mapped_column(String(200))
    id_digest: Mapped[str | None] = mapped_column(String(64))
    id_last4: Mapped[str | None] = mapped_column(String(4))
    channel: Mapped[str] = mapped_column(String(16), default="box_office")
    channel_ref: Mapped[str | None] = mapped_column(String(200))  # OTA order, agency name
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    quota_id: Mapped[int | None] = mapped_column(ForeignKey("slot_quotas.id"))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    issued_by: Mapped[str | None] = mapped_column(String(128))
    status_changed_at: Mapped[datetime | None]

    ticket_type: Mapped[TicketType] = relationship(lazy="selectin")

    @property
    def ref(self) -> str:
        return ticket_ref(self.id)


class SlotQuota(Base):
    """How many visitors a time slot admits, and how many are booked."""

    __tablename__ = "slot_quotas"
    __table_args__ = (UniqueConstraint("site_id", "slot_start", name="uq_slot_quotas_site_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    slot_start: Mapped[datetime]
    slot_end: Mapped[datetime]
    capacity: Mapped[int]
    booked: Mapped[int] = mapped_column(default=0)


# --- persons, annual passes, templates --------------------------------------------------------


class Person(Base):
    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    id_last4: Mapped[str | None] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    forgotten_at: Mapped[datetime | None]

    @property
    def holder_ref(self) -> str:
        return holder_ref(self.id)


PASS_STATUSES = ("active", "suspended", "lost", "expired")


class AnnualPass(Base):
    __tablename__ = "annual_passes"
    __table_args__ = (Index("ix_annual_passes_card_uid", "card_uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    card_uid: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[str] = mapped_column(String(16), default="active")
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime]
    zones: Mapped[list[int]] = mapped_column(default=list)
    channel: Mapped[str] = mapped_column(String(16), default="box_office")
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_changed_at: Mapped[datetime | None]

    person: Mapped[Person] = relationship(lazy="selectin")

    @property
    def ref(self) -> str:
        return pass_ref(self.id)


class BiometricTemplate(Base):
    __tablename__ = "biometric_templates"
    __table_args__ = (UniqueConstraint("person_id", "kind", "finger", name="uq_biometric_templates_person_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    kind: Mapped[str] = mapped_column(String(16))  # face | fingerprint
    finger: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column(default=1)
    record: Mapped[bytes] = mapped_column(LargeBinary)  # TemplateCipher record, never the template
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- passages, usage, conflicts, counts -------------------------------------------------------


class PassageEventRecord(Base):
    """One passage event. On PostgreSQL the table is partitioned by month of `at` (migration 0013,
    `central.services.partitions`): there the primary key is (id, at), and the event key is
    (event_id, at) on both stores, since a partitioned table's unique keys must hold its partition key."""

    __tablename__ = "passage_events"
    __table_args__ = (
        Index("ix_passage_events_site_at", "site_id", "at"),
        Index("ix_passage_events_ref", "credential_ref"),
        UniqueConstraint("event_id", "at", name="uq_passage_events_event_id_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64))
    site_id: Mapped[str] = mapped_column(String(64))
    gate: Mapped[str] = mapped_column(String(64))
    zone: Mapped[int]
    at: Mapped[datetime]
    direction: Mapped[str] = mapped_column(String(3))
    credential_kind: Mapped[str] = mapped_column(String(16))
    credential_ref: Mapped[str] = mapped_column(String(128), default="")
    decision: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(64))
    passed: Mapped[bool]
    headcount: Mapped[int] = mapped_column(default=1)
    offline: Mapped[bool] = mapped_column(default=False)
    mode: Mapped[str] = mapped_column(String(16), default="normal")
    ticket_type: Mapped[int | None]
    claim_id: Mapped[str | None] = mapped_column(String(128))
    received_at: Mapped[datetime]
    # Set when the central's checks found a reported fact implausible (`central.services.ingest`):
    # the event is kept (the passage may be real) but counts nothing: no zone count, no usage.
    flag: Mapped[str | None] = mapped_column(String(64))


class CredentialUsage(Base):
    """Confirmed passages per credential, as the central has seen them."""

    __tablename__ = "credential_usage"

    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ref: Mapped[str] = mapped_column(String(128), primary_key=True)
    entries: Mapped[int] = mapped_column(default=0)
    exits: Mapped[int] = mapped_column(default=0)
    last_entry_at: Mapped[datetime | None]
    last_gate: Mapped[str | None] = mapped_column(String(64))
    bound: Mapped[bool] = mapped_column(default=False)


class Conflict(Base):
    """A passage the central's rules would have refused: what offline gates could not see."""

    __tablename__ = "conflicts"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    site_id: Mapped[str] = mapped_column(String(64))
    credential_ref: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(64))
    gate: Mapped[str] = mapped_column(String(64))
    other_gate: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime]
    offline: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(128))


class Claim(Base):
    """A gate's claim on a credential's entry (site policy `claim: central`), granted by `central.bus.claim_server`.

    It holds `passages` entries until the gate's passage events carrying `claim_id = id` arrive (they
    then count as usage instead) or until `expires_at` (nobody walked through: the entry is released).
    """

    __tablename__ = "claims"
    __table_args__ = (Index("ix_claims_site_ref_expires", "site_id", "credential_ref", "expires_at"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # the ClaimRequest id
    site_id: Mapped[str] = mapped_column(String(64))
    credential_ref: Mapped[str] = mapped_column(String(128))
    gate: Mapped[str] = mapped_column(String(64))
    zone: Mapped[int]
    passages: Mapped[int]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class Alert(Base):
    """Something staff must look at, naming the gate; one open row per site, gate and kind, counted.

    The detail never carries personal data (event ids and check names, not names or codes)."""

    __tablename__ = "alerts"
    __table_args__ = (
        # While open, a gate's alerts of one kind are one row whose count and last_at grow.
        Index("uq_alerts_open", "site_id", "gate", "kind", unique=True,
              postgresql_where=text("resolved_at IS NULL"), sqlite_where=text("resolved_at IS NULL")),
        Index("ix_alerts_site_resolved", "site_id", "resolved_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64))
    gate: Mapped[str] = mapped_column(String(64), default="")  # "" for the site as a whole
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(256), default="")
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]
    count: Mapped[int] = mapped_column(default=1)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(128))


class DenialCount(Base):
    """Refusals per day, zone and reason."""

    __tablename__ = "denial_counts"

    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    zone: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    reason: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


class DailyReport(Base):
    __tablename__ = "daily_reports"
    __table_args__ = (UniqueConstraint("site_id", "day", "zone", name="uq_daily_reports_site_day_zone"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    zone: Mapped[int]
    entries: Mapped[int] = mapped_column(default=0)
    exits: Mapped[int] = mapped_column(default=0)
    refused: Mapped[int] = mapped_column(default=0)
    peak: Mapped[int] = mapped_column(default=0)
    carried_over: Mapped[int] = mapped_column(default=0)  # still inside at midnight: carried out or over
    denials: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ParkedMessage(Base):
    """An MQTT message the ingest could not use, kept with the error for a person to look at.

    Only the payload's first `PARKED_PAYLOAD_BYTES` are kept, with its full size and SHA-256: enough to
    see what it was and to match it to a copy, and garbage on a gate's topic cannot fill the database."""

    __tablename__ = "parked_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    topic: Mapped[str] = mapped_column(String(512))
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # the first PARKED_PAYLOAD_BYTES
    size: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # of the whole payload
    sha256: Mapped[str] = mapped_column(String(64), default="", server_default="")  # of the whole payload, hex
    error: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- sync to gates, commands ------------------------------------------------------------------


class SyncChange(Base):
    """One Delta per row: the site's sequence number and the encoded message gates receive."""

    __tablename__ = "sync_changes"

    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kinds: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]


class CommandRecord(Base):
    __tablename__ = "commands"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64))
    gate: Mapped[str | None] = mapped_column(String(64))  # None: the whole site
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    issued_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    acks: Mapped[dict[str, Any]] = mapped_column(default=dict)  # gate -> {"ok":..., "error":...}


# --- staff, machine tokens, audit -------------------------------------------------------------

ROLES = ("admin", "manager", "staff", "technician")


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    # The page language this user chose (a catalogue locale: "zh_Hans", "en"); none: the browser's.
    language: Mapped[str | None] = mapped_column(String(16))
    # A generated (one-time) password: every page asks for a new one until it is changed.
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=false())


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class StaffSession(Base):
    """A browser's login: the signed cookie names it, and it must exist, be unrevoked and unexpired.

    The cookie carries the session id; the table keeps only its SHA-256 (a copy of the table lets
    nobody in). Logout revokes one; a password change or a deactivation revokes all of the user's.
    """

    __tablename__ = "staff_sessions"
    __table_args__ = (Index("ix_staff_sessions_user", "user_id", "revoked_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # HMAC of the client's address under the web secret: tells sessions apart on the admin page
    # without keeping addresses; None when the address was unknown.
    client_hash: Mapped[str | None] = mapped_column(String(16))
    revoked_at: Mapped[datetime | None]
    revoked_why: Mapped[str | None] = mapped_column(String(32))  # logout, password, deactivated


class LoginFailure(Base):
    """A failed login, by the username tried and the client address's hash: what throttling counts.

    Rows older than the longest window are pruned as new ones come; the audit log keeps the history.
    """

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_username_at", "username", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(128))
    client_hash: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
