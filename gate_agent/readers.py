"""Credential readers: one small adapter per device kind, each run in its own loop thread.

An adapter turns a driver's blocking read into `Attempt`s and its errors into health. The drivers
are imported when a reader is configured, so a gate without a camera never loads dlib, and a driver
that has not been installed shows as an unhealthy reader rather than a crash.
"""

from __future__ import annotations

import glob
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from protocol import messages as m
from protocol.messages import ReaderHealth

from .config import Devices
from .decider import Attempt, AttemptKind

if TYPE_CHECKING:
    from drivers.camera import ImageFileCamera, OpenCvCamera

log = logging.getLogger(__name__)


class Reader:
    """One reader: `read(timeout)` returns the raw value or None; `health()` says how it is."""

    kind: AttemptKind  # each reader's own

    def __init__(self, name: str, direction: m.Direction = "in") -> None:
        self.name = name
        self.direction = direction
        self.ok = False
        self.detail = "not started"

    def open(self) -> None:  # noqa: B027 - optional hook
        pass

    def read(self, timeout: float) -> object | None:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def health(self) -> ReaderHealth:
        return ReaderHealth(name=self.name, ok=self.ok, detail=self.detail[:200])

    def _status(self, err) -> None:
        """The serial drivers' on_status callback: an error when the port went, None when it is back."""
        self.ok = err is None
        self.detail = "" if err is None else str(err)


class QrReader(Reader):
    kind = "qr"

    def __init__(self, port: str, baudrate: int, direction: m.Direction) -> None:
        super().__init__("qr", direction)
        from drivers.qr_scanner import QrScanner

        self.driver = QrScanner(port, baudrate, on_status=self._status)

    def open(self) -> None:
        self.ok = self.driver.open()
        self.detail = "" if self.ok else str(self.driver.last_error or "port not open")

    def read(self, timeout: float) -> str | None:
        code = self.driver.read_code(timeout)
        self.ok = self.driver.connected
        return code

    def close(self) -> None:
        self.driver.close()


class IdCardReader(Reader):
    kind = "id_card"

    def __init__(self, port: str, baudrate: int, direction: m.Direction, photo_decoder: str | None = None) -> None:
        super().__init__("idcard", direction)
        from drivers.idcard import IdCardReader as Driver

        decoder = _load_decoder(photo_decoder) if photo_decoder else None
        try:
            self.driver = Driver(port, baudrate, on_status=self._status, photo_decoder=decoder)
        except TypeError:
            self.driver = Driver(port)
        self._photo: bytes | None = None

    def read(self, timeout: float) -> str | None:
        card = self.driver.read_card(timeout)
        self.ok = bool(getattr(self.driver, "connected", True))
        self.detail = "" if self.ok else str(getattr(self.driver, "last_error", "") or "")
        self._photo = getattr(card, "photo", None) if card is not None else None
        return card.id_number if card is not None else None  # only the number travels on, never logged

    def take_photo(self) -> bytes | None:
        """The photo of the card just read (人证核验), handed over once and not kept."""
        photo, self._photo = self._photo, None
        return photo

    def close(self) -> None:
        self.driver.close()


class RfidReader(Reader):
    kind = "annual_pass"

    def __init__(self, pcsc_reader: str | None, port: str | None, baudrate: int, direction: m.Direction) -> None:
        super().__init__("rfid", direction)
        import drivers.rfid as rfid

        self.driver: rfid.SerialRfidReader | rfid.PcscRfidReader
        if port is not None:
            try:
                serial = rfid.SerialRfidReader(port, baudrate, on_status=self._status)
            except TypeError:
                serial = rfid.SerialRfidReader(port)
            self.driver, self._read = serial, serial.read_uid
        else:
            pcsc = rfid.PcscRfidReader(pcsc_reader)
            self.driver, self._read = pcsc, pcsc.wait_card

    def read(self, timeout: float) -> str | None:
        uid = self._read(timeout)
        self.ok = bool(getattr(self.driver, "connected", True))
        if isinstance(uid, bytes):
            uid = uid.hex()
        return uid.upper() if uid else None

    def close(self) -> None:
        close = getattr(self.driver, "close", None)
        if close:
            close()


class FingerprintReader(Reader):
    """A module that matches on itself: yields the holder of the matched slot ("" for a finger it does not know).

    This reader's thread owns the serial port: between two captures it runs the slot sync's turn
    (`gate_agent.fingerprints`), and while the decision worker `expect`s a finger (card + fingerprint)
    the next finger goes to the worker instead of becoming an attempt of its own.
    """

    kind = "fingerprint"

    def __init__(self, port: str, baudrate: int, direction: m.Direction, slot_holder: Callable[[int], str | None],
                 sync=None) -> None:
        super().__init__("fingerprint", direction)
        from drivers.fingerprint import FingerprintModule

        self.driver = FingerprintModule(port, baudrate)
        self.slot_holder = slot_holder
        self.sync = sync  # a FingerprintSync, or None
        self._expecting: queue.Queue | None = None
        self._on_sensor: str | None = None  # the holder of the finger last matched, until the sensor is empty
        self._expect_lock = threading.Lock()
        self._enrol: queue.Queue = queue.Queue()  # fingers to take for a ticket (人票绑定), from the worker

    def take_finger(self, owner: str, timeout: float, prompt: Callable[[], object] | None = None) -> bytes | None:
        """人票绑定: the visitor's finger enrolled into a free slot of the module for `owner` (a ticket ref),
        in this reader's thread; the module's template back, or None (no finger in time, module full)."""
        if self.sync is None:
            return None
        answer: queue.Queue = queue.Queue(1)
        self._enrol.put((owner, timeout, prompt, answer))
        try:
            return answer.get(timeout=timeout + 5.0)
        except queue.Empty:
            return None

    def _take(self, owner: str, timeout: float, prompt: Callable[[], None] | None) -> bytes | None:
        capacity = self.driver.capacity or self.driver.read_system_parameters().capacity
        slot = self.sync.claim_slot(owner, capacity)
        if slot is None:
            log.error("fingerprint module full: a ticket's finger cannot be taken")
            return None
        if prompt is not None:
            prompt()  # now: the next finger is sure to come to the enrolment
        if not self.driver.enrol(slot, timeout):
            return None
        data = self.driver.load_template(slot)
        self.sync.taken(slot, owner, data)
        self._on_sensor = owner  # the finger may still lie there: it is this visitor's, not a new attempt
        return data

    def read(self, timeout: float) -> str | None:
        try:
            owner, wait_s, prompt, answer = self._enrol.get_nowait()
        except queue.Empty:
            pass
        else:
            try:
                answer.put(self._take(owner, wait_s, prompt))
            except Exception:
                answer.put(None)
                raise
            return None
        if self.sync is not None and self.sync.due:
            self.sync.run(self.driver)
            self.ok, self.detail = True, self.sync.last_error
            return None
        started = time.monotonic()
        hit = self.driver.capture_and_search(timeout)
        self.ok = True
        if hit is None:
            # The driver waits for a finger until its deadline: None before it means a finger that matched no slot.
            if time.monotonic() - started >= timeout:
                self._on_sensor = None  # the sensor was seen empty
                return None
            holder = ""
        else:
            holder = self.slot_holder(hit.slot) or ""
            if holder and holder == self._on_sensor:
                return None  # one finger, one attempt: the same finger still lies on the sensor
        self._on_sensor = holder
        waiting = self._expecting
        if waiting is not None:
            waiting.put(holder)
            return None
        return holder

    def expect(self, timeout: float, prompt: Callable[[], object] | None = None) -> str | None:
        """The next finger's holder ("" unknown), for the worker's 1:1 step; None if none came in time.
        `prompt` runs once the next finger is sure to come here (asking before would race the visitor)."""
        waiting: queue.Queue = queue.Queue(1)
        with self._expect_lock:
            self._expecting = waiting
            try:
                if prompt is not None:
                    prompt()
                return waiting.get(timeout=timeout)
            except queue.Empty:
                return None
            finally:
                self._expecting = None

    def close(self) -> None:
        close = getattr(self.driver, "close", None)
        if close:
            close()


class Camera:
    """Frames for the face step (1:1) and, if asked, face-only entry (1:N)."""

    def __init__(self, files: str | None, source: str | None, fps: float, templates: str | None = None) -> None:
        self.templates = templates
        self.driver: ImageFileCamera | OpenCvCamera | None
        if templates is not None:
            self.driver = None
        elif files is not None:
            from drivers.camera import ImageFileCamera

            self.driver = ImageFileCamera(sorted(glob.glob(files)), fps)
        else:
            from drivers.camera import OpenCvCamera

            source = source or "0"  # no source named: the first camera, as OpenCV numbers them
            self.driver = OpenCvCamera(int(source) if source.isdigit() else source, fps)
        self.lock = threading.Lock()
        self.on_encode: Callable[[float], None] | None = None  # the seconds each frame took to encode (metrics)

    def view(self, timeout: float = 0.5) -> bytes | None:
        """The camera's view now as a small JPEG (for staff at the gate), or None."""
        if self.driver is None:
            return None
        from .staff_help import jpeg

        with self.lock:
            frame = self.driver.read_frame(timeout)
        return jpeg(frame) if frame is not None else None

    def probe(self, timeout: float = 2.0):
        """One frame, encoded: the first face template found, or None."""
        if self.templates is not None:
            return _take_template(self.templates, timeout)
        from biometrics.face import encode_frame

        if self.driver is None:
            return None
        with self.lock:
            frame = self.driver.read_frame(timeout)
        if frame is None:
            return None
        started = time.perf_counter()
        faces = encode_frame(frame)
        if self.on_encode is not None:
            self.on_encode(time.perf_counter() - started)
        return faces[0] if faces else None


def _take_template(folder: str, timeout: float):
    """The demo's camera stand-in: the oldest 512-byte face template file in `folder`, taken (deleted).
    No face detection runs: the template is what a real camera's frame would have been encoded to."""
    import os
    import time

    from biometrics.face import FaceTemplate

    deadline = time.monotonic() + timeout
    while True:
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".face"))
        except FileNotFoundError:
            names = []
        for name in names:
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
                os.unlink(path)
                return FaceTemplate.from_bytes(data)
            except (FileNotFoundError, ValueError):
                continue
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


class FaceReader(Reader):
    """Face-only entry: every frame with a face becomes an attempt (1:N in the decider)."""

    kind = "face"

    def __init__(self, camera: Camera, direction: m.Direction) -> None:
        super().__init__("camera", direction)
        self.camera = camera

    def read(self, timeout: float):
        probe = self.camera.probe(timeout)
        self.ok = True
        return probe


def build_readers(devices: Devices, slot_holder: Callable[[int], str | None], fingerprint_sync=None,
                  ) -> tuple[list[Reader], Camera | None, list[ReaderHealth]]:
    """The configured readers; a reader whose driver is missing is reported, not fatal."""
    readers: list[Reader] = []
    broken: list[ReaderHealth] = []
    camera = None

    def attempt(name: str, make: Callable[[], Reader | None]) -> None:
        try:
            reader = make()
        except (ImportError, AttributeError) as exc:
            log.error("reader %s: driver not available: %s", name, exc)
            broken.append(ReaderHealth(name=name, ok=False, detail=f"driver not available: {exc}"[:200]))
            return
        if reader is not None:
            readers.append(reader)

    d = devices
    if (qr := d.qr) is not None:
        attempt("qr", lambda: QrReader(qr.port, qr.baudrate, qr.direction))
    if (idcard := d.idcard) is not None:
        attempt("idcard", lambda: IdCardReader(idcard.port, idcard.baudrate, idcard.direction, idcard.photo_decoder))
    if (rfid := d.rfid) is not None:
        attempt("rfid", lambda: RfidReader(rfid.pcsc_reader, rfid.port, rfid.baudrate, rfid.direction))
    if (finger := d.fingerprint) is not None:
        attempt("fingerprint", lambda: FingerprintReader(finger.port, finger.baudrate, finger.direction, slot_holder,
                                                         fingerprint_sync))
    if d.camera:
        try:
            camera = Camera(d.camera.files, d.camera.source, d.camera.fps, d.camera.templates)
        except (ImportError, AttributeError) as exc:
            broken.append(ReaderHealth(name="camera", ok=False, detail=f"driver not available: {exc}"[:200]))
        else:
            if d.camera.identify:
                readers.append(FaceReader(camera, d.camera.direction))
    return readers, camera, broken


def _load_decoder(spec: str) -> Callable[[bytes], bytes]:
    """The ID card photo decoder "module:function" (the reader maker's SDK, wrapped): WLT bytes -> an image."""
    import importlib

    module, _, name = spec.partition(":")
    try:
        decoder = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"photo decoder {spec!r} not found: {exc}") from exc
    if not callable(decoder):
        raise ImportError(f"photo decoder {spec!r} is not a function")
    return decoder


def run_reader(reader: Reader, submit: Callable[[Attempt], None], stop: threading.Event) -> None:
    """The loop of one reader thread: read, submit, survive every failure of the device."""
    try:
        reader.open()
    except Exception as exc:
        reader.ok, reader.detail = False, str(exc)
    backoff = 0.2
    while not stop.is_set():
        try:
            value = reader.read(0.5)
        except Exception as exc:  # a driver error, or a driver bug: the gate keeps going
            if reader.ok or reader.detail != str(exc):
                log.warning("reader %s: %s", reader.name, exc)
            reader.ok, reader.detail = False, str(exc)[:200]
            stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        backoff = 0.2
        if reader.detail and reader.ok:
            reader.detail = ""
        if value is None:
            continue
        take_photo = getattr(reader, "take_photo", None)
        submit(Attempt(reader.kind, value, reader.direction, reader.name, take_photo() if take_photo else None))
    try:
        reader.close()
    except Exception:
        log.debug("closing reader %s", reader.name, exc_info=True)


__all__ = ["Camera", "Reader", "build_readers", "run_reader"]
