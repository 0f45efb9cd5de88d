"""Self-blended images (SBI): fakes made from one real face, for detectors that must meet unseen fakes.

Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022; reference code
mapooon/SelfBlendedImages (``src/utils/sbi.py``, ``blend.py``, ``funcs.py``; research-only licence, so
this is our own implementation of the recipe, not a copy). A real face is blended onto itself through
a soft mask after a slight colour / frequency change and a slight shift of one side, which leaves the
traces every face swap shares (a blending boundary, a colour and sharpness mismatch, a small
misalignment) without any generator's fingerprint:

1. mask: convex hull of the face landmarks (here mediapipe's 478 points: the whole mesh, or a region);
2. source-target augmentation: with the source (or, optionally, the target) given an RGB shift (p=0.3,
   +-20), a small hue/saturation/value shift, brightness and contrast +-10 %, then either a
   down-then-up rescale by 2 or 4 (nearest down, bilinear up) or a sharpening;
3. the source and the mask are shifted (x +-3 %, y +-1.5 %) and scaled (0.95 to 1/0.95);
4. the mask is deformed (elastic: uniform noise blurred with sigma 7, times 50 px, as SBI's
   ``ElasticTransform(alpha=50, sigma=7)``), resized to a random 192-256 px canvas, blurred (odd kernel
   5-25), cut to its plateau, blurred again (odd kernel 5-25, sigma 5-45), rescaled to [0, 1] and
   multiplied by a blend ratio from {0.25, 0.5, 0.75, 1, 1, 1};
5. ``fake = mask * source + (1 - mask) * target``.

Where we differ, and why:

- Frames here are whole frames or loose face crops, not SBI's margin crops, so all of the above runs in
  a working region of twice the landmarks' box around the face, and the elastic deformation runs on the
  192-256 px canvas (SBI deforms at crop resolution): the deformation is then relative to the face
  size, whatever the video resolution.
- SBI's ``HueSaturationValue(+-0.3)`` on uint8 changes at most one level (a quirk of albumentations'
  lookup tables); we use a small but effective +-3 hue levels (of 180) and +-10 saturation/value.
- SBI keeps only mask pixels equal to the maximum after the first blur (``mask[mask < 1] = 0``); float
  rounding can punch holes in that plateau, so we keep pixels within 1e-4 of it.
- Regions: SBI uses the 81-point dlib hull (75 %) or the 68-point one without the forehead (25 %);
  with mediapipe we draw the whole mesh (50 %), the mesh without the forehead (25 %), the central
  components (brows, eyes, nose, lips: 12.5 %) or the lower face (nose to chin: 12.5 %).
- Video: one :class:`SBIParams` drawn per clip and applied to every frame gives a temporally coherent
  blend (what a good face swap looks like); ``jitter`` perturbs it per frame (boundary, blend ratio,
  colour), the flicker of a per-frame swap.

With ``target_augmentation=True`` the augmentation may go to the target instead (SBI's other half):
the real counterpart of such a fake is then the augmented frame, returned with ``return_real=True``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from vidfake.preprocessing.errors import MediaError

logger = logging.getLogger(__name__)

__all__ = ["REGIONS", "SBIParams", "face_region_indices", "sample_sbi_params", "self_blend", "self_blend_clip"]

Region = Literal["full", "no_forehead", "center", "lower"]
REGIONS: dict[str, float] = {"full": 0.5, "no_forehead": 0.25, "center": 0.125, "lower": 0.125}
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
N_MESH = 478

# mediapipe face mesh indices (mp.solutions.face_mesh.FACEMESH_*), written out so that this module does
# not import mediapipe.
_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
         148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
_FOREHEAD = (10, 338, 297, 332, 284, 251, 21, 54, 103, 67, 109)
_BROWS = (276, 282, 283, 285, 293, 295, 296, 300, 334, 336, 46, 52, 53, 55, 63, 65, 66, 70, 105, 107)
_EYES = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466,
         7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
_NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327,
         344, 440)
_NOSE_LOWER = tuple(i for i in _NOSE if i not in (6, 168, 195, 197))  # without the bridge between the eyes
_LIPS = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267,
         269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415)
_JAW_BELOW_NOSE = (93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323)


def face_region_indices(region: str) -> tuple[int, ...] | None:
    """Mesh indices whose convex hull is ``region``; ``None`` for ``"full"`` (every point)."""
    if region == "full":
        return None
    if region == "no_forehead":
        return tuple(i for i in _OVAL if i not in _FOREHEAD) + _BROWS
    if region == "center":
        return _BROWS + _EYES + _NOSE + _LIPS
    if region == "lower":
        return _JAW_BELOW_NOSE + _NOSE_LOWER + _LIPS
    raise ValueError(f"unknown region {region!r}; known: {sorted(REGIONS)}")


@dataclass(frozen=True)
class SBIParams:
    """Every random choice of one self-blend, so one draw can serve every frame of a clip.

    Attributes:
        region: landmark hull used as the mask (see :data:`REGIONS`).
        augment_target: augment the target (the frame) instead of the source.
        rgb_shift: added to (R, G, B), in levels.
        hue_shift: added to OpenCV hue (0-180 scale).
        sat_shift, val_shift: added to saturation and value (0-255).
        brightness: added as a fraction of 255.
        contrast: gain ``1 + contrast``.
        frequency: ``"downscale"`` (nearest down by ``downscale``, bilinear up) or ``"sharpen"``.
        downscale: 2 or 4.
        sharpen_alpha, sharpen_lightness: albumentations-style sharpening kernel
            ``(1 - a) * identity + a * [[-1, -1, -1], [-1, 8 + l, -1], [-1, -1, -1]]``.
        shift: source and mask shift as fractions of the working region (x, y).
        scale: source and mask scale about the region centre.
        elastic_seed: seed of the mask's elastic displacement field.
        elastic_alpha, elastic_sigma: displacement scale (canvas px) and smoothing.
        canvas: ``(h, w)`` canvas the mask is deformed and blurred on.
        blur1: odd kernel of the first blur (sigma from the kernel).
        blur2, blur2_sigma: odd kernel and sigma of the second blur.
        blend_ratio: peak mask value.
        jitter: per-frame perturbation used by :func:`self_blend_clip` (0 = coherent blend).
    """

    region: Region = "full"
    augment_target: bool = False
    rgb_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    hue_shift: float = 0.0
    sat_shift: float = 0.0
    val_shift: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    frequency: Literal["downscale", "sharpen"] = "downscale"
    downscale: int = 2
    sharpen_alpha: float = 0.35
    sharpen_lightness: float = 0.75
    shift: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    elastic_seed: int = 0
    elastic_alpha: float = 50.0
    elastic_sigma: float = 7.0
    canvas: tuple[int, int] = (224, 224)
    blur1: int = 15
    blur2: int = 15
    blur2_sigma: float = 20.0
    blend_ratio: float = 1.0
    jitter: float = 0.0

    def __post_init__(self):
        if self.region not in REGIONS:
            raise ValueError(f"unknown region {self.region!r}; known: {sorted(REGIONS)}")
        if self.frequency not in ("downscale", "sharpen"):
            raise ValueError(f"frequency must be 'downscale' or 'sharpen', got {self.frequency!r}")
        for name in ("blur1", "blur2"):
            k = getattr(self, name)
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{name} must be an odd kernel size, got {k}")
        if not 0.0 < self.blend_ratio <= 1.0:
            raise ValueError(f"blend_ratio must be in (0, 1], got {self.blend_ratio}")
        if self.downscale < 1 or min(self.canvas) < 16 or self.scale <= 0 or self.jitter < 0:
            raise ValueError(f"invalid SBI parameters: {self}")


def sample_sbi_params(
    rng: np.random.Generator, *, jitter: float = 0.0, target_augmentation: bool = False
) -> SBIParams:
    """Draw one :class:`SBIParams` with SBI's distributions (see the module docstring).

    Args:
        rng: the only source of randomness.
        jitter: stored in the parameters for :func:`self_blend_clip`.
        target_augmentation: allow SBI's augmented-target half (p = 0.5); the caller must then take
            the real counterpart from ``return_real=True``.
    """
    regions = list(REGIONS)
    region = regions[int(rng.choice(len(regions), p=list(REGIONS.values())))]
    rgb = tuple(float(v) for v in rng.uniform(-20, 20, 3)) if rng.random() < 0.3 else (0.0, 0.0, 0.0)
    odd_kernels = np.arange(5, 26, 2)
    return SBIParams(
        region=region,
        augment_target=bool(target_augmentation and rng.random() < 0.5),
        rgb_shift=rgb,
        hue_shift=float(rng.uniform(-3, 3)),
        sat_shift=float(rng.uniform(-10, 10)),
        val_shift=float(rng.uniform(-10, 10)),
        brightness=float(rng.uniform(-0.1, 0.1)),
        contrast=float(rng.uniform(-0.1, 0.1)),
        frequency="downscale" if rng.random() < 0.5 else "sharpen",
        downscale=int(rng.choice([2, 4])),
        sharpen_alpha=float(rng.uniform(0.2, 0.5)),
        sharpen_lightness=float(rng.uniform(0.5, 1.0)),
        shift=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.015, 0.015))),
        scale=float(rng.uniform(0.95, 1 / 0.95)),
        elastic_seed=int(rng.integers(2**31)),
        canvas=(int(rng.integers(192, 257)), int(rng.integers(192, 257))),
        blur1=int(rng.choice(odd_kernels)),
        blur2=int(rng.choice(odd_kernels)),
        blur2_sigma=float(rng.integers(5, 46)),
        blend_ratio=float(rng.choice(BLEND_RATIOS)),
        jitter=float(jitter),
    )


# --------------------------------------------------------------------------- pieces
def _color_frequency(image: np.ndarray, p: SBIParams) -> np.ndarray:
    """SBI's source-target augmentation on ``(h, w, 3) uint8`` RGB."""
    x = image.astype(np.float32)
    if any(p.rgb_shift):
        x += np.asarray(p.rgb_shift, dtype=np.float32)
    x = np.clip(x, 0, 255)
    if p.hue_shift or p.sat_shift or p.val_shift:
        hsv = cv2.cvtColor(x.round().astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = np.mod(hsv[..., 0] + p.hue_shift, 180.0)
        hsv[..., 1:] = np.clip(hsv[..., 1:] + np.float32([p.sat_shift, p.val_shift]), 0, 255)
        x = cv2.cvtColor(hsv.round().astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    x = np.clip(x * (1.0 + p.contrast) + 255.0 * p.brightness, 0, 255)
    out = x.round().astype(np.uint8)
    h, w = out.shape[:2]
    if p.frequency == "downscale":
        small = cv2.resize(out, (max(1, w // p.downscale), max(1, h // p.downscale)),
                           interpolation=cv2.INTER_NEAREST)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    kernel = (1 - p.sharpen_alpha) * np.float32([[0, 0, 0], [0, 1, 0], [0, 0, 0]]) + p.sharpen_alpha * (
        np.float32([[-1, -1, -1], [-1, 8 + p.sharpen_lightness, -1], [-1, -1, -1]]))
    sharp = cv2.filter2D(out.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(sharp, 0, 255).round().astype(np.uint8)


def _elastic(mask: np.ndarray, p: SBIParams) -> np.ndarray:
    """Smooth random displacement of a ``(h, w) float32`` mask, the same field for the same seed."""
    h, w = mask.shape
    noise = np.random.default_rng(p.elastic_seed).uniform(-1, 1, (2, h, w)).astype(np.float32)
    dx = cv2.GaussianBlur(noise[0], (17, 17), p.elastic_sigma) * p.elastic_alpha
    dy = cv2.GaussianBlur(noise[1], (17, 17), p.elastic_sigma) * p.elastic_alpha
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mask, gx + dx, gy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _blend_mask(hull: np.ndarray, p: SBIParams) -> np.ndarray:
    """Hull mask ``(h, w) float32 {0, 1}`` -> soft blend mask ``(h, w) float32 [0, blend_ratio]``."""
    h, w = hull.shape
    ch, cw = p.canvas
    m = _elastic(cv2.resize(hull, (cw, ch), interpolation=cv2.INTER_LINEAR), p)
    m = cv2.GaussianBlur(m, (p.blur1, p.blur1), 0)
    if m.max() <= 0:
        raise MediaError("landmarks", "the face hull is too small to blend")
    m /= m.max()
    m[m < 1.0 - 1e-4] = 0.0  # keep the plateau only: the boundary moves inside the hull
    if m.max() <= 0:
        raise MediaError("landmarks", "the face hull is too small to blend")
    m = cv2.GaussianBlur(m, (p.blur2, p.blur2), p.blur2_sigma)
    m /= m.max()
    m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(m, 0.0, 1.0) * np.float32(p.blend_ratio)


def _check_frame(image: np.ndarray, what: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise MediaError(what, f"expected (H, W, 3) uint8 RGB, got {shape} {getattr(image, 'dtype', type(image))}")


def _check_landmarks(landmarks, what: str = "landmarks") -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] < 3:
        raise MediaError(what, f"expected (N, 2) pixel coordinates with N >= 3, got shape {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise MediaError(what, "landmarks hold NaN or infinite coordinates")
    return lm


# --------------------------------------------------------------------------- public API
def self_blend(
    image: np.ndarray,
    landmarks: np.ndarray,
    params: SBIParams | None = None,
    rng: np.random.Generator | None = None,
    *,
    return_real: bool = False,
):
    """Blend a real face onto itself.

    Args:
        image: ``(H, W, 3) uint8 [0, 255]`` RGB frame or face crop with the face in it.
        landmarks: ``(478, 2) float`` mediapipe face-mesh pixel coordinates ``(x, y)`` in ``image``
            (another landmark set works with ``region="full"``: its convex hull).
        params: the blend; drawn with :func:`sample_sbi_params` from ``rng`` when ``None``.
        rng: used only to draw ``params`` (default: a fresh, unseeded generator).
        return_real: also return the real counterpart (the frame itself, or the augmented frame when
            ``params.augment_target``).

    Returns:
        ``(fake, mask)``: ``(H, W, 3) uint8`` and ``(H, W) float32 [0, 1]`` (the share of the source in
        each pixel; ``fake == real`` wherever it is 0). With ``return_real``: ``(fake, mask, real)``.

    Raises:
        MediaError: wrong array shapes, non-finite landmarks, or a face hull too small or outside the
            image.
        ValueError: ``params.augment_target`` without ``return_real`` (the real would be wrong).
    """
    _check_frame(image, "image")
    lm = _check_landmarks(landmarks)
    if params is None:
        params = sample_sbi_params(rng if rng is not None else np.random.default_rng())
    if params.augment_target and not return_real:
        raise ValueError("params.augment_target augments the real frame too: pass return_real=True and "
                         "train on the returned real")
    H, W = image.shape[:2]
    x0, y0 = lm.min(axis=0)
    x1, y1 = lm.max(axis=0)
    fw, fh = x1 - x0, y1 - y0
    if min(fw, fh) < 4:
        raise MediaError("landmarks", f"face box {fw:.1f}x{fh:.1f} px is too small to blend")
    # Working region: twice the landmarks' box, clipped to the frame.
    rx0, ry0 = max(0, int(np.floor(x0 - fw / 2))), max(0, int(np.floor(y0 - fh / 2)))
    rx1, ry1 = min(W, int(np.ceil(x1 + fw / 2))), min(H, int(np.ceil(y1 + fh / 2)))
    if rx1 - rx0 < 8 or ry1 - ry0 < 8:
        raise MediaError("landmarks", f"the face box ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}) lies outside "
                                      f"the {W}x{H} image")
    rw, rh = rx1 - rx0, ry1 - ry0

    indices = face_region_indices(params.region)
    if indices is not None and lm.shape[0] != N_MESH:
        logger.debug("region %s needs the %d-point mesh; using the hull of all %d points",
                     params.region, N_MESH, lm.shape[0])
        indices = None
    pts = (lm if indices is None else lm[list(indices)]) - (rx0, ry0)
    hull = np.zeros((rh, rw), dtype=np.float32)
    shift_bits = 4  # sub-pixel hull vertices: small landmark motion moves the mask smoothly
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(pts * (1 << shift_bits)).astype(np.int32)), 1.0,
                       lineType=cv2.LINE_8, shift=shift_bits)
    if hull.sum() < 16:
        raise MediaError("landmarks", "the face hull covers fewer than 16 pixels of the image")

    if params.augment_target:
        real = _color_frequency(image, params)  # the whole frame: no seam at the working region's edge
        source = image[ry0:ry1, rx0:rx1]
    else:
        real = image
        source = _color_frequency(image[ry0:ry1, rx0:rx1], params)
    s = params.scale
    cx, cy = (rw - 1) / 2.0, (rh - 1) / 2.0
    M = np.float32([[s, 0, (1 - s) * cx + params.shift[0] * rw], [0, s, (1 - s) * cy + params.shift[1] * rh]])
    source = cv2.warpAffine(source, M, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    hull = cv2.warpAffine(hull, M, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if hull.max() <= 0:
        raise MediaError("landmarks", "the shifted face hull left the image")
    m = _blend_mask(hull, params)

    target = real[ry0:ry1, rx0:rx1].astype(np.float32)
    blended = m[..., None] * source.astype(np.float32) + (1.0 - m[..., None]) * target
    fake = real.copy()
    fake[ry0:ry1, rx0:rx1] = np.clip(blended.round(), 0, 255).astype(np.uint8)
    mask = np.zeros((H, W), dtype=np.float32)
    mask[ry0:ry1, rx0:rx1] = m
    return (fake, mask, real) if return_real else (fake, mask)


def _perturb(p: SBIParams, rng: np.random.Generator, jitter: float) -> SBIParams:
    """One frame's variation of a clip's blend; ``jitter = 1`` moves the boundary ~2 % of the region."""
    return dataclasses.replace(
        p,
        shift=(p.shift[0] + float(rng.normal(0, 0.02 * jitter)), p.shift[1] + float(rng.normal(0, 0.01 * jitter))),
        scale=p.scale * float(1 + rng.normal(0, 0.01 * jitter)),
        rgb_shift=tuple(float(v) for v in np.asarray(p.rgb_shift) + rng.normal(0, 4 * jitter, 3)),
        brightness=p.brightness + float(rng.normal(0, 0.02 * jitter)),
        contrast=p.contrast + float(rng.normal(0, 0.02 * jitter)),
        blend_ratio=float(np.clip(p.blend_ratio + rng.normal(0, 0.1 * jitter), 0.1, 1.0)),
        elastic_seed=int(rng.integers(2**31)),
    )


def self_blend_clip(
    frames: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator | None = None,
    *,
    jitter: float | None = None,
    params: SBIParams | None = None,
    return_real: bool = False,
):
    """Self-blend every frame of a clip with one parameter set.

    Args:
        frames: ``(T, H, W, 3) uint8 [0, 255]`` RGB.
        landmarks: ``(T, 478, 2) float`` per-frame mediapipe pixel coordinates.
        rng: draws ``params`` when ``None`` and the per-frame perturbations.
        jitter: per-frame perturbation; ``None`` takes ``params.jitter`` (0 for freshly drawn params).
            0 applies the identical blend to every frame (a frame with the same landmarks gets the same
            mask); > 0 also moves each frame's landmarks by ``0.01 * jitter`` of the face size and
            redraws the elastic field, the shift, the blend ratio and the colour around the clip's values.
        params: the clip's blend (default: drawn from ``rng``).
        return_real: also return the real counterparts (see :func:`self_blend`).

    Returns:
        ``(fakes, masks)``: ``(T, H, W, 3) uint8`` and ``(T, H, W) float32 [0, 1]``; with
        ``return_real``, ``(fakes, masks, reals)``.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.dtype != np.uint8 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise MediaError("frames", f"expected (T, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
    lms = np.asarray(landmarks, dtype=np.float64)
    if lms.ndim != 3 or lms.shape[0] != frames.shape[0] or lms.shape[2] != 2:
        raise MediaError("landmarks", f"expected ({frames.shape[0]}, N, 2) for {frames.shape[0]} frames, "
                                      f"got {lms.shape}")
    rng = rng if rng is not None else np.random.default_rng()
    j = float(jitter if jitter is not None else params.jitter if params is not None else 0.0)
    if j < 0:
        raise ValueError(f"jitter must be >= 0, got {j}")
    if params is None:
        params = sample_sbi_params(rng, jitter=j)
    outs = []
    for t in range(frames.shape[0]):
        p_t, lm_t = params, lms[t]
        if j > 0:
            p_t = _perturb(params, rng, j)
            face = float(np.max(np.ptp(_check_landmarks(lm_t), axis=0)))
            lm_t = lm_t + rng.normal(0, 0.01 * j * face, lm_t.shape)
        outs.append(self_blend(frames[t], lm_t, p_t, return_real=return_real))
    fakes = np.stack([o[0] for o in outs])
    masks = np.stack([o[1] for o in outs])
    if return_real:
        return fakes, masks, np.stack([o[2] for o in outs])
    return fakes, masks
