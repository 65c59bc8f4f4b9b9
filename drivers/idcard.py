"""National ID card reader module on a serial line (GA 467 style frames; codec in `idcard_frames`).

`IdCardReader.read_card(timeout)` polls the module (find card, select, read text) until a card is
read or the timeout passes, and returns an `IdCard` (its repr masks the personal data) or None.
A frame with a bad checksum raises FrameError, an ID number that fails its check digit raises
FrameError, a module that stops answering raises DeviceTimeout, an error status raises DeviceFault;
an unplugged port is reported once through `on_status` and reopened by itself.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from drivers import idcard_frames as f
from drivers.errors import DeviceDisconnected, DeviceFault, DeviceTimeout, FrameError
from drivers.idcard_frames import IdCard, valid_id_number
from drivers.serial_link import OnSerialLink, SerialLink, StatusCallback

log = logging.getLogger(__name__)


class IdCardReader(OnSerialLink):
    """A GA 467 style ID card reader module."""

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        *,
        response_timeout: float = 0.5,
        poll_interval_s: float = 0.1,
        on_status: StatusCallback | None = None,
        photo_decoder: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.port = port
        # The chip's photo is WLT, which only the reader maker's licensed decoder turns into an image.
        self.photo_decoder = photo_decoder
        self.response_timeout = response_timeout
        self.poll_interval_s = poll_interval_s
        self.link = SerialLink(port, baudrate, on_status=on_status)
        self._buf = bytearray()

    def exchange(self, cmd: int, para: int, data: bytes = b"") -> f.Response:
        """Send one command and return the module's response frame."""
        if not self.link.open():
            raise self.link.last_error or DeviceDisconnected(self.port, "port not open")
        self._buf.clear()
        self.link.discard_input()  # a late answer to an earlier command must not pass for this one
        self.link.write(f.encode_command(cmd, para, data))
        deadline = time.monotonic() + self.response_timeout
        while True:
            try:
                frame, used = f.split_frame(bytes(self._buf), self.port)
            except FrameError:
                del self._buf[: len(f.PREAMBLE)]
                raise
            del self._buf[:used]
            if frame is not None:
                return f.decode_response(frame, self.port)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                what = "a partial frame" if self._buf else "nothing"
                raise DeviceTimeout(self.port, f"command {cmd:02X} {para:02X}: {what} within {self.response_timeout}s")
            self._buf += self.link.read(remaining)

    def _try_read(self) -> IdCard | None:
        found = self.exchange(*f.FIND_CARD)
        if found.sw3 == f.SW_NO_CARD:
            return None
        if found.sw3 != f.SW_FOUND:
            raise DeviceFault(self.port, f"find card: {found.message}", found.sw3)
        selected = self.exchange(*f.SELECT_CARD)
        if selected.sw3 == f.SW_SELECT_FAILED:
            return None  # the card was lifted between find and select
        if selected.sw3 != f.SW_OK:
            raise DeviceFault(self.port, f"select card: {selected.message}", selected.sw3)
        read = self.exchange(*f.READ_TEXT_PHOTO)
        if read.sw3 != f.SW_OK:
            raise DeviceFault(self.port, f"read card: {read.message}", read.sw3)
        text, wlt = f.split_text_photo(read.data, self.port)
        card = f.parse_text(text, self.port, verify=True)
        if self.photo_decoder is None or not wlt:
            return card
        try:
            photo = self.photo_decoder(wlt)
        except Exception as exc:  # the SDK's own failure: the card's text still stands, without a photo
            log.warning("%s: the card's photo could not be decoded (%s)", self.port, type(exc).__name__)
            return card
        return dataclasses.replace(card, photo=photo or None)

    def read_card(self, timeout: float | None) -> IdCard | None:
        """The next card laid on the reader, or None after `timeout` seconds without one."""
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while True:
            if not self.link.wait_open(deadline):
                return None
            try:
                card = self._try_read()
            except DeviceDisconnected:
                card = None
            if card is not None:
                return card
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(self.poll_interval_s, remaining))  # the module is polled: it has no "card" event


__all__ = ["IdCard", "IdCardReader", "valid_id_number"]
