"""RFID annual-pass readers: a contactless reader through PC/SC (pyscard), and a serial reader that
types the card UID as ASCII hex.

`PcscRfidReader.wait_card(timeout)` returns the UID of the card on the reader (uppercase hex, read
with the PC/SC "get data" APDU `FF CA 00 00 00`) or None; `wait_removal(timeout)` returns True once
the card is gone. pcscd going away, or the reader being unplugged, raises DeviceDisconnected; the
next call establishes a new PC/SC context, so the gate recovers when pcscd is back.
"""

from __future__ import annotations

import logging
import re
import threading
import time

from drivers.errors import DeviceDisconnected, DeviceFault, DeviceTimeout, DriverError
from drivers.serial_link import LineReader, SerialLink, StatusCallback

log = logging.getLogger(__name__)

GET_UID = [0xFF, 0xCA, 0x00, 0x00, 0x00]
UID_RE = re.compile(r"^(?:[0-9A-F]{2}){4,10}$")


class PcscRfidReader:
    """A contactless reader through pcscd."""

    def __init__(self, reader_name: str | None = None) -> None:
        self.reader_name = reader_name
        self.port = f"pcsc:{reader_name or 'first reader'}"
        self._context = None
        self._reader: str | None = None
        self._state = 0
        self._lock = threading.RLock()

    # -- PC/SC plumbing ------------------------------------------------------------------------

    def _fail(self, what: str, hresult: int) -> DriverError:
        from smartcard import scard

        text = scard.SCardGetErrorMessage(hresult)
        gone = {
            scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED, scard.SCARD_E_NO_READERS_AVAILABLE,
            scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE, scard.SCARD_E_INVALID_HANDLE,
        }
        if hresult in gone:
            self._release()
            return DeviceDisconnected(self.port, f"{what}: {text}")
        if hresult == scard.SCARD_E_TIMEOUT:
            return DeviceTimeout(self.port, f"{what}: {text}")
        return DeviceFault(self.port, f"{what}: {text}", hresult)

    def _release(self) -> None:
        from smartcard import scard

        if self._context is not None:
            try:
                scard.SCardReleaseContext(self._context)
            except Exception:  # the daemon may be gone already
                log.debug("release context", exc_info=True)
        self._context, self._reader, self._state = None, None, 0

    def _connect(self) -> None:
        try:
            from smartcard import scard
        except ImportError as exc:  # pragma: no cover - pyscard is a gate dependency
            raise DeviceDisconnected(self.port, "pyscard is not installed") from exc
        if self._context is None:
            hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if hresult != scard.SCARD_S_SUCCESS:
                raise self._fail("establish context", hresult)
            self._context = context
        if self._reader is None:
            hresult, readers = scard.SCardListReaders(self._context, [])
            if hresult != scard.SCARD_S_SUCCESS or not readers:
                raise self._fail("list readers", hresult if hresult else scard.SCARD_E_NO_READERS_AVAILABLE)
            wanted = [r for r in readers if self.reader_name is None or r.startswith(self.reader_name)]
            if not wanted:
                self._release()
                raise DeviceDisconnected(self.port, f"no reader named {self.reader_name!r} (have {readers})")
            self._reader = wanted[0]
            self.port = f"pcsc:{self._reader}"
            self._state = scard.SCARD_STATE_UNAWARE

    def _wait_state(self, present: bool, timeout: float | None) -> bool:
        """Block until the reader shows a card (present=True) or none; False at timeout."""
        from smartcard import scard

        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        self._connect()
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            hresult, states = scard.SCardGetStatusChange(
                self._context, int(remaining * 1000), [(self._reader, self._state)]
            )
            if hresult == scard.SCARD_E_TIMEOUT:
                return False
            if hresult != scard.SCARD_S_SUCCESS:
                raise self._fail("wait for card", hresult)
            _reader, event, _atr = states[0]
            self._state = event & ~scard.SCARD_STATE_CHANGED
            if bool(event & scard.SCARD_STATE_PRESENT) == present and not event & scard.SCARD_STATE_MUTE:
                return True
            if event & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                self._release()
                raise DeviceDisconnected(self.port, "reader unavailable")
            if remaining <= 0:
                return False

    def _read_uid(self) -> str | None:
        from smartcard import scard

        hresult, card, protocol = scard.SCardConnect(
            self._context, self._reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        if hresult in (scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_UNRESPONSIVE_CARD):
            return None  # lifted before we could read it
        if hresult != scard.SCARD_S_SUCCESS:
            raise self._fail("connect to card", hresult)
        try:
            hresult, response = scard.SCardTransmit(card, protocol, GET_UID)
            if hresult in (scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD):
                return None
            if hresult != scard.SCARD_S_SUCCESS:
                raise self._fail("get UID", hresult)
        finally:
            scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
        if len(response) < 2 or response[-2:] != [0x90, 0x00]:
            sw = bytes(response[-2:]).hex().upper()
            raise DeviceFault(self.port, f"get UID: card answered status {sw}")
        uid = bytes(response[:-2])
        if not 4 <= len(uid) <= 10:
            raise DeviceFault(self.port, f"get UID: {len(uid)}-byte UID is not a contactless UID")
        return uid.hex().upper()

    # -- public --------------------------------------------------------------------------------

    def wait_card(self, timeout: float | None) -> str | None:
        """The UID (uppercase hex) of the card on the reader, waiting up to `timeout`; None if none came."""
        with self._lock:
            deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
            while self._wait_state(True, max(0.0, deadline - time.monotonic())):
                uid = self._read_uid()
                if uid is not None:
                    return uid
                if time.monotonic() >= deadline:
                    break
            return None

    def wait_removal(self, timeout: float | None) -> bool:
        """True once no card is on the reader; False if one is still there after `timeout`."""
        with self._lock:
            return self._wait_state(False, timeout)

    def close(self) -> None:
        with self._lock:
            self._release()


class SerialRfidReader:
    """A reader that types the card UID as ASCII hex, one line per card (CR or CRLF)."""

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        *,
        on_status: StatusCallback | None = None,
        reopen_interval_s: float = 0.2,
    ) -> None:
        self.port = port
        self.link = SerialLink(port, baudrate, on_status=on_status, reopen_interval_s=reopen_interval_s)
        self._lines = LineReader(self.link, max_len=64)

    @property
    def connected(self) -> bool:
        return self.link.connected

    def open(self) -> bool:
        return self.link.open()

    def read_uid(self, timeout: float | None) -> str | None:
        """The next card's UID (uppercase hex), or None after `timeout`; lines that are not a UID are dropped."""
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while True:
            line = self._lines.read_line(max(0.0, deadline - time.monotonic()))
            if line is None:
                return None
            uid = line.strip().replace(" ", "").replace(":", "").upper()
            if UID_RE.match(uid):
                return uid
            self._lines._drop("line that is not a card UID")

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> SerialRfidReader:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["PcscRfidReader", "SerialRfidReader"]
