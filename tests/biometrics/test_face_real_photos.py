"""Enrolment, 1:1 and 1:N on the real photos in ../shared/testdata/faces."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image, ImageFilter

from biometrics.bench import random_templates
from biometrics.face import (
    DEFAULT_THRESHOLD,
    MIN_FACE_PX,
    EnrolmentRefused,
    FaceIndex,
    FaceTemplate,
    detect_faces,
    encode_frame,
    enrol_face,
    verify,
)

from .conftest import PHOTOS

pytestmark = pytest.mark.faces

SINGLE = [name for name, person in PHOTOS.items() if person is not None]
SAME = [(a, b) for a, b in itertools.combinations(SINGLE, 2) if PHOTOS[a] == PHOTOS[b]]
DIFFERENT = [(a, b) for a, b in itertools.combinations(SINGLE, 2) if PHOTOS[a] != PHOTOS[b]]


def test_every_single_face_photo_enrols(templates):
    assert sorted(templates) == sorted(SINGLE)


@pytest.mark.parametrize(("a", "b"), SAME, ids=[f"{a}~{b}" for a, b in SAME])
def test_two_photos_of_the_same_person_verify_at_the_default_threshold(templates, a, b):
    match = verify(templates[a], templates[b])
    assert match.ok, f"{a} vs {b}: distance {match.distance:.3f} > {DEFAULT_THRESHOLD}"
    assert match.distance == pytest.approx(templates[a].distance(templates[b]))


@pytest.mark.parametrize(("a", "b"), DIFFERENT, ids=[f"{a}~{b}" for a, b in DIFFERENT])
def test_photos_of_different_people_are_refused_at_the_default_threshold(templates, a, b):
    match = verify(templates[a], templates[b])
    assert not match.ok, f"{a} vs {b}: distance {match.distance:.3f} <= {DEFAULT_THRESHOLD}"


def test_the_default_threshold_keeps_a_margin_on_both_sides(templates):
    worst_same = max(templates[a].distance(templates[b]) for a, b in SAME)
    closest_different = min(templates[a].distance(templates[b]) for a, b in DIFFERENT)
    assert worst_same + 0.05 <= DEFAULT_THRESHOLD <= closest_different - 0.15


def test_a_stricter_site_threshold_refuses_a_pair_the_default_accepts(templates):
    assert verify(templates["obama/2"], templates["obama/3"]).ok
    assert not verify(templates["obama/2"], templates["obama/3"], threshold=0.3).ok


def test_the_group_photo_is_refused_at_enrolment_as_several_faces(enrolled):
    refusal = enrolled["group/two_people"]
    assert isinstance(refusal, EnrolmentRefused)
    assert refusal.reason == "several_faces"
    assert "2 faces" in str(refusal)


def test_the_partial_face_photo_enrols_and_is_recognised_as_obama(templates):
    # Decided on measurement: the face is found, large and sharp, and its template is as close to
    # Obama's other photos as they are to each other, so refusing it would refuse a useful template.
    partial = templates["group/obama_partial_face"]
    for n in range(1, 5):
        assert verify(partial, templates[f"obama/{n}"]).ok


def test_identify_finds_each_person_among_the_enrolled_and_10000_random_templates(templates):
    index = FaceIndex()
    for i, vector in enumerate(random_templates(10_000, seed=7)):
        index.add(f"random-{i}", FaceTemplate(vector))
    for holder, photo in [
        ("obama", "obama/1"),
        ("biden", "biden/1"),
        ("rose_leslie", "rose_leslie/1"),
        ("alex_lacamoire", "alex_lacamoire/1"),
    ]:
        index.add(holder, templates[photo])
    assert len(index) == 10_004

    for probe in ["obama/2", "obama/3", "obama/4", "group/obama_partial_face", "biden/2", "rose_leslie/2"]:
        match = index.identify(templates[probe])
        assert match is not None, probe
        assert match.holder_id == PHOTOS[probe]
        assert match.ok and match.distance <= DEFAULT_THRESHOLD

    # Random templates are never anyone's face: a probe of random values matches nobody.
    for vector in random_templates(50, seed=8):
        assert index.identify(FaceTemplate(vector)) is None


def test_a_person_who_is_not_enrolled_is_not_identified_and_the_distance_is_still_logged(templates):
    index = FaceIndex()
    for holder, photo in [("obama", "obama/1"), ("rose_leslie", "rose_leslie/1"), ("alex", "alex_lacamoire/1")]:
        index.add(holder, templates[photo])
    assert index.identify(templates["biden/2"]) is None
    nearest = index.nearest(templates["biden/2"])
    assert nearest is not None and not nearest.ok and nearest.distance > DEFAULT_THRESHOLD


def test_a_re_enrolled_holder_is_matched_on_the_new_photo_only(templates):
    index = FaceIndex()
    index.add("holder-1", templates["obama/1"])
    index.replace("holder-1", [templates["biden/1"]])
    assert index.identify(templates["obama/2"]) is None
    assert index.identify(templates["biden/2"]).holder_id == "holder-1"


def test_enrolment_from_jpeg_bytes_gives_the_same_template_as_from_the_path(templates, photo_path):
    from_bytes = enrol_face(photo_path("obama/4").read_bytes())
    assert from_bytes.distance(templates["obama/4"]) < 1e-5


def test_a_face_smaller_than_the_minimum_is_refused_as_too_small(face_support, photo_path):
    photo = Image.open(photo_path("obama/4"))  # 853x480, face about 107 px tall
    small = photo.resize((photo.width * 6 // 10, photo.height * 6 // 10), Image.Resampling.LANCZOS)
    with pytest.raises(EnrolmentRefused) as refused:
        enrol_face(np.asarray(small))
    assert refused.value.reason == "face_too_small"
    assert f"at least {MIN_FACE_PX} px" in str(refused.value)


def test_a_blurred_face_is_refused_as_too_blurred(face_support, photo_path):
    photo = Image.open(photo_path("obama/4"))
    blurred = photo.filter(ImageFilter.GaussianBlur(2.5))  # ~2 % of the face height
    with pytest.raises(EnrolmentRefused) as refused:
        enrol_face(np.asarray(blurred))
    assert refused.value.reason == "too_blurred"


def test_a_gate_frame_finds_both_people_of_the_group_photo_largest_first(face_support, photo_path):
    found = detect_faces(photo_path("group/two_people"))
    assert len(found) == 2
    assert found[0].height > found[1].height
    assert [f.template for f in found] == encode_frame(photo_path("group/two_people"))


def test_a_640x480_gate_frame_of_a_holder_verifies_against_the_enrolment_photo(templates, photo_path):
    photo = Image.open(photo_path("obama/1")).convert("RGB")
    photo.thumbnail((640, 480))
    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    frame[: photo.height, : photo.width] = np.asarray(photo)
    found = encode_frame(frame, upsample=0)
    assert len(found) == 1
    assert verify(templates["obama/2"], found[0]).ok
    assert not verify(templates["biden/1"], found[0]).ok
