"""A contactless card for vpcd, the virtual reader of Debian's vsmartcard packages.

vpcd (a pcscd driver) listens on TCP 127.0.0.1:35963 for a card. Every message both ways is a
2-byte big-endian length and the bytes. From vpcd, a 1-byte message is a control (0 power off,
1 power on, 2 reset, 4 "send your ATR"); anything longer is an APDU, answered with a response APDU.
Connecting is laying the card on the reader, disconnecting is lifting it.

The card answers `FF CA 00 00 00` (the PC/SC "get UID" a contactless reader answers for the card)
with its UID and 90 00, everything else with 6D 00 (instruction not supported).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

log = logging.getLogger(__name__)

POWER_OFF, POWER_ON, RESET, GET_ATR = 0, 1, 2, 4


def contactless_atr(card_name: bytes = b"\x00\x01") -> bytes:
    """The ATR a PC/SC contactless reader builds for a storage card (PC/SC part 3; default MIFARE Classic 1K)."""
    historical = b"\x80\x4f\x0c\xa0\x00\x00\x03\x06\x03" + card_name + b"\x00\x00\x00\x00"
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical  # T0, TD1, TD2
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes([tck])


class VirtualContactlessCard:
    """A card with a fixed UID, laid on (`insert`) and lifted off (`remove`) vpcd's first reader."""

    def __init__(self, uid: bytes, host: str = "127.0.0.1", port: int = 35963) -> None:
        if not 4 <= len(uid) <= 10:
            raise ValueError("a contactless UID has 4, 7 or 10 bytes")
        self.uid = uid
        self.host, self.port = host, port
        self.atr = contactless_atr()
        self.apdus: list[bytes] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def answer(self, apdu: bytes) -> bytes:
        if apdu[:4] == b"\xff\xca\x00\x00":
            return self.uid + b"\x90\x00"
        return b"\x6d\x00"

    def insert(self, timeout: float = 5.0) -> None:
        """Connect to vpcd: the reader sees a card."""
        if self._sock is not None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.create_connection((self.host, self.port), timeout=timeout)
                break
            except ConnectionRefusedError:
                # vpcd accepts one card at a time and takes a moment to listen again after a removal
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        self._sock.settimeout(None)
        self._thread = threading.Thread(target=self._serve, args=(self._sock,), name="virtual-card", daemon=True)
        self._thread.start()

    def remove(self) -> None:
        """Disconnect: the reader sees the card go."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None

    def _recv_exact(self, sock: socket.socket, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            try:
                chunk = sock.recv(n - len(buf))
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def _serve(self, sock: socket.socket) -> None:
        while True:
            head = self._recv_exact(sock, 2)
            if head is None:
                return
            msg = self._recv_exact(sock, int.from_bytes(head, "big"))
            if msg is None:
                return
            if len(msg) == 1:
                if msg[0] != GET_ATR:
                    continue  # power on/off, reset: nothing to answer
                reply = self.atr
            else:
                self.apdus.append(msg)
                reply = self.answer(msg)
            try:
                sock.sendall(len(reply).to_bytes(2, "big") + reply)
            except OSError:
                return

    def __enter__(self) -> VirtualContactlessCard:
        self.insert()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


__all__ = ["VirtualContactlessCard", "contactless_atr"]
