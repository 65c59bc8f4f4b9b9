"""The central's web app under waitress for the booking rush, in a process of its own.

    python -m tests.bench.booking_server CONFIG PORT THREADS POW_BITS

The real app (`central.cli.make_server`): the only changes are the limits a rush from one client address
would hit at once (the benchmark's 2,000 visitors all come from 127.0.0.1) and the proof of work's
difficulty (the server's cost to check one is a single hash whatever the difficulty; the visitors'
cost to solve it is theirs, spent before the rush). Prints {"ready": port} when it serves.
"""

from __future__ import annotations

import json
import os
import signal
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
    profile = os.environ.get("BENCH_PROFILE") == "1" and _sample(path)
    if os.environ.get("SWITCH"):
        sys.setswitchinterval(float(os.environ["SWITCH"]))
    print(json.dumps({"ready": port}), flush=True)

    def _stop(*_args) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if profile:
            profile()
        ctx.close()
    return 0


def _sample(config_path: str):
    """BENCH_PROFILE=1: every 5 ms, note where each busy thread is (our code's innermost frame, and the
    innermost frame of all); written to booking-profile.txt beside the config when the server stops."""
    import collections
    import threading
    import traceback
    from pathlib import Path

    ours: collections.Counter = collections.Counter()
    inner: collections.Counter = collections.Counter()
    me = threading.get_ident()
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.005):
            for ident, frame in sys._current_frames().items():
                if ident == me or ident == threading.get_ident():
                    continue
                stack = traceback.extract_stack(frame)
                if not any("/central/" in f.filename for f in stack):
                    continue  # idle waitress threads and the MQTT loop
                inner[f"{stack[-1].filename.split('site-packages/')[-1]}:{stack[-1].name}"] += 1
                own = [f for f in stack if "/central/" in f.filename]
                ours[f"{own[-1].filename.split('/central/')[-1]}:{own[-1].lineno} {own[-1].name}"] += 1

    threading.Thread(target=run, daemon=True).start()

    def write() -> None:
        stop.set()
        lines = ["# innermost frame"] + [f"{n:6d} {k}" for k, n in inner.most_common(25)]
        lines += ["", "# innermost frame of central's code"] + [f"{n:6d} {k}" for k, n in ours.most_common(40)]
        (Path(config_path).parent / "booking-profile.txt").write_text("\n".join(lines) + "\n")

    return write


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
