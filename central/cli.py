"""`park-central`: run and administer the central.

    park-central [--config FILE] db upgrade            migrate the database to the newest schema
    park-central serve                                 the web UI and API (waitress)
    park-central ingest [--worker-id N] [--no-claims]  an ingest worker (MQTT -> database) and claim server
    park-central claims [--worker-id N]                a claim server alone (claim=central sites under heavy load)
    park-central scheduler                             the scheduled jobs
    park-central run                                   web + ingest + scheduler in one process
    park-central init-config --out FILE [--database URL]  a production central.toml with fresh secrets
    park-central keys generate|show                    the ticket signing key (and a template key)
    park-central user create NAME --role R             a staff user; prints a generated password
    park-central user list | deactivate NAME | reactivate NAME | password NAME
                                                       staff users; deactivating (or a new password) ends their sessions
    park-central token create NAME --role R            a machine token for the API; printed once
    park-central token list | revoke NAME              machine tokens; a revoked token gets 401 at once
    park-central site create SITE [--timezone TZ]      a site (with its ID salt) and zones
    park-central provision-gate SITE GATE --zone N     register a gate; prints its starting gate TOML
    park-central acl --passwords FILE --acl FILE       Mosquitto password and ACL files for every gate
    park-central backup [--out FILE] / restore FILE    back up or restore the database
    park-central restore-drill [--stanza park]         restore the pgBackRest backup into a scratch cluster, compare
    park-central bridge-config SITE HOST:PORT          the Mosquitto bridge block of an on-site server
    park-central replicate                             send and apply changes with the other servers ([replication])
    park-central replication setup | seed [--site S] | status | credentials SERVER
                                                       capture triggers and id residues; queue every row; peers'
                                                       state; a park server's bridge password (head office)

The configuration file comes from --config or PARK_CENTRAL_CONFIG; without one, defaults and the
PARK_CENTRAL_* environment variables apply.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from central.config import CentralConfig, ConfigError, load_config, load_config_text
from protocol import host  # systemd: READY=1 and the watchdog (shared with the gate)

log = logging.getLogger("central")


def _check_clock() -> None:
    """A PARK_CLOCK that cannot be read stops the start; a simulated one is said out loud."""
    from protocol.clock import ClockError, WallClock, park_clock

    try:
        clock = park_clock()
    except ClockError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(clock, WallClock):
        log.warning("the park's clock is simulated (PARK_CLOCK=%s): a demo, not a park", clock.spec())


def _config(args) -> CentralConfig:
    _check_clock()
    return load_config(args.config or os.environ.get("PARK_CENTRAL_CONFIG"))


def _context(config: CentralConfig, mqtt: bool = True, suffix: str = "cli"):
    from central.context import CentralContext
    from central.migrate import current, head

    at, newest = current(config.database_url), head()
    if at != newest:
        # Say it plainly instead of failing later on a missing table or column.
        state = "has no schema yet" if at is None else f"is at schema {at}, this version needs {newest}"
        raise ConfigError(f"the database {_safe_url(config.database_url)} {state}: run `park-central db upgrade`")
    return CentralContext.create(config, mqtt=mqtt, client_suffix=suffix)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


# --- commands ----------------------------------------------------------------------------------


def cmd_db(args) -> int:
    from central.migrate import current, upgrade

    config = _config(args)
    if args.action == "upgrade":
        upgrade(config.database_url)
    print(f"database at revision {current(config.database_url)}")
    return 0


def _start_ingest(config, ctx, worker_id: str):
    from central.bus.ingest_worker import IngestWorker

    return IngestWorker(config, ctx.sessions, ctx.link, worker_id=worker_id, cipher=ctx.cipher).start()


def _start_claims(config, ctx, worker_id: str):
    """Central claims (site policy claim=central), answered at once beside the ingest (central.bus.claim_server)."""
    from central.bus.claim_server import ClaimServer

    return ClaimServer(config, ctx.sessions, worker_id=worker_id).start()


def cmd_ingest(args) -> int:
    config = _config(args)
    ctx = _context(config, suffix=f"ingest-pub-{args.worker_id}")
    worker = _start_ingest(config, ctx, args.worker_id)
    claims = None if args.no_claims else _start_claims(config, ctx, args.worker_id)
    log.info("ingest worker %s running", args.worker_id)
    host.ready(f"ingest worker {args.worker_id}")
    host.watchdog(lambda: worker.alive)
    try:
        _wait_for_signal()
    finally:
        if claims is not None:
            claims.stop()
        worker.stop()
        ctx.close()
    return 0


def cmd_claims(args) -> int:
    """A claim server in its own process: claims never wait for the ingest's share of the CPU."""
    config = _config(args)
    ctx = _context(config, mqtt=False)
    claims = _start_claims(config, ctx, args.worker_id)
    log.info("claim server %s running", args.worker_id)
    host.ready(f"claim server {args.worker_id}")
    host.watchdog(lambda: claims.alive)
    try:
        _wait_for_signal()
    finally:
        claims.stop()
        ctx.close()
    return 0


def cmd_scheduler(args) -> int:
    from central.services.jobs import build_scheduler

    config = _config(args)
    ctx = _context(config, suffix="scheduler")
    scheduler = build_scheduler(ctx)
    scheduler.start()
    log.info("scheduler running")
    host.ready("scheduler")
    host.watchdog(lambda: scheduler.running)
    try:
        _wait_for_signal()
    finally:
        scheduler.shutdown(wait=False)
        ctx.close()
    return 0


def make_server(config, ctx):
    """The web UI and API under waitress, with `[web] threads` threads (not yet serving).

    Each open live dashboard holds a thread; `central.web.live` caps streams below this count so
    pages, the API and /healthz always have threads left.
    """
    from waitress import create_server

    from central.app import create_app

    app = create_app(config, context=ctx)
    server = create_server(app, host=config.web.host, port=config.web.port, threads=config.web.threads)
    server.flask_app = app  # for tests and embedders (waitress may wrap `application`)
    return server


def _serve(config, ctx, healthy=lambda: True) -> None:
    server = make_server(config, ctx)
    host.ready(f"serving on {config.web.host}:{config.web.port}")
    host.watchdog(healthy)
    server.run()


def cmd_serve(args) -> int:
    config = _config(args)
    ctx = _context(config, suffix="web")
    try:
        _serve(config, ctx)
    finally:
        ctx.close()
    return 0


def cmd_run(args) -> int:
    from central.migrate import upgrade
    from central.services.jobs import build_scheduler

    config = _config(args)
    upgrade(config.database_url)
    ctx = _context(config, suffix="run")
    worker = _start_ingest(config, ctx, args.worker_id)
    claims = _start_claims(config, ctx, args.worker_id)
    scheduler = build_scheduler(ctx)
    scheduler.start()
    try:
        _serve(config, ctx, healthy=lambda: worker.alive and scheduler.running)
    finally:
        scheduler.shutdown(wait=False)
        claims.stop()
        worker.stop()
        ctx.close()
    return 0


def cmd_keys(args) -> int:
    from central.keys import load_or_create_seed
    from protocol.ticket_code import TicketSigner

    config = _config(args)
    path = Path(config.keys.signing_key_file)
    if args.action == "generate" and path.exists():
        print(f"{path} exists already; keys rotate by giving keys.signing_key_id a new id and a new file",
              file=sys.stderr)
        return 1
    signer = TicketSigner.from_seed(config.keys.signing_key_id, load_or_create_seed(path))
    print(f"signing key id {signer.key_id}, file {path}")
    print(f"public key (hex): {signer.public_key_bytes().hex()}")
    if args.action == "generate" and not config.keys.template_key:
        from biometrics.protect import generate_key

        print(f"a new template key for keys.template_key: {generate_key()}")
    return 0


def central_toml(*, database_url: str, site: str, state_dir: str, mqtt_host: str, mqtt_port: int,
                 web_host: str, web_port: int) -> str:
    """A production central.toml with fresh secrets: the MQTT password of the central (whose hash
    `park-central acl` writes), the template key and the cookie key; paths absolute, matching the
    systemd units (StateDirectory=park-central is /var/lib/park-central)."""
    import secrets

    from biometrics.protect import generate_key

    return (
        "# The central's configuration, written by `park-central init-config`. It holds secrets:\n"
        "# keep it 0640 root:park-central. Every key: config/central.example.toml in the source tree.\n"
        f'database_url = "{database_url}"\n'
        f'site = "{site}"\n\n'
        "[mqtt]\n"
        f'host = "{mqtt_host}"\nport = {mqtt_port}\n'
        'username = "central"\n'
        f'password = "{secrets.token_urlsafe(24)}"\n'
        'client_id = "central"\n\n'
        "[keys]\n"
        "# Made by `park-central keys generate`, run as the service user so that it can read it (0600).\n"
        f'signing_key_file = "{state_dir}/signing.key"\n'
        "signing_key_id = 1\n"
        f'template_key = "{generate_key()}"\n\n'
        "[web]\n"
        f'secret_key = "{secrets.token_urlsafe(32)}"\n'
        f'host = "{web_host}"\nport = {web_port}\n'
        "secure_cookies = false          # true once an HTTPS proxy is in front (then proxy_hops = 1)\n"
        "proxy_hops = 0\n\n"
        "[metrics]\n"
        "# /metrics on the web port: add the monitoring server's network (or set a token).\n"
        'allow = ["127.0.0.1/32", "::1/128"]\n'
        "# Every central service counts into this folder; the web's /metrics adds them up.\n"
        f'multiprocess_dir = "{state_dir}/metrics"\n'
    )


def cmd_init_config(args) -> int:
    out = Path(args.out)
    if out.exists():
        print(f"{out} exists already: edit it, or remove it to start afresh", file=sys.stderr)
        return 1
    text = central_toml(database_url=args.database, site=args.site, state_dir=args.state_dir.rstrip("/"),
                        mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port, web_host=args.web_host,
                        web_port=args.web_port)
    load_config_text(text, str(out), env={})  # what is written must load
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        if args.group:
            import grp

            os.fchown(fh.fileno(), -1, grp.getgrnam(args.group).gr_gid)
        fh.write(text)
    print(f"wrote {out} (0640{', group ' + args.group if args.group else ''})")
    return 0


@contextmanager
def _transaction(args):
    """One database transaction for a one-shot administrative command (no MQTT)."""
    ctx = _context(_config(args), mqtt=False)
    try:
        with ctx.sessions.begin() as db:
            yield db
    finally:
        ctx.close()


def _when(at) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else "-"


def cmd_user(args) -> int:
    from central.services import users

    with _transaction(args) as db:
        if args.action == "create":
            sites = args.site or ([] if args.all_sites else [_config(args).site])
            user, password = users.create_user(db, args.name, args.role, actor="cli", sites=sites,
                                               all_sites=args.all_sites)
            print(f"user {user.username} ({user.role}) one-time password: {password} "
                  "(to be changed at the first login)")
        elif args.action == "sites":
            user = users.set_user_sites(db, args.name, args.site or [], all_sites=args.all_sites, actor="cli")
            print(f"user {user.username} works for: {', '.join(users.user_site_ids(db, user))}")
        elif args.action == "list":
            print(f"{'user':<24} {'role':<11} {'state':<9} {'last login':<17} sessions")
            for user in users.list_users(db):
                state = "active" if user.active else "inactive"
                print(f"{user.username:<24} {user.role:<11} {state:<9} {_when(user.last_login_at):<17} "
                      f"{users.live_sessions(db, user.id)}")
        elif args.action == "deactivate":
            user = users.deactivate_user(db, args.name, actor="cli")
            print(f"user {user.username} deactivated; their sessions have ended")
        elif args.action == "reactivate":
            user = users.reactivate_user(db, args.name, actor="cli")
            print(f"user {user.username} may log in again")
        elif args.action == "password":
            user = users.get_user(db, args.name)
            password = users.set_password(db, user, actor="cli")
            print(f"user {user.username} one-time password: {password} "
                  "(their sessions have ended; to be changed at the next login)")
    return 0


def cmd_token(args) -> int:
    from central.services import users

    with _transaction(args) as db:
        if args.action == "create":
            token, plaintext = users.create_token(db, args.name, args.role, actor="cli",
                                                  customer_id=getattr(args, "customer", None),
                                                  site_id=getattr(args, "site", None))
            print(f"token {token.name} ({token.role}): {plaintext}")
        elif args.action == "list":
            print(f"{'id':>5} {'name':<24} {'role':<11} {'created':<17} {'last used':<17} state")
            for token in users.list_tokens(db):
                state = f"revoked {_when(token.revoked_at)}" if token.revoked_at else "active"
                print(f"{token.id:>5} {token.name:<24} {token.role:<11} {_when(token.created_at):<17} "
                      f"{_when(token.last_used_at):<17} {state}")
        elif args.action == "revoke":
            revoked = users.revoke_tokens(db, args.name, actor="cli")
            print(f"revoked {len(revoked)} token{'s' if len(revoked) != 1 else ''} named {args.name}")
    return 0


def cmd_site(args) -> int:
    from central.services.gates import ensure_site, ensure_zone

    with _transaction(args) as db:
        ensure_site(db, args.site, name=args.name or args.site, timezone=args.timezone)
        for spec in args.zone or []:
            number, _, capacity = spec.partition(":")
            ensure_zone(db, args.site, int(number), capacity=int(capacity) if capacity else None)
    print(f"site {args.site} ready")
    return 0


def gate_toml(config: CentralConfig, site: str, gate: str, username: str, password: str,
              broker: str | None = None, controller: str = "") -> str:
    """The starting configuration of a provisioned gate (`gate_agent.config`); the technician fills in
    which device sits on which port (see config/gate.example.toml)."""
    host, port = config.mqtt.host, config.mqtt.port
    if broker:
        host, _, port_text = broker.rpartition(":")
        port = int(port_text)
    tls = f'tls_ca = "{config.mqtt.tls_ca}"\n' if config.mqtt.tls_ca else ""
    return (
        f"# Gate {gate} of site {site}: provisioned by park-central. Keep this file private (0640 root:gate-agent).\n"
        f"[gate]\nid = \"{gate}\"\nsite = \"{site}\"\n\n"
        f"[broker]\nhost = \"{host}\"\nport = {port}\n"
        f"username = \"{username}\"\npassword = \"{password}\"\n{tls}\n"
        f"[store]\npath = \"/var/lib/scenic-gates/gate.db\"\n\n"
        "# Which device is on which port (see config/gate.example.toml for every option). The turnstile's\n"
        f"# controller profile is \"{controller}\", set at the central (its hardware.controller_profile);\n"
        "# a `profile = ...` line here would override it.\n"
        "# [devices.turnstile]\n# serial = \"/dev/ttyUSB0\"     # or tcp = \"192.168.1.50:502\"\n"
        "# [devices.qr]\n# port = \"/dev/ttyACM0\"\n"
        "# [devices.idcard]\n# port = \"/dev/ttyUSB1\"\n"
        "# [devices.rfid]\n# pcsc_reader = \"ACS ACR122U\"\n"
        "[devices.display]\nkind = \"console\"\n"
    )


def cmd_provision_gate(args) -> int:
    from central.services.gates import ensure_site, register_gate

    config = _config(args)
    known = config.gates.known_profiles
    if args.controller not in known:
        print(f"unknown controller profile {args.controller!r}; known: {', '.join(known)} "
              "(a site's own models: [gates] controller_profiles)", file=sys.stderr)
        return 2
    ctx = _context(config, suffix="cli")
    try:
        with ctx.sessions.begin() as db:
            ensure_site(db, args.site)
            _gate, creds = register_gate(db, args.site, args.gate, args.zone, direction=args.direction,
                                         hardware={"controller_profile": args.controller}, actor="cli",
                                         profiles=known)
        ctx.publisher.flush()
        text = gate_toml(config, args.site, args.gate, creds.username, creds.password, args.broker,
                         controller=args.controller)
        if args.output:
            fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            print(f"wrote {args.output} (controller {args.controller}); run `park-central acl` to let the gate "
                  "onto the broker")
        else:
            print(text)
    finally:
        ctx.close()
    return 0


def cmd_acl(args) -> int:
    from central.services.mosquitto import write_mosquitto_files

    config = _config(args)
    ctx = _context(config, mqtt=False)
    try:
        with ctx.sessions() as db:
            count = write_mosquitto_files(db, config, Path(args.passwords), Path(args.acl), group=args.group)
        print(f"wrote {args.passwords} and {args.acl} for {count} gates and the central; "
              "reload Mosquitto (`systemctl reload mosquitto`: connected clients stay connected)")
    finally:
        ctx.close()
    return 0


def cmd_backup(args) -> int:
    from central.backup import backup

    config = _config(args)
    out = args.out or f"var/backups/central-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.dump"
    print(f"backup written to {backup(config.database_url, out)}")
    return 0


def cmd_restore(args) -> int:
    from central.backup import restore

    config = _config(args)
    restore(config.database_url, args.file)
    print(f"restored {args.file}; run `park-central db upgrade` if the backup predates this version")
    return 0


def cmd_restore_drill(args) -> int:
    from pathlib import Path

    from central.backup import BackupError
    from central.pitr import Archive, drill

    config = _config(args)
    archive = Archive(stanza=args.stanza, config=Path(args.pgbackrest_config), pg_bin=Path(args.pg_bin))
    try:
        result = drill(config.database_url, archive, Path(args.scratch), keep=args.keep)
    except BackupError as exc:
        print(f"restore drill failed: {exc}", file=sys.stderr)
        return 1
    print(f"restore point {result.restore_point}: latest backup and its WAL restored in {result.seconds} s")
    for table, (live, restored) in result.tables.items():
        print(f"{table:32} live={live:<12} restored={restored:<12} {'ok' if live == restored else 'MISMATCH'}")
    if not result.ok:
        print(f"restore drill FAILED: {len(result.mismatches)} tables differ", file=sys.stderr)
        return 1
    print(f"restore drill passed: {len(result.tables)} tables, every count equal")
    return 0


def cmd_bridge_config(args) -> int:
    from central.bus.bridge import bridge_config

    host, _, port = args.head_office.rpartition(":")
    replication = tuple(args.replication.split(":", 1)) if args.replication else None
    if replication is not None and len(replication) != 2:
        raise ConfigError("--replication is SERVER:HEAD_OFFICE, the two servers' replication names")
    print(bridge_config(args.site, host, int(port), username=args.username, password=args.password,
                        cafile=args.cafile, manage_from_head_office=args.managed_from_head_office,
                        replication=replication), end="")
    return 0


def _replication_config(args) -> CentralConfig:
    config = _config(args)
    if not config.replication.enabled:
        raise ConfigError(f"{config.source}: [replication] server is not set: this central replicates with nobody")
    return config


def cmd_replicate(args) -> int:
    """The replicator (central.bus.replicator); sets up the capture first (idempotent)."""
    from central.bus.replicator import Replicator
    from central.services import replication

    config = _replication_config(args)
    ctx = _context(config, mqtt=False)
    with ctx.engine.begin() as conn:
        replication.setup(conn, config.replication.number)
    replicator = Replicator(config, ctx.sessions).start()
    log.info("replicator %s running with %s", config.replication.server, ", ".join(replicator.peers))
    host.ready(f"replicator {config.replication.server}")
    host.watchdog(lambda: replicator.alive)
    try:
        _wait_for_signal()
    finally:
        replicator.stop()
        ctx.close()
    return 0


def _bridge_credentials(ctx, config: CentralConfig, server: str | None) -> str:
    """At the head office: a new password for a park server's bridge user (printed once, stored hashed)."""
    import secrets

    from central.models import ReplicationPeer
    from central.services.mosquitto import mosquitto_hash
    from protocol import topics

    r = config.replication
    if r.head_office:
        raise ConfigError("replication credentials are made at the head office, for its park servers")
    if server not in r.peers():
        raise ConfigError(f"{server!r} is not one of replication.parks: {', '.join(r.peers())}")
    password = secrets.token_urlsafe(24)
    with ctx.sessions.begin() as session:
        row = session.get(ReplicationPeer, server) or ReplicationPeer(peer=server, acked_seq=0)
        row.mqtt_password_hash = mosquitto_hash(password)
        session.add(row)
    return (f"bridge user {topics.replication_user(server)} password {password} (shown once)\n"
            f"at the park: park-central bridge-config SITE {config.mqtt.host}:{config.mqtt.port} "
            f"--replication {server}:{r.server} --username {topics.replication_user(server)} --password ...\n"
            "here: park-central acl ... and reload Mosquitto")


def cmd_replication(args) -> int:
    from sqlalchemy import func, select

    from central.models import ReplicationApplied, ReplicationChange, ReplicationParked, ReplicationPeer
    from central.services import replication

    config = _replication_config(args)
    ctx = _context(config, mqtt=False)
    try:
        if args.action == "setup":
            with ctx.engine.begin() as conn:
                starts = replication.setup(conn, config.replication.number)
            print(f"capture on {len(replication.TABLES)} tables; ids = {config.replication.number} modulo "
                  f"{replication.STRIDE} (next ticket id {starts.get('tickets')})")
        elif args.action == "credentials":
            print(_bridge_credentials(ctx, config, args.server))
        elif args.action == "seed":
            with ctx.sessions.begin() as session:
                queued = replication.seed(session, args.site or None)
            print(f"{queued} rows queued for the other servers")
        else:
            with ctx.sessions.begin() as session:
                waiting = session.scalar(select(func.count()).select_from(ReplicationChange)) or 0
                print(f"{config.replication.server}: {waiting} changes kept until every peer confirms them")
                acked = dict(session.execute(select(ReplicationPeer.peer, ReplicationPeer.acked_at)).all())
                applied = {r.origin: r for r in session.scalars(select(ReplicationApplied))}
                for peer in config.replication.peers():
                    got = applied.get(peer)
                    print(f"  {peer}: confirmed ours at {acked.get(peer) or 'never'}; "
                          f"theirs applied up to {got.seq if got else 0} at {got.applied_at if got else 'never'}")
                parked = session.scalar(select(func.count()).select_from(ReplicationParked)) or 0
                print(f"  {parked} changes parked (would not apply; see repl_parked)")
    finally:
        ctx.close()
    return 0


# --- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from central.models import ROLES
    from protocol.controllers import DEFAULT_PROFILE, SHIPPED_PROFILES

    parser = argparse.ArgumentParser(prog="park-central", description="The scenic-area gate central.")
    parser.add_argument("--config", help="the central's TOML file (default: $PARK_CENTRAL_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db", help="database migrations")
    p.add_argument("action", choices=["upgrade", "current"])
    p.set_defaults(func=cmd_db)
    p = sub.add_parser("init-config", help="write a production central.toml with fresh secrets")
    p.add_argument("--out", required=True, help="e.g. /etc/park-central/central.toml (refused if it exists)")
    p.add_argument("--database", default="postgresql+psycopg://park-central@/park",
                   help="the database URL (default: PostgreSQL database park over the local socket)")
    p.add_argument("--site", default="park1", help="the default site of CLI commands and the API")
    p.add_argument("--state-dir", default="/var/lib/park-central", help="where the signing key lives")
    p.add_argument("--mqtt-host", default="127.0.0.1", help="the broker the central connects to")
    p.add_argument("--mqtt-port", type=int, default=1883, help="its port (the loopback listener of park.conf)")
    p.add_argument("--web-host", default="127.0.0.1", help="where the web UI and API listen (behind a proxy)")
    p.add_argument("--web-port", type=int, default=8080, help="their port")
    p.add_argument("--group", help="the file's group (the service's, e.g. park-central)")
    p.set_defaults(func=cmd_init_config)
    sub.add_parser("serve", help="the web UI and API").set_defaults(func=cmd_serve)
    p = sub.add_parser("ingest", help="an ingest worker")
    p.add_argument("--worker-id", default="1", help="stable per worker: it names the persistent MQTT session")
    p.add_argument("--no-claims", action="store_true", help="leave claims to `park-central claims`")
    p.set_defaults(func=cmd_ingest)
    p = sub.add_parser("claims", help="a claim server alone (site policy claim=central)")
    p.add_argument("--worker-id", default="1", help="stable per claim server: it names its MQTT session")
    p.set_defaults(func=cmd_claims)
    sub.add_parser("scheduler", help="the scheduled jobs").set_defaults(func=cmd_scheduler)
    p = sub.add_parser("run", help="web + ingest + scheduler in one process")
    p.add_argument("--worker-id", default="1", help="the ingest worker's id (its persistent MQTT session)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("keys", help="the ticket signing key")
    p.add_argument("action", choices=["generate", "show"])
    p.set_defaults(func=cmd_keys)
    p = sub.add_parser("user", help="staff users")
    p.set_defaults(func=cmd_user)
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("create", help="a new user; prints a generated password once")
    q.add_argument("name")
    q.add_argument("--role", required=True, choices=ROLES)
    site_help = "a park the user works for, repeatable (default: this central's [central] site)"
    q.add_argument("--site", action="append", help=site_help)
    q.add_argument("--all-sites", action="store_true", help="head office: every park, present and future")
    q = actions.add_parser("sites", help="set the parks a user works for (their next request sees only those)")
    q.add_argument("name")
    q.add_argument("--site", action="append", help="a park the user works for, repeatable")
    q.add_argument("--all-sites", action="store_true", help="head office: every park, present and future")
    actions.add_parser("list", help="every user, active or not, with their open sessions")
    for action, text in (("deactivate", "no more logins; their sessions end at once"),
                         ("reactivate", "let a deactivated user log in again"),
                         ("password", "a new generated password, printed once; their sessions end")):
        actions.add_parser(action, help=text).add_argument("name")
    p = sub.add_parser("token", help="machine tokens for the API")
    p.set_defaults(func=cmd_token)
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("create", help="a new token; printed once")
    q.add_argument("name")
    q.add_argument("--role", required=True, choices=ROLES)
    q.add_argument("--customer", type=int, help="a channel's token: what it orders is this customer's (its id)")
    q.add_argument("--site", help="the one park the token acts for (default: the customer's with --customer, "
                   "else every park)")
    actions.add_parser("list", help="every token with its state")
    actions.add_parser("revoke", help="revoke every active token of this name").add_argument("name")
    p = sub.add_parser("site", help="sites and zones")
    p.add_argument("action", choices=["create"])
    p.add_argument("site", help="the park's id (A-Z a-z 0-9 _ -: it is a topic level)")
    p.add_argument("--name", help="the park's name as people read it")
    p.add_argument("--timezone", default="Asia/Shanghai", help="the park's time zone (IANA name)")
    p.add_argument("--zone", action="append", help="NUMBER[:CAPACITY], repeatable")
    p.set_defaults(func=cmd_site)
    p = sub.add_parser("provision-gate", help="register a gate and print its starting TOML")
    p.add_argument("site", help="the park's id")
    p.add_argument("gate", help="the gate's id (A-Z a-z 0-9 _ -)")
    p.add_argument("--zone", type=int, required=True, help="the zone the gate serves (one the park has)")
    p.add_argument("--controller", default=DEFAULT_PROFILE, metavar="MODEL",
                   help=f"the turnstile controller profile (default {DEFAULT_PROFILE}; shipped: "
                        f"{', '.join(SHIPPED_PROFILES)})")
    p.add_argument("--direction", default="both", choices=["in", "out", "both"])
    p.add_argument("--output", "-o", help="write the TOML here (0600) instead of printing it")
    p.add_argument("--broker", help="HOST:PORT the gate connects to (default: the central's [mqtt] host and port)")
    p.set_defaults(func=cmd_provision_gate)
    p = sub.add_parser("acl", help="write Mosquitto password and ACL files (0640, the broker's group, atomically)")
    p.add_argument("--passwords", default="var/mosquitto/passwd", help="e.g. /etc/mosquitto/park.passwd")
    p.add_argument("--acl", default="var/mosquitto/acl", help="e.g. /etc/mosquitto/park.acl")
    p.add_argument("--group", help="the group Mosquitto reads the files as (default: the files' current group, "
                                   "else mosquitto where it exists)")
    p.set_defaults(func=cmd_acl)
    p = sub.add_parser("backup", help="back up the database (pg_dump, or SQLite's online backup)")
    p.add_argument("--out", help="the backup file (default var/backups/central-<time>.dump)")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("restore", help="replace the database's content with a backup (stop the services first)")
    p.add_argument("file", help="a file `park-central backup` wrote")
    p.set_defaults(func=cmd_restore)
    p = sub.add_parser("restore-drill", help="prove the pgBackRest backups restore: restore the latest one up to a "
                       "restore point made now into a scratch cluster and compare every table's count")
    p.add_argument("--stanza", default="park", help="the pgBackRest stanza of the central's cluster (default park)")
    p.add_argument("--pgbackrest-config", default="/etc/pgbackrest/pgbackrest.conf",
                   help="pgBackRest's configuration file (default /etc/pgbackrest/pgbackrest.conf)")
    p.add_argument("--scratch", default="/var/lib/postgresql/restore-drill",
                   help="an empty folder to restore into (needs the database's size free; removed afterwards)")
    p.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin",
                   help="the PostgreSQL server programs of the backed-up major version")
    p.add_argument("--keep", action="store_true", help="keep the restored copy in --scratch (to look into it)")
    p.set_defaults(func=cmd_restore_drill)
    p = sub.add_parser("bridge-config", help="print the Mosquitto bridge block for an on-site server")
    p.add_argument("site", help="the park's id")
    p.add_argument("head_office", help="HOST:PORT of head office's broker")
    p.add_argument("--username", help="the park's user at head office's broker")
    p.add_argument("--password", help="its password")
    p.add_argument("--cafile", help="the CA that signed head office's broker certificate (TLS)")
    p.add_argument("--managed-from-head-office", action="store_true",
                   help="also bridge config, commands and deltas in (no central at the park)")
    p.add_argument("--replication", metavar="SERVER:HEAD_OFFICE",
                   help="also carry the replication of this park server with the head office's server")
    p.set_defaults(func=cmd_bridge_config)
    sub.add_parser("replicate", help="send and apply changes with the other servers ([replication])").set_defaults(
        func=cmd_replicate)
    p = sub.add_parser("replication", help="set up, seed or look at the replication")
    p.add_argument("action", choices=["setup", "seed", "status", "credentials"])
    p.add_argument("server", nargs="?", help="credentials: the park server whose bridge gets a new password")
    p.add_argument("--site", action="append", help="seed: only this park's rows (repeatable; default: all)")
    p.set_defaults(func=cmd_replication)
    return parser


SERVICES = ("serve", "ingest", "claims", "scheduler", "run", "replicate")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for noisy in ("apscheduler", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command in SERVICES:  # not the one-shot commands: they count nothing
            from central import metrics

            config = _config(args)
            metrics.prepare(config.metrics.multiprocess_dir or None)  # before this process counts anything
            if config.logging.json:  # the services' logs as JSON lines ([logging] json)
                from protocol.logs import use_json_logs

                use_json_logs(site=config.site, service=f"park-central {args.command}")
        return args.func(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from central.services import ServiceError

        if isinstance(exc, ServiceError):
            print(f"{exc.code}: {exc.text}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
