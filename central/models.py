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
from sqlalchemy.dialects.postgresql import JSONB
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
    # What a controller's fire input opens, at the gates themselves: "gate", its "zone" or the "site".
    fire_scope: Mapped[str] = mapped_column(String(8), default="zone", server_default="zone")
    # When the last emergency was ended here (who: the audit log); gates end a fire emergency latched before.
    emergency_ended_at: Mapped[datetime | None]
    # 人证核验 at every ID-card entry: the camera's face against the card's photo (else per ticket type).
    id_face: Mapped[bool] = mapped_column(default=False, server_default=false())

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
    # Staff at the gate must look at the visitor (a child's, senior's or concession ticket): the gate's
    # screen and voice name the type.
    staff_check: Mapped[bool] = mapped_column(default=False, server_default=false())
    # 人证核验: an ID-card entry of this type needs the camera's face to match the card's photo.
    id_face: Mapped[bool] = mapped_column(default=False, server_default=false())
    # 人票绑定: the first entry takes the visitor's finger at the gate; a re-entry needs the same finger.
    bind_finger: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


CHANNELS = ("box_office", "web", "ota", "agency", "group", "other")
TICKET_STATUSES = ("valid", "used", "refunded", "revoked", "expired", "held")


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_site_status_valid_to", "site_id", "status", "valid_to"),
        Index("ix_tickets_id_digest", "id_digest"),
        Index("ix_tickets_channel_issued", "channel", "issued_at"),
        Index("ix_tickets_customer_valid_from", "customer_id", "valid_from"),  # a customer's statement
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
    # Group customers and finance (#21): whom the ticket is billed to, the group order it belongs to,
    # the box-office shift that sold it and how it was paid.
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    group_order_id: Mapped[int | None] = mapped_column(ForeignKey("group_orders.id"))
    shift_id: Mapped[int | None] = mapped_column(ForeignKey("shifts.id"))
    payment_method: Mapped[str | None] = mapped_column(String(16))

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
    # Booking closes then (None: the site's `close_before_min` before the start), see BookingSettings.
    closes_at: Mapped[datetime | None]


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


# accepted: the passage stands; credential_revoked: the ticket is revoked (a pass suspended) from now on;
# followed_up: settled outside the system (the visitor or the channel charged, staff spoken to).
CONFLICT_DECISIONS = ("accepted", "credential_revoked", "followed_up")


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
    # What a manager decided (CONFLICT_DECISIONS) and why, in their words.
    resolution: Mapped[str | None] = mapped_column(String(32))
    resolution_note: Mapped[str | None] = mapped_column(String(500))


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
    # The central's own alerts (central.services.alerting): when the notice went out to the webhooks and
    # addresses, and the recovery notice once the condition cleared (resolved_by "system").
    notified_at: Mapped[datetime | None]
    recovery_notified_at: Mapped[datetime | None]


class DenialCount(Base):
    """Refusals per day, zone and reason."""

    __tablename__ = "denial_counts"

    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    zone: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    reason: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


class GateDayCount(Base):
    """Passages per gate, park day and zone that the central has stored (counted or flagged): what the
    live counts' light path subtracts from the gate's own `GateCounts` (`central.web.live`)."""

    __tablename__ = "gate_day_counts"

    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    gate: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    zone: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    # The ingest worker that stored them: each worker adds to rows of its own, so two workers' batches
    # never wait for each other's row locks on a gate (read: the sum over shards).
    shard: Mapped[str] = mapped_column(String(32), primary_key=True, default="")
    entries: Mapped[int] = mapped_column(default=0)
    exits: Mapped[int] = mapped_column(default=0)


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

ROLES = ("admin", "manager", "staff", "technician", "finance", "sales")


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
    # Head office: every park, present and future (admins always); else the parks in staff_user_sites.
    all_sites: Mapped[bool] = mapped_column(default=False, server_default=false())


class StaffUserSite(Base):
    """A park a staff user works for: pages, sales and reports are for these parks only."""

    __tablename__ = "staff_user_sites"

    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # The one park the token acts for; none: every park (a head office's own integration).
    site_id: Mapped[str | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # A channel's token (an OTA, an agency): what it issues is billed to this customer, at this site only.
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))


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


# --- visitor bookings (the public booking site) -------------------------------------------------
# Document and phone numbers are never stored: a keyed digest (HMAC with the site's salt, the one gates
# know ID cards by) and a masked form for display ("110***********002X", "138****5678").


class BookingSettings(Base):
    """A site's booking rules, set by managers: how far ahead, how many per party, cut-offs, face entry."""

    __tablename__ = "booking_settings"

    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    ticket_type_id: Mapped[int | None] = mapped_column(ForeignKey("ticket_types.id"))
    days_ahead: Mapped[int] = mapped_column(default=7)
    party_max: Mapped[int] = mapped_column(default=5)
    cancel_before_min: Mapped[int] = mapped_column(default=60)
    close_before_min: Mapped[int] = mapped_column(default=0)
    retention_days: Mapped[int] = mapped_column(default=30)
    face_entry: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime | None]
    updated_by: Mapped[str | None] = mapped_column(String(128))


class BookingDay(Base):
    """One day of the booking calendar: open or closed, and an optional cap for the whole day."""

    __tablename__ = "booking_days"
    __table_args__ = (UniqueConstraint("site_id", "day", name="uq_booking_days_site_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    day: Mapped[date] = mapped_column(Date)
    open: Mapped[bool] = mapped_column(default=True)
    capacity: Mapped[int | None]
    booked: Mapped[int] = mapped_column(default=0)


BOOKING_STATUSES = ("booked", "cancelled")
DOCUMENT_TYPES = ("id_card", "passport", "hk_macao", "taiwan")


class Booking(Base):
    """A party's booking of one slot: the number visitors type, the contact phone, the consent."""

    __tablename__ = "bookings"
    __table_args__ = (
        UniqueConstraint("number", name="uq_bookings_number"),
        Index("ix_bookings_site_day", "site_id", "day"),
        Index("ix_bookings_phone", "site_id", "phone_digest"),
        Index("ix_bookings_client_created", "site_id", "client_digest", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    number: Mapped[str] = mapped_column(String(16))
    quota_id: Mapped[int] = mapped_column(ForeignKey("slot_quotas.id"))
    day: Mapped[date] = mapped_column(Date)
    slot_start: Mapped[datetime]
    slot_end: Mapped[datetime]
    party: Mapped[int]
    phone_digest: Mapped[str] = mapped_column(String(64))
    phone_masked: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="booked")
    channel: Mapped[str] = mapped_column(String(16), default="web")
    language: Mapped[str] = mapped_column(String(8), default="zh")
    consent_at: Mapped[datetime]
    client_digest: Mapped[str | None] = mapped_column(String(64))
    client_masked: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(128))
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String(128))

    persons: Mapped[list[BookingPerson]] = relationship(order_by="BookingPerson.position", lazy="selectin",
                                                        back_populates="booking")


class BookingPerson(Base):
    """One person of a booking party, with their own ticket (entry by ID card or by its signed QR code)."""

    __tablename__ = "booking_persons"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    booking_id: Mapped[int] = mapped_column(BigId, ForeignKey("bookings.id"))
    position: Mapped[int]
    name: Mapped[str] = mapped_column(String(200))
    doc_type: Mapped[str] = mapped_column(String(16))
    doc_digest: Mapped[str] = mapped_column(String(64))
    doc_masked: Mapped[str] = mapped_column(String(40))
    ticket_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("tickets.id"))
    # Face entry (a site setting): the person's selfie template, sealed with the template key for the
    # holder `ticket_ref(ticket_id)`; sent to the gates on the visit day only (`face_on_gates`) and
    # deleted after it. `face_entry` stays: the central then still knows a late passage by face was asked for.
    face_entry: Mapped[bool] = mapped_column(default=False, server_default=false())
    face_record: Mapped[bytes | None] = mapped_column(LargeBinary)
    face_on_gates: Mapped[bool] = mapped_column(default=False, server_default=false())

    booking: Mapped[Booking] = relationship(back_populates="persons")


class BookingDocument(Base):
    """One booking per document per day per site, held by the primary key (not by a prior read).

    The row goes with the booking's cancellation, so the document may book that day again."""

    __tablename__ = "booking_documents"

    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    doc_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    booking_id: Mapped[int] = mapped_column(BigId, ForeignKey("bookings.id"))


class BookingBlock(Base):
    """A document or phone that may not book (scalpers, bans): added by a manager with a reason."""

    __tablename__ = "booking_blocks"
    __table_args__ = (UniqueConstraint("site_id", "kind", "digest", name="uq_booking_blocks_site_kind_digest"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    kind: Mapped[str] = mapped_column(String(16))  # document | phone
    digest: Mapped[str] = mapped_column(String(64))
    masked: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))


# --- group customers, group orders, settlement, box-office shifts (#21) ----------------------

CUSTOMER_KINDS = ("agency", "ota", "company", "school", "government")
CUSTOMER_STATUSES = ("active", "suspended")
PAYMENT_METHODS = ("cash", "bank_card", "wechat_pay", "alipay", "voucher", "on_account")
GROUP_TICKETING = ("group", "members")
STATEMENT_STATUSES = ("open", "checked", "closed")


class FinanceSettings(Base):
    """A site's finance settings: how a group order becomes tickets, and the refund a cashier may make alone."""

    __tablename__ = "finance_settings"

    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    group_ticketing: Mapped[str] = mapped_column(String(16), default="group")  # one group ticket | one per member
    refund_approval_over: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("500"))


class Customer(Base):
    """A group customer: a travel agency, an OTA, a company, a school or a government unit."""

    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("site_id", "name", name="uq_customers_site_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    credit_limit: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))  # owed on account at most
    payment_term_days: Mapped[int] = mapped_column(default=30)
    note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_changed_at: Mapped[datetime | None]


class CustomerContact(Base):
    __tablename__ = "customer_contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(32), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    duty: Mapped[str] = mapped_column(String(100), default="")  # what they do: bookings, invoices


class ContractPrice(Base):
    """A customer's price for a ticket type over local days `valid_from`..`valid_to` (open-ended: None)."""

    __tablename__ = "contract_prices"
    __table_args__ = (Index("ix_contract_prices_customer_type", "customer_id", "ticket_type_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    ticket_type_id: Mapped[int] = mapped_column(ForeignKey("ticket_types.id"))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GroupOrder(Base):
    """A customer's group visit: the day (and slot), the headcount, the guide, and the tickets it became."""

    __tablename__ = "group_orders"
    __table_args__ = (UniqueConstraint("customer_id", "idempotency_key", name="uq_group_orders_customer_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    ticket_type_id: Mapped[int] = mapped_column(ForeignKey("ticket_types.id"))
    visit_date: Mapped[date] = mapped_column(Date)
    slot_start: Mapped[datetime | None]
    slot_end: Mapped[datetime | None]
    headcount: Mapped[int]
    guide_name: Mapped[str] = mapped_column(String(200))
    guide_phone: Mapped[str] = mapped_column(String(32))
    members: Mapped[list[Any]] = mapped_column(JSON, default=list)  # names and last four ID characters only
    ticketing: Mapped[str] = mapped_column(String(16), default="group")
    unit_price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    status: Mapped[str] = mapped_column(String(16), default="booked")
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(128))


class Shift(Base):
    """A cashier's shift at a box-office window: opened, sold and refunded in, closed with the cash counted."""

    __tablename__ = "shifts"
    __table_args__ = (
        Index("uq_shifts_open_cashier", "site_id", "cashier", unique=True,
              postgresql_where=text("closed_at IS NULL"), sqlite_where=text("closed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    window: Mapped[str] = mapped_column(String(64))
    cashier: Mapped[str] = mapped_column(String(128))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    opening_float: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    closed_at: Mapped[datetime | None]
    expected_cash: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    counted_cash: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    note: Mapped[str] = mapped_column(String(500), default="")


class Payment(Base):
    """Money in or out: a sale, a refund (pending a supervisor's approval over the limit), a customer's receipt."""

    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_site_at", "site_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    kind: Mapped[str] = mapped_column(String(8))  # sale | refund | receipt
    method: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))  # positive in, negative out
    status: Mapped[str] = mapped_column(String(16), default="done")  # done | pending | rejected
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    shift_id: Mapped[int | None] = mapped_column(ForeignKey("shifts.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(128))
    approved_by: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(500), default="")


class Statement(Base):
    """A customer's settlement statement for local days `period_start`..`period_end`: open, checked, closed."""

    __tablename__ = "statements"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="open")
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    opened_by: Mapped[str | None] = mapped_column(String(128))
    checked_at: Mapped[datetime | None]
    checked_by: Mapped[str | None] = mapped_column(String(128))
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(128))

    lines: Mapped[list[StatementLine]] = relationship(order_by="StatementLine.id", lazy="selectin")


class StatementLine(Base):
    """One line of a statement: a ticket type at one price (recounted while open), or a later correction."""

    __tablename__ = "statement_lines"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("statements.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default="tickets")  # tickets | correction
    ticket_type_id: Mapped[int | None] = mapped_column(ForeignKey("ticket_types.id"))
    description: Mapped[str] = mapped_column(String(500), default="")
    ordered: Mapped[int] = mapped_column(default=0)
    entered: Mapped[int] = mapped_column(default=0)
    refunded: Mapped[int] = mapped_column(default=0)
    no_show: Mapped[int] = mapped_column(default=0)
    unit_price: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(128))


# --- staff help at the gate -------------------------------------------------------------------


class HolderPhoto(Base):
    """A pass holder's small photo, kept with their consent at enrolment for staff at the gate; sealed
    like the templates (`TemplateCipher`, kind "photo") and deleted with them."""

    __tablename__ = "holder_photos"

    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), primary_key=True)
    record: Mapped[bytes] = mapped_column(LargeBinary)  # TemplateCipher record, never the photo
    consent_by: Mapped[str] = mapped_column(String(128))  # the staff member who recorded the consent
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class HelpRequestRecord(Base):
    """A gate asked for staff (a pass refused for its biometric). The camera's view is kept, sealed, only
    while the request is open."""

    __tablename__ = "help_requests"
    __table_args__ = (Index("ix_help_requests_site_gate_at", "site_id", "gate", "at"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64))
    gate: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    direction: Mapped[str] = mapped_column(String(8), default="in")
    credential_ref: Mapped[str] = mapped_column(String(128))
    holder_ref: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(64))
    frame: Mapped[bytes | None] = mapped_column(LargeBinary)  # TemplateCipher record (kind "frame")
    # A ticket bound by fingerprint: the first entry's view, in the holder's photo's place (sealed, "photo").
    photo: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | admitted | refused | expired
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None]


# --- replication between park servers and the head office (central.services.replication) -------------


class ReplicationChange(Base):
    """One changed row for the other servers, written by a trigger in the change's own transaction
    (PostgreSQL; installed by `park-central replication setup`). `op` is "U" (insert or update) or "D"."""

    __tablename__ = "repl_outbox"
    __table_args__ = (Index("ix_repl_outbox_pos", "pos"),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The change's place in what this server sends: given by the sender once the change is committed
    # (`replication.sequence`), so no later reader can skip a change committed late.
    pos: Mapped[int | None] = mapped_column(BigInteger)
    tbl: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(1))
    site_id: Mapped[str | None] = mapped_column(String(64))  # None: for every server (signing keys)
    row: Mapped[Any] = mapped_column(JSON)  # json: kept as the text it is sent as
    at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"))


class ReplicationPeer(Base):
    """How far another server confirmed this server's changes (its acknowledgement, persisted)."""

    __tablename__ = "repl_peers"

    peer: Mapped[str] = mapped_column(String(64), primary_key=True)
    acked_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    acked_at: Mapped[datetime | None]
    # At the head office: the park server's bridge user on its broker (`replication credentials`), hashed.
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(256))


class ReplicationApplied(Base):
    """How far this server applied another server's changes: updated in the same transaction as the
    rows, so every change applies exactly once whatever is resent."""

    __tablename__ = "repl_applied"

    origin: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    applied_at: Mapped[datetime | None]


class ReplicationParked(Base):
    """A change that would not apply here (a row another rule refuses): kept with the error, never lost."""

    __tablename__ = "repl_parked"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    origin: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    tbl: Mapped[str] = mapped_column(String(64))
    row: Mapped[Any] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    error: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("CURRENT_TIMESTAMP"))
