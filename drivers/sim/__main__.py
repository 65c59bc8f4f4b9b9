"""Run the device simulators for a demo: `python -m drivers.sim [--turnstile MODEL] [--rtu] ...`.

Prints where each simulator is (TCP address or pty path) as one JSON line, then reads commands on
stdin, one per line:

    scan CODE            the QR scanner reads CODE
    card UID_HEX         the serial RFID reader types a UID
    walk_away | pass     what the next visitor at the turnstile does
    alarm NAME | clear   raise / clear a turnstile alarm
    silent on|off        the turnstile controller stops / resumes answering
    finger HEX | lift    lay a finger (its template) on the fingerprint sensor / lift it
    quit
"""

from __future__ import annotations

import argparse
import json
import sys

from drivers.sim.fingerprint_sim import FingerprintModuleSim
from drivers.sim.idcard_sim import IdCardReaderSim
from drivers.sim.serial_sim import QrScannerSim, SerialRfidReaderSim
from drivers.sim.turnstile_sim import TurnstileSimulator


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m drivers.sim", description=__doc__.splitlines()[0])
    ap.add_argument("--turnstile", default="tripod-coil", help="controller profile (config/controllers/)")
    ap.add_argument("--rtu", action="store_true", help="Modbus RTU on a pty instead of TCP")
    ap.add_argument("--port", type=int, default=5020, help="Modbus TCP port")
    ap.add_argument("--unit-id", type=int, default=1)
    args = ap.parse_args(argv)

    turnstile = TurnstileSimulator(args.turnstile, transport="rtu" if args.rtu else "tcp",
                                   unit_id=args.unit_id, port=args.port).start()
    qr, rfid, idcard, finger = QrScannerSim(), SerialRfidReaderSim(), IdCardReaderSim(), FingerprintModuleSim()
    tcp = turnstile.tcp_address  # set by start() for "tcp"
    where = {
        "turnstile": {"profile": args.turnstile, "unit_id": args.unit_id,
                      **({"serial": turnstile.serial_path} if args.rtu else {"tcp": list(tcp) if tcp else None})},
        "qr_scanner": qr.device_path,
        "rfid_serial": rfid.device_path,
        "idcard": idcard.device_path,
        "fingerprint": finger.device_path,
    }
    print(json.dumps(where), flush=True)
    try:
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "scan":
                qr.scan(arg)
            elif cmd == "card":
                rfid.present(bytes.fromhex(arg))
            elif cmd in ("walk_away", "pass"):
                turnstile.behaviour = "walk_away" if cmd == "walk_away" else "pass"
            elif cmd == "alarm":
                turnstile.raise_alarm(arg)
            elif cmd == "clear":
                turnstile.clear_alarms()
            elif cmd == "silent":
                turnstile.silent = arg == "on"
            elif cmd == "finger":
                finger.place_finger(bytes.fromhex(arg))
            elif cmd == "lift":
                finger.lift_finger()
            elif cmd == "quit":
                break
            elif cmd:
                print(f"unknown command {cmd!r}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        turnstile.stop()
        for sim in (qr, rfid, idcard, finger):
            sim.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
