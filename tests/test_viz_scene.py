"""Visualisations on the scene path: a clip without a usable face, scored by the scene branch on whole frames.

The end-to-end tests run the shipped detector (``Detector.from_pretrained("default")``, whose scene branch
is the shipped head over the ImageNet EfficientNet-Lite0 trunk) on synthetic faceless clips. The Grad-CAM
is checked two ways: its differentiable logit is the branch's own score, and with a trunk and head whose
heatmap is known exactly (the head reads the mean red level; the "trunk" averages 32x32 pixel cells) the
heat on the decoded frames falls on the red square.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from vidfake import viz
from vidfake.branches import sigmoid
from vidfake.result import ClipScore, DetectionResult
from vidfake.scene import TEMPORAL_NAMES, Lite0Trunk, SceneBranch, SceneConfig, SceneHead, prepare_frames

FPS = 25.0
SHAPE = (160, 240)  # the centre square the scene branch keeps: x 40-200, all rows
BOX = (40, 0, 200, 160)


def _shapes_clip(t: int = 40, h: int = SHAPE[0], w: int = SHAPE[1]) -> np.ndarray:
    """Moving coloured shapes on a slowly changing background: ``(t, h, w, 3) uint8``, no face."""
    yy, xx = np.mgrid[:h, :w]
    frames = np.empty((t, h, w, 3), np.uint8)
    for k in range(t):
        f = frames[k]
        f[...] = (30 + 2 * k, 60, 90)
        f[(xx - 30 - 4 * k) ** 2 + (yy - 50 - 2 * k) ** 2 < 20**2] = (230, 40, 40)
        f[(yy > 100) & (yy < 130) & (xx > 200 - 3 * k) & (xx < 240 - 3 * k)] = (40, 220, 60)
    return frames


@pytest.fixture(scope="module")
def detector():
    from vidfake.detector import Detector

    det = Detector.from_pretrained("default")
    assert "scene" in det.branches  # the shipped detector.json lists the scene branch
    yield det
    det.close()


def _assert_scene_path(res: DetectionResult) -> None:
    status = {b.name: b.status for b in res.branches}
    assert res.faces_found == 0 and status["scene"] == "ok", status
    assert all(status[b] == "skipped: no usable face (scene path)" for b in ("image2d", "tall", "lip"))


@pytest.fixture(scope="module")
def scene_clip(detector):
    res, details = detector.analyze(_shapes_clip(), kind="video", source="shapes.mp4", keep_details=True)
    _assert_scene_path(res)
    return res, details


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


# ------------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("shape", [(160, 240), (161, 240), (240, 160), (240, 161), (100, 100)])
def test_view_box_is_the_centre_square_prepare_frames_keeps(shape):
    """Golden: 4 px green bands just inside the box's edges and red bands just outside; the prepared
    frame's edges are green with no red, so the box is exact (one pixel off brings red in)."""
    h, w = shape
    x0, y0, x1, y1 = (int(v) for v in SceneBranch(SceneConfig(), None).view_box(h, w))
    assert x1 - x0 == y1 - y0 == min(h, w) and 0 <= x0 and 0 <= y0 and x1 <= w and y1 <= h
    frame = np.zeros((h, w, 3), np.uint8)
    if w > h:
        frame[:, x0 - 4 : x0], frame[:, x1 : x1 + 4] = (255, 0, 0), (255, 0, 0)
        frame[:, x0 : x0 + 4], frame[:, x1 - 4 : x1] = (0, 255, 0), (0, 255, 0)
        edges = prepare_frames(frame[None])[0][:, [0, 1, 2, -3, -2, -1]]
    elif h > w:
        frame[y0 - 4 : y0], frame[y1 : y1 + 4] = (255, 0, 0), (255, 0, 0)
        frame[y0 : y0 + 4], frame[y1 - 4 : y1] = (0, 255, 0), (0, 255, 0)
        edges = prepare_frames(frame[None])[0][[0, 1, 2, -3, -2, -1]]
    else:
        assert (x0, y0, x1, y1) == (0, 0, w, h)
        return
    assert edges[..., 1].mean() > 150 and edges[..., 0].mean() < 40


# ------------------------------------------------------------------------------------------ timeline
def _timeline_pixels(tmp_path, clips, colour: str) -> int:
    res = DetectionResult(source="c.mp4", kind="video", probability_fake=0.8, threshold=0.5, verdict="fake",
                          three_class=(0.2, 0.75, 0.05), clips=tuple(clips), num_frames=40, fps=FPS,
                          width=240, height=160, frames_used=40)
    path = viz.plot_timeline(res, tmp_path / "t.png")
    assert _png_size(path) == viz.TIMELINE_SIZE
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    c = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    blended = np.round(0.85 * c + 0.15 * 255)  # the spans are drawn at alpha 0.85 over white
    return int((np.abs(rgb - blended).max(-1) <= 3).sum())


def test_timeline_draws_scene_windows_and_other_clip_branches(tmp_path):
    scene = ClipScore("scene", 0, 37, 0.0, 38 / FPS, 0.8, 0)
    hub = ClipScore("hf_video", 0, 39, 0.0, 40 / FPS, 0.3, 0)
    tall = ClipScore("tall", 0, 3, 0.0, 4 / FPS, 0.6, 0)
    assert _timeline_pixels(tmp_path, [scene], "#9467bd") > 1000  # ~8 px x ~900 px span
    assert _timeline_pixels(tmp_path, [tall], "#9467bd") == 0
    assert _timeline_pixels(tmp_path, [tall, hub], "#8c564b") > 1000  # unknown branches are drawn too


# ------------------------------------------------------------------------------------------ Grad-CAM
@pytest.mark.slow
def test_scene_gradcam_logit_is_the_branch_score_and_scores_do_not_move(detector, scene_clip):
    res, details = scene_clip
    branch = detector.branches["scene"]
    (window,) = details.windows["scene"]
    before = branch.window_logits([window])
    (clip,) = [c for c in res.clips if c.branch == "scene"]
    assert clip.probability == pytest.approx(sigmoid(float(before[0])), abs=1e-12)
    with torch.enable_grad():
        logit, last = branch.window_logit_graph(window)
    assert last.shape == (len(window.indices), 1280, 7, 7) and last.requires_grad
    assert abs(logit.item() - before[0]) < 1e-4
    cam = branch.gradcam(window)
    assert cam.shape == (len(window.indices), 256, 256) and cam.dtype == np.float32
    assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() == 1.0
    assert np.all((cam.max(axis=(1, 2)) == 1.0) | (cam.max(axis=(1, 2)) == 0.0))  # each map alone
    np.testing.assert_array_equal(branch.window_logits([window]), before)


@pytest.mark.slow
def test_scene_gradcam_of_a_still_clip_is_finite(detector, scene_clip):
    """A still window has zero standard deviations over frames: their gradient is 0, not NaN."""
    _, details = scene_clip
    (window,) = details.windows["scene"]
    still = type(window)(0, tuple(range(8)), np.repeat(window.frames[:1], 8, axis=0))
    with torch.enable_grad():
        logit, _ = detector.branches["scene"].window_logit_graph(still)
    assert abs(logit.item() - detector.branches["scene"].window_logits([still])[0]) < 1e-4
    assert np.isfinite(detector.branches["scene"].gradcam(still)).all()


# ------------------------------------------------------------------------------------------ report
@pytest.mark.slow
def test_scene_clip_report_writes_every_picture(detector, scene_clip, tmp_path):
    res, details = scene_clip
    maps = viz.video_heatmaps(res, details, detector)
    (window,) = details.windows["scene"]
    assert maps.branch == "scene" and len(maps.frames) == 4
    expected = [window.indices[k] for k in np.linspace(0, len(window.indices) - 1, 4).round().astype(int)]
    assert [f.frame_index for f in maps.frames] == expected  # evenly spread, first and last included
    for f in maps.frames:
        assert tuple(f.crop_box) == BOX and f.frame.shape == (*SHAPE, 3)
        assert f.model_input.shape == (256, 256, 3) and f.heat_input.shape == (256, 256)
        assert f.heat_frame.shape == SHAPE and f.heat_frame.max() <= 1
        assert not f.heat_frame[:, : BOX[0]].any() and not f.heat_frame[:, BOX[2] :].any()
    assert "scene branch" in maps.title and "frames 0-" in maps.title

    paths = viz.render_report(res, details, tmp_path, detector=detector)
    assert set(paths) == {"timeline", "heatmaps", "html"}  # no lip window: no mouth strip
    assert _png_size(paths["timeline"]) == viz.TIMELINE_SIZE
    assert _png_size(paths["heatmaps"]) == viz.VIDEO_HEATMAP_SIZE
    text = paths["html"].read_text(encoding="utf-8")
    assert "heatmaps not drawn" not in text
    assert "decided by</th><td>the scene path" in text
    assert "Grad-CAM of the scene branch on its highest-scoring window" in text


# ------------------------------------------------------------------------------------------ localisation
class _CellMeans(nn.Module):
    """A stand-in trunk whose last feature map is the normalised RGB averaged over 32x32 cells (7x7 at 224)."""

    def __init__(self):
        super().__init__()
        self.conv_stem, self.bn1 = nn.AvgPool2d(32), nn.Identity()
        self.blocks = nn.ModuleList([nn.Identity()])
        self.conv_head, self.bn2 = nn.Identity(), nn.Identity()


def _red_head() -> SceneHead:
    """Logit = the window's mean over frames of the last map's mean red level (feature 6 of 24 + motion)."""
    d = 24 + len(TEMPORAL_NAMES)  # per frame: mean and std of 2 maps x 3 channels; then mean and std over frames
    coef = np.zeros(d)
    coef[6] = 1.0
    return SceneHead(("lite0", "temporal"), np.zeros(d), np.ones(d), coef, 0.0)


def _red_square_clip(t: int = 40) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    frames = np.full((t, *SHAPE, 3), 30, np.uint8)
    boxes = []
    for k in range(t):
        x, y = 60 + 2 * k, 30 + k  # 48 px square, always inside the centre square x 40-200
        frames[k, y : y + 48, x : x + 48] = (230, 30, 30)
        boxes.append((x, y, x + 48, y + 48))
    return frames, boxes


@pytest.mark.slow
def test_scene_heatmap_falls_on_what_the_head_reads(detector, monkeypatch):
    """Golden-style: the head's logit grows with red, so every shown frame's heat lies on the red square
    (within one 32 px trunk cell, 23 frame pixels here) and peaks on it."""
    fake = SimpleNamespace(head=_red_head(), trunk=Lite0Trunk(model=_CellMeans()))
    monkeypatch.setattr(detector.branches["scene"], "model", fake)
    frames, boxes = _red_square_clip()
    res, details = detector.analyze(frames, kind="video", source="red.mp4", keep_details=True)
    _assert_scene_path(res)
    maps = viz.video_heatmaps(res, details, detector, branch="scene")
    assert len(maps.frames) == 4
    cell = 23
    for f in maps.frames:
        x0, y0, x1, y1 = boxes[f.frame_index]
        heat = f.heat_frame
        assert heat.max() > 0.9
        r, c = np.unravel_index(np.argmax(heat), heat.shape)
        assert x0 <= c < x1 and y0 <= r < y1
        near = heat[max(0, y0 - cell) : y1 + cell, max(0, x0 - cell) : x1 + cell].sum()
        assert near / heat.sum() >= 0.95  # measured 1.0 (0.24 with the head's sign flipped)
        assert heat[y0:y1, x0:x1].sum() / heat.sum() >= 0.7  # measured 0.80-0.84 (0.02 flipped)
