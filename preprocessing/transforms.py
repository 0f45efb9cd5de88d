"""Pure image transforms shared by inference and training.

All functions take and return ``(H, W, 3) uint8 [0, 255]`` RGB numpy arrays unless stated.
"""

from __future__ import annotations

import numpy as np


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
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(image[top : top + size, left : left + size])
