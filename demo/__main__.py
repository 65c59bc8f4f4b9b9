"""`park-demo` / `python -m demo`: the whole system on one machine (see `demo`)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from demo.options import add_arguments

    parser = argparse.ArgumentParser(
        prog="park-demo", description="The whole system on one machine: an MQTT broker, the central, simulated "
                                      "gates and visitors. Ctrl-C stops everything.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log everything (the gates' logs too)")
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    from demo import run_demo

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_demo(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
