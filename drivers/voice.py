"""A SYN6288-family text-to-speech module on a serial line (codec in `drivers.voice_frames`).

`VoiceModule.say(text)` stops what the module is saying (the newest decision is the one to hear), sends
the text in as many frames as it needs and returns once the module has taken the first; a longer text's
next frame follows when the module reports idle. `status()` asks whether it is speaking.

Errors: no answer in time -> DeviceTimeout; 0x45 (frame refused) -> DeviceFault; an unplugged port ->
DeviceDisconnected (reported once through `on_status`, reopened by itself).
"""

from __future__ import annotations

import logging
import time

from drivers import voice_frames as f
from drivers.errors import DeviceDisconnected, DeviceFault, DeviceTimeout
from drivers.serial_link import OnSerialLink, SerialLink, StatusCallback

log = logging.getLogger(__name__)


class VoiceModule(OnSerialLink):
    """One SYN6288-style module; `encoding` None picks GB2312 where it can, else UNICODE."""

    def __init__(self, port: str, baudrate: int = 9600, *, encoding: f.Encoding | None = None,
                 response_timeout: float = 0.3, speak_timeout: float = 20.0,
                 on_status: StatusCallback | None = None) -> None:
        self.port = port
        self.encoding = encoding
        self.response_timeout = response_timeout
        self.speak_timeout = speak_timeout
        self.link = SerialLink(port, baudrate, on_status=on_status)

    def _await(self, wanted: frozenset[int], timeout: float, what: str) -> int:
        """The first status byte in `wanted` (0x45 raises DeviceFault) within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeviceTimeout(self.port, f"{what}: no answer within {timeout}s")
            for byte in self.link.read(remaining):
                if byte == f.Status.ERROR:
                    raise DeviceFault(self.port, f"{what}: the module refused the frame", byte)
                if byte in wanted:
                    return byte
                # other bytes: an idle report from earlier speech, or line noise

    def _send(self, frame: bytes, what: str) -> None:
        if not self.link.open():
            raise self.link.last_error or DeviceDisconnected(self.port, "port not open")
        self.link.discard_input()  # a late idle report must not pass for this frame's answer
        self.link.write(frame)
        self._await(frozenset({f.Status.RECEIVED}), self.response_timeout, what)

    def stop(self) -> None:
        self._send(f.encode_command(f.Cmd.STOP), "stop")

    def status(self) -> str:
        """'busy' while the module speaks, else 'idle'."""
        if not self.link.open():
            raise self.link.last_error or DeviceDisconnected(self.port, "port not open")
        self.link.discard_input()
        self.link.write(f.encode_command(f.Cmd.STATUS))
        byte = self._await(frozenset({f.Status.BUSY, f.Status.IDLE}), self.response_timeout, "status")
        return f.status_name(byte)

    def say(self, text: str, *, interrupt: bool = True) -> None:
        """Speak `text` (cut into frames of at most 200 bytes); returns when the first frame is taken."""
        pieces = f.split_text(text, self.encoding)
        if not pieces:
            return
        if interrupt:
            self.stop()
        for i, piece in enumerate(pieces):
            if i:
                self._await(frozenset({f.Status.IDLE}), self.speak_timeout, "speaking")
                self.link.write(f.encode_speak(piece, self.encoding))
                self._await(frozenset({f.Status.RECEIVED}), self.response_timeout, "speak")
            else:
                self._send(f.encode_speak(piece, self.encoding), "speak")


__all__ = ["VoiceModule"]
