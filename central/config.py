"""The central's configuration: one TOML file, validated once, with environment overrides.

    database_url = "sqlite:///var/central/central.db"   # or postgresql+psycopg://user@host/db
    site = "park1"                                      # the default site for CLI commands

    [mqtt]     host, port, username, password, tls_ca, client_id, protocol ("5" or "3.1.1"), failover
    [ingest]   batch_size, batch_ms, group, sites (the parks this worker takes; empty: all)
    [keys]     signing_key_file, signing_key_id, template_key
    [web]      secret_key, host, port, secure_cookies, proxy_hops, ratelimit_storage, threads
    [jobs]     heartbeat_timeout_s, template_retention_days, snapshot_interval_s, roll_over_check_s
    [gates]    controller_profiles (a site's own turnstile models, beside the shipped ones)
    [metrics]  allow (networks that may read /metrics), token (or a bearer token), multiprocess_dir
    [alerts]   webhooks, webhook_style, smtp_host, smtp_port, smtp_username, smtp_password, smtp_starttls,
               mail_from, mail_to, interval_s, outbox_events, occupancy_ratio, parked_messages
    [logging]  json (one JSON object a line, with site and gate)
    [database] read_url (a hot standby the reports read from), partition_months_ahead, retention_months

Environment overrides (they win over the file): PARK_CENTRAL_DB, PARK_CENTRAL_MQTT_HOST,
PARK_CENTRAL_MQTT_PORT, PARK_CENTRAL_MQTT_USERNAME, PARK_CENTRAL_MQTT_PASSWORD, PARK_CENTRAL_SITE,
PARK_CENTRAL_TEMPLATE_KEY, PARK_CENTRAL_SECRET_KEY, PARK_CENTRAL_DB_READ.

A fault raises `ConfigError` naming the key and the file (`central.toml: mqtt.port must be ...`).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from protocol.brokers import parse_address
from protocol.topics import check_name

DEFAULT_DB = "sqlite:///var/central/central.db"
MIN_THREADS, MAX_THREADS = 4, 1024
_LIMIT_STORAGES = ("memory://", "redis://", "rediss://", "redis+sentinel://", "redis+cluster://",
                   "memcached://", "mongodb://", "mongodb+srv://")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    client_id: str = "central"
    keepalive: int = 30
    protocol: str = "5"  # "3.1.1" for brokers without MQTT 5 (the demo's amqtt): no shared subscriptions
    # Other nodes of a clustered broker ("host:port"), tried in turn when host:port is away (protocol.brokers).
    failover: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeysConfig:
    signing_key_file: str = "var/central/signing.key"
    signing_key_id: int = 1
    template_key: str | None = None  # base64url, 32 bytes (biometrics.protect.load_key)


@dataclass(frozen=True)
class WebConfig:
    secret_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    secure_cookies: bool = False  # true when served over HTTPS (behind a TLS proxy)
    # Proxies in front of waitress whose X-Forwarded-For/-Proto/-Host to trust (0: none). Set 1 behind
    # one nginx or Caddy, so the app knows it is served over HTTPS (redirects, CSRF's Referer check)
    # and whom to throttle at login (else every visitor has the proxy's address).
    proxy_hops: int = 0
    # Where Flask-Limiter keeps the per-address login counters: "memory://" (each process its own),
    # or "redis://host:6379" to share them between web processes (needs the `redis` package).
    ratelimit_storage: str = "memory://"
    # waitress's worker threads. Each open live dashboard holds one; streams may take at most three
    # quarters of them and never the last 8 (central.web.live.stream_cap), the rest serve pages and the API.
    threads: int = 32


@dataclass(frozen=True)
class JobsConfig:
    heartbeat_timeout_s: int = 60
    template_retention_days: int = 30
    snapshot_interval_s: int = 3600
    publish_interval_s: float = 2.0
    roll_over_check_s: float = 60.0  # how often the day's end is looked for (the demo's days are short)


@dataclass(frozen=True)
class IngestConfig:
    batch_size: int = 500
    batch_ms: int = 50
    group: str = "central-ingest"
    # The parks this worker takes (empty: all). A head office over many parks runs workers per group of
    # parks, each subscribed to its parks' topics only, on a clustered broker.
    sites: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReplicationConfig:
    """A park server and its head office, each with its own database and broker (`park-central replicate`,
    `central.services.replication`). Empty `server`: this central replicates with nobody."""

    server: str = ""  # this server's name among the servers that replicate ("ho", "north-park")
    # 1-63: every id this server's database makes is this number modulo 64, so the rows (and the ticket
    # ids in signed codes) of two servers never collide. Each server has its own.
    number: int = 0
    # A park server: the head office server's name, and the parks this server is the home of (default: `site`).
    head_office: str = ""
    sites: tuple[str, ...] = ()
    # The head office: each park server with its parks, "server:park1+park2" ("server" alone: the park of
    # that name).
    parks: tuple[str, ...] = ()
    batch: int = 500  # changes per message
    interval_ms: int = 200  # how often the outbox is read for new changes
    resend_s: int = 10  # a peer that acknowledged nothing this long gets the unacknowledged changes again
    keep_days: int = 7  # confirmed changes are kept this long: a peer restored from a backup gets them again

    @property
    def enabled(self) -> bool:
        return bool(self.server)

    def peers(self) -> dict[str, tuple[str, ...] | None]:
        """Each other server and the parks whose changes it gets (None: all, the head office)."""
        if self.head_office:
            return {self.head_office: None}
        out: dict[str, tuple[str, ...] | None] = {}
        for entry in self.parks:
            name, _, sites = entry.partition(":")
            out[name] = tuple(s for s in sites.split("+") if s) if sites else (name,)
        return out

    def remote_sites(self) -> set[str]:
        """At the head office: the parks whose home is a park server (their gates are not ours)."""
        if self.head_office:
            return set()
        return {site for sites in self.peers().values() for site in sites or ()}


@dataclass(frozen=True)
class GatesConfig:
    # Controller models a technician may name besides the shipped ones (protocol.controllers): the
    # site's own profile files, which its gates carry in `[devices.turnstile] profile_dir`.
    controller_profiles: tuple[str, ...] = ()

    @property
    def known_profiles(self) -> tuple[str, ...]:
        from protocol.controllers import SHIPPED_PROFILES

        return tuple(sorted(set(SHIPPED_PROFILES) | set(self.controller_profiles)))


@dataclass(frozen=True)
class MetricsConfig:
    # Who may read /metrics on the web port: clients from these networks, or any client sending
    # `Authorization: Bearer <token>` when a token is set. Default: this machine only.
    allow: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    token: str = ""
    # Several central processes (ingest workers, claim servers, the scheduler) count into files here;
    # the web's /metrics adds them up. The systemd units set PROMETHEUS_MULTIPROC_DIR instead.
    multiprocess_dir: str = ""


WEBHOOK_STYLES = ("slack", "wecom", "dingtalk")


@dataclass(frozen=True)
class AlertsConfig:
    """The central's own alerts (central.services.alerting): sent to these webhooks and addresses."""

    webhooks: tuple[str, ...] = ()
    webhook_style: str = "slack"  # slack: {"text": ...}; wecom and dingtalk: {"msgtype": "text", ...}
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    mail_from: str = ""
    mail_to: tuple[str, ...] = ()
    interval_s: int = 30
    outbox_events: int = 200  # a gate holding more unsent events than this
    occupancy_ratio: float = 0.95  # a zone this full of its capacity
    parked_messages: int = 100  # more parked messages than this
    link_quiet_s: int = 300  # a replicating server not heard from this long (replicators speak every 15 s)


@dataclass(frozen=True)
class LoggingConfig:
    json: bool = False  # one JSON object a line (central.logs.JsonFormatter)


@dataclass(frozen=True)
class DatabaseConfig:
    # A hot standby the reports may read from (PostgreSQL only): their queries then leave the primary
    # to the ingest and the sales. Empty: the reports read the primary like everything else.
    read_url: str | None = None
    # passage_events by month (PostgreSQL): the scheduler keeps this many months' partitions ready ahead,
    # and detaches months older than `retention_months` into the `archive` schema (0: keep all).
    partition_months_ahead: int = 3
    retention_months: int = 0


@dataclass(frozen=True)
class CentralConfig:
    database_url: str = DEFAULT_DB
    site: str = "park1"
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    web: WebConfig = field(default_factory=WebConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)
    source: str = "<defaults>"

    def home_sites(self) -> set[str] | None:
        """The parks whose gates this server serves: a park server's own; None: every park it holds
        but those of its park servers (`replication.remote_sites`)."""
        r = self.replication
        if r.enabled and r.head_office:
            return set(r.sites or (self.site,))
        return None

    def is_home(self, site_id: str) -> bool:
        home = self.home_sites()
        return site_id in home if home is not None else site_id not in self.replication.remote_sites()

    def with_overrides(self, **changes: Any) -> CentralConfig:
        return replace(self, **changes)


_SECTIONS = {"mqtt": MqttConfig, "keys": KeysConfig, "web": WebConfig, "jobs": JobsConfig, "ingest": IngestConfig,
             "gates": GatesConfig, "metrics": MetricsConfig, "alerts": AlertsConfig, "logging": LoggingConfig,
             "database": DatabaseConfig, "replication": ReplicationConfig}
_ENV = {
    "PARK_CENTRAL_DB": ("", "database_url"),
    "PARK_CENTRAL_SITE": ("", "site"),
    "PARK_CENTRAL_MQTT_HOST": ("mqtt", "host"),
    "PARK_CENTRAL_MQTT_PORT": ("mqtt", "port"),
    "PARK_CENTRAL_MQTT_USERNAME": ("mqtt", "username"),
    "PARK_CENTRAL_MQTT_PASSWORD": ("mqtt", "password"),
    "PARK_CENTRAL_TEMPLATE_KEY": ("keys", "template_key"),
    "PARK_CENTRAL_SECRET_KEY": ("web", "secret_key"),
    "PARK_CENTRAL_DB_READ": ("database", "read_url"),
}


def _coerce(source: str, key: str, value: Any, default: Any) -> Any:
    want = type(default) if default is not None else str
    if want is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{source}: {key} must be a list of names, got {value!r}")
        return tuple(value)
    if want is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if want is int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {key} must be an integer, got {value!r}") from None
        if number < 0:
            raise ConfigError(f"{source}: {key} must not be negative")
        return number
    if want is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {key} must be a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {key} must be text, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], source: str, prefix: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    defaults = cls()
    for key, value in data.items():
        if key not in known or key == "source" or key in _SECTIONS:
            raise ConfigError(f"{source}: unknown key {prefix}{key}")
        values[key] = _coerce(source, prefix + key, value, getattr(defaults, key))
    return replace(defaults, **values)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> CentralConfig:
    """Read and validate the configuration; `path` None means defaults plus the environment."""
    if path is None:
        return _load({}, "<defaults>", env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except PermissionError:
        raise ConfigError(f"{path}: not readable by this user (the services run as park-central)") from None
    return load_config_text(text, str(path), env)


def load_config_text(text: str, source: str, env: Mapping[str, str] | None = None) -> CentralConfig:
    """Validate a configuration given as TOML text (`source` names it in errors)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    return _load(raw, source, env)


def _load(raw: dict[str, Any], source: str, given: Mapping[str, str] | None) -> CentralConfig:
    env: Mapping[str, str] = os.environ if given is None else given
    for var, (section, key) in _ENV.items():
        if var in env and env[var] != "":
            target = raw.setdefault(section, {}) if section else raw
            if not isinstance(target, dict):
                raise ConfigError(f"{source}: [{section}] must be a table")
            target[key] = env[var]
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        data = raw.pop(name, {})
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        sections[name] = _build(cls, data, source, f"{name}.")
    top = _build(CentralConfig, raw, source, "")
    config = replace(top, source=source, **sections)
    _validate(config)
    return config


def _validate(config: CentralConfig) -> None:
    src = config.source
    if not (config.database_url.startswith("sqlite") or config.database_url.startswith("postgresql")):
        raise ConfigError(f"{src}: database_url must be a sqlite:/// or postgresql+psycopg:// URL")
    if config.database.read_url and not config.database.read_url.startswith("postgresql"):
        raise ConfigError(f"{src}: database.read_url must be a postgresql+psycopg:// URL (a hot standby)")
    try:
        check_name("site", config.site)
    except ValueError as exc:
        raise ConfigError(f"{src}: site: {exc}") from None
    if not 0 < config.mqtt.port < 65536:
        raise ConfigError(f"{src}: mqtt.port must be 1-65535")
    for address in config.mqtt.failover:
        try:
            parse_address(address)
        except ValueError as exc:
            raise ConfigError(f"{src}: mqtt.failover: {exc}") from None
    if config.mqtt.protocol not in ("5", "3.1.1"):
        raise ConfigError(f"{src}: mqtt.protocol must be \"5\" or \"3.1.1\", got {config.mqtt.protocol!r}")
    if not 0 <= config.keys.signing_key_id <= 255:
        raise ConfigError(f"{src}: keys.signing_key_id must be 0-255")
    if config.jobs.heartbeat_timeout_s < 1:
        raise ConfigError(f"{src}: jobs.heartbeat_timeout_s must be at least 1")
    if not 0.1 <= config.jobs.roll_over_check_s <= 3600:
        raise ConfigError(f"{src}: jobs.roll_over_check_s must be 0.1-3600 seconds")
    for name in config.ingest.sites:
        try:
            check_name("ingest.sites", name)
        except ValueError as exc:
            raise ConfigError(f"{src}: {exc}") from None
    if config.ingest.batch_size < 1:
        raise ConfigError(f"{src}: ingest.batch_size must be at least 1")
    if not MIN_THREADS <= config.web.threads <= MAX_THREADS:
        raise ConfigError(f"{src}: web.threads must be {MIN_THREADS}-{MAX_THREADS}, got {config.web.threads}")
    if not config.web.ratelimit_storage.startswith(_LIMIT_STORAGES):
        raise ConfigError(f"{src}: web.ratelimit_storage must start with one of {', '.join(_LIMIT_STORAGES)}, "
                          f"got {config.web.ratelimit_storage!r}")
    for net in config.metrics.allow:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"{src}: metrics.allow: {net!r} is not a network (like \"10.0.0.0/8\")") from None
    a = config.alerts
    if a.webhook_style not in WEBHOOK_STYLES:
        raise ConfigError(f"{src}: alerts.webhook_style must be one of {', '.join(WEBHOOK_STYLES)}, "
                          f"got {a.webhook_style!r}")
    for url in a.webhooks:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{src}: alerts.webhooks: {url!r} is not an http:// or https:// URL")
    if a.mail_to and not (a.smtp_host and a.mail_from):
        raise ConfigError(f"{src}: alerts.mail_to needs alerts.smtp_host and alerts.mail_from")
    if not 0 < a.occupancy_ratio <= 1:
        raise ConfigError(f"{src}: alerts.occupancy_ratio must be above 0 and at most 1")
    if a.interval_s < 1:
        raise ConfigError(f"{src}: alerts.interval_s must be at least 1")
    _validate_replication(config)
    if config.mqtt.tls_ca and not Path(config.mqtt.tls_ca).is_file():
        raise ConfigError(f"{src}: mqtt.tls_ca file {config.mqtt.tls_ca} not found")


def _validate_replication(config: CentralConfig) -> None:
    src, r = config.source, config.replication
    if not r.enabled:
        if r.head_office or r.parks or r.sites:
            raise ConfigError(f"{src}: replication.server names this server: set it, or remove [replication]")
        return
    if not config.database_url.startswith("postgresql"):
        raise ConfigError(f"{src}: replication needs PostgreSQL (database_url), not SQLite")
    if not 1 <= r.number <= 63:
        raise ConfigError(f"{src}: replication.number must be 1-63, one per server, got {r.number}")
    if bool(r.head_office) == bool(r.parks):
        raise ConfigError(f"{src}: a park server sets replication.head_office, the head office replication.parks "
                          "(one of the two)")
    if r.sites and not r.head_office:
        raise ConfigError(f"{src}: replication.sites is a park server's list of its own parks")
    if r.batch < 1 or r.interval_ms < 10 or r.resend_s < 1:
        raise ConfigError(f"{src}: replication.batch >= 1, interval_ms >= 10 and resend_s >= 1")
    try:
        check_name("replication.server", r.server)
        if r.head_office:
            check_name("replication.head_office", r.head_office)
        for site in r.sites:
            check_name("replication.sites", site)
        for name, sites in r.peers().items():
            check_name("replication.parks", name)
            for site in sites or ():
                check_name("replication.parks", site)
    except ValueError as exc:
        raise ConfigError(f"{src}: {exc}") from None
    if r.server in r.peers():
        raise ConfigError(f"{src}: replication.server {r.server!r} is also named as its own peer")
