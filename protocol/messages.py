"""Message schemas for every topic in `protocol.topics`, and their strict decoders.

Every message is a msgspec Struct encoded as JSON with a version field `v`. `decode(kind, payload)`
refuses a payload that is oversized, not JSON, of another version, or whose fields do not match,
with a `MessageError` naming the field (`$.headcount`). Unknown extra fields are ignored, so a newer
sender may add optional fields without breaking older readers; a breaking change bumps `v` and the
topic root.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Literal, TypeVar, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from protocol.errors import MessageError

V = 1
Direction = Literal["in", "out"]
Mode = Literal["normal", "free", "locked", "emergency"]
FireScope = Literal["gate", "zone", "site"]
CredentialKind = Literal["qr", "id_card", "annual_pass", "face", "fingerprint", "none"]
Decision = Literal["granted", "refused"]
GateDirection = Literal["in", "out", "both"]
ClaimPolicy = Literal["local", "central"]
Language = Literal["zh", "en"]
PassBiometric = Literal["none", "face", "fingerprint", "either"]
CommandKind = Literal["open_once", "set_mode", "resync", "test_devices", "staff_admit", "staff_refuse"]
TicketStatus = Literal["valid", "used", "refunded", "revoked", "expired", "held"]
PassStatus = Literal["active", "suspended", "lost", "expired"]
TemplateKind = Literal["face", "fingerprint"]

# Each vocabulary as a tuple, for `choose` (the central's columns hold these words as text).
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)
MODES: tuple[Mode, ...] = get_args(Mode)
GATE_DIRECTIONS: tuple[GateDirection, ...] = get_args(GateDirection)
CLAIM_POLICIES: tuple[ClaimPolicy, ...] = get_args(ClaimPolicy)
LANGUAGES: tuple[Language, ...] = get_args(Language)
PASS_BIOMETRICS: tuple[PassBiometric, ...] = get_args(PassBiometric)
FIRE_SCOPES: tuple[FireScope, ...] = get_args(FireScope)
COMMAND_KINDS: tuple[CommandKind, ...] = get_args(CommandKind)
TICKET_STATUSES: tuple[TicketStatus, ...] = get_args(TicketStatus)
PASS_STATUSES: tuple[PassStatus, ...] = get_args(PassStatus)
TEMPLATE_KINDS: tuple[TemplateKind, ...] = get_args(TemplateKind)
_Word = TypeVar("_Word", bound=str)


def choose(value: object, options: tuple[_Word, ...], what: str) -> _Word:
    """`value` as one of `options` (a vocabulary above), or ValueError naming `what`: a word read from a
    database column or a form becomes the message field's type only once it is known to be one."""
    for option in options:
        if option == value:
            return option
    raise ValueError(f"{what} {value!r} is not one of {', '.join(options)}")
Ref = Annotated[str, msgspec.Meta(max_length=128)]
# `$(?!\n)`: Python's `$` also matches before a final newline, which would let "g1\n" into a topic
# level or an ACL line; the lookahead closes that and reads the same in JSON Schema (ECMA) regexes.
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$(?!\n)")]
Count = Annotated[int, msgspec.Meta(ge=0)]
Headcount = Annotated[int, msgspec.Meta(ge=0, le=255)]
Short = Annotated[str, msgspec.Meta(max_length=256)]
At = Annotated[datetime, msgspec.Meta(tz=True)]  # naive times are refused: gates span time zones


class _Msg(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False, omit_defaults=False):
    v: int = V


# How far ahead of the receiver's clock a PassageEvent's `at` may be (gates and the central run NTP):
# past it the event is implausible, and a far-future time would hold usage ("too soon") and a gate's
# zone count until that day.
MAX_AHEAD_S = 300


class PassageEvent(_Msg, frozen=True):
    """Every decision at a gate: granted or refused, passed or not. Forced at the central: the
    entry happened, so it is recorded, never rejected; `id` makes a retry idempotent."""

    id: Annotated[str, msgspec.Meta(min_length=8, max_length=64)]
    site: Name
    gate: Name
    zone: Annotated[int, msgspec.Meta(ge=0, le=255)]
    at: At
    direction: Direction
    credential_kind: CredentialKind
    credential_ref: Ref = ""
    decision: Decision = "granted"
    reason: Short = "ok"
    passed: bool = False
    headcount: Headcount = 1
    offline: bool = False
    mode: Mode = "normal"
    ticket_type: int | None = None
    claim_id: Ref | None = None
    # A face template bound at first entry (same-person re-entry), shared with the site's gates.
    binding: Annotated[bytes, msgspec.Meta(max_length=1024)] | None = None
    face_distance: float | None = None
    # What `binding` is: a face template, or the fingerprint module's template (人票绑定) that the site's
    # other gates load into their modules.
    binding_kind: Literal["face", "fingerprint"] = "face"
    # With a fingerprint binding, the camera's view at the first entry (small JPEG), where a camera is
    # fitted: staff at any gate of the site see it when the finger is not read at a re-entry.
    photo: Annotated[bytes, msgspec.Meta(max_length=16 * 1024)] | None = None


class EventAck(_Msg, frozen=True):
    """The central stored these events of the gate (new or already known): the gate may forget them.

    A broker's PUBACK only says the broker has the event; a broker that restarts, or a shared
    subscription with no member connected, can still drop it. The gate keeps every event until this
    end-to-end acknowledgement and sends again what stays unacknowledged (the event id dedups)."""

    gate: Name
    ids: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=10000)]


class ReaderHealth(msgspec.Struct, frozen=True):
    name: Short
    ok: bool
    detail: Short = ""


class GateStatus(_Msg, frozen=True):
    site: Name
    gate: Name
    online: bool
    at: At
    mode: Mode = "normal"
    config_version: Count = 0
    store_seq: Count = 0
    outbox: Count = 0
    readers: list[ReaderHealth] = []
    controller_ok: bool = True
    alarms: list[Short] = []
    agent_version: Short = ""


# A wall-clock time the rules can read: 00:00-23:59, or 24:00 for "until midnight". `\d` would also
# take "99:99" and non-ASCII digits, which then crash every `decide()` at the gate.
Clock = Annotated[str, msgspec.Meta(pattern=r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$(?!\n)|^24:00$(?!\n)")]


class OpeningHours(msgspec.Struct, frozen=True):
    opens: Clock = "00:00"
    closes: Clock = "24:00"


class TicketTypeRules(msgspec.Struct, frozen=True, kw_only=True):
    """A ticket type's entry rules, as the central defines them and gates apply them."""

    id: Annotated[int, msgspec.Meta(ge=0, lt=65536)]
    name: Short = ""
    entries: Annotated[int, msgspec.Meta(ge=1)] | None = 1  # None: unlimited within validity
    same_person: bool = False
    anti_passback: bool = False
    min_gap_s: Count = 0
    zones: list[Annotated[int, msgspec.Meta(ge=1, le=32)]] = []  # empty: every zone
    weekdays: list[Annotated[int, msgspec.Meta(ge=0, le=6)]] = []  # Monday 0; empty: every day
    slot_grace_min: Count = 15
    # Staff beside the gate must look at the visitor (a child's, senior's or concession ticket): the
    # screen and the voice name the type.
    staff_check: bool = False
    # 人证核验: an ID-card entry of this type is admitted only when the camera's face matches the card's photo.
    id_face: bool = False
    # 人票绑定: the first entry takes the visitor's finger on the gate's module; a re-entry, at any gate of
    # the site, needs the same finger.
    bind_finger: bool = False


class PublicKeyInfo(msgspec.Struct, frozen=True):
    key_id: Annotated[int, msgspec.Meta(ge=0, le=255)]
    public: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    retired_at: At | None = None
    grace_s: Count = 0


class HardwareParams(msgspec.Struct, frozen=True, kw_only=True):
    """What a technician may change from the central without touching the box."""

    controller_profile: Short = ""
    unit_id: Annotated[int, msgspec.Meta(ge=0, le=247)] = 1
    passage_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    repeat_scan_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 1.5


class GateConfig(_Msg, frozen=True, kw_only=True):
    """The retained config message; the gate validates, applies and acknowledges `version`."""

    version: Annotated[int, msgspec.Meta(ge=1)]
    site: Name
    gate: Name
    zone: Annotated[int, msgspec.Meta(ge=1, le=32)]
    direction: GateDirection = "both"
    mode: Mode = "normal"
    claim: ClaimPolicy = "local"
    claim_deadline_ms: Annotated[int, msgspec.Meta(ge=10, le=10000)] = 300
    timezone: Short = "Asia/Shanghai"
    language: Language = "zh"
    opening: OpeningHours = OpeningHours()
    face_threshold: Annotated[float, msgspec.Meta(gt=0, lt=2)] | None = None
    pass_biometric: PassBiometric = "face"
    # What a controller's fire input switches to emergency: its own gate, the gates of its zone, or the
    # site's (a site setting); the gates do it among themselves over MQTT (FireAlarm), without the central.
    fire_scope: FireScope = "zone"
    id_face: bool = False  # 人证核验 for every ID-card entry of the site (else per ticket type, `id_face`)
    # When the site's last emergency was ended at the central (by whom: its audit log): a fire latched
    # before it is over at the gate; a fire input still raised after it raises a new alarm.
    emergency_ended_at: At | None = None
    ticket_types: list[TicketTypeRules] = []
    keys: list[PublicKeyInfo] = []
    id_salt: Annotated[bytes, msgspec.Meta(min_length=16, max_length=64)] = b"\x00" * 16
    hardware: HardwareParams = HardwareParams()

    def __post_init__(self) -> None:
        # An unknown zone would make every decide() at the gate raise; refuse it with the config.
        if not _known_timezone(self.timezone):
            raise ValueError(f"unknown time zone {self.timezone!r} - at `$.timezone`")


class FireAlarm(_Msg, frozen=True, kw_only=True):
    """A gate's fire input, retained on its own `fire` topic: `active` while the input is raised.

    The gates in `scope` (its zone or the site) go to emergency when they read it and stay there until
    the emergency is ended (a new config version from the central, or a technician at the box); an alarm
    older than that end (`at`) is history, not a new fire."""

    site: Name
    gate: Name
    zone: Annotated[int, msgspec.Meta(ge=0, le=255)]
    scope: FireScope = "zone"
    active: bool = True
    at: At


class ConfigAck(_Msg, frozen=True):
    gate: Name
    version: Count
    applied: bool
    error: Short | None = None


class Command(_Msg, frozen=True, kw_only=True):
    id: Ref
    kind: CommandKind
    direction: Direction = "in"
    mode: Mode | None = None
    at: At | None = None
    help_id: Ref | None = None  # staff_admit / staff_refuse: the HelpRequest answered


class HelpRequest(_Msg, frozen=True, kw_only=True):
    """A pass refused for its biometric (not the same person, the finger not read): the gate asks staff.

    Staff see the holder's photo (kept at the central) beside `frame`, the camera's view now (a small
    JPEG, personal data: kept at the central only while the request is open), and admit once or refuse."""

    id: Ref
    site: Name
    gate: Name
    at: At
    direction: Direction = "in"
    credential_kind: CredentialKind
    credential_ref: Ref
    holder_id: Ref | None = None
    reason: Short
    frame: Annotated[bytes, msgspec.Meta(max_length=96 * 1024)] | None = None
    # A ticket bound by fingerprint (人票绑定) has no enrolled holder: the first entry's view stands in.
    photo: Annotated[bytes, msgspec.Meta(max_length=16 * 1024)] | None = None


class CommandAck(_Msg, frozen=True):
    id: Ref
    gate: Name
    ok: bool
    error: Short | None = None


class ClaimRequest(_Msg, frozen=True, kw_only=True):
    """A gate asks the central for the right to admit before it opens (site policy claim=central)."""

    id: Ref
    site: Name
    gate: Name
    zone: Annotated[int, msgspec.Meta(ge=0, le=255)]
    credential_kind: CredentialKind
    credential_ref: Ref
    ticket_type: int | None = None
    headcount: Headcount = 1
    allowed: Headcount = 1
    at: At
    deadline_ms: Count = 300


class ClaimReply(_Msg, frozen=True, kw_only=True):
    id: Ref
    granted: bool
    reason: Short = "ok"
    passages: Headcount = 0


# --- central -> gates: the credential cache, as sequence-numbered changes ---------------------


class TicketChange(msgspec.Struct, frozen=True, tag="ticket", kw_only=True):
    """A ticket the gate must know beyond its code: real-name bookings, revocations, status."""

    ticket_id: Annotated[int, msgspec.Meta(ge=0)]
    ticket_type: int
    status: TicketStatus = "valid"
    valid_from: At | None = None
    valid_to: At | None = None
    slot_start: At | None = None
    slot_end: At | None = None
    headcount: Annotated[int, msgspec.Meta(ge=1, le=255)] = 1
    zones: list[int] = []
    id_digest: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class PassChange(msgspec.Struct, frozen=True, tag="pass", kw_only=True):
    pass_id: Annotated[int, msgspec.Meta(ge=0)]
    holder_id: Ref
    card_uid: Annotated[str, msgspec.Meta(pattern=r"^[0-9A-F]{0,32}$(?!\n)")] = ""
    status: PassStatus = "active"
    valid_from: At | None = None
    valid_to: At | None = None
    zones: list[int] = []


class TemplateChange(msgspec.Struct, frozen=True, tag="template", kw_only=True):
    holder_id: Ref
    kind: TemplateKind
    data: Annotated[bytes, msgspec.Meta(max_length=4096)]
    version: Count = 1
    finger: Annotated[int, msgspec.Meta(ge=0, le=10)] = 0


class HolderForget(msgspec.Struct, frozen=True, tag="forget", kw_only=True):
    """Drop every template and binding of a holder (deletion on request, pass ended)."""

    holder_id: Ref


Change = TicketChange | PassChange | TemplateChange | HolderForget


class Delta(_Msg, frozen=True, kw_only=True):
    site: Name
    seq: Annotated[int, msgspec.Meta(ge=1)]
    at: At
    changes: Annotated[list[Change], msgspec.Meta(max_length=10000)]


class SnapshotRequest(_Msg, frozen=True):
    gate: Name
    have_seq: Count = 0
    reason: Short = ""


class SnapshotChunk(_Msg, frozen=True, kw_only=True):
    """Part `index` of a full snapshot; the gate applies all parts, then deltas after `seq`."""

    site: Name
    gate: Name
    snapshot_id: Ref
    index: Count
    last: bool
    seq: Count
    changes: Annotated[list[Change], msgspec.Meta(max_length=50000)]


class ZoneCount(msgspec.Struct, frozen=True, kw_only=True):
    zone: Annotated[int, msgspec.Meta(ge=1, le=32)]
    name: Short = ""
    inside: int
    entries_today: Count = 0
    exits_today: Count = 0
    peak: Count = 0
    capacity: Count | None = None


class GateSeen(msgspec.Struct, frozen=True, kw_only=True):
    """How many of one gate's passages into (or out of) one zone on `Occupancy.day` the central has
    stored, counted or flagged: the other side of the gate's own `GateCounts`."""

    gate: Name
    zone: Annotated[int, msgspec.Meta(ge=1, le=32)]
    entries: Count = 0
    exits: Count = 0


class Occupancy(_Msg, frozen=True, kw_only=True):
    site: Name
    at: At
    zones: list[ZoneCount]
    # The park day the zones' *_today counts are for, and the passages per gate the central has stored on
    # it: a dashboard adds what the gates counted beyond these (`GateCounts`) while the ingest is behind.
    day: date | None = None
    gates: Annotated[list[GateSeen], msgspec.Meta(max_length=4096)] = []


class ZoneTally(msgspec.Struct, frozen=True, kw_only=True):
    zone: Annotated[int, msgspec.Meta(ge=1, le=32)]
    entries: Count = 0
    exits: Count = 0


class GateCounts(_Msg, frozen=True, kw_only=True):
    """A gate's own count of the passages it made on the park's `day` (its site's time zone), per zone,
    retained on `.../counts` and sent again at most twice a second while it changes. The light path of
    the live counts: a few bytes a second per gate, in its own subscription, so a dashboard is never
    behind the backlog of full events the ingest is still storing (see `central.web.live`). The stored
    events stay the system of record: the central shows the difference only until it has stored them."""

    site: Name
    gate: Name
    day: date
    at: At
    zones: Annotated[list[ZoneTally], msgspec.Meta(max_length=32)] = []


class StoredPassage(msgspec.Struct, frozen=True, kw_only=True):
    """One passage as the dashboards see it: no credential, no template (see StoredPassages)."""

    id: Annotated[str, msgspec.Meta(min_length=8, max_length=64)]
    gate: Name
    zone: Annotated[int, msgspec.Meta(ge=0, le=255)]
    at: At
    direction: Direction
    decision: Decision = "granted"
    reason: Short = "ok"
    passed: bool = False
    headcount: Headcount = 1
    offline: bool = False


class StoredPassages(_Msg, frozen=True, kw_only=True):
    """The passages the central has just stored and counted, each once (a gate's resend of an event
    already stored is not in it, nor an implausible event the central flagged): the live dashboards'
    entries per minute and refusals come from here, from the same truth as occupancy."""

    site: Name
    events: Annotated[list[StoredPassage], msgspec.Meta(max_length=10000)]


# --- encoding and strict decoding -------------------------------------------------------------

MAX_BYTES: dict[type[_Msg], int] = {
    PassageEvent: 32 * 1024,  # a first entry's photo with a fingerprint binding (人票绑定)
    EventAck: 1024 * 1024,
    GateStatus: 16 * 1024,
    GateConfig: 256 * 1024,
    ConfigAck: 2 * 1024,
    Command: 2 * 1024,
    CommandAck: 2 * 1024,
    ClaimRequest: 2 * 1024,
    ClaimReply: 2 * 1024,
    Delta: 8 * 1024 * 1024,
    SnapshotRequest: 2 * 1024,
    SnapshotChunk: 8 * 1024 * 1024,  # the central's are at most about 4 MiB (`central.services.sync.chunk`)
    Occupancy: 256 * 1024,  # the zones and up to 4,096 gates' stored counts
    GateCounts: 4 * 1024,
    StoredPassages: 4 * 1024 * 1024,
    FireAlarm: 2 * 1024,
    HelpRequest: 192 * 1024,  # the frame and a first entry's photo, base64
}

# The largest MQTT packet a valid message makes: the largest payload above, with room for the fixed
# header, the topic and MQTT 5 properties. config/mosquitto/park.conf sets the broker's max_packet_size to
# it, so the broker refuses (disconnects) whatever no receiver would accept anyway.
MAX_PACKET_BYTES = max(MAX_BYTES.values()) + 4096

T = TypeVar("T", bound=_Msg)


class _Version(msgspec.Struct):
    """Just the version field, to name a wrong `v` before the fields of another version's schema."""

    v: object = None

_encoder = msgspec.json.Encoder()
_decoders: dict[type[_Msg], msgspec.json.Decoder[_Msg]] = {t: msgspec.json.Decoder(t) for t in MAX_BYTES}
_FIELD = re.compile(r"at `(\$[^`]*)`")
_MISSING = re.compile(r"missing required field `([^`]*)`")
_version_decoder = msgspec.json.Decoder(_Version)


@lru_cache(maxsize=64)
def _known_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ValueError, OSError, ZoneInfoNotFoundError):  # ValueError: a path-like or empty key
        return False
    return True


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def decode(kind: type[T], payload: bytes | bytearray | memoryview | str) -> T:
    """Decode `payload` as a `kind` message, or raise MessageError naming the field."""
    limit = MAX_BYTES[kind]
    if isinstance(payload, str):
        # The limit is on bytes on the wire, not characters; a lone surrogate cannot be JSON text.
        if len(payload) > limit:
            raise MessageError("oversized", f"{len(payload)} characters, limit {limit} bytes")
        try:
            payload = payload.encode()
        except UnicodeEncodeError:
            raise MessageError("malformed", "text is not valid UTF-8") from None
    if len(payload) > limit:
        raise MessageError("oversized", f"{len(payload)} bytes, limit {limit}")
    try:
        # The decoder made for `kind` returns a `kind` (msgspec checked every field): the dict only forgets it.
        message = cast(T, _decoders[kind].decode(payload))
    except msgspec.ValidationError as exc:
        _check_version(payload)
        text = str(exc)
        match = _FIELD.search(text)
        missing = _MISSING.search(text)
        field = match.group(1) if match else None
        if missing:
            field = f"{field or '$'}.{missing.group(1)}"
        raise MessageError("invalid", text, field=field) from None
    except msgspec.DecodeError as exc:
        raise MessageError("malformed", str(exc)) from None
    except UnicodeDecodeError:
        # msgspec raises this, not a DecodeError, for invalid UTF-8 inside a JSON string.
        raise MessageError("malformed", "a string is not valid UTF-8") from None
    except RecursionError:
        # msgspec skips unknown fields recursively; a few KB of `[[[[...` exhausts the stack.
        raise MessageError("malformed", "nested too deeply") from None
    if message.v != V:
        raise MessageError("version", f"version {message.v}, this side speaks {V}", field="$.v")
    return message


def _check_version(payload: bytes | bytearray | memoryview) -> None:
    """A message of another version fails on its fields; say it is the version that differs."""
    try:
        v = _version_decoder.decode(payload).v
    except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError):
        return
    if v is not None and (type(v) is not int or v != V):
        raise MessageError("version", f"version {v!r}, this side speaks {V}", field="$.v")
