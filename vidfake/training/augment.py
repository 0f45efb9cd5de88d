"""What the BitMind subnet's validators do to media before a miner sees it, as a reusable augmentation.

Source: BitMind-AI/bitmind-subnet, ``bitmind/utils/image_transforms.py`` (``apply_augmentation_by_level``,
``get_base_transforms``, ``get_random_augmentations[_medium|_hard]``, the DeeperForensics distortions)
and ``bitmind/protocol.py`` (``prepare_image_synapse`` / ``prepare_video_synapse``). Our own code,
reproducing their arithmetic:

- level 0 (p = 0.25): centre crop to a square, resize to 256 (PIL bilinear);
- level 1 (p = 0.45): on the whole image, rotation by U(-20, 20) degrees (torchvision ``rotate``
  without an interpolation argument: nearest neighbour, black corners, same size), a random square
  crop of 20-100 % of the area resized to 256 (torchvision ``RandomResizedCrop(256, scale=(0.2, 1),
  ratio=(1, 1))``: up to ten tries, then the centred largest square), horizontal and vertical flips
  (see the quirks below);
- level 2 (p = 0.15): level 1, then DeeperForensics distortions at level 0 or 1 each: colour saturation
  (chroma x 0.4), contrast (pixels x 0.85, truncated), and a down-then-up rescale by 2 (bilinear);
- level 3 (p = 0.15): level 1, then saturation, contrast, rescale, colour Gaussian noise and Gaussian
  blur, each at level 0, 1 or 2 (x0.4 / x0.3 chroma, x0.85 / x0.725 contrast, rescale by 2 / 3, noise
  variance 0.001 / 0.002 in YCbCr, blur kernel 7 / 9 with sigma k / 6);
- then every frame goes to the miner as a JPEG at PIL's default quality 75 (4:2:0), 256 x 256.

Float images are turned to uint8 by truncation, as validators do (``(x * 255).astype(uint8)`` and
``ToPILImage``'s ``mul(255).byte()``).

Two validator quirks, and what we do:

- Their ``RandomHorizontalFlipWithParams`` / ``RandomVerticalFlipWithParams`` never flip (``params`` is
  set to ``{}`` in ``__init__``, so ``forward`` always takes the "reuse params" branch, and
  ``{}.get("do_flip", False)`` is False). Their intent is p = 0.5 for each. We draw horizontal flips
  with p = 0.5 (harmless for a face detector) and vertical flips with p = 0 by default: upside-down
  faces are never sent, and training on them would only cost capacity. Pass
  ``hflip_probability=0`` to reproduce exactly what validators send today.
- For videos their ``ComposeWithParams`` reuses rotation and crop for every frame but redraws each
  distortion's level per frame (the distortion wrapper keeps no ``params``). We apply one parameter set
  to every frame, as the project's design asks; colour noise is still fresh on every frame
  (``noise_seed`` and the frame index seed it), as theirs is.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import cv2
import numpy as np

from vidfake.preprocessing.errors import MediaError

logger = logging.getLogger(__name__)

__all__ = [
    "LEVEL_PROBABILITIES",
    "SubnetAugParams",
    "apply_subnet_aug",
    "sample_subnet_aug",
    "sample_subnet_level",
]

LEVEL_PROBABILITIES: dict[int, float] = {0: 0.25, 1: 0.45, 2: 0.15, 3: 0.15}
JPEG_QUALITY = 75  # PIL's default, used by prepare_image_synapse / prepare_video_synapse
_CHUNK_BYTES = 64 << 20  # float32 working set of one geometry batch (about 6 frames of 720p)

# DeeperForensics parameters by level (1-based; level 0 = off). Validators use levels <= 2.
SATURATION = (0.4, 0.3, 0.2, 0.1, 0.0)
CONTRAST = (0.85, 0.725, 0.6, 0.475, 0.35)
RESCALE = (2, 3, 4, 5, 6)
NOISE_VARIANCE = (0.001, 0.002, 0.005, 0.01, 0.05)
BLUR_KERNEL = (7, 9, 13, 17, 21)


@dataclass(frozen=True)
class SubnetAugParams:
    """One challenge's augmentation, applied identically to every frame.

    Attributes:
        level: 0-3 (see the module docstring).
        size: output side (validators: 256).
        angle: rotation in degrees, counter-clockwise (levels >= 1).
        crop_scales: candidate area fractions for the square crop, tried in order; the first that fits
            the frame wins, none fitting gives the centred largest square (levels >= 1).
        crop_pos: ``(row, col)`` in [0, 1): where the crop sits in its free range.
        hflip, vflip: flips after the crop.
        saturation, contrast, rescale, noise, blur: DeeperForensics distortion levels, 0 = off.
        noise_seed: seeds the colour noise, together with the frame index.
        jpeg_quality: quality of the final JPEG.
    """

    level: int
    size: int = 256
    angle: float = 0.0
    crop_scales: tuple[float, ...] = (1.0,)
    crop_pos: tuple[float, float] = (0.5, 0.5)
    hflip: bool = False
    vflip: bool = False
    saturation: int = 0
    contrast: int = 0
    rescale: int = 0
    noise: int = 0
    blur: int = 0
    noise_seed: int = 0
    jpeg_quality: int = JPEG_QUALITY

    def __post_init__(self):
        if self.level not in LEVEL_PROBABILITIES:
            raise ValueError(f"level must be 0, 1, 2 or 3, got {self.level}")
        if self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")
        for name in ("saturation", "contrast", "rescale", "noise", "blur"):
            if not 0 <= getattr(self, name) <= 5:
                raise ValueError(f"{name} level must be in 0..5, got {getattr(self, name)}")
        if not self.crop_scales or not all(0 < s <= 1 for s in self.crop_scales):
            raise ValueError(f"crop_scales must be area fractions in (0, 1], got {self.crop_scales}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")


def sample_subnet_level(rng: np.random.Generator) -> int:
    """A level drawn with the validators' probabilities (0.25, 0.45, 0.15, 0.15)."""
    return int(rng.choice(4, p=list(LEVEL_PROBABILITIES.values())))


def sample_subnet_aug(
    level: int | None,
    rng: np.random.Generator,
    size: int = 256,
    *,
    hflip_probability: float = 0.5,
    vflip_probability: float = 0.0,
) -> SubnetAugParams:
    """Draw one challenge's augmentation.

    Args:
        level: 0-3, or ``None`` to draw it with the validators' probabilities.
        rng: the only source of randomness.
        size: output side.
        hflip_probability, vflip_probability: chance of each flip at levels >= 1 (validators' code: 0
            and 0, their intent: 0.5 and 0.5; see the module docstring).

    Returns:
        The parameters; frame-size independent, so one draw serves any image or clip.
    """
    if level is None:
        level = sample_subnet_level(rng)
    if level == 0:
        return SubnetAugParams(level=0, size=size)
    common = {
        "level": int(level),
        "size": size,
        "angle": float(rng.uniform(-20.0, 20.0)),
        "crop_scales": tuple(float(s) for s in rng.uniform(0.2, 1.0, 10)),
        "crop_pos": (float(rng.random()), float(rng.random())),
        "hflip": bool(rng.random() < hflip_probability),
        "vflip": bool(rng.random() < vflip_probability),
        "noise_seed": int(rng.integers(2**63)),
    }
    if level == 1:
        return SubnetAugParams(**common)
    if level == 2:
        cs, cc, rs = (int(v) for v in rng.integers(0, 2, 3))
        return SubnetAugParams(**common, saturation=cs, contrast=cc, rescale=rs)
    cs, cc, rs, gn, gb = (int(v) for v in rng.integers(0, 3, 5))
    return SubnetAugParams(**common, saturation=cs, contrast=cc, rescale=rs, noise=gn, blur=gb)


# --------------------------------------------------------------------------- geometry
def _crop_box(h: int, w: int, p: SubnetAugParams) -> tuple[int, int, int]:
    """``(top, left, side)`` of the square crop, as torchvision's RandomResizedCrop.get_params picks it."""
    area = h * w
    for scale in p.crop_scales:
        side = int(round(np.sqrt(scale * area)))
        if 0 < side <= w and side <= h:
            top = min(int(p.crop_pos[0] * (h - side + 1)), h - side)
            left = min(int(p.crop_pos[1] * (w - side + 1)), w - side)
            return top, left, side
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side


def _level0(frame: np.ndarray, size: int) -> np.ndarray:
    """torchvision ``CenterCrop(min side)`` then ``Resize(size)`` on a PIL image."""
    from PIL import Image

    h, w = frame.shape[:2]
    m = min(h, w)
    top, left = int(round((h - m) / 2.0)), int(round((w - m) / 2.0))
    im = Image.fromarray(frame[top : top + m, left : left + m])
    return np.asarray(im.resize((size, size), Image.BILINEAR))


def _geometry(frames: np.ndarray, p: SubnetAugParams):
    """Rotate, crop, resize and flip ``(T, H, W, 3) uint8`` -> ``(T, 3, S, S) float32 [0, 1]`` tensor."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    x = F.rotate(x, p.angle, interpolation=InterpolationMode.NEAREST)
    top, left, side = _crop_box(x.shape[-2], x.shape[-1], p)
    x = F.resized_crop(x, top, left, side, side, [p.size, p.size], InterpolationMode.BILINEAR, antialias=True)
    if p.hflip:
        x = x.flip(-1)
    if p.vflip:
        x = x.flip(-2)
    return x


# --------------------------------------------------------------------------- DeeperForensics distortions
# Each takes and returns (H, W, 3) uint8 BGR, as the validators' wrappers hand it over.
def _ycc(bgr: np.ndarray) -> np.ndarray:
    """OpenCV float YCrCb of a 0-255 float image (chroma centred on 0.5, as cv2 does for floats)."""
    return cv2.cvtColor(bgr.astype(np.float32), cv2.COLOR_BGR2YCrCb)


def _saturation(bgr: np.ndarray, factor: float) -> np.ndarray:
    # Their studio-range YCbCr round trip reduces to chroma' = factor * chroma + (1 - factor) * 111.5 / 224
    # in OpenCV's float YCrCb, luma unchanged.
    ycc = _ycc(bgr)
    ycc[..., 1:] = factor * ycc[..., 1:] + (1.0 - factor) * (111.5 / 224.0)
    out = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR)
    return np.clip(out, 0, 255).astype(np.uint8)  # truncation, as their astype(uint8)


def _contrast(bgr: np.ndarray, factor: float) -> np.ndarray:
    return (bgr.astype(np.float32) * np.float32(factor)).astype(np.uint8)


def _rescale(bgr: np.ndarray, factor: int) -> np.ndarray:
    h, w = bgr.shape[:2]
    small = cv2.resize(bgr, (max(1, w // factor), max(1, h // factor)))
    return cv2.resize(small, (w, h))


def _noise(bgr: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    # Their noise is N(0, variance) on studio-range YCbCr / 255; in OpenCV's YCrCb that is a standard
    # deviation of sqrt(variance) * 255 * 255 / 219 on luma and * 255 * 255 / 224 on chroma.
    ycc = _ycc(bgr)
    std = np.sqrt(variance) * 255.0 * 255.0 / np.float32([219.0, 224.0, 224.0])
    ycc += (rng.standard_normal(ycc.shape) * std).astype(np.float32)
    out = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR)
    return np.clip(out, 0, 255).astype(np.uint8)


def _blur(bgr: np.ndarray, kernel: int) -> np.ndarray:
    return cv2.GaussianBlur(bgr, (kernel, kernel), kernel / 6.0)


def _distort(rgb01: np.ndarray, p: SubnetAugParams, rng: np.random.Generator) -> np.ndarray:
    """Distortions in the validators' order on one ``(S, S, 3) float32 [0, 1]`` RGB frame."""
    steps = [
        (p.saturation, lambda im, lv: _saturation(im, SATURATION[lv - 1])),
        (p.contrast, lambda im, lv: _contrast(im, CONTRAST[lv - 1])),
        (p.rescale, lambda im, lv: _rescale(im, RESCALE[lv - 1])),
        (p.noise, lambda im, lv: _noise(im, NOISE_VARIANCE[lv - 1], rng)),
        (p.blur, lambda im, lv: _blur(im, BLUR_KERNEL[lv - 1])),
    ]
    x = rgb01
    for lv, fn in steps:
        if lv:  # a level-0 distortion is skipped entirely, uint8 round trip included
            bgr = (x[..., ::-1] * 255).astype(np.uint8)
            x = fn(bgr, lv)[..., ::-1].astype(np.float32) / 255.0
    return x


def jpeg_roundtrip(frame: np.ndarray, quality: int) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB encoded as a PIL JPEG at ``quality`` and decoded back."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


# --------------------------------------------------------------------------- public
def apply_subnet_aug(frames: np.ndarray, params: SubnetAugParams) -> np.ndarray:
    """Apply one challenge's augmentation to an image or to every frame of a clip.

    Args:
        frames: ``(H, W, 3)`` or ``(T, H, W, 3)`` uint8 [0, 255] RGB.
        params: from :func:`sample_subnet_aug`.

    Returns:
        ``(S, S, 3)`` or ``(T, S, S, 3)`` uint8 RGB (``S = params.size``), decoded from JPEG at
        ``params.jpeg_quality``: what a miner receives.

    Raises:
        MediaError: not a uint8 RGB image or clip.
    """
    a = np.asarray(frames)
    single = a.ndim == 3
    clip = a[None] if single else a
    if clip.ndim != 4 or clip.shape[-1] != 3 or a.dtype != np.uint8 or min(clip.shape[:3]) < 1:
        raise MediaError("frames", f"expected (H, W, 3) or (T, H, W, 3) uint8 RGB, got {a.shape} {a.dtype}")
    if params.level == 0:
        out = [_level0(f, params.size) for f in clip]
    else:
        out = []
        chunk = max(1, _CHUNK_BYTES // (clip.shape[1] * clip.shape[2] * 3 * 4))  # bounds memory on 4K clips
        for start in range(0, clip.shape[0], chunk):
            x = _geometry(clip[start : start + chunk], params).permute(0, 2, 3, 1).contiguous().numpy()
            for t, frame in enumerate(x, start=start):
                if params.level >= 2:
                    frame = _distort(frame, params, np.random.default_rng([params.noise_seed, t]))
                out.append((frame * 255).astype(np.uint8))  # ToPILImage truncates: mul(255).byte()
    result = np.stack([jpeg_roundtrip(f, params.jpeg_quality) for f in out])
    return result[0] if single else result
