"""Camera frames from image files (rate limited), and the clear error when OpenCV is missing."""

from __future__ import annotations

import builtins
import time

import numpy as np
import pytest
from PIL import Image

from drivers.camera import ImageFileCamera, OpenCvCamera, RateLimiter
from drivers.errors import DeviceDisconnected, FrameError


@pytest.fixture
def images(tmp_path):
    paths = []
    for i, color in enumerate([(255, 0, 0), (0, 255, 0)]):
        path = tmp_path / f"frame{i}.png"
        Image.new("RGB", (32, 24), color).save(path)
        paths.append(path)
    gray = tmp_path / "gray.jpg"
    Image.new("L", (16, 16), 128).save(gray)
    paths.append(gray)
    return paths


def test_image_files_come_out_as_rgb_frames_in_order(images):
    cam = ImageFileCamera(images, fps=100, loop=False)
    first, second, third = (cam.read_frame(1.0) for _ in range(3))
    assert first.shape == (24, 32, 3) and first.dtype == np.uint8
    assert tuple(first[0, 0]) == (255, 0, 0) and tuple(second[0, 0]) == (0, 255, 0)
    assert third.shape == (16, 16, 3)  # a grayscale photo is converted to RGB
    assert cam.read_frame(0.1) is None  # no loop: the files are done


def test_looping_camera_starts_again(images):
    cam = ImageFileCamera(images[:1], fps=100, loop=True)
    assert cam.read_frame(1.0) is not None
    assert cam.read_frame(1.0) is not None


def test_rate_limit_keeps_face_work_from_starving_the_other_readers(images):
    cam = ImageFileCamera(images, fps=20, loop=True)
    start = time.monotonic()
    frames = [cam.read_frame(1.0) for _ in range(5)]
    assert all(f is not None for f in frames)
    assert time.monotonic() - start >= 4 / 20 - 0.01


def test_frame_not_due_within_the_timeout_is_none(images):
    cam = ImageFileCamera(images, fps=2)
    assert cam.read_frame(0.5) is not None
    assert cam.read_frame(0.05) is None


def test_unreadable_image_is_a_frame_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(FrameError) as err:
        ImageFileCamera([bad], fps=100).read_frame(1.0)
    assert str(tmp_path) in err.value.port


def test_missing_image_is_reported_disconnected(tmp_path):
    with pytest.raises(DeviceDisconnected):
        ImageFileCamera([tmp_path / "gone.png"], fps=100).read_frame(1.0)


def test_rate_limiter_rejects_nonsense():
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_missing_opencv_gives_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_cv2(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    cam = OpenCvCamera("rtsp://127.0.0.1:8554/gate1")
    with pytest.raises(DeviceDisconnected) as err:
        cam.read_frame(0.1)
    assert "opencv" in str(err.value).lower() and err.value.port == "camera:rtsp://127.0.0.1:8554/gate1"
