"""TALL thumbnail layout: four consecutive face crops tiled 2x2 into one image, and back.

Xu et al., "TALL: Thumbnail Layout for Deepfake Video Detection" (ICCV 2023): a clip of 4 frames is
resized to 112x112 thumbnails and tiled row-major into one 224x224 image, so an image model (Swin)
sees space and time at once. The grid order is fixed::

    +---------+---------+
    | frame 0 | frame 1 |
    +---------+---------+
    | frame 2 | frame 3 |
    +---------+---------+

:func:`tall_layout` and :func:`tall_inverse` are exact inverses (pure index rearrangement with
:func:`einops.rearrange`), for images and for heatmaps. :func:`heatmap_to_frame` maps a thumbnail's
heatmap back through the crop box that :func:`vidfake.preprocessing.faces.crop_faces` used.

Array conventions (numpy arrays are channels-last, torch tensors channels-first):

=====================  ==========================  =========================
input                  layout (``tall_layout``)     notes
=====================  ==========================  =========================
``(4, h, w)``          ``(2h, 2w)``                 numpy or torch heatmaps
``(4, h, w, C)``       ``(2h, 2w, C)``              numpy image
``(B, 4, h, w, C)``    ``(B, 2h, 2w, C)``           numpy batch
``(4, C, h, w)``       ``(C, 2h, 2w)``              torch image
``(B, 4, C, h, w)``    ``(B, C, 2h, 2w)``           torch batch
=====================  ==========================  =========================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from einops import rearrange

__all__ = ["GRID", "LAYOUT", "THUMB", "heatmap_to_frame", "tall_inverse", "tall_layout", "tall_thumbnails"]

THUMB = 112
"""Side of one thumbnail in pixels."""
LAYOUT = 224
"""Side of the tiled layout in pixels (``2 * THUMB``)."""
GRID = 2
"""Thumbnails per row and per column; the layout holds ``GRID * GRID = 4`` frames."""

# einops patterns, keyed by (is_torch, ndim) of the stacked thumbnails.
_FORWARD = {
    (False, 3): "(gh gw) h w -> (gh h) (gw w)",
    (False, 4): "(gh gw) h w c -> (gh h) (gw w) c",
    (False, 5): "b (gh gw) h w c -> b (gh h) (gw w) c",
    (True, 3): "(gh gw) h w -> (gh h) (gw w)",
    (True, 4): "(gh gw) c h w -> c (gh h) (gw w)",
    (True, 5): "b (gh gw) c h w -> b c (gh h) (gw w)",
}
_INVERSE = {
    (False, 2): "(gh h) (gw w) -> (gh gw) h w",
    (False, 3): "(gh h) (gw w) c -> (gh gw) h w c",
    (False, 4): "b (gh h) (gw w) c -> b (gh gw) h w c",
    (True, 2): "(gh h) (gw w) -> (gh gw) h w",
    (True, 3): "c (gh h) (gw w) -> (gh gw) c h w",
    (True, 4): "b c (gh h) (gw w) -> b (gh gw) c h w",
}
# Position of the frame axis and of the spatial axes for each forward case.
_FRAME_AXIS = {3: 0, 4: 0, 5: 1}


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def tall_layout(frames: Any) -> Any:
    """Tile 4 thumbnails 2x2, row-major (frame 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right).

    Args:
        frames: 4 thumbnails stacked on the frame axis, numpy (channels-last) or torch
            (channels-first); see the module table. Any dtype; all thumbnails share one size
            (``THUMB`` x ``THUMB`` for TALL).

    Returns:
        The layout, same type and dtype.

    Raises:
        ValueError: the frame axis does not hold 4 thumbnails, or the rank is not in the table.
    """
    torch_in = _is_torch(frames)
    key = (torch_in, frames.ndim)
    if key not in _FORWARD:
        kind = "torch tensor" if torch_in else "numpy array"
        raise ValueError(f"tall_layout: unsupported {kind} of shape {tuple(frames.shape)}")
    axis = _FRAME_AXIS[frames.ndim]
    if frames.shape[axis] != GRID * GRID:
        raise ValueError(
            f"tall_layout: expected {GRID * GRID} thumbnails on axis {axis}, got shape {tuple(frames.shape)}"
        )
    return rearrange(frames, _FORWARD[key], gh=GRID, gw=GRID)


def tall_inverse(layout: Any) -> Any:
    """Split a layout back into its 4 thumbnails: the exact inverse of :func:`tall_layout`.

    Works on images and on heatmaps: a ``(224, 224)`` saliency map over the layout becomes
    ``(4, 112, 112)``, one map per frame, ready for :func:`heatmap_to_frame`.

    Args:
        layout: ``(2h, 2w)``, ``(2h, 2w, C)`` / ``(B, 2h, 2w, C)`` numpy, or ``(C, 2h, 2w)`` /
            ``(B, C, 2h, 2w)`` torch.

    Raises:
        ValueError: odd spatial size or unsupported rank.
    """
    torch_in = _is_torch(layout)
    key = (torch_in, layout.ndim)
    if key not in _INVERSE:
        kind = "torch tensor" if torch_in else "numpy array"
        raise ValueError(f"tall_inverse: unsupported {kind} of shape {tuple(layout.shape)}")
    pattern = _INVERSE[key]
    height_axis = {(False, 2): 0, (False, 3): 0, (False, 4): 1, (True, 2): 0, (True, 3): 1, (True, 4): 2}[key]
    height, width = layout.shape[height_axis], layout.shape[height_axis + 1]
    if height % GRID or width % GRID:
        raise ValueError(f"tall_inverse: spatial size {height}x{width} is not divisible by {GRID}")
    return rearrange(layout, pattern, gh=GRID, gw=GRID)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    # INTER_AREA when shrinking (no aliasing of the very traces the detector looks for), LINEAR otherwise.
    interpolation = cv2.INTER_AREA if min(height, width) > size else cv2.INTER_LINEAR
    out = cv2.resize(image, (size, size), interpolation=interpolation)
    return out.reshape(size, size, *image.shape[2:])


def tall_thumbnails(frames: np.ndarray | Sequence[np.ndarray], size: int = THUMB) -> np.ndarray:
    """Resize 4 frames (usually face crops) to ``size`` x ``size`` and tile them with :func:`tall_layout`.

    Args:
        frames: ``(4, H, W, C)`` or ``(4, H, W)`` numpy, or a sequence of 4 arrays of possibly different
            sizes; frames that are not square are stretched (crop them square first, e.g. with
            :func:`vidfake.preprocessing.faces.crop_faces`).
        size: thumbnail side.

    Returns:
        ``(2*size, 2*size, C)`` (or ``(2*size, 2*size)``) with the input dtype.

    Raises:
        ValueError: not exactly 4 frames.
    """
    if len(frames) != GRID * GRID:
        raise ValueError(f"tall_thumbnails: expected {GRID * GRID} frames, got {len(frames)}")
    thumbs = np.stack([_resize(np.asarray(f), size) for f in frames])
    return tall_layout(thumbs)


def heatmap_to_frame(
    heat: np.ndarray,
    crop_box: Sequence[float] | np.ndarray,
    frame_shape: Sequence[int],
    *,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Paste a thumbnail heatmap back onto the frame it was cropped from.

    The heatmap covers the square ``crop_box`` (``x0, y0, x1, y1`` pixels, ``x1``/``y1`` exclusive, as
    returned by :func:`vidfake.preprocessing.faces.crop_faces`); it is resized to the box and pasted,
    clipped to the frame. Thumbnail pixel ``(r, c)`` lands at frame pixel
    ``(y0 + (r + 0.5) * bh / h - 0.5, x0 + (c + 0.5) * bw / w - 0.5)``; the rest of the frame is 0.

    Args:
        heat: ``(h, w)`` float heatmap over one thumbnail (any range; values are kept).
        crop_box: the crop's box in frame pixels; it may extend past the frame (padded crops).
        frame_shape: ``(H, W)`` or ``(H, W, C)`` of the frame.
        interpolation: cv2 flag for the resize (``cv2.INTER_NEAREST`` keeps blocks).

    Returns:
        ``(H, W)`` float32.

    Raises:
        ValueError: ``heat`` is not 2D or the box is empty.
    """
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heatmap_to_frame: heat must be (h, w), got shape {heat.shape}")
    x0, y0, x1, y1 = (int(round(float(v))) for v in crop_box)
    box_w, box_h = x1 - x0, y1 - y0
    if box_w <= 0 or box_h <= 0:
        raise ValueError(f"heatmap_to_frame: empty crop box {tuple(crop_box)}")
    height, width = int(frame_shape[0]), int(frame_shape[1])
    out = np.zeros((height, width), dtype=np.float32)
    # Intersection of the box with the frame, in frame and in box coordinates.
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if fx0 >= fx1 or fy0 >= fy1:
        return out
    resized = cv2.resize(heat, (box_w, box_h), interpolation=interpolation)
    out[fy0:fy1, fx0:fx1] = resized[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    return out
