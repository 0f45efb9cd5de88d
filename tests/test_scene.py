"""Scene branch: resampling to the common rate, motion features, the branch end to end, the feature cache."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from vidfake.scene import (
    TEMPORAL_NAMES,
    SceneConfig,
    SceneHead,
    available_frames,
    load_scene_branch,
    resample_indices,
    scene_head_path,
    temporal_features,
)
from vidfake.training.data import MediaItem
from vidfake.training.features import ViewSpec


def _moving_square(t: int, h: int = 120, w: int = 160, step: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    frames = np.repeat(base[None], t, 0).copy()
    for k in range(t):
        x = (10 + step * k) % (w - 30)
        frames[k, 40:70, x : x + 30] = (220, 180, 40)
    return frames


# --------------------------------------------------------------------------- time
@pytest.mark.parametrize("fps", [10.0, 25.0])
def test_resampling_removes_frame_rate_and_duration(fps):
    """2 s at 10 fps and 2 s at 25 fps: both 16 frames at 8 fps, each shown at its sample time."""
    n = int(2 * fps)
    assert available_frames(n, fps, 8.0) == 16
    idx = resample_indices(n, fps, 8.0, 16)
    assert len(idx) == 16 and len(set(idx.tolist())) == 16
    t = np.arange(16) / 8.0
    assert np.all(idx / fps <= t + 1e-9) and np.all(t < (idx + 1) / fps)


def test_plans_of_10_and_25_fps_clips_match():
    from vidfake.scene import SceneBranch

    b = SceneBranch(SceneConfig(), None)
    p10, p25 = b.plan(20, 1, fps=10.0), b.plan(50, 1, fps=25.0)
    assert [len(s.indices) for s in p10.spans] == [len(s.indices) for s in p25.spans] == [16]
    # A long clip gets several windows of the same length, none past its end.
    p = b.plan(300, 4, fps=30.0)
    assert len(p.spans) == 4 and all(len(s.indices) == 16 and max(s.indices) < 300 for s in p.spans)


def test_resample_window_outside_clip_raises():
    with pytest.raises(ValueError, match="outside"):
        resample_indices(20, 10.0, 8.0, 16, start=1)


# --------------------------------------------------------------------------- motion
def test_temporal_features_see_motion():
    still = np.repeat(_moving_square(1), 12, 0)
    moving = _moving_square(12)
    fs, fm = temporal_features(still), temporal_features(moving)
    assert fs.shape == fm.shape == (len(TEMPORAL_NAMES),)
    assert np.isfinite(fs).all() and np.isfinite(fm).all()
    k = TEMPORAL_NAMES.index("diff_mean")
    assert fs[k] == 0 and fm[k] > 0
    assert fm[TEMPORAL_NAMES.index("flow_p99")] > fs[TEMPORAL_NAMES.index("flow_p99")]


# --------------------------------------------------------------------------- branch
@pytest.fixture(scope="module")
def random_head(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    d = 8256 + len(TEMPORAL_NAMES)
    head = SceneHead(("lite0", "temporal"), rng.normal(size=d), np.abs(rng.normal(size=d)) + 1,
                     rng.normal(size=d) * 0.01, 0.1)
    path = tmp_path_factory.mktemp("head") / "scene_head.safetensors"
    head.save(path)
    return path


def test_head_round_trip(random_head):
    a = SceneHead.load(random_head)
    assert a.features == ("lite0", "temporal") and a.coef.shape == (8256 + len(TEMPORAL_NAMES),)


@pytest.mark.slow
def test_scene_branch_on_synthetic_clip(random_head):
    branch = load_scene_branch(random_head)
    out = branch.score_frames(_moving_square(80), fps=20.0, count=2)  # 4 s: two 16-frame windows
    assert set(out.per_track) == {0} and math.isfinite(out.logit)
    assert len(out.clips) == 2 and all(0 <= c.probability <= 1 for c in out.clips)
    assert out.inputs[0].frames.shape[1:] == (256, 256, 3)


@pytest.mark.slow
def test_scene_branch_on_real_face_sample(samples_dir):
    from vidfake.preprocessing.decoders import open_video

    path = scene_head_path()
    if not path.is_file():
        pytest.skip(f"{path} not shipped yet (python -m vidfake.training.scene --export)")
    with open_video(samples_dir / "real_face.mp4") as v:
        frames, fps = v.get_frames(list(range(v.num_frames))), v.fps
    out = load_scene_branch().score_frames(frames, fps)
    assert math.isfinite(out.logit)


# --------------------------------------------------------------------------- cache
def _clip_item(tmp_path: Path, name: str, fps: float, label: int) -> MediaItem:
    from vidfake.preprocessing.writers import write_video

    path = tmp_path / ("fake" if label else "real") / name
    path.parent.mkdir(exist_ok=True)
    write_video(path, _moving_square(int(2 * fps), seed=label), fps)
    return MediaItem(path=path, label=label, kind="video", split="train", group=name, method="none",
                     source="x/y", class3=label)


def test_cache_keyed_by_recipe_and_resumable(tmp_path, monkeypatch):
    from vidfake.training import scene as S

    items = [_clip_item(tmp_path, "a.mp4", 10.0, 1), _clip_item(tmp_path, "b.mp4", 25.0, 0)]
    spec = ViewSpec(2, 0)
    root = tmp_path / "cache"
    status = S.extract(items, spec, root, with_trunk=False)
    assert set(status.values()) == {"cached"}
    assert set(S.extract(items, spec, root, with_trunk=False).values()) == {"exists"}
    x = S.load(items, spec, "confound: duration (wire)", root)
    assert x.shape == (2, 2, 2)
    # Both clips are 2 s: after resampling, their wire length comes from the view's draw alone.
    assert (x[..., 1] >= 8).all() and (x[..., 1] <= 16).all()
    key = S.scene_extractor().key(spec)
    monkeypatch.setitem(S.RECIPE, "rate", 12.0)
    assert S.scene_extractor().key(spec) != key
    assert set(S.extract(items, spec, root, with_trunk=False).values()) == {"cached"}
    assert len(list(root.iterdir())) == 2


# --------------------------------------------------------------------------- data
@pytest.mark.data
def test_every_scene_row_gets_a_group(shared_data):
    from vidfake.training.data import read_manifest
    from vidfake.training.groups import assign_groups
    from vidfake.training.scene import SCENE_FAKE_GROUPS, SCENE_REAL_GROUPS, scene_items

    videos = read_manifest(shared_data, kind="video")
    groups = assign_groups(videos)  # raises on a row no rule places
    scene_methods = [v for v in videos if v.label == 1 and any(
        k in v.method.lower() for k in ("text-to-video", "image-to-video", "animatediff", "videocrafter",
                                        "dynamicrafter", "lavie", "seine", "sora", "cogvideo", "easyanimate",
                                        "allegro")) and "musev" not in v.method.lower()]  # MuseV: portraits
    placed = dict(zip((v.path for v in videos), groups, strict=True))
    assert scene_methods and all(placed[v.path] in SCENE_FAKE_GROUPS for v in scene_methods)
    items, item_groups = scene_items(shared_data)
    assert set(item_groups) == set(SCENE_FAKE_GROUPS) | set(SCENE_REAL_GROUPS)
    assert all(g in SCENE_FAKE_GROUPS for i, g in zip(items, item_groups, strict=True) if i.label == 1)


def test_frames_without_a_rate_are_taken_as_they_come():
    """Wire payloads carry no frame rate (validators send 8-129 frames at 8-30 fps): the branch takes
    them at its common rate instead of assuming 25 fps and thinning an 8-frame challenge to 2 frames."""
    from vidfake.scene import SceneBranch, SceneConfig

    b = SceneBranch(SceneConfig())
    (span,) = b.plan(12, 1, fps=None).spans
    assert span.indices == tuple(range(12))
    assert b.plan(8, 1).spans[0].indices == tuple(range(8))
