"""What both long-running programs need from the machine they run on, written once for both.

The gate agent and the central each run as systemd `Type=notify` services and each keep SQLite files
that must be copied while they are written; neither may import the other, so the two helpers live in
the one package both depend on. Standard library only (`sdnotify` is imported when systemd asks).

    notify(state)              sd_notify when run under systemd (NOTIFY_SOCKET), nothing otherwise
    ready(status)              READY=1, with a status line
    watchdog_interval()        half of the unit's WatchdogSec, or None outside a watchdog unit
    watchdog(healthy)          a thread pinging WATCHDOG=1 while `healthy()` holds
    sqlite_copy(src, dst)      a consistent copy of a live SQLite database (the online backup API)
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
_notifier = None
_notifier_lock = threading.Lock()


def notify(state: str) -> None:
    """systemd's sd_notify when run as a Type=notify service; nothing otherwise."""
    global _notifier
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    with _notifier_lock:
        if _notifier is None:
            import sdnotify

            _notifier = sdnotify.SystemdNotifier()
        _notifier.notify(state)


def ready(status: str = "") -> None:
    notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def watchdog_interval() -> float | None:
    """How often to ping: half the unit's WatchdogSec (WATCHDOG_USEC), None outside such a unit."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or not os.environ.get("NOTIFY_SOCKET"):
        return None
    return int(usec) / 2e6


def watchdog(healthy: Callable[[], bool] = lambda: True) -> threading.Thread | None:
    """Ping the watchdog from a thread of its own while `healthy()` holds, so a wedged loop is restarted."""
    interval = watchdog_interval()
    if interval is None:
        return None

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


def sqlite_copy(source: str | Path, target: str | Path) -> None:
    """A consistent copy of a live SQLite database: the online backup API, consistent under WAL while
    writers go on (a plain `cp` of a live WAL database is not)."""
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
    finally:
        dst.close()
        src.close()


__all__ = ["notify", "ready", "sqlite_copy", "watchdog", "watchdog_interval"]
