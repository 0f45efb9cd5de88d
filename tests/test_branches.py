"""Branch objects: built from a model's config, they decide spans, crops and inputs (issue 12)."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from vidfake.branches import (
    BRANCHES,
    FrameInput,
    Image2DBranch,
    LipBranch,
    MouthInput,
    TallBranch,
    TallInput,
    VideoContext,
    make_branch,
)
from vidfake.temporal_models import get_config
from vidfake.temporal_models.config import FACE_CROP_SCALE

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def configs():
    return {"image2d": get_config("efficientnet_lite0_detector"), "tall": get_config("tall_swin_compact"),
            "lip": get_config("lip_compact_mstcn")}


def test_branches_read_their_numbers_from_the_model_config(configs):
    image2d, tall, lip = (make_branch(b, configs[b]) for b in BRANCHES)
    assert isinstance(image2d, Image2DBranch) and isinstance(tall, TallBranch) and isinstance(lip, LipBranch)
    assert tall.crop_scale == image2d.crop_scale == FACE_CROP_SCALE
    assert (tall.frames_per_sample, tall.input_size, tall.thumb_size, tall.layout) == (4, 224, 112, "2x2")
    assert (lip.frames_per_sample, lip.input_size) == (25, 88)
    assert (image2d.frames_per_sample, image2d.input_size) == (1, 224)
    with pytest.raises(ValueError, match="unknown branch"):
        make_branch("audio", configs["tall"])


def test_a_changed_config_changes_the_plan(configs):
    tall = TallBranch(replace(configs["tall"], num_frames=2))
    assert all(len(s.indices) == 2 for s in tall.plan(100, 8).spans)
    lip = LipBranch(replace(configs["lip"], num_frames=10))
    plan = lip.plan(30, 2)
    assert plan.warning is None and [len(s.indices) for s in plan.spans] == [10, 10]
    short = LipBranch(configs["lip"]).plan(20, 2)
    assert short.spans == () and "20 frames, fewer than one 25-frame window" in short.warning
    assert LipBranch(configs["lip"]).plan(100, 0).spans == ()
    assert [s.indices for s in Image2DBranch(configs["image2d"]).plan(3, 16).spans] == [(0,), (1,), (2,)]


def test_plan_without_lost_frames_drops_only_the_spans_that_need_them(configs):
    plan = TallBranch(configs["tall"]).plan(64, 4)
    kept = plan.without({plan.spans[1].indices[2]})
    assert kept.spans == (plan.spans[0], *plan.spans[2:])


def _ctx(frames: np.ndarray, tracks=()) -> VideoContext:
    by_index = {i: i for i in range(len(frames))}
    return VideoContext(frames, by_index, list(tracks), 25.0, {i: i / 25.0 for i in range(len(frames))})


def test_crop_scale_comes_from_the_config(configs):
    """A wider crop scale in the config gives a wider crop box: the branch, not a literal, decides."""

    class Track:
        frame_indices = np.arange(4)
        boxes = np.tile(np.array([[60, 40, 100, 80]], np.float32), (4, 1))
        present = np.ones(4, bool)

    frames = np.random.default_rng(0).integers(0, 255, (4, 160, 200, 3), dtype=np.uint8)
    spans = TallBranch(configs["tall"]).plan(4, 1).spans
    narrow = TallBranch(configs["tall"]).prepare(_ctx(frames, [Track()]), spans)
    wide = TallBranch(replace(configs["tall"], crop_scale=2.0)).prepare(_ctx(frames, [Track()]), spans)
    side = lambda b: int(b[2] - b[0])  # noqa: E731
    assert side(narrow[0].boxes[0]) == round(40 * FACE_CROP_SCALE)
    assert side(wide[0].boxes[0]) == 80
    assert isinstance(narrow[0], TallInput) and narrow[0].layout.shape == (224, 224, 3)


def test_no_face_means_whole_frames_for_2d_and_tall_and_no_lip(configs):
    frames = np.random.default_rng(1).integers(0, 255, (30, 90, 160, 3), dtype=np.uint8)
    ctx = _ctx(frames)
    crops = Image2DBranch(configs["image2d"]).prepare(ctx, Image2DBranch(configs["image2d"]).plan(30, 2).spans)
    assert all(isinstance(c, FrameInput) and not c.face_found for c in crops)
    assert list(crops[0].box) == [0, -35, 160, 125]  # the whole frame, padded square
    assert LipBranch(configs["lip"]).prepare(ctx, LipBranch(configs["lip"]).plan(30, 1).spans) == []


def test_detector_keeps_typed_intermediates():
    from vidfake import Detector

    with Detector.from_pretrained("tiny", face_workers=1) as det:
        res, details = det.analyze(ROOT / "samples" / "real_face.mp4", keep_details=True)
    assert details.layouts and all(isinstance(x, TallInput) for x in details.layouts)
    assert details.mouth and all(isinstance(x, MouthInput) for x in details.mouth)
    assert details.crops and all(isinstance(x, FrameInput) for x in details.crops)
    assert {(f.track, f.frame_index) for f in res.frames} == {(c.track, c.index) for c in details.crops}
    assert res.mouth_roi_native_px == pytest.approx(np.median([m.native_width for m in details.mouth]))


def _float_constants(path: Path, value: float) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value == value
            and isinstance(n.value, float)]


def test_the_face_crop_scale_is_written_once():
    """The x1.3 crop scale lives in one config field; every other module reads it from a model config."""
    other_meanings = {"vidfake/miner/service.py"}  # a deadline safety factor that happens to be 1.3
    found = {}
    for folder in ("vidfake", "preprocessing", "temporal_models", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            lines = _float_constants(path, FACE_CROP_SCALE)
            if lines and str(path.relative_to(ROOT)) not in other_meanings:
                found[str(path.relative_to(ROOT))] = lines
    assert list(found) == ["temporal_models/config.py"], found
