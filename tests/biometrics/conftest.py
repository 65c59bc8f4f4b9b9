"""Face templates of the shared real photos, encoded once per session (detection is the slow part)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from biometrics.face import EnrolmentRefused, FaceTemplate, enrol_face
from tests.support.services import need

# Who is in each photo; the partial-face photo is Obama with part of his face cut off by the frame.
PHOTOS = {
    "obama/1": "obama",
    "obama/2": "obama",
    "obama/3": "obama",
    "obama/4": "obama",
    "biden/1": "biden",
    "biden/2": "biden",
    "rose_leslie/1": "rose_leslie",
    "rose_leslie/2": "rose_leslie",
    "alex_lacamoire/1": "alex_lacamoire",
    "group/obama_partial_face": "obama",
    "group/two_people": None,
}


def have_face_support() -> bool:
    return importlib.util.find_spec("face_recognition") is not None


@pytest.fixture(scope="session")
def face_support() -> None:
    need(have_face_support(), "face_recognition is not installed (the `face` extra)")


@pytest.fixture(scope="session")
def photo_path(faces_dir: Path):
    def path(name: str) -> Path:
        return faces_dir / f"{name}.jpg"

    return path


@pytest.fixture(scope="session")
def enrolled(face_support, photo_path) -> dict[str, FaceTemplate | EnrolmentRefused]:
    """Each real photo's enrolment outcome: its template, or the refusal."""
    outcomes: dict[str, FaceTemplate | EnrolmentRefused] = {}
    for name in PHOTOS:
        try:
            outcomes[name] = enrol_face(photo_path(name))
        except EnrolmentRefused as refusal:
            outcomes[name] = refusal
    return outcomes


@pytest.fixture(scope="session")
def templates(enrolled) -> dict[str, FaceTemplate]:
    """The photos that enrolled, by name."""
    return {name: t for name, t in enrolled.items() if isinstance(t, FaceTemplate)}
