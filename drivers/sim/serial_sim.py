"""Pseudo-terminals standing in for serial cables, and the simplest serial device simulators.

`PtyPair` is one cable: the simulator holds the master end, the driver opens `device_path`, a
symlink to the pty's slave that stays the same across `unplug()` / `replug()` (like a udev
by-id link). Unplugging closes the pty, so a driver reading it sees the port fail exactly as
when a USB adapter is pulled.

`PtyLink` joins two `PtyPair`s back to back (a null modem), for a simulator that must open a
port by path itself (pymodbus' serial server); the relay can corrupt bytes in flight.
"""

from __future__ import annotations

import contextlib
import os
import select
import tempfile
import threading
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Self


class PtyPair:
    """One simulated serial cable: `write()`/`read()` on the device side, `device_path` for the driver."""

    def __init__(self, device_path: str | os.PathLike[str] | None = None) -> None:
        self._tmpdir: str | None = None
        if device_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="simtty-")
            device_path = Path(self._tmpdir) / "ttySIM0"
        self.device_path = str(device_path)
        self._master: int | None = None
        self._slave: int | None = None
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self.plug()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    @property
    def master_fd(self) -> int | None:
        return self._master

    def plug(self) -> None:
        """Create the pty and point `device_path` at it."""
        with self._lock:
            if self._master is not None:
                return
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no line editing: a serial line passes bytes as they are
            tmp = f"{self.device_path}.{os.getpid()}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(os.ttyname(slave), tmp)
            os.replace(tmp, self.device_path)
            # Holding the slave open keeps the master readable when the driver closes its end.
            self._master, self._slave = master, slave

    replug = plug

    def unplug(self) -> None:
        """Remove the device: the link vanishes and an open driver sees its port fail."""
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.device_path)
            for fd in (self._master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = None
        os.write(self._wake_w, b"x")

    def write(self, data: bytes) -> None:
        """Send bytes to the driver (silently dropped while unplugged, as on a pulled cable)."""
        with self._lock:
            fd = self._master
            if fd is None:
                return
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]

    def read(self, timeout: float | None = None) -> bytes:
        """Bytes the driver sent, or b"" on timeout, unplug or `wake()`."""
        fd = self._master
        if fd is None:
            return b""
        try:
            ready, _, _ = select.select([fd, self._wake_r], [], [], timeout)
        except (OSError, ValueError):
            return b""
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 64)
            return b""
        if fd in ready:
            try:
                return os.read(fd, 4096)
            except OSError:
                return b""
        return b""

    def wake(self) -> None:
        """Make a blocked `read()` return now."""
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        self.unplug()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._tmpdir:
            with contextlib.suppress(OSError):
                os.rmdir(self._tmpdir)


class PtyLink:
    """Two ptys back to back: `device_path` for the simulator to open, `driver_path` for the driver.

    `corrupt` (a function bytes -> bytes) is applied to the next chunk going device -> driver,
    once; use it to inject a CRC error on the wire.
    """

    def __init__(self) -> None:
        self.device_side = PtyPair()
        self.driver_side = PtyPair()
        self.device_path = self.device_side.device_path
        self.driver_path = self.driver_side.device_path
        self.corrupt_next: Callable[[bytes], bytes] | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._relay, name="pty-link", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        a, b = self.device_side, self.driver_side
        wake = a._wake_r
        while not self._stop:
            fds = [fd for fd in (a.master_fd, b.master_fd) if fd is not None]
            try:
                ready, _, _ = select.select([*fds, wake], [], [], 1.0)
            except (OSError, ValueError):
                continue
            if wake in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake, 64)
            for fd in ready:
                if fd == wake:
                    continue
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if fd == a.master_fd:
                    hook, self.corrupt_next = self.corrupt_next, None
                    b.write(hook(data) if hook else data)
                else:
                    a.write(data)

    def close(self) -> None:
        self._stop = True
        self.device_side.wake()
        self._thread.join(2)
        self.device_side.close()
        self.driver_side.close()


class LineDeviceSim:
    """A serial device that only talks: it sends lines ended by CR or CRLF (scanners, UID readers)."""

    def __init__(self, *, terminator: bytes = b"\r\n", device_path: str | None = None) -> None:
        self.pty = PtyPair(device_path)
        self.terminator = terminator

    @property
    def device_path(self) -> str:
        return self.pty.device_path

    def send_raw(self, data: bytes) -> None:
        self.pty.write(data)

    def unplug(self) -> None:
        self.pty.unplug()

    def replug(self) -> None:
        self.pty.replug()

    def close(self) -> None:
        self.pty.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class QrScannerSim(LineDeviceSim):
    """A QR scanner in serial (virtual COM) mode: each scan is the code's text and a terminator."""

    def scan(self, code: str) -> None:
        self.pty.write(code.encode("utf-8") + self.terminator)


class SerialRfidReaderSim(LineDeviceSim):
    """A card reader that types the card UID as ASCII hex and a terminator."""

    def present(self, uid: bytes) -> None:
        self.pty.write(uid.hex().upper().encode("ascii") + self.terminator)


class RequestResponseSim:
    """Base for simulators that answer the host's frames: a thread reads the pty and calls `handle`.

    Subclasses implement `split(buf) -> (frame | None, consumed)` and `handle(frame) -> bytes`.
    While `silent`, requests are read and ignored (a module that hung).
    """

    name = "sim"

    def __init__(self, device_path: str | None = None) -> None:
        self.pty = PtyPair(device_path)
        self.silent = False
        self.requests = 0
        self._buf = bytearray()
        self._stop = False
        self._lock = threading.RLock()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    @property
    def device_path(self) -> str:
        return self.pty.device_path

    def split(self, buf: bytes) -> tuple[bytes | None, int]:
        raise NotImplementedError

    def handle(self, frame: bytes) -> bytes:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop:
            if not self.pty.plugged:
                self._buf.clear()
                self.pty.read(0.05)  # returns on wake; unplugged: nothing to read
                continue
            data = self.pty.read(None)
            if not data:
                continue
            self._buf += data
            while True:
                try:
                    frame, used = self.split(bytes(self._buf))
                except Exception:  # a bad length: drop a byte and resynchronise
                    frame, used = None, 1
                del self._buf[:used]
                if frame is None:
                    break
                self.requests += 1
                if self.silent:
                    continue
                with self._lock:
                    try:
                        answer = self.handle(frame)
                    except Exception:  # a simulator bug must show, not hang the test silently
                        import logging

                        logging.getLogger(__name__).exception("%s: handler failed", self.name)
                        answer = b""
                if answer:
                    self.pty.write(answer)

    def unplug(self) -> None:
        self.pty.unplug()

    def replug(self) -> None:
        self.pty.replug()
        self.pty.wake()

    def close(self) -> None:
        self._stop = True
        self.pty.wake()
        self._thread.join(2)
        self.pty.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
