"""TALL layout golden tests: quadrant order, exact inverse, heatmaps back onto the frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidfake.preprocessing.faces import crop_faces
from vidfake.preprocessing.layout import (
    LAYOUT,
    THUMB,
    heatmap_to_frame,
    tall_inverse,
    tall_layout,
    tall_thumbnails,
)

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], dtype=np.uint8)


def _constant_thumbs() -> np.ndarray:
    return np.broadcast_to(COLOURS[:, None, None, :], (4, THUMB, THUMB, 3)).copy()


def test_quadrants_row_major_numpy():
    layout = tall_layout(_constant_thumbs())
    assert layout.shape == (LAYOUT, LAYOUT, 3) and layout.dtype == np.uint8
    h = THUMB
    quadrants = [layout[:h, :h], layout[:h, h:], layout[h:, :h], layout[h:, h:]]
    for k, quadrant in enumerate(quadrants):
        assert (quadrant == COLOURS[k]).all(), f"frame {k} is not in quadrant {k}"


def test_quadrants_torch_channels_first():
    thumbs = torch.from_numpy(_constant_thumbs()).permute(0, 3, 1, 2)[None].float()  # (1, 4, 3, h, w)
    layout = tall_layout(thumbs)
    assert isinstance(layout, torch.Tensor) and layout.shape == (1, 3, LAYOUT, LAYOUT)
    expected = torch.from_numpy(tall_layout(_constant_thumbs())).permute(2, 0, 1).float()
    assert torch.equal(layout[0], expected)
    assert torch.equal(tall_layout(thumbs[0]), expected)


def test_inverse_is_exact_for_every_supported_shape():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, THUMB, THUMB, 3), dtype=np.uint8)
    batch = rng.random((2, 4, THUMB, THUMB, 3)).astype(np.float32)
    maps = rng.random((4, THUMB, THUMB))
    for x in (images, batch, maps):
        y = tall_inverse(tall_layout(x))
        assert y.shape == x.shape and y.dtype == x.dtype and np.array_equal(y, x)
    t = torch.from_numpy(batch).permute(0, 1, 4, 2, 3).contiguous()
    assert torch.equal(tall_inverse(tall_layout(t)), t)
    assert torch.equal(tall_inverse(tall_layout(t[0])), t[0])
    layout = rng.random((LAYOUT, LAYOUT))
    assert np.array_equal(tall_layout(tall_inverse(layout)), layout)


def test_pixel_positions_golden():
    thumbs = np.zeros((4, THUMB, THUMB), dtype=np.float32)
    thumbs[3, 5, 7] = 1.0
    thumbs[1, 100, 2] = 2.0
    layout = tall_layout(thumbs)
    assert layout[THUMB + 5, THUMB + 7] == 1.0
    assert layout[100, THUMB + 2] == 2.0
    assert layout.sum() == 3.0


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        tall_layout(np.zeros((3, THUMB, THUMB, 3)))
    with pytest.raises(ValueError):
        tall_layout(np.zeros((THUMB, THUMB)))
    with pytest.raises(ValueError):
        tall_inverse(np.zeros((LAYOUT + 1, LAYOUT, 3)))
    with pytest.raises(ValueError):
        tall_thumbnails(np.zeros((5, 20, 20, 3), dtype=np.uint8))


def test_tall_thumbnails_resizes_each_frame():
    frames = [np.full((h, h, 3), k * 60, dtype=np.uint8) for k, h in enumerate((300, 112, 50, 200))]
    layout = tall_thumbnails(frames)
    assert layout.shape == (LAYOUT, LAYOUT, 3) and layout.dtype == np.uint8
    assert (tall_inverse(layout) == (np.arange(4) * 60)[:, None, None, None]).all()


def test_hot_pixel_lands_on_the_frame():
    """A hot pixel in thumbnail k, mapped back through its crop box, lands where that thumbnail came from."""
    height, width = 240, 320
    frames = np.zeros((4, height, width, 3), dtype=np.uint8)
    face_boxes = np.array(
        [[100, 60, 160, 120], [110, 60, 170, 120], [250, 150, 330, 230], [-20, -10, 40, 50]], np.float32
    )
    crops = crop_faces(frames, face_boxes, scale=1.3, size=THUMB)
    layout_heat = np.zeros((LAYOUT, LAYOUT), dtype=np.float32)
    r, c = 30, 80
    layout_heat[THUMB + r, c] = 1.0  # thumbnail 2 (bottom-left)
    heat = tall_inverse(layout_heat)
    assert heat.shape == (4, THUMB, THUMB) and heat[2, r, c] == 1.0
    x0, y0, x1, y1 = crops.boxes[2]
    side = x1 - x0
    expected = (y0 + (r + 0.5) * side / THUMB - 0.5, x0 + (c + 0.5) * side / THUMB - 0.5)
    frame_heat = heatmap_to_frame(heat[2], crops.boxes[2], (height, width))
    assert frame_heat.shape == (height, width) and frame_heat.dtype == np.float32
    peak = np.unravel_index(np.argmax(frame_heat), frame_heat.shape)
    assert abs(peak[0] - expected[0]) <= 1 and abs(peak[1] - expected[1]) <= 1
    # Nearest-neighbour keeps a block: the hot pixel covers side/112 frame pixels around the same place.
    blocky = heatmap_to_frame(heat[2], crops.boxes[2], (height, width), interpolation=0)
    ys, xs = np.nonzero(blocky)
    assert abs(ys.mean() - expected[0]) <= 1 and abs(xs.mean() - expected[1]) <= 1
    # The crop of frame 3 reaches past the top-left corner: only the part inside the frame is pasted.
    edge = heatmap_to_frame(np.ones((THUMB, THUMB), np.float32), crops.boxes[3], (height, width))
    bx0, by0, bx1, by1 = crops.boxes[3]
    assert bx0 < 0 and by0 < 0
    assert edge[:by1, :bx1].min() == pytest.approx(1.0) and edge.sum() == pytest.approx(by1 * bx1)
