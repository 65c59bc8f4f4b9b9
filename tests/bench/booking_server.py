"""The central's web app under waitress for the booking rush, in a process of its own.

    python -m tests.bench.booking_server CONFIG PORT THREADS POW_BITS

The real app (`central.cli.make_server`): the only changes are the limits a rush from one client address
would hit at once (the benchmark's 2,000 visitors all come from 127.0.0.1) and the proof of work's
difficulty (the server's cost to check one is a single hash whatever the difficulty; the visitors'
cost to solve it is theirs, spent before the rush). Prints {"ready": port} when it serves.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    from dataclasses import replace

    from central.cli import make_server
    from central.config import load_config
    from central.context import CentralContext

    path, port, threads, bits = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    config = load_config(path, env={})
    config = replace(config, web=replace(config.web, host="127.0.0.1", port=port, threads=threads,
                                         secret_key="bench-booking-secret"))
    ctx = CentralContext.create(config, mqtt=True, client_suffix="bench-web")
    server = make_server(config, ctx)
    app = server.flask_app
    app.config.update(BOOKING_ADDRESS_LIMIT="1000000/minute", BOOKING_FIND_LIMIT="1000000/minute",
                      BOOKING_POW_BITS=bits)
    print(json.dumps({"ready": port}), flush=True)
    try:
        server.run()
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
