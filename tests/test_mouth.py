"""LipForensics-style mouth ROIs from face mesh landmarks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vidfake.preprocessing.faces import FaceTracker
from vidfake.preprocessing.mouth import (
    MEAN_FACE_STABLE,
    MOUTH_CORNERS,
    MOUTH_MEAN,
    MOUTH_POINTS,
    MOUTH_STD,
    STABLE_POINTS,
    mouth_rois,
    mouth_widths,
    normalize_rois,
)

skimage_data = pytest.importorskip("skimage.data")

# Vertices of mediapipe's canonical_face_model.obj (x, y; y up), 0-based mesh index. The right half
# mirrors the left (263 <-> 33, 362 <-> 133, 291 <-> 61).
CANONICAL = {
    2: (0.0, -2.089024),
    33: (-4.445859, 2.663991),
    133: (-1.856432, 2.585245),
    61: (-2.456206, -4.342621),
    0: (0.0, -3.406404), 13: (0.0, -3.994436), 14: (0.0, -4.542400), 17: (0.0, -5.365123),
    37: (-0.711452, -3.329355), 39: (-1.431615, -3.500953), 78: (-2.153084, -4.276322),
    82: (-0.533422, -3.993222), 84: (-0.699606, -5.291850), 87: (-0.583218, -4.517982),
    181: (-1.325085, -5.106507),
}  # fmt: skip
MIRROR = {263: 33, 362: 133, 291: 61, 267: 37, 269: 39, 308: 78, 312: 82, 314: 84, 317: 87, 405: 181}


def _canonical(index: int) -> np.ndarray:
    if index in MIRROR:
        x, y = CANONICAL[MIRROR[index]]
        return np.array([-x, -y])
    x, y = CANONICAL[index]
    return np.array([x, -y])  # image y points down


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def astronaut_landmarks(astronaut) -> np.ndarray:
    with FaceTracker() as tracker:
        (track,) = tracker.detect_image(astronaut)
    return track.landmarks[0]


def test_mean_face_derives_from_the_canonical_model():
    stable = np.stack([_canonical(i) for i in STABLE_POINTS])
    mouth = np.stack([_canonical(i) for i in MOUTH_POINTS]).mean(axis=0)
    scale = 45.0 / np.linalg.norm(_canonical(MOUTH_CORNERS[0]) - _canonical(MOUTH_CORNERS[1]))
    eye_y = stable[1:, 1].mean()
    offset = np.array([128.0, 128.0 - scale * (eye_y + mouth[1]) / 2])
    assert np.abs(stable * scale + offset - MEAN_FACE_STABLE).max() < 0.01


def test_astronaut_mouth_is_centred(astronaut, astronaut_landmarks):
    frames = np.repeat(astronaut[None], 3, axis=0)
    landmarks = np.repeat(astronaut_landmarks[None], 3, axis=0)
    out = mouth_rois(frames, landmarks)
    assert out.rois.shape == (3, 88, 88) and out.rois.dtype == np.uint8
    assert out.transforms.shape == (3, 2, 3)
    assert 38 < out.native_mouth_width < 50  # her smile is ~43 px wide in the 512 px photo
    # The lip points' mean maps to the ROI centre; the stable points land on the mean face (up to the
    # crop's translation); her wide smile is ~59 px in the aligned frame (a neutral mean-face mouth: 45).
    m = out.transforms[0].astype(np.float64)
    mapped = landmarks[0] @ m[:, :2].T + m[:, 2]
    assert np.allclose(mapped[list(MOUTH_POINTS)].mean(axis=0), (44.0, 44.0), atol=1e-3)
    stable = mapped[list(STABLE_POINTS)]
    shift = (stable - MEAN_FACE_STABLE).mean(axis=0)
    assert np.abs(stable - shift - MEAN_FACE_STABLE).max() < 4.0
    assert 50 < np.linalg.norm(mapped[61] - mapped[291]) < 65
    # Pixels: her lips, cut straight from the photo and scaled like the ROI, are found at its centre.
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    lips = landmarks[0][list(MOUTH_POINTS)]
    x0, y0 = np.floor(lips.min(axis=0)).astype(int)
    x1, y1 = np.ceil(lips.max(axis=0)).astype(int)
    scale = float(np.sqrt(np.linalg.det(m[:, :2])))
    template = cv2.resize(gray[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    match = cv2.matchTemplate(out.rois[0], template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(match)
    centre = (bx + template.shape[1] / 2, by + template.shape[0] / 2)
    # The box centre of the lips is not their point mean; they agree within a few pixels.
    assert best > 0.8 and abs(centre[0] - 44) < 4 and abs(centre[1] - 44) < 6
    assert np.array_equal(out.rois[0], out.rois[2])


def test_roi_matches_a_direct_warp(astronaut, astronaut_landmarks):
    """The ROI equals warping the gray frame with the returned transform (no hidden offset)."""
    out = mouth_rois(astronaut[None], astronaut_landmarks[None])
    m = out.transforms[0].astype(np.float64)
    centred = m.copy()
    centred[:, 2] += m[:, :2].sum(axis=1) * 0.5 - 0.5  # continuous -> pixel-centre convention
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    direct = cv2.warpAffine(gray, centred, (88, 88), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert np.abs(direct.astype(int) - out.rois[0]).mean() < 1.0


def test_scale_is_normalised(astronaut, astronaut_landmarks):
    """The same face at 4x the resolution gives nearly the same ROI (area-reduced, not aliased)."""
    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    small = mouth_rois(astronaut[None], astronaut_landmarks[None])
    large = mouth_rois(big[None], astronaut_landmarks[None] * 4)
    assert large.native_mouth_width == pytest.approx(4 * small.native_mouth_width, rel=1e-4)
    assert np.abs(large.rois[0].astype(int) - small.rois[0]).mean() < 3.0


def test_mouth_at_the_frame_edge_is_padded(astronaut, astronaut_landmarks):
    # Cut the frame through the upper lip: the lower half of the ROI falls off the frame.
    cut = astronaut[:145].copy()
    out = mouth_rois(cut[None], astronaut_landmarks[None])
    assert out.rois.shape == (1, 88, 88)
    # Padding repeats the border: same ROI as from a frame whose last row was repeated beforehand.
    extended = cv2.copyMakeBorder(cut, 0, 512 - 145, 0, 0, cv2.BORDER_REPLICATE)
    reference = mouth_rois(extended[None], astronaut_landmarks[None])
    assert np.abs(out.rois.astype(int) - reference.rois).max() <= 1
    # A face half out of the top-left corner (landmarks at negative coordinates) is no error either.
    corner = mouth_rois(astronaut[None], astronaut_landmarks[None] - (230, 150))
    assert corner.rois.shape == (1, 88, 88)


def test_smoothing_window_averages_the_alignment(astronaut, astronaut_landmarks):
    rng = np.random.default_rng(0)
    landmarks = astronaut_landmarks[None] + rng.normal(0, 1.5, (12, 478, 2)).astype(np.float32)
    frames = np.repeat(astronaut[None], 12, axis=0)
    raw = mouth_rois(frames, landmarks, smooth_window=1)
    smooth = mouth_rois(frames, landmarks, smooth_window=12)
    spread_raw = raw.transforms[:, :, :2].std(axis=0).sum()
    spread_smooth = smooth.transforms[:, :, :2].std(axis=0).sum()
    assert spread_smooth < 0.6 * spread_raw


def test_mouth_widths():
    lm = np.zeros((2, 478, 2), np.float32)
    lm[:, 291] = [[3, 4], [6, 8]]
    assert mouth_widths(lm).tolist() == [5.0, 10.0]


def test_bad_input_raises(astronaut, astronaut_landmarks):
    with pytest.raises(ValueError):
        mouth_rois(astronaut[None], astronaut_landmarks[None, :100])
    with pytest.raises(ValueError):
        mouth_rois(astronaut[None].astype(np.float32), astronaut_landmarks[None])
    with pytest.raises(ValueError):
        mouth_rois(np.repeat(astronaut[None], 2, axis=0), astronaut_landmarks[None])
    bad = astronaut_landmarks[None].copy()
    bad[0, 61] = np.nan
    with pytest.raises(ValueError):
        mouth_rois(astronaut[None], bad)
    with pytest.raises(ValueError):
        mouth_rois(astronaut[None], astronaut_landmarks[None], size=100, crop=96)


def test_normalize_rois():
    rois = np.array([[[0, 255]]], np.uint8)
    out = normalize_rois(rois)
    assert out.dtype == np.float32
    assert out[0, 0].tolist() == pytest.approx([-MOUTH_MEAN / MOUTH_STD, (1 - MOUTH_MEAN) / MOUTH_STD])
    assert normalize_rois(np.full((1, 2, 2), MOUTH_MEAN, np.float32)) == pytest.approx(0.0, abs=1e-6)
