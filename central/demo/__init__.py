"""The demo: `park-central demo` runs the whole system on one machine with simulated gates and visitors.

    broker.py    the embedded MQTT broker (amqtt, MQTT 3.1.1) in a thread of the demo process
    seed.py      the park, through the central's services: zones, gates, ticket types, tickets, bookings,
                 annual passes, the admin
    people.py    made-up names, ID numbers (valid check character), card UIDs, face templates
    gates.py     one gate: its device simulators here, its gate agent as a separate process
    visitors.py  the visitor simulator: a day's curve of arrivals, stays, exits, re-entries, refusals
    runner.py    starts it all, prints the URL, the login and a status line, stops it all cleanly
"""

from __future__ import annotations


def run_demo(args) -> int:
    """`park-central demo ...` (the parsed arguments of `central.cli`)."""
    from central.demo.options import from_args
    from central.demo.runner import run

    return run(from_args(args))


__all__ = ["run_demo"]
