"""A second-generation ID card reader module on a pty, speaking GA 467 style frames.

`present(card)` lays a card on the reader, `remove()` lifts it. Like a real module, a card that
has been read answers "no card" to FIND until it is lifted and presented again.
`corrupt_next_frame()` breaks the checksum of the next answer (the read is then not counted as done).
"""

from __future__ import annotations

from drivers import idcard_frames as f
from drivers.idcard_frames import IdCard
from drivers.sim.serial_sim import RequestResponseSim


class IdCardReaderSim(RequestResponseSim):
    name = "idcard-sim"

    def __init__(self, device_path: str | None = None, *, photo: bytes = bytes(1024)) -> None:
        self.card: IdCard | None = None
        self.photo = photo
        self._read_done = False
        self._selected = False
        self._corrupt = 0
        self.raw_text: bytes | None = None  # overrides build_text(card), to send a bad text block
        super().__init__(device_path)

    def present(self, card: IdCard) -> None:
        with self._lock:
            self.card, self._read_done, self._selected = card, False, False

    def remove(self) -> None:
        with self._lock:
            self.card, self._read_done, self._selected = None, False, False

    def corrupt_next_frame(self, count: int = 1) -> None:
        with self._lock:
            self._corrupt += count

    def split(self, buf: bytes) -> tuple[bytes | None, int]:
        return f.split_frame(buf)

    def _answer(self, sw3: int, data: bytes = b"") -> bytes:
        frame = f.encode_response(sw3, data)
        if self._corrupt:
            self._corrupt -= 1
            frame = frame[:-1] + bytes([frame[-1] ^ 0x5A])
        return frame

    def handle(self, frame: bytes) -> bytes:
        try:
            cmd = f.decode_command(frame)
        except Exception:
            return self._answer(f.SW_CHECKSUM)
        key = (cmd.cmd, cmd.para)
        if key == f.FIND_CARD:
            if self.card is None or self._read_done:
                return self._answer(f.SW_NO_CARD)
            return self._answer(f.SW_FOUND, bytes(4))
        if key == f.SELECT_CARD:
            if self.card is None or self._read_done:
                return self._answer(f.SW_SELECT_FAILED)
            self._selected = True
            return self._answer(f.SW_OK, bytes(8))
        if key == f.READ_TEXT_PHOTO:
            if self.card is None or not self._selected:
                return self._answer(f.SW_READ_FAILED)
            text = self.raw_text if self.raw_text is not None else f.build_text(self.card)
            corrupt = self._corrupt > 0
            answer = self._answer(f.SW_OK, f.text_photo_payload(text, self.photo))
            if not corrupt:
                self._read_done, self._selected = True, False
            return answer
        if key == f.READ_SAM_ID:
            return self._answer(f.SW_OK, bytes.fromhex("0500000000000000000000000000000000"))
        return self._answer(f.SW_COMMAND)


JPEG_START = b"\xff\xd8\xff"


def sim_photo_decoder(wlt: bytes) -> bytes:
    """The simulator's stand-in for the maker's WLT decoder: the simulator sends a JPEG test photo where a
    real card holds WLT (which only the maker's licensed SDK decodes), and this hands it back."""
    if not wlt.startswith(JPEG_START):
        raise ValueError("not a photo the simulator made: a real card's WLT needs its maker's decoder")
    return wlt


__all__ = ["IdCardReaderSim", "sim_photo_decoder"]
