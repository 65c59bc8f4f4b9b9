"""systemd integration for the central's long-running commands (Type=notify units in systemd/).

`ready()` tells systemd the service is up; `watchdog(healthy)` pings WATCHDOG=1 at half the unit's
WatchdogSec while `healthy()` holds, so a wedged ingest loop or web server is restarted. Outside
systemd (no NOTIFY_SOCKET) both do nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)
_notifier = None


def notify(state: str) -> None:
    global _notifier
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    if _notifier is None:
        import sdnotify

        _notifier = sdnotify.SystemdNotifier()
    _notifier.notify(state)


def ready(status: str = "") -> None:
    notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def watchdog(healthy: Callable[[], bool] = lambda: True) -> threading.Thread | None:
    usec = os.environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or not os.environ.get("NOTIFY_SOCKET"):
        return None
    interval = int(usec) / 2e6

    def ping() -> None:
        stop = threading.Event()
        while not stop.wait(interval):
            if healthy():
                notify("WATCHDOG=1")
            else:
                log.error("unhealthy: withholding the systemd watchdog ping")

    thread = threading.Thread(target=ping, name="watchdog", daemon=True)
    thread.start()
    return thread
