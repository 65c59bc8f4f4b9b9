"""Camera frames for face work: from image files (tests, demo) or from OpenCV (V4L2 device, RTSP).

Both give RGB `numpy` arrays (height x width x 3, uint8) through `read_frame(timeout)`, at most
`fps` frames a second, so face detection cannot starve the other readers on a 2-core gate box.
OpenCV is optional: `OpenCvCamera` imports `cv2` only when opened and raises DeviceDisconnected
with the install hint when it is missing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeAlias, cast

from drivers.errors import DeviceDisconnected, FrameError

if TYPE_CHECKING:  # numpy and Pillow are imported when a frame is read: `import drivers` stays light
    import numpy as np
    from numpy.typing import NDArray

    Frame: TypeAlias = NDArray[np.uint8]  # height x width x 3, RGB

log = logging.getLogger(__name__)


class RateLimiter:
    """At most `fps` events a second: `wait(deadline)` sleeps until the next slot, False past deadline."""

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.interval = 1.0 / fps
        self._next = 0.0

    def wait(self, deadline: float) -> bool:
        now = time.monotonic()
        if self._next > deadline:
            time.sleep(max(0.0, deadline - now))
            return False
        if self._next > now:
            time.sleep(self._next - now)  # the rate limit is the point: a timed wait, not a poll
        self._next = max(self._next, now) + self.interval
        return True


class ImageFileCamera:
    """Frames from image files, in order, `loop`ing if asked; for the tests and the demo."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]], fps: float = 5, loop: bool = True) -> None:
        self.paths = [str(p) for p in paths]
        if not self.paths:
            raise ValueError("no image files given")
        self.port = f"files:{os.path.dirname(self.paths[0]) or '.'}"
        self.loop = loop
        self._limit = RateLimiter(fps)
        self._index = 0

    def read_frame(self, timeout: float | None) -> Frame | None:
        """The next frame as RGB, or None when the rate limit or the end of the files allows none in time."""
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        if self._index >= len(self.paths):
            if not self.loop:
                return None
            self._index = 0
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        if not self._limit.wait(deadline):
            return None
        path = self.paths[self._index]
        self._index += 1
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert("RGB"))
        except FileNotFoundError as exc:
            raise DeviceDisconnected(self.port, f"image file missing: {path}") from exc
        except (UnidentifiedImageError, OSError) as exc:
            raise FrameError(self.port, f"not a readable image: {path} ({exc})") from exc

    def close(self) -> None:
        pass


class OpenCvCamera:
    """Frames from a V4L2 device (`0`, "/dev/video0") or a stream URL ("rtsp://...") through OpenCV.

    A background thread keeps only the newest frame, so a slow consumer gets a fresh picture, not
    a backlog; a stream that fails is reopened every `reopen_interval_s`.
    """

    def __init__(self, source: int | str, fps: float = 5, *, reopen_interval_s: float = 2.0) -> None:
        self.source = source
        self.port = f"camera:{source}"
        self.reopen_interval_s = reopen_interval_s
        self._limit = RateLimiter(fps)
        self._frame: Frame | None = None
        self._seq = 0
        self._delivered = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: Exception | None = None

    def open(self) -> None:
        if self._thread is not None:
            return
        try:
            import cv2  # noqa: F401  (fails here, with the hint, not in the grab thread that uses it)
        except ImportError as exc:
            raise DeviceDisconnected(
                self.port, "OpenCV is not installed (pip install opencv-python-headless) - needed for cameras"
            ) from exc
        self._thread = threading.Thread(target=self._grab, name=f"camera-{self.source}", daemon=True)
        self._thread.start()

    def _grab(self) -> None:
        import cv2

        while not self._stop.is_set():
            cap = cv2.VideoCapture(self.source)
            if not cap.isOpened():
                self.last_error = DeviceDisconnected(self.port, "cannot open the camera or stream")
                log.warning("%s", self.last_error)
                self._stop.wait(self.reopen_interval_s)
                continue
            while not self._stop.is_set():
                ok, bgr = cap.read()
                if not ok:
                    self.last_error = DeviceDisconnected(self.port, "stream ended or camera lost")
                    log.warning("%s", self.last_error)
                    break
                # VideoCapture gives 8-bit BGR, so this is uint8 RGB; OpenCV's stubs say any MatLike.
                rgb = cast("Frame", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                with self._cond:
                    self._frame, self._seq = rgb, self._seq + 1
                    self._cond.notify_all()
            cap.release()
            self._stop.wait(self.reopen_interval_s)

    def read_frame(self, timeout: float | None) -> Frame | None:
        """The newest frame not yet returned (RGB), or None if none came within `timeout`."""
        self.open()
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        if not self._limit.wait(deadline):
            return None
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > self._delivered,
                                       max(0.0, deadline - time.monotonic())):
                return None
            self._delivered = self._seq
            return self._frame

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


__all__ = ["ImageFileCamera", "OpenCvCamera", "RateLimiter"]
