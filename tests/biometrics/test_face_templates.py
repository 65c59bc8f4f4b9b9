"""Face templates, 1:1 and the 1:N index, without photos (and, except where said, without dlib)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biometrics.face import DEFAULT_THRESHOLD, EnrolmentRefused, FaceIndex, FaceTemplate, enrol_face, verify


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return v / np.linalg.norm(v) * 0.6  # real templates have norms of about 0.5-0.7


def near(template: FaceTemplate, distance: float, seed: int) -> FaceTemplate:
    step = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return FaceTemplate(template.vector + step / np.linalg.norm(step) * distance)


def test_a_template_round_trips_through_512_bytes():
    t = FaceTemplate(vec(1))
    data = t.to_bytes()
    assert len(data) == 512
    assert FaceTemplate.from_bytes(data) == t
    assert hash(FaceTemplate.from_bytes(data)) == hash(t)


def test_a_template_never_prints_its_values():
    t = FaceTemplate(vec(1))
    assert repr(t) == str(t) == "FaceTemplate(<128 values hidden>)"
    assert f"{float(t.vector[0]):.4f}" not in repr(t)


def test_a_template_is_read_only():
    t = FaceTemplate(vec(1))
    with pytest.raises(ValueError):
        t.vector[0] = 1.0


@pytest.mark.parametrize("bad", [b"", b"\0" * 511, b"\0" * 1024])
def test_template_bytes_of_the_wrong_length_are_refused(bad):
    with pytest.raises(ValueError, match="512 bytes"):
        FaceTemplate.from_bytes(bad)


def test_a_template_with_nan_or_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="finite"):
        FaceTemplate(np.full(128, np.nan))
    with pytest.raises(ValueError, match="128 values"):
        FaceTemplate(np.zeros(127))


def test_verify_returns_the_distance_with_the_decision():
    bound = FaceTemplate(vec(1))
    close, far = near(bound, 0.3, 2), near(bound, 0.7, 3)
    m = verify(bound, close)
    assert m.ok and m.distance == pytest.approx(0.3, abs=1e-5) and m.holder_id is None
    assert not verify(bound, far).ok
    assert verify(bound, far, threshold=0.8).ok


@pytest.mark.parametrize("threshold", [0, -0.1, 1.5, float("nan"), float("inf")])
def test_an_unreasonable_threshold_is_a_configuration_error(threshold):
    with pytest.raises(ValueError, match="threshold"):
        FaceIndex(threshold=threshold)
    with pytest.raises(ValueError, match="threshold"):
        verify(FaceTemplate(vec(1)), FaceTemplate(vec(2)), threshold=threshold)


def test_an_empty_index_identifies_nobody():
    index = FaceIndex()
    assert len(index) == 0
    assert index.identify(FaceTemplate(vec(1))) is None
    assert index.nearest(FaceTemplate(vec(1))) is None


def test_the_index_uses_its_site_threshold():
    bound = FaceTemplate(vec(1))
    probe = near(bound, 0.45, 2)
    lenient, strict = FaceIndex(), FaceIndex(threshold=0.4)
    lenient.add("h", bound)
    strict.add("h", bound)
    assert lenient.identify(probe).holder_id == "h"
    assert strict.identify(probe) is None
    assert strict.nearest(probe).distance == pytest.approx(0.45, abs=1e-5)


def test_a_holder_with_two_photos_is_removed_entirely():
    index = FaceIndex(capacity=1)
    a1, a2, b = FaceTemplate(vec(1)), FaceTemplate(vec(2)), FaceTemplate(vec(3))
    index.add("a", a1)
    index.add("b", b)
    index.add("a", a2)
    assert len(index) == 3 and index.holders() == {"a", "b"}
    assert index.identify(near(a2, 0.1, 9)).holder_id == "a"
    assert index.remove("a") == 2
    assert index.remove("a") == 0
    assert "a" not in index and len(index) == 1
    assert index.identify(near(a2, 0.1, 9)) is None
    assert index.identify(near(b, 0.1, 9)).holder_id == "b"


def test_the_index_shrinks_after_a_season_of_passes_ends_and_still_finds_the_rest():
    index = FaceIndex()
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((10_000, 128)).astype(np.float32)
    for i, v in enumerate(vectors):
        index.add(f"h{i}", FaceTemplate(v))
    for i in range(0, 10_000):
        if i % 10:
            index.remove(f"h{i}")
    assert len(index) == 1000
    for i in range(0, 10_000, 10):
        assert index.identify(FaceTemplate(vectors[i])).holder_id == f"h{i}"


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from("abcdefgh"), st.integers(0, 40)),
        st.tuples(st.just("remove"), st.sampled_from("abcdefgh"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops, probe_seed=st.integers(0, 40), noise=st.sampled_from([0.0, 0.2, 0.45, 0.9]))
def test_identify_after_any_adds_and_removes_equals_brute_force(ops, probe_seed, noise):
    index = FaceIndex(capacity=2)
    kept: list[tuple[str, np.ndarray]] = []
    for op, holder, seed in ops:
        if op == "add":
            t = FaceTemplate(vec(seed))
            index.add(holder, t)
            kept.append((holder, t.vector))
        else:
            removed = index.remove(holder)
            assert removed == sum(h == holder for h, _ in kept)
            kept = [(h, v) for h, v in kept if h != holder]
    assert len(index) == len(kept)
    assert index.holders() == {h for h, _ in kept}

    probe = near(FaceTemplate(vec(probe_seed)), noise, probe_seed + 1000) if noise else FaceTemplate(vec(probe_seed))
    nearest = index.nearest(probe)
    if not kept:
        assert nearest is None
        return
    distances = np.array([np.linalg.norm(v - probe.vector) for _, v in kept])
    best = distances.min()
    assert nearest.distance == pytest.approx(float(best), abs=1e-5)
    # Several holders may share a template (same seed): any of the nearest is right.
    assert nearest.holder_id in {kept[i][0] for i in np.flatnonzero(distances <= best + 1e-5)}
    assert nearest.ok == (nearest.distance <= DEFAULT_THRESHOLD)
    assert (index.identify(probe) is not None) == nearest.ok


def test_importing_biometrics_loads_neither_dlib_nor_numpy_nor_flask():
    code = (
        "import sys, biometrics\n"
        "heavy = {'dlib', 'face_recognition', 'numpy', 'PIL', 'flask', 'sqlalchemy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "from biometrics import FaceIndex, TemplateCipher, SlotPlan, verify\n"
        "assert not {'dlib', 'face_recognition'} & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_public_name_is_importable():
    import biometrics

    for name in biometrics.__all__:
        assert getattr(biometrics, name) is not None


class TestEnrolmentWithoutPhotos:
    """Synthetic images: need dlib, not the shared photos."""

    @pytest.fixture(autouse=True)
    def _needs_dlib(self, face_support):
        pass

    def test_a_blank_image_is_refused_as_no_face(self):
        with pytest.raises(EnrolmentRefused) as refused:
            enrol_face(np.full((480, 640, 3), 200, dtype=np.uint8))
        assert refused.value.reason == "no_face"
        assert "no face" in str(refused.value)

    def test_bytes_that_are_not_an_image_are_refused_as_unreadable(self):
        with pytest.raises(EnrolmentRefused) as refused:
            enrol_face(b"\xff\xd8\xff\xe0 definitely not a whole JPEG")
        assert refused.value.reason == "unreadable_image"

    def test_a_missing_file_is_refused_as_unreadable(self, tmp_path):
        with pytest.raises(EnrolmentRefused) as refused:
            enrol_face(tmp_path / "nobody.jpg")
        assert refused.value.reason == "unreadable_image"

    def test_a_float_array_is_a_programming_error_not_a_refusal(self):
        with pytest.raises(TypeError, match="uint8"):
            enrol_face(np.zeros((10, 10, 3), dtype=np.float32))
