"""The gate's file configuration: what the box needs to start, read from TOML and validated once.

Everything else (mode, rules, keys, hardware parameters a technician may change) arrives as the
retained `GateConfig` from the central; see `gate_agent.agent`. Errors name the file and the key.

    [gate]      id, site, language (until the central's config arrives), heartbeat_s
    [broker]    host, port, username, password, tls_ca, tls_cert, tls_key, keepalive_s, protocol ("5" | "3.1.1"),
                resend_after_s, failover = ["node2:1883", ...] (the other nodes of a clustered broker)
    [store]     path, template_key = "base64url" | template_key_file = "path" (default <store>.key, made if missing),
                id_key_file = "path" (the site's ID-number salt; default <store>.idkey, written from the config)
    [control]   socket (the local CLI's unix socket; default: next to the store)
    [metrics]   listen = "127.0.0.1:9101" (Prometheus; off when absent), allow_public (serve on a public interface)
    [logging]   json (one JSON object a line, with the site and gate)
    [devices.turnstile]   profile, tcp = "host:port" | serial = "/dev/...", baudrate, unit_id, timeout_s
    [devices.qr]          port, baudrate, direction
    [devices.idcard]      port, direction, photo_decoder = "module:function" (the maker's WLT decoder, for 人证核验)
    [devices.rfid]        pcsc_reader = "name" | port = "/dev/...", baudrate, direction
    [devices.fingerprint] port, baudrate, direction
    [devices.camera]      files = "glob" | source = "..." | templates = "folder", fps, identify (1:N face-only entry)
    [devices.display]     kind = "console" | "kiosk", voice, listen = "127.0.0.1:8765" (kiosk: the box's own screen)
    [devices.voice]       port, baudrate, encoding = "auto" | "gb2312" | "gbk" | "big5" | "unicode", timeout_s
                          (a SYN6288-family text-to-speech module)
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from protocol.brokers import parse_address
from protocol.topics import check_name

Port = Annotated[str, msgspec.Meta(min_length=1)]
ReaderDirection = Literal["in", "out"]


class ConfigError(ValueError):
    """The file configuration is unusable; the message names the file and the key."""


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class GateSection(_Section):
    id: str
    site: str
    language: Literal["zh", "en"] = "zh"
    heartbeat_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0


class BrokerSection(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 1883
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    keepalive_s: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 15
    session_expiry_s: Annotated[int, msgspec.Meta(ge=0)] = 7 * 24 * 3600
    # An event the central has not confirmed (EventAck) this long after the broker took it is sent
    # again, then after twice as long, ... (the central drops repeats by event id).
    resend_after_s: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 30.0
    protocol: Literal["5", "3.1.1"] = "5"  # "3.1.1" for brokers without MQTT 5 (the demo's amqtt)
    # Other nodes of a clustered broker ("host:port"), tried in turn when host:port is away
    # (protocol.brokers); a single Mosquitto needs none.
    failover: Annotated[list[str], msgspec.Meta(max_length=16)] = []


class StoreSection(_Section):
    path: str = "var/gate.db"
    # The key sealing biometric templates at rest (gate_agent.template_key): inline base64url, or a file
    # (mode 0600); with neither, <store>.key beside the store, created on first start.
    template_key: str | None = None
    template_key_file: str | None = None
    # The site's ID-number salt, apart from the digests in the store (gate_agent.id_key); default
    # <store>.idkey beside the store, written when the central's config is applied.
    id_key_file: str | None = None


class ControlSection(_Section):
    socket: str | None = None


class MetricsSection(_Section):
    listen: str | None = None  # "host:port"; none: no metrics served
    # A public address (or every interface, 0.0.0.0) is refused unless this says so: the metrics name
    # the gate's devices and counts, for the park's monitoring network only.
    allow_public: bool = False

    def address(self) -> tuple[str, int] | None:
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class LoggingSection(_Section):
    json: bool = False


class TurnstileDevice(_Section):
    profile: str = ""  # empty: the central's hardware.controller_profile decides
    # A folder of the site's own controller profiles (<model>.toml), looked up before the shipped ones.
    profile_dir: str | None = None
    tcp: str | None = None  # "host:port"
    serial: str | None = None
    baudrate: int = 9600
    unit_id: Annotated[int, msgspec.Meta(ge=0, le=247)] | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.3
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2

    @property
    def profile_dirs(self) -> tuple[str, ...]:
        return (self.profile_dir,) if self.profile_dir else ()

    def tcp_address(self) -> tuple[str, int] | None:
        if self.tcp is None:
            return None
        host, _, port = self.tcp.rpartition(":")
        return host, int(port)


class QrDevice(_Section):
    port: Port
    baudrate: int = 9600
    direction: ReaderDirection = "in"


class IdCardDevice(_Section):
    port: Port
    baudrate: int = 115200
    direction: ReaderDirection = "in"
    # "module:function" decoding the card chip's WLT photo (the reader maker's licensed SDK, wrapped):
    # needed for 人证核验; without it the reader yields no photo.
    photo_decoder: str | None = None


class RfidDevice(_Section):
    pcsc_reader: str | None = None
    port: str | None = None
    baudrate: int = 9600
    direction: ReaderDirection = "in"


class FingerprintDevice(_Section):
    port: Port
    baudrate: int = 57600
    direction: ReaderDirection = "in"


class CameraDevice(_Section):
    files: str | None = None  # a glob of image files (tests, demo)
    source: str | None = None
    templates: str | None = None  # a folder of face templates, one taken per look (the demo's camera stand-in)
    fps: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    identify: bool = False  # 1:N face-only entry among enrolled holders
    direction: ReaderDirection = "in"


class DisplayDevice(_Section):
    kind: Literal["console", "kiosk"] = "console"
    voice: bool = True
    listen: str = "127.0.0.1:8765"  # kiosk: where the box's own browser reads the page (keep it local)

    def listen_address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host, int(port)


class VoiceDevice(_Section):
    port: Port
    baudrate: int = 9600
    encoding: Literal["auto", "gb2312", "gbk", "big5", "unicode"] = "auto"
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=5)] = 0.3


class Devices(_Section):
    turnstile: TurnstileDevice | None = None
    qr: QrDevice | None = None
    idcard: IdCardDevice | None = None
    rfid: RfidDevice | None = None
    fingerprint: FingerprintDevice | None = None
    camera: CameraDevice | None = None
    display: DisplayDevice = msgspec.field(default_factory=DisplayDevice)
    voice: VoiceDevice | None = None


class GateFileConfig(_Section):
    """The whole file, after validation."""

    gate: GateSection
    broker: BrokerSection = msgspec.field(default_factory=BrokerSection)
    store: StoreSection = msgspec.field(default_factory=StoreSection)
    control: ControlSection = msgspec.field(default_factory=ControlSection)
    devices: Devices = msgspec.field(default_factory=Devices)
    metrics: MetricsSection = msgspec.field(default_factory=MetricsSection)
    logging: LoggingSection = msgspec.field(default_factory=LoggingSection)
    source: str = "<memory>"  # the file it came from, for messages

    @property
    def gate_id(self) -> str:
        return self.gate.id

    @property
    def site(self) -> str:
        return self.gate.site

    @property
    def store_path(self) -> Path:
        return Path(self.store.path)

    @property
    def control_socket(self) -> Path:
        return Path(self.control.socket) if self.control.socket else self.store_path.with_suffix(".sock")


def load(path: str | Path) -> GateFileConfig:
    """Read and validate a gate's TOML file; relative store/socket paths are taken from the file's folder."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(data, source=str(path), base=path.parent)


def from_dict(data: dict, *, source: str = "<memory>", base: Path | None = None) -> GateFileConfig:
    """Validate parsed TOML; every error names `source` and the key (`devices.qr.port`)."""
    try:
        cfg = msgspec.convert({**data, "source": source}, GateFileConfig)
    except msgspec.ValidationError as exc:
        text = str(exc)
        key = text.rsplit("at `$.", 1)[-1].rstrip("`") if "at `$." in text else ""
        raise ConfigError(f"{source}: {key + ': ' if key else ''}{text}") from None
    _check(cfg, source)
    if base is not None:
        store = Path(cfg.store.path)
        if not store.is_absolute():
            cfg.store.path = str(base / store)
        if cfg.store.template_key_file and not Path(cfg.store.template_key_file).is_absolute():
            cfg.store.template_key_file = str(base / cfg.store.template_key_file)
        if cfg.store.id_key_file and not Path(cfg.store.id_key_file).is_absolute():
            cfg.store.id_key_file = str(base / cfg.store.id_key_file)
        if cfg.control.socket and not Path(cfg.control.socket).is_absolute():
            cfg.control.socket = str(base / cfg.control.socket)
    return cfg


def _check(cfg: GateFileConfig, source: str) -> None:
    def fail(key: str, why: str) -> None:
        raise ConfigError(f"{source}: {key}: {why}")

    for key, value in (("gate.id", cfg.gate.id), ("gate.site", cfg.gate.site)):
        try:
            check_name(key, value)
        except ValueError as exc:
            fail(key, str(exc))
    b = cfg.broker
    for address in b.failover:
        try:
            parse_address(address)
        except ValueError as exc:
            fail("broker.failover", str(exc))
    if (b.tls_cert is None) != (b.tls_key is None):
        fail("broker.tls_cert", "tls_cert and tls_key go together")
    for key in ("tls_ca", "tls_cert", "tls_key"):
        value = getattr(b, key)
        if value is not None and not Path(value).is_file():
            fail(f"broker.{key}", f"file {value!r} not found")
    if cfg.store.template_key is not None and cfg.store.template_key_file is not None:
        fail("store.template_key", "give template_key or template_key_file, not both")
    t = cfg.devices.turnstile
    if t is not None:
        if (t.tcp is None) == (t.serial is None):
            fail("devices.turnstile", "give exactly one of tcp = \"host:port\" or serial = \"/dev/...\"")
        if t.tcp is not None:
            host, sep, port = t.tcp.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                fail("devices.turnstile.tcp", f"{t.tcp!r} is not \"host:port\"")
    if cfg.metrics.listen is not None:
        from .metrics import public_address

        host, sep, port = cfg.metrics.listen.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            fail("metrics.listen", f"{cfg.metrics.listen!r} is not \"host:port\"")
        try:
            public = public_address(host)
        except ValueError:
            fail("metrics.listen", f"{host!r} is not an IP address (or localhost)")
        if public and not cfg.metrics.allow_public:
            fail("metrics.listen", f"{host} is a public interface (or every interface); listen on the park's "
                 "network or 127.0.0.1, or set metrics.allow_public = true")
    r = cfg.devices.rfid
    if r is not None and (r.pcsc_reader is None) == (r.port is None):
        fail("devices.rfid", "give exactly one of pcsc_reader = \"name\" or port = \"/dev/...\"")
    d = cfg.devices.display
    host, sep, port = d.listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        fail("devices.display.listen", f"{d.listen!r} is not \"host:port\"")
    c = cfg.devices.camera
    if c is not None and [c.files, c.source, c.templates].count(None) != 2:
        fail("devices.camera", "give exactly one of files = \"glob\", source = \"...\" or templates = \"folder\"")


__all__ = ["ConfigError", "GateFileConfig", "from_dict", "load"]
