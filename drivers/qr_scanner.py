"""QR code scanner on a serial line (virtual COM port): one code per line, ended by CR or CRLF.

`QrScanner.read_code(timeout)` returns the next clean code or None. Garbage (control bytes,
overlong lines, half lines) is dropped. When the port disappears (USB unplugged) the scanner
reports it once through `on_status` (a `DeviceDisconnected`; `None` when it is back), keeps
`connected` false, and reopens by itself when the port comes back; `read_code` never raises for it.
"""

from __future__ import annotations

from drivers.errors import DriverError
from drivers.serial_link import LineReader, SerialLink, StatusCallback


class QrScanner:
    """A serial QR scanner."""

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        max_len: int = 2048,
        *,
        on_status: StatusCallback | None = None,
        reopen_interval_s: float = 0.2,
    ) -> None:
        self.port = port
        self.link = SerialLink(port, baudrate, on_status=on_status, reopen_interval_s=reopen_interval_s)
        self._lines = LineReader(self.link, max_len=max_len)

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def last_error(self) -> DriverError | None:
        return self.link.last_error

    @property
    def dropped(self) -> int:
        """How many lines were dropped as garbage so far."""
        return self._lines.dropped

    def open(self) -> bool:
        return self.link.open()

    def read_code(self, timeout: float | None) -> str | None:
        """The next scanned code (framing stripped), or None after `timeout` seconds."""
        return self._lines.read_line(timeout)

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> QrScanner:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["QrScanner"]
