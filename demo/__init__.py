"""The demo: `park-demo` (`make demo`) runs the whole system on one machine with simulated gates and
visitors. It is the one package that composes all the others: it starts the central (its web app,
ingest, scheduler), gate agents as processes and the drivers' simulators; nothing imports it.

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
    """`park-demo ...` (the parsed arguments of `demo.__main__`)."""
    from demo.options import from_args
    from demo.runner import run

    return run(from_args(args))


__all__ = ["run_demo"]
