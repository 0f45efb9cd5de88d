"""Pure image transforms shared by inference and training.

All functions take and return ``(H, W, 3) uint8 [0, 255]`` RGB numpy arrays unless stated.
"""

from __future__ import annotations

import math

import numpy as np

#: Longest side / shortest side that :func:`resize_for_model` resizes whole; beyond it only the centre.
_MAX_ASPECT = 8


def _resize_geometry(height: int, width: int, size: int) -> tuple[int, int, int, int, int, int, float]:
    """Where :func:`resize_for_model` cuts, and to what it resizes: ``(y0, x0, h, w, nh, nw, scale)``.

    ``(y0, x0, h, w)`` is the part of the image kept before resizing (all of it unless the image is more
    elongated than ``_MAX_ASPECT``), ``(nh, nw)`` the size it is resized to, ``scale`` the resize factor.
    """
    h, w, y0, x0 = height, width, 0, 0
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if max(nh, nw) > _MAX_ASPECT * size:
        # Guard: resizing a 1 x 60000 image (a few KB as PNG) whole would allocate size x 13 M pixels
        # (9 GB) to keep the centre square. Keep the centre of the long side, _MAX_ASPECT times the
        # short side, first; the short side and the scale are unchanged, and images up to 1:_MAX_ASPECT
        # never come here.
        if nw > nh:
            keep = min(w, math.ceil(w * _MAX_ASPECT * size / nw))
            x0, w = (w - keep) // 2, keep
        else:
            keep = min(h, math.ceil(h * _MAX_ASPECT * size / nh))
            y0, h = (h - keep) // 2, keep
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    return y0, x0, h, w, nh, nw, scale


def resize_for_model(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to ``size`` and centre-crop a ``size x size`` square.

    The 2D detector sees whole images this way at training and at inference, so the aspect ratio is
    kept (no stretching, which would add a resampling trace of its own). Downscaling uses area
    interpolation, upscaling bilinear.

    Args:
        image: ``(H, W, 3) uint8``.
        size: output side in pixels.

    Returns:
        ``(size, size, 3) uint8``.
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    y0, x0, h, w, nh, nw, scale = _resize_geometry(image.shape[0], image.shape[1], size)
    if (h, w) != image.shape[:2]:
        image = image[y0 : y0 + h, x0 : x0 + w]
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(image[top : top + size, left : left + size])


def resize_for_model_box(height: int, width: int, size: int) -> tuple[float, float, float, float]:
    """The region of an ``(height, width)`` image that ``resize_for_model(image, size)`` keeps.

    Returns ``x0, y0, x1, y1`` in the image's pixels: a heatmap over the model's input maps back onto
    the image through it.
    """
    y0, x0, h, w, nh, nw, _ = _resize_geometry(height, width, size)
    top, left = (nh - size) // 2, (nw - size) // 2
    sx, sy = w / nw, h / nh
    return x0 + left * sx, y0 + top * sy, x0 + (left + size) * sx, y0 + (top + size) * sy
