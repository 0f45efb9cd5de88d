"""Self-blended fakes on a real face (scikit-image's astronaut, landmarks from mediapipe's face mesh)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from vidfake.preprocessing.errors import MediaError
from vidfake.training.sbi import (
    REGIONS,
    SBIParams,
    face_region_indices,
    sample_sbi_params,
    self_blend,
    self_blend_clip,
)

NEAR = 0.25  # how far (in face sizes) a blend mask may reach beyond the landmarks' hull


@pytest.fixture(scope="module")
def face():
    """``(512, 512, 3) uint8`` astronaut and its ``(478, 2)`` mediapipe landmarks in pixels."""
    data = pytest.importorskip("skimage.data")
    import mediapipe as mp

    image = data.astronaut()
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as fm:
        result = fm.process(image)
    assert result.multi_face_landmarks, "mediapipe found no face in the astronaut"
    h, w = image.shape[:2]
    lm = np.array([[p.x * w, p.y * h] for p in result.multi_face_landmarks[0].landmark])
    assert lm.shape == (478, 2)
    return image, lm


def _near_hull(lm: np.ndarray, shape, margin: float) -> np.ndarray:
    """Convex hull of all landmarks grown by ``margin`` x face size."""
    hull = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(lm.round().astype(np.int32)), 1)
    r = int(margin * np.ptp(lm, axis=0).max())
    return cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0


@pytest.mark.parametrize("seed", range(6))
def test_blend_is_local_and_typed(face, seed):
    image, lm = face
    params = sample_sbi_params(np.random.default_rng(seed))
    fake, mask = self_blend(image, lm, params)
    assert fake.shape == image.shape and fake.dtype == np.uint8
    assert mask.shape == image.shape[:2] and mask.dtype == np.float32
    assert 0.0 <= mask.min() and mask.max() <= params.blend_ratio + 1e-6
    assert mask.max() > 0.5 * params.blend_ratio
    # only near the face: inside the landmarks' hull grown by a quarter of the face (bound: shift up to
    # 6 %, scale up to 5 %, second blur wider than the first by up to 10 % of the face)
    assert not np.any((mask > 0) & ~_near_hull(lm, mask.shape, NEAR))
    # untouched wherever the mask is 0, changed where it is strong
    np.testing.assert_array_equal(fake[mask == 0], image[mask == 0])
    strong = mask > 0.5 * params.blend_ratio
    assert np.abs(fake.astype(int) - image)[strong].mean() > 0.5


def test_mask_covers_the_face_centre(face):
    image, lm = face
    for region in REGIONS:
        params = dataclasses.replace(sample_sbi_params(np.random.default_rng(1)), region=region, blend_ratio=1.0)
        _, mask = self_blend(image, lm, params)
        idx = face_region_indices(region)
        x, y = (lm if idx is None else lm[list(idx)]).mean(axis=0).round().astype(int)
        assert mask[y, x] > 0.9, region  # full strength in the middle of the region


def test_regions_differ_in_extent(face):
    image, lm = face
    base = sample_sbi_params(np.random.default_rng(2))
    area = {r: (self_blend(image, lm, dataclasses.replace(base, region=r))[1] > 0).sum() for r in REGIONS}
    assert area["full"] > area["no_forehead"] > area["lower"]
    assert area["full"] > area["center"]


def test_deterministic_given_seed(face):
    image, lm = face
    a = self_blend(image, lm, rng=np.random.default_rng(7))
    b = self_blend(image, lm, rng=np.random.default_rng(7))
    c = self_blend(image, lm, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_coherent_clip_repeats_the_blend_and_follows_the_face(face):
    image, lm = face
    frames = np.stack([image, image, np.roll(image, 6, axis=1)])
    lms = np.stack([lm, lm, lm + (6, 0)])
    fakes, masks = self_blend_clip(frames, lms, np.random.default_rng(3), jitter=0.0)
    assert fakes.shape == frames.shape and masks.shape == frames.shape[:3]
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(fakes[0], fakes[1])
    # the same blend moved with the face: the mask shifts by the same 6 pixels
    np.testing.assert_allclose(masks[2][:, 6:], masks[0][:, :-6], atol=1e-6)


def test_jitter_makes_frames_differ_but_stay_on_the_face(face):
    image, lm = face
    frames, lms = np.stack([image] * 3), np.stack([lm] * 3)
    fakes, masks = self_blend_clip(frames, lms, np.random.default_rng(4), jitter=0.5)
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])
    assert not np.array_equal(fakes[0], fakes[1])
    near = _near_hull(lm, masks.shape[1:], NEAR)
    assert not np.any((masks > 0) & ~near)
    # the clip's params carry the jitter, and an explicit jitter overrides them
    params = sample_sbi_params(np.random.default_rng(5), jitter=0.5)
    _, coherent = self_blend_clip(frames, lms, np.random.default_rng(6), params=params, jitter=0.0)
    np.testing.assert_array_equal(coherent[0], coherent[2])


def test_target_augmentation_returns_the_matching_real(face):
    image, lm = face
    params = dataclasses.replace(sample_sbi_params(np.random.default_rng(0)), augment_target=True)
    fake, mask, real = self_blend(image, lm, params, return_real=True)
    assert not np.array_equal(real, image)  # the real side got the colour/frequency change
    np.testing.assert_array_equal(fake[mask == 0], real[mask == 0])
    with pytest.raises(ValueError, match="return_real"):
        self_blend(image, lm, params)
    fakes, masks, reals = self_blend_clip(image[None], lm[None], params=params, return_real=True)
    np.testing.assert_array_equal(fakes[0], fake)
    np.testing.assert_array_equal(reals[0], real)
    drawn = [sample_sbi_params(np.random.default_rng(s), target_augmentation=True).augment_target for s in range(40)]
    assert 5 < sum(drawn) < 35
    assert not any(sample_sbi_params(np.random.default_rng(s)).augment_target for s in range(40))


def test_other_landmark_sets_use_their_hull(face):
    image, lm = face
    oval = lm[[i for i in face_region_indices("no_forehead")]]
    params = dataclasses.replace(sample_sbi_params(np.random.default_rng(1)), region="center")
    fake, mask = self_blend(image, oval, params)  # not 478 points: hull of all of them
    assert mask.max() > 0 and not np.any((mask > 0) & ~_near_hull(oval, mask.shape, NEAR))


def test_bad_inputs_are_typed_errors(face):
    image, lm = face
    p = SBIParams()
    with pytest.raises(MediaError, match="uint8"):
        self_blend(image.astype(np.float32), lm, p)
    with pytest.raises(MediaError, match="N, 2"):
        self_blend(image, lm[:, :1], p)
    with pytest.raises(MediaError, match="NaN"):
        self_blend(image, np.where(np.arange(478)[:, None] == 3, np.nan, lm), p)
    with pytest.raises(MediaError, match="outside"):
        self_blend(image, lm + 2000, p)
    with pytest.raises(MediaError, match="too small"):
        self_blend(image, lm[:3] * 0 + (100, 100) + np.eye(3, 2), p)
    with pytest.raises(MediaError, match="frames"):
        self_blend_clip(image, lm[None])
    with pytest.raises(MediaError, match="landmarks"):
        self_blend_clip(image[None], lm)
    with pytest.raises(ValueError, match="odd"):
        SBIParams(blur1=4)
    with pytest.raises(ValueError, match="region"):
        SBIParams(region="ears")
