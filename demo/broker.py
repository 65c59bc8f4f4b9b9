"""The embedded MQTT broker of the demo: amqtt, in its own asyncio loop on a thread of this process.

amqtt speaks MQTT 3.1.1 only, so the demo's central and gates connect with `protocol = "3.1.1"`
(persistent sessions through clean_session=False, no shared subscriptions). It accepts anonymous
clients on 127.0.0.1: the demo's broker is not reachable from other machines. Production runs
Mosquitto with per-gate credentials and ACLs (`park-central acl`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amqtt.broker import Broker

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The embedded broker could not start (amqtt missing, or the port taken)."""


class EmbeddedBroker:
    """`start()` returns once the broker listens on host:port; `stop()` shuts it down and joins."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Broker | None = None
        self._thread: threading.Thread | None = None

    def _config(self) -> dict:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 0}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise BrokerError("amqtt is not installed (pip install '.[demo]'), or point the demo at a broker "
                              "with --mqtt HOST:PORT") from exc
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.set_exception_handler(_quiet_known_race)
            self._loop = loop
            try:
                broker = self._broker = Broker(self._config(), loop=loop)
                loop.run_until_complete(broker.start())
            except BaseException as exc:  # reported to start()
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        for name in ("amqtt", "transitions"):  # a connect/disconnect line per client is noise for the demo
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread = threading.Thread(target=run, name="mqtt-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise BrokerError(f"the embedded broker did not start within {timeout:.0f} s")
        if errors:
            raise BrokerError(f"the embedded broker did not start on {self.host}:{self.port}: {errors[0]}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop, broker = self._loop, self._broker
        if loop is None or broker is None or not loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
        try:
            future.result(timeout)
        except Exception:
            log.debug("broker shutdown", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)


def _quiet_known_race(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """amqtt 0.12 iterates its subscriptions while a second client connecting at the same moment
    changes them ("dictionary changed size during iteration"); that client's connection fails and the
    client reconnects by itself. Say so in one line instead of a traceback on the demo's console."""
    exc = context.get("exception")
    if isinstance(exc, RuntimeError) and "changed size during iteration" in str(exc):
        log.info("embedded broker: a connection failed in amqtt's known race; the client reconnects")
        return
    loop.default_exception_handler(context)
