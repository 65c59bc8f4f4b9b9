"""The demo's command-line options (`park-demo ...`), validated once into `DemoOptions`."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

# Simulated minutes per real second: "normal" shows a 10-hour day in about 10 minutes.
SPEEDS = {"slow": 0.25, "normal": 1.0, "fast": 4.0, "high": 15.0}


@dataclass(frozen=True)
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    gates: int = 6
    parks: int = 1  # >1: a head office's central over that many parks, each with its own gates and visitors
    visitors: int = 2000
    speed: float = SPEEDS["normal"]
    duration: float | None = None
    mqtt: tuple[str, int] | None = None  # an external broker (Mosquitto) instead of the embedded one
    db: str | None = None  # an external database (PostgreSQL) instead of the SQLite file
    workdir: Path = Path("var/demo")
    verbose: bool = False


def _speed(text: str) -> float:
    if text in SPEEDS:
        return SPEEDS[text]
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--speed is a number or one of {', '.join(SPEEDS)}") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError("--speed must be above 0 and at most 600 simulated minutes a second")
    return value


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--mqtt wants HOST:PORT, got {text!r}")
    return host, int(port)


def _count(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}-{high}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `park-demo`."""
    parser.add_argument("--host", default="127.0.0.1", help="where the dashboard listens (default 127.0.0.1)")
    parser.add_argument("--port", type=_count(1, 65535), default=8000, help="the dashboard's port (default 8000)")
    parser.add_argument("--gates", type=_count(2, 24), default=6,
                        help="simulated gates, an entry and an exit per zone in turn (default 6)")
    parser.add_argument("--parks", type=_count(1, 3), default=1,
                        help="parks in the central, each with --gates gates and --visitors visitors: the head "
                             "office's view of several parks (default 1)")
    parser.add_argument("--visitors", type=_count(50, 100_000), default=2000,
                        help="visitors of the simulated day; tickets and bookings are seeded for them (default 2000)")
    presets = ", ".join(f"{k}={v:g}" for k, v in SPEEDS.items())
    parser.add_argument("--speed", type=_speed, default=SPEEDS["normal"],
                        help=f"simulated minutes per real second, or {presets} (default normal)")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--mqtt", type=_host_port, default=None, metavar="HOST:PORT",
                        help="use this MQTT 5 broker (e.g. Mosquitto) instead of the embedded amqtt")
    parser.add_argument("--db", default=None, metavar="URL",
                        help="use this empty database (postgresql+psycopg://...) instead of a fresh SQLite file")
    parser.add_argument("--workdir", type=Path, default=Path("var/demo"),
                        help="the demo's files, wiped at every start (default var/demo)")


def from_args(args: argparse.Namespace) -> DemoOptions:
    return DemoOptions(host=args.host, port=args.port, gates=args.gates, parks=args.parks, visitors=args.visitors,
                       speed=args.speed,
                       duration=args.duration, mqtt=args.mqtt, db=args.db, workdir=args.workdir,
                       verbose=bool(getattr(args, "verbose", False)))
