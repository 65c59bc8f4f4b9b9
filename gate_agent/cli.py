"""`gate-agent`: run the gate, and the technician's local commands.

    gate-agent run --config gate.toml           the service (systemd runs this)
    gate-agent status --config gate.toml        the running agent's status (or the store's, if it is not running)
    gate-agent outbox --config gate.toml        events waiting to be sent
    gate-agent store-info --config gate.toml    what the local store holds
    gate-agent test-device NAME --config ...    turnstile (opens the arm once), qr, idcard, rfid, ...
    gate-agent resync --config gate.toml        ask the central for a full snapshot
    gate-agent set-mode MODE --config gate.toml normal, free, locked, emergency
    gate-agent backup FILE --config gate.toml   a consistent copy of the store, while the agent runs
    gate-agent restore FILE --config gate.toml  put a copy back (agent stopped); its outbox is sent on start
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from protocol import messages as m

from . import config as gate_config
from .control import request
from .store import Store


def _print(value) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _run(cfg: gate_config.GateFileConfig) -> int:
    from protocol.clock import ClockError, WallClock, park_clock

    from .agent import GateAgent

    try:
        clock = park_clock()
    except ClockError as exc:
        print(f"gate-agent: {exc}", file=sys.stderr)
        return 2
    if not isinstance(clock, WallClock):
        logging.getLogger("gate_agent").warning("the park's clock is simulated (PARK_CLOCK=%s): a demo, not a park",
                                                clock.spec())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    agent = GateAgent(cfg).start()
    try:
        stop.wait()
    finally:
        agent.stop()
    return 0


def _ask(cfg: gate_config.GateFileConfig, payload: dict) -> dict | None:
    try:
        return request(cfg.control_socket, payload)
    except (FileNotFoundError, ConnectionRefusedError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gate-agent", description="The gate agent at a turnstile.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log everything")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = "the gate's TOML file (e.g. /etc/scenic-gates/gate.toml)"
    for name, what in (("run", "run the agent: readers, decisions, the turnstile, the link (the service)"),
                       ("status", "the running agent's status as JSON (mode, config, outbox, devices)"),
                       ("outbox", "the passage events the central has not confirmed yet"),
                       ("store-info", "what the local store holds (tickets, passes, templates, usage)"),
                       ("resync", "ask the central for a full snapshot of the cache")):
        sub.add_parser(name, help=what, description=what).add_argument("--config", required=True, help=config_help)
    what = "test one device (or all): the turnstile opens once, readers report their health"
    test = sub.add_parser("test-device", help=what, description=what)
    test.add_argument("name", nargs="?", help="turnstile, qr, idcard, rfid, fingerprint, camera (default: all)")
    test.add_argument("--config", required=True, help=config_help)
    for name, what in (("backup", "write a consistent copy of the store (the agent may run)"),
                       ("restore", "replace the store with a backup (stop the agent first)")):
        cmd = sub.add_parser(name, help=what, description=what)
        cmd.add_argument("file", help="the backup file")
        cmd.add_argument("--config", required=True, help=config_help)
    what = "set the gate's mode here at the box (kept until the central's next config; shown at the central)"
    mode = sub.add_parser("set-mode", help=what, description=what)
    mode.add_argument("mode", choices=["normal", "free", "locked", "emergency"])
    mode.add_argument("--config", required=True, help=config_help)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = gate_config.load(args.config)
    except gate_config.ConfigError as exc:
        print(f"gate-agent: {exc}", file=sys.stderr)
        return 2
    if cfg.logging.json:  # JSON lines with the site and gate on each ([logging] json)
        from protocol.logs import use_json_logs

        use_json_logs(site=cfg.site, gate=cfg.gate_id, service="gate-agent")

    if args.command == "run":
        return _run(cfg)
    if args.command in ("backup", "restore"):
        from . import backup

        if args.command == "backup":
            print(f"store copied to {backup.backup(cfg.store_path, args.file)}")
        elif cfg.control_socket.exists() and _ask(cfg, {"cmd": "status"}) is not None:
            print("gate-agent: stop the agent before restoring its store", file=sys.stderr)
            return 1
        else:
            backup.restore(args.file, cfg.store_path)
            print(f"store restored from {args.file}; queued passages are sent when the agent starts")
        return 0
    if args.command in ("outbox", "store-info") or (args.command == "status" and not cfg.control_socket.exists()):
        store = Store(cfg.store_path, cipher=_existing_cipher(cfg))
        try:
            if args.command == "outbox":
                rows = store.outbox_after(0, 1000)
                _print({"depth": store.outbox_depth(), "events": [
                    {"seq": r.seq, "event_id": r.event_id, **_summary(r.payload)} for r in rows]})
            else:
                _print({"running": False, **store.info()} if args.command == "status" else store.info())
        finally:
            store.close()
        return 0
    payloads: dict[str, dict[str, object]] = {"status": {"cmd": "status"}, "resync": {"cmd": "resync"},
               "test-device": {"cmd": "test-device", "name": getattr(args, "name", None)},
               "set-mode": {"cmd": "set-mode", "mode": getattr(args, "mode", None)}}
    payload = payloads[args.command]
    answer = _ask(cfg, payload)
    if answer is None:
        print("gate-agent: the agent is not running (no control socket)", file=sys.stderr)
        return 1
    _print(answer)
    return 0 if answer.get("ok") else 1


def _existing_cipher(cfg):
    """The agent's template key if there is one: the CLI never makes a key (it may run as another user)."""
    from .template_key import key_file, load_template_cipher

    if not cfg.store.template_key and not key_file(cfg).exists():
        return None
    try:
        return load_template_cipher(cfg)
    except (gate_config.ConfigError, OSError):
        return None  # outbox rows carrying a binding then show as undecodable


def _summary(payload: bytes) -> dict:
    """An outbox row for a technician: no binding template, the rest as sent."""
    try:
        event = m.decode(m.PassageEvent, payload)
    except Exception:
        return {"undecodable": True}
    return {"at": event.at.isoformat(), "direction": event.direction, "kind": event.credential_kind,
            "ref": event.credential_ref, "decision": event.decision, "reason": event.reason, "passed": event.passed}


if __name__ == "__main__":
    sys.exit(main())
