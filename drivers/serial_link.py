"""The thin port handling every serial driver shares: open, read with a timeout, reopen after unplug.

A `SerialLink` never spins on a missing port: it retries opening at most every
`reopen_interval_s`, reports the loss once (`on_status(DeviceDisconnected)`) and the return once
(`on_status(None)`), and keeps `connected` / `last_error` for callers that prefer to look.
"""

from __future__ import annotations

import logging
import termios
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Self

from drivers.errors import DeviceDisconnected, DriverError

if TYPE_CHECKING:
    import serial  # annotations only; the methods import it when they run

log = logging.getLogger(__name__)

StatusCallback = Callable[[DriverError | None], None]


class SerialLink:
    """One serial port that may come and go."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        *,
        on_status: StatusCallback | None = None,
        reopen_interval_s: float = 0.2,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.on_status = on_status
        self.reopen_interval_s = reopen_interval_s
        self.connected = False
        self.last_error: DriverError | None = None
        self._ser: serial.Serial | None = None
        self._next_try = 0.0
        self._reported_down = False
        self._lock = threading.RLock()

    def _report(self, err: DriverError | None) -> None:
        if self.on_status is None:
            return
        try:
            self.on_status(err)
        except Exception:  # a faulty callback must not break the reader
            log.exception("%s: status callback failed", self.port)

    def _mark_down(self, why: str) -> DeviceDisconnected:
        err = DeviceDisconnected(self.port, why)
        self.close()
        self.last_error = err
        self._next_try = time.monotonic() + self.reopen_interval_s
        if not self._reported_down:
            self._reported_down = True
            log.warning("%s", err)
            self._report(err)
        return err

    def open(self) -> bool:
        """Open the port if it is closed and a retry is due; True when open."""
        import serial

        with self._lock:
            if self._ser is not None:
                return True
            if time.monotonic() < self._next_try:
                return False
            try:
                self._ser = serial.Serial(self.port, self.baudrate, timeout=0, exclusive=True)
            except (serial.SerialException, OSError, ValueError) as exc:
                self._mark_down(f"cannot open: {exc}")
                return False
            self.connected = True
            self.last_error = None
            if self._reported_down:
                self._reported_down = False
                log.info("%s: port is back", self.port)
                self._report(None)
            return True

    def wait_open(self, deadline: float) -> bool:
        """Try to (re)open until `deadline` (monotonic); False if the port stayed away."""
        while not self.open():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # A device node appearing gives no event we can wait on portably: poll, gently.
            time.sleep(min(self.reopen_interval_s, remaining))
        return True

    def read(self, timeout: float) -> bytes:
        """What arrived within `timeout` (b"" if nothing); DeviceDisconnected if the port failed."""
        import serial

        with self._lock:
            ser = self._ser
            if ser is None:
                raise self.last_error or DeviceDisconnected(self.port, "port not open")
            try:
                ser.timeout = max(0.0, timeout)
                data = ser.read(1)
                if data:
                    waiting = ser.in_waiting
                    if waiting:
                        data += ser.read(waiting)
                return data
            except (serial.SerialException, OSError, TypeError, ValueError, termios.error) as exc:
                raise self._mark_down(f"read failed: {exc}") from exc

    def read_exactly(self, n: int, deadline: float) -> bytes:
        """Read until `n` bytes or `deadline`; returns what came (maybe fewer)."""
        import serial

        with self._lock:
            ser = self._ser
            if ser is None:
                raise self.last_error or DeviceDisconnected(self.port, "port not open")
            buf = bytearray()
            try:
                while len(buf) < n:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    ser.timeout = remaining
                    buf += ser.read(n - len(buf))
            except (serial.SerialException, OSError, TypeError, ValueError, termios.error) as exc:
                raise self._mark_down(f"read failed: {exc}") from exc
            return bytes(buf)

    def write(self, data: bytes) -> None:
        import serial

        with self._lock:
            ser = self._ser
            if ser is None:
                raise self.last_error or DeviceDisconnected(self.port, "port not open")
            try:
                ser.write(data)
                ser.flush()
            # pyserial's flush calls termios.tcdrain unwrapped: a port that vanished (a USB adapter
            # pulled) fails there with termios.error, which is no OSError.
            except (serial.SerialException, OSError, TypeError, ValueError, termios.error) as exc:
                raise self._mark_down(f"write failed: {exc}") from exc

    def discard_input(self) -> None:
        with self._lock:
            if self._ser is not None:
                try:
                    self._ser.reset_input_buffer()
                except Exception as exc:
                    self._mark_down(f"flush failed: {exc}")

    def close(self) -> None:
        with self._lock:
            ser, self._ser = self._ser, None
            self.connected = False
            if ser is not None:
                try:
                    ser.close()
                except Exception:  # closing a dead port must not fail the caller
                    log.debug("%s: error on close", self.port, exc_info=True)


class LineReader:
    """Lines ended by CR, LF or CRLF from a serial link, with the garbage dropped.

    Dropped: lines with control bytes or invalid UTF-8 (line noise, a scanner in the wrong mode),
    lines longer than `max_len`, empty lines, and a partial line left when the port went away or
    when the next bytes come after more than `stale_after_s` of silence (a half line).
    """

    def __init__(self, link: SerialLink, *, max_len: int = 2048, stale_after_s: float = 0.5) -> None:
        self.link = link
        self.max_len = max_len
        self.stale_after_s = stale_after_s
        self.dropped = 0  # count of dropped lines, for diagnostics
        self._buf = bytearray()
        self._overlong = False
        self._last_byte = 0.0
        self._lines: list[bytes] = []

    def _feed(self, data: bytes) -> None:
        now = time.monotonic()
        if self._buf and now - self._last_byte > self.stale_after_s:
            self._drop("half line")
        self._last_byte = now
        for b in data:
            if b in (0x0D, 0x0A):
                if self._overlong:
                    self._overlong = False
                elif self._buf:
                    self._lines.append(bytes(self._buf))
                self._buf.clear()
            elif not self._overlong:
                self._buf.append(b)
                if len(self._buf) > self.max_len:
                    self._drop(f"line longer than {self.max_len} bytes")
                    self._overlong = True

    def _drop(self, why: str) -> None:
        """Drop the partial line being assembled."""
        self._count(why)
        self._buf.clear()

    def _count(self, why: str) -> None:
        self.dropped += 1
        log.info("%s: dropped %s", self.link.port, why)  # never the content: it may be a ticket code

    def _clean(self, raw: bytes) -> str | None:
        # A complete line is refused here; the partial line after it in `_buf` is the next code's start
        # and must stay (clearing it turned "junk\r\nCO" + "DE\r\n" into the code "DE").
        if any(b < 0x20 or b == 0x7F for b in raw):
            self._count("line with control bytes")
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._count("line that is not UTF-8")
            return None
        return text

    def read_line(self, timeout: float | None) -> str | None:
        """The next clean line, or None when `timeout` passes (also while the port is away)."""
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while True:
            while self._lines:
                text = self._clean(self._lines.pop(0))
                if text is not None:
                    return text
            if not self.link.wait_open(deadline):
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                data = self.link.read(remaining)
            except DeviceDisconnected:
                if self._buf:
                    self._drop("half line cut by a disconnect")
                self._overlong = False
                continue
            if data:
                self._feed(data)


class OnSerialLink:
    """A device on one `SerialLink` (`self.link`): open, close, connected and the context manager, once."""

    link: SerialLink

    @property
    def connected(self) -> bool:
        return self.link.connected

    def open(self) -> bool:
        return self.link.open()

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
