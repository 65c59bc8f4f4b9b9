"""The local control socket the technician's CLI talks to: one JSON request per connection, one answer.

    {"cmd": "status"}                      -> the gate's status
    {"cmd": "resync"}                      -> asks the central for a snapshot
    {"cmd": "test-device", "name": "qr"}   -> [(device, ok, detail), ...] (the turnstile opens once)
    {"cmd": "set-mode", "mode": "free"}

The socket is a file only the agent's user may use (mode 0600): whoever can use it can open the gate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class ControlServer:
    def __init__(self, agent, path: Path) -> None:
        self.agent = agent
        self.path = Path(path)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if len(str(self.path)) > 100:
            log.warning("control socket path too long for AF_UNIX, local CLI commands disabled: %s", self.path)
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(4)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        if self._sock:
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                if self._sock is None:
                    return  # closed
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(5)
                try:
                    request = json.loads(_read_line(conn))
                    answer = self.handle(request)
                except Exception as exc:  # a bad request must never stop the gate
                    answer = {"ok": False, "error": str(exc)}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(answer, default=str).encode() + b"\n")

    def handle(self, request: dict) -> dict:
        cmd = request.get("cmd")
        agent = self.agent
        if cmd == "status":
            return {"ok": True, "status": agent.status_dict()}
        if cmd == "resync":
            return {"ok": agent.resync("local CLI")}
        if cmd == "test-device":
            results = agent.test_devices(request.get("name"))
            return {"ok": bool(results) and all(ok for _, ok, _ in results), "results": results}
        if cmd == "set-mode":
            if request.get("mode") not in ("normal", "free", "locked", "emergency"):
                return {"ok": False, "error": "mode must be normal, free, locked or emergency"}
            agent.set_mode(request["mode"])
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}


def _read_line(conn: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n") and len(buf) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def request(path: Path, payload: dict, timeout: float = 15.0) -> dict:
    """The CLI's side: send one request to a running agent."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(payload).encode() + b"\n")
        return json.loads(_read_line(sock))
