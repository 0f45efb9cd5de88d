"""Mouth regions of interest, LipForensics style, from mediapipe face mesh landmarks.

LipForensics (Haliassos et al., "Lips Don't Lie", CVPR 2021; github.com/ahaliassos/LipForensics,
preprocessing adapted from mpc001/Lipreading_using_Temporal_Convolutional_Networks) crops mouths so:

1. smooth the 68 dlib landmarks over a 12-frame window;
2. estimate the similarity transform taking five stable points (dlib 33 = bottom of the nose,
   36/39 and 42/45 = eye corners) to the same points of a mean face in a 256x256 frame;
3. warp the frame with it, cut 96x96 around the mean of the warped mouth points (dlib 48-67) of the
   current frame, convert to grayscale;
4. the network sees the centre 88x88, normalised with mean 0.421 and std 0.165 on [0, 1] values.

Here the landmarks come from mediapipe face mesh (478 points) instead of dlib, mapped as below; the
similarity, mouth centring and the 96 -> 88 centre crop are composed into one affine warp straight
from the source frame to the 88x88 ROI (identical pixels to warping to 256x256, cutting 96x96 and
cropping 88x88, without losing what lies outside the 256x256 frame). Where the ROI reaches past the
source frame its border pixels are repeated (LipForensics shifted the crop instead, which moves the
mouth off-centre). Where the warp shrinks the source, the region is first reduced with area
averaging so the ROI is not aliased: the lip branch must not learn resampling traces that correlate
with the source's mouth size (see ``native_mouth_width``).

dlib-68 -> mediapipe face mesh indices (the widely used correspondence of the two topologies):

============================  ==========================================================
dlib 68                       mediapipe 478
============================  ==========================================================
33 (nose bottom, subnasale)   2
36, 39 (one eye: outer, inner)  33, 133
42, 45 (other eye: inner, outer)  362, 263
48-59 (outer lip, from corner)  61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181
60-67 (inner lip, from corner)  78, 82, 13, 312, 308, 317, 14, 87
mouth corners (width)         61, 291
============================  ==========================================================

Mean face: LipForensics' ``20words_mean_face.npy`` (from LRW) is a data file we do not ship. Ours is
derived from mediapipe's canonical face model (``mediapipe/modules/face_geometry/data/
canonical_face_model.obj``, Apache-2.0): the stable points' ``(x, -y)`` (orthographic front view),
scaled so the mouth corners 61-291 are 45 px apart (the mouth width in LipForensics' mean face, so
ROIs have LipForensics' scale), centred horizontally and placed so the midpoint between the eye line
and the mouth centre is the frame centre. Eye corners end up 81.5 px apart, the mouth centre at
``(128, 159.7)``. ``tests/test_mouth.py`` re-derives these numbers from the canonical model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "ALIGN_SIZE",
    "DLIB68_TO_MESH",
    "MEAN_FACE_STABLE",
    "MOUTH_CORNERS",
    "MOUTH_MEAN",
    "MOUTH_POINTS",
    "MOUTH_STD",
    "STABLE_POINTS",
    "MouthROIs",
    "mouth_rois",
    "mouth_widths",
    "normalize_rois",
]

MOUTH_MEAN = 0.421
"""Mean of LipForensics' grayscale mouth ROIs on [0, 1] values."""
MOUTH_STD = 0.165
"""Standard deviation of LipForensics' grayscale mouth ROIs on [0, 1] values."""
ALIGN_SIZE = 256
"""Side of the aligned (mean face) frame in pixels."""

DLIB68_TO_MESH: dict[int, int] = {
    33: 2,
    36: 33, 39: 133, 42: 362, 45: 263,
    48: 61, 49: 39, 50: 37, 51: 0, 52: 267, 53: 269, 54: 291, 55: 405, 56: 314, 57: 17, 58: 84, 59: 181,
    60: 78, 61: 82, 62: 13, 63: 312, 64: 308, 65: 317, 66: 14, 67: 87,
}  # fmt: skip
"""dlib 68-point index -> mediapipe face mesh index, for the points the mouth crop uses."""

STABLE_POINTS: tuple[int, ...] = tuple(DLIB68_TO_MESH[i] for i in (33, 36, 39, 42, 45))
"""Mesh indices of the five alignment points (nose bottom, eye corners)."""
MOUTH_POINTS: tuple[int, ...] = tuple(DLIB68_TO_MESH[i] for i in range(48, 68))
"""Mesh indices of the 20 lip points whose mean is the ROI centre."""
MOUTH_CORNERS: tuple[int, int] = (61, 291)
"""Mesh indices of the mouth corners; their distance is the mouth width."""

MEAN_FACE_STABLE = np.array(
    [
        [128.00, 139.46],  # 2: nose bottom
        [87.27, 95.92],  # 33: eye outer corner (image left)
        [110.99, 96.64],  # 133: eye inner corner
        [145.01, 96.64],  # 362: eye inner corner
        [168.73, 95.92],  # 263: eye outer corner (image right)
    ],
    dtype=np.float32,
)
"""``(5, 2)`` mean-face positions of :data:`STABLE_POINTS` in the 256x256 aligned frame (see module doc)."""


@dataclass(frozen=True, eq=False)
class MouthROIs:
    """Grayscale mouth crops of a run of frames.

    Attributes:
        rois: ``(T, size, size)`` uint8 grayscale [0, 255].
        native_mouth_width: median mouth width (landmarks 61-291) in source pixels; LipForensics'
            scale puts a mouth at ~45 px, so smaller values mean the ROI was upsampled.
        transforms: ``(T, 2, 3)`` float32 affine maps from source-frame coordinates to ROI coordinates
            (continuous pixels, as the landmarks): ``roi_xy = A @ [x, y, 1]``. Invert with
            ``cv2.invertAffineTransform`` to map ROI heatmaps back.
    """

    rois: np.ndarray
    native_mouth_width: float
    transforms: np.ndarray


def _check(frames: Any, landmarks: Any) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames)
    points = np.asarray(landmarks, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or 0 in frames.shape:
        raise ValueError(
            f"mouth_rois: expected (T, H, W, 3) uint8 RGB frames, got {frames.dtype} {frames.shape}"
        )
    if points.ndim != 3 or points.shape[0] != len(frames) or points.shape[2] != 2 or points.shape[1] < 468:
        raise ValueError(
            f"mouth_rois: expected ({len(frames)}, 478, 2) face mesh landmarks, got shape {points.shape}"
        )
    if not np.isfinite(points[:, list(STABLE_POINTS + MOUTH_POINTS)]).all():
        raise ValueError("mouth_rois: landmarks contain NaN or infinite values")
    return frames, points


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over axis 0 (``window`` rows, rounded up to odd), shrinking on both sides
    alike near the ends so steady motion is not biased."""
    half = window // 2
    if half == 0 or len(x) < 2:
        return x
    idx = np.arange(len(x))
    reach = np.minimum.reduce([np.full(len(x), half), idx, len(x) - 1 - idx])
    cumsum = np.concatenate([np.zeros((1, *x.shape[1:])), np.cumsum(x, axis=0)])
    lo, hi = idx - reach, idx + reach + 1
    return (cumsum[hi] - cumsum[lo]) / (hi - lo).reshape(-1, *([1] * (x.ndim - 1)))


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``src -> dst`` as a 2x3 matrix.

    ``estimateAffinePartial2D`` with a threshold no point can fail keeps every point an inlier, and
    its Levenberg-Marquardt refinement then gives the least-squares fit skimage's
    ``SimilarityTransform`` (LipForensics) computes, within 1e-4 px.
    """
    matrix, _ = cv2.estimateAffinePartial2D(
        src.astype(np.float32),
        dst.astype(np.float32),
        method=cv2.RANSAC,
        ransacReprojThreshold=1e9,
        refineIters=20,
    )
    if matrix is None:
        raise ValueError("mouth_rois: degenerate landmarks (the stable points do not define a similarity)")
    return matrix


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a after b`` for 2x3 affine matrices."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2]


def _pixel_centred(matrix: np.ndarray) -> np.ndarray:
    """Continuous-coordinate map -> the pixel-centre map cv2.warpAffine expects."""
    out = matrix.copy()
    out[:, 2] += matrix[:, :2].sum(axis=1) * 0.5 - 0.5
    return out


def _warp(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp ``frame`` through the continuous map ``matrix`` to ``size`` x ``size``.

    When the map shrinks the frame, the region it reads is first reduced with area averaging.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.8:
        inverse = cv2.invertAffineTransform(matrix)
        corners = (
            np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64) @ inverse.T
        )
        height, width = frame.shape[:2]
        x0, y0 = (max(int(np.floor(v)) - 2, 0) for v in corners.min(axis=0))
        x1, y1 = (int(np.ceil(v)) + 2 for v in corners.max(axis=0))
        x1, y1 = min(x1, width), min(y1, height)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            region = frame[y0:y1, x0:x1]
            new_w, new_h = max(round((x1 - x0) * scale), 1), max(round((y1 - y0) * scale), 1)
            small = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
            fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
            # small-image coordinates: ((x - x0) * fx, (y - y0) * fy); compose its inverse into the map.
            from_small = np.array([[1 / fx, 0, x0], [0, 1 / fy, y0]], dtype=np.float64)
            frame, matrix = small, _compose(matrix, from_small)
    return cv2.warpAffine(
        frame, _pixel_centred(matrix), (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def mouth_widths(landmarks: np.ndarray) -> np.ndarray:
    """Mouth width (distance of mesh points 61 and 291) per frame.

    Args:
        landmarks: ``(T, 478, 2)`` face mesh points in pixels.

    Returns:
        ``(T,)`` float32 widths in pixels.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    left, right = MOUTH_CORNERS
    return np.linalg.norm(points[:, left] - points[:, right], axis=-1).astype(np.float32)


def mouth_rois(
    frames: np.ndarray,
    landmarks: np.ndarray,
    *,
    size: int = 88,
    crop: int = 96,
    smooth_window: int = 12,
) -> MouthROIs:
    """Aligned grayscale mouth crops, LipForensics style (see the module docstring).

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB [0, 255], consecutive frames of one face track.
        landmarks: ``(T, 478, 2)`` face mesh points in frame pixels, e.g. ``FaceTrack.landmarks`` rows.
        size: output side (LipForensics' network input, 88).
        crop: LipForensics' window around the mouth in the aligned frame (96), from which training
            takes random 88x88 crops; ``size <= crop``. The result is always the centre ``size``
            square of that window (the same as a ``size`` window around the mouth), so pass
            ``size=crop`` to get the whole window for random-crop augmentation.
        smooth_window: frames averaged for the alignment transform (LipForensics averages 12: the
            current frame and the next 11; here the window is centred). 1 aligns each frame on its
            own landmarks.

    Returns:
        :class:`MouthROIs` with ``(T, size, size)`` uint8 grayscale crops.

    Raises:
        ValueError: shapes do not match, landmarks are not finite, or ``size > crop``.
    """
    if not 1 <= size <= crop:
        raise ValueError(f"mouth_rois: need 1 <= size <= crop, got size={size}, crop={crop}")
    if smooth_window < 1:
        raise ValueError(f"mouth_rois: smooth_window must be >= 1, got {smooth_window}")
    frames, points = _check(frames, landmarks)
    stable = _moving_average(points[:, list(STABLE_POINTS)], smooth_window)
    mouth = points[:, list(MOUTH_POINTS)]
    rois = np.empty((len(frames), size, size), dtype=np.uint8)
    transforms = np.empty((len(frames), 2, 3), dtype=np.float32)
    for t, frame in enumerate(frames):
        align = _similarity(stable[t], MEAN_FACE_STABLE)
        centre = mouth[t].mean(axis=0) @ align[:, :2].T + align[:, 2]
        # Centre of the ROI at the mouth: the 96x96 crop's centre 88x88 is the same square as an
        # 88x88 crop around the centre.
        to_roi = np.array([[1, 0, size / 2 - centre[0]], [0, 1, size / 2 - centre[1]]], dtype=np.float64)
        matrix = _compose(to_roi, align)
        rois[t] = cv2.cvtColor(_warp(frame, matrix, size), cv2.COLOR_RGB2GRAY)
        transforms[t] = matrix
    return MouthROIs(rois, float(np.median(mouth_widths(points))), transforms)


def normalize_rois(rois: np.ndarray) -> np.ndarray:
    """Scale ROIs to [0, 1] and standardise with LipForensics' statistics.

    Args:
        rois: ``(T, H, W)`` uint8 [0, 255], or floats already in [0, 1].

    Returns:
        float32 of the same shape: ``(x - MOUTH_MEAN) / MOUTH_STD``.
    """
    rois = np.asarray(rois)
    values = rois.astype(np.float32) / 255.0 if rois.dtype == np.uint8 else rois.astype(np.float32)
    return (values - np.float32(MOUTH_MEAN)) / np.float32(MOUTH_STD)
