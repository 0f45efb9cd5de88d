"""The still-image probe (vidfake.probe): the LOSO candidate it ships, its detector path, its training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidfake.probe import PROBE_FILE, ImageProbe, probe_path
from vidfake.scene import SceneHead


@pytest.fixture(scope="module")
def probe():
    return ImageProbe().load()


@pytest.fixture(scope="module")
def shipped():
    from vidfake.detector import Detector

    return Detector()


def _image(seed: int, h: int = 300, w: int = 420) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_missing_or_foreign_head_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        ImageProbe(tmp_path / "nope.safetensors")
    foreign = tmp_path / "scene_like.safetensors"
    SceneHead(("lite0", "temporal"), np.zeros(3), np.ones(3), np.zeros(3), 0.0).save(foreign)
    with pytest.raises(ValueError, match="scene_like.safetensors"):
        ImageProbe(foreign).image_logits([_image(0)])


def test_probe_is_the_loso_candidate_it_was_chosen_as(probe):
    """The shipped head reads what the LOSO cache calls lite0_multi and blends in the score it calls
    rigid_draws1: same features, the same stability score under the same fixed draw, same blended logit."""
    import torch

    from vidfake.probe import RIGID_SIGMA, RIGID_START, RigidTerm, rigid_noise, rigid_score
    from vidfake.training import features as F
    from vidfake.training.probe import CANDIDATE, RIGID

    ex_name, block = F.CANDIDATES[CANDIDATE]
    image = _image(1)
    cached = F.EXTRACTORS[ex_name].build()(image, [], Path("x.jpg"))[block][0]  # view 0: level-0 wire input
    head = SceneHead.load(probe_path())
    term = RigidTerm.load(probe_path())
    assert term is not None and probe.rigid is not None
    # The cache's candidate is the shipped term's recipe: same block, same relative sigma, draw 0.
    assert RIGID == "rigid_draws1" and F.CANDIDATES[RIGID][:2] == ("lite0_rigid_draws", "draws")
    assert (RIGID_START, RIGID_SIGMA) == (F.RIGID_MID_START, F.RIGID_MID_SIGMAS[0]) == (term.start, term.sigma)
    np.testing.assert_array_equal(term.noise, rigid_noise(0))
    cached_score = F.rigid_draws_features(probe.trunk, F.global_view(image, 0)[None], "x.jpg")["draws"][0, 0]
    # The score once more by hand: the shipped noise on blocks.5's input, the last stages run again.
    m = F._lite0_backbone().model
    x = F._to_input(F.global_view(image, 0)[None], 224)
    with torch.inference_mode():
        y = m.bn1(m.conv_stem(x))
        for stage in m.blocks[: term.start]:
            y = stage(y)
        noisy = y + term.sigma * y.pow(2).mean().sqrt() * torch.from_numpy(term.noise)
        for stage in m.blocks[term.start :]:
            y, noisy = stage(y), stage(noisy)
        a, b = m.bn2(m.conv_head(y)).mean((2, 3))[0], m.bn2(m.conv_head(noisy)).mean((2, 3))[0]
    score = 1.0 - float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    assert cached_score == pytest.approx(score, rel=1e-3, abs=1e-7)
    expected = term.blend(head.logits([{"multi": cached}])[0], score)
    got = probe.image_logits([F.global_view(image, 0)])[0]
    assert got == pytest.approx(expected, abs=1e-3)
    feats = probe.trunk.frame_features(F.global_view(image, 0)[None])
    assert rigid_score(feats, feats[:, -2560:-1280])[0] == pytest.approx(0.0, abs=1e-9)


def test_rigid_term_round_trips_and_rejects_malformed(tmp_path):
    from vidfake.probe import RigidTerm, rigid_noise, save_probe

    head = SceneHead(("multi",), np.zeros(3), np.ones(3), np.arange(3.0), 0.5)
    term = RigidTerm(rigid_noise(), 5, 0.1, -1.0, 2.0, 0.01, 0.004)
    save_probe(tmp_path / "h.safetensors", head, term, {"candidate": "x"})
    back = RigidTerm.load(tmp_path / "h.safetensors")
    np.testing.assert_array_equal(back.noise, term.noise)
    assert (back.start, back.sigma) == (5, 0.1)
    assert (back.probe_mean, back.probe_scale, back.score_mean, back.score_scale) == (-1.0, 2.0, 0.01, 0.004)
    assert SceneHead.load(tmp_path / "h.safetensors").bias == 0.5  # the head reads as before
    assert back.probe_weight == 1.0 and back.blend(1.0, 0.014) == pytest.approx(1.0 + 1.0)
    # The score alone (the shipped weight): the head's logit is not read.
    alone = RigidTerm(rigid_noise(), 5, 0.1, -1.0, 2.0, 0.01, 0.004, 0.0)
    save_probe(tmp_path / "alone.safetensors", head, alone)
    back = RigidTerm.load(tmp_path / "alone.safetensors")
    assert back.probe_weight == 0.0 and back.blend(1e6, 0.014) == back.blend(0.0, 0.014) == pytest.approx(1.0)
    # A file written before the weight was stored (config [start, sigma]) is the equal-weight blend.
    from safetensors.numpy import load_file, save_file

    old = load_file(str(tmp_path / "h.safetensors"))
    old["rigid_config"] = old["rigid_config"][:2]
    save_file(old, str(tmp_path / "old.safetensors"))
    assert RigidTerm.load(tmp_path / "old.safetensors").probe_weight == 1.0
    save_probe(tmp_path / "plain.safetensors", head, None)
    assert RigidTerm.load(tmp_path / "plain.safetensors") is None
    for name, bad in (("shape", RigidTerm(np.zeros((3, 8, 8), np.float32), 5, 0.1, 0.0, 1.0, 0.0, 1.0)),
                      ("block", RigidTerm(rigid_noise(), 4, 0.1, 0.0, 1.0, 0.0, 1.0)),
                      ("scale", RigidTerm(rigid_noise(), 5, 0.1, 0.0, 0.0, 0.0, 1.0)),
                      ("weight", RigidTerm(rigid_noise(), 5, 0.1, 0.0, 1.0, 0.0, 1.0, 2.0))):
        save_probe(tmp_path / f"bad_{name}.safetensors", head, bad)
        with pytest.raises(ValueError, match=f"bad_{name}.safetensors"):
            RigidTerm.load(tmp_path / f"bad_{name}.safetensors")


def test_perturbed_pass_reruns_only_the_last_stages(probe):
    """The trunk's second pass starts at the perturbed block: a perturbation that changes nothing gives
    the clean head embedding, and the clean features are frame_features' own."""
    frames = np.stack([_image(4, 224, 224), _image(5, 224, 224)])
    feats, same = probe.trunk.perturbed_features(frames, 5, lambda y: y)
    np.testing.assert_allclose(feats, probe.trunk.frame_features(frames), atol=1e-5)
    np.testing.assert_allclose(same, feats[:, -2560:-1280], atol=1e-4)
    _, moved = probe.trunk.perturbed_features(frames, 5, probe.rigid.perturb)
    assert not np.allclose(moved, same, atol=1e-4)


def test_shipped_detector_scores_stills_with_the_probe(shipped, probe):
    assert shipped.config.image_probe == PROBE_FILE and shipped.still is not None
    image = _image(2)
    r = shipped.detect(image, kind="image")
    z = float(probe.image_logits([image])[0])
    assert r.probability_fake == pytest.approx(shipped.config.fusion.calibrate_image(z), abs=1e-6)
    branch = next(b for b in r.branches if b.name == "image2d")
    assert branch.model == shipped.still_model_name == Path(PROBE_FILE).stem
    assert r.models == {shipped.still_model_name: shipped.identity[shipped.still_model_name]}
    # Video frames keep the fine-tuned 2D model.
    assert shipped.model_names["image2d"] == shipped.config.image_model != shipped.still_model_name
    # One frozen ImageNet trunk serves the probe and the scene branch.
    assert shipped.still.trunk is shipped.branches["scene"].model.trunk


def test_probe_gradcam_maps_onto_the_part_of_the_image_it_saw(shipped):
    from vidfake import viz

    image = _image(3, 200, 400)  # the probe sees the centre 200 x 200
    heat = viz.gradcam_image(shipped, image)
    assert heat.shape == (200, 400) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0
    assert heat[:, :90].max() == 0.0 and heat[:, 310:].max() == 0.0


def test_written_head_is_the_fitted_model():
    from vidfake.training.probe import fit_probe

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2, 12)).astype(np.float32)
    y = np.array([0, 1] * 30)
    x[y == 1, :, 0] += 1.0
    groups = np.array(["r1", "f1", "r2", "f2"] * 15)
    rows = x.reshape(-1, 12)
    blends = (x[y == 0][:5] + 0.5, groups[y == 0][:5])  # extra fakes tagged with their reals' groups
    for aux in (None, blends):
        head, term, model = fit_probe(x, y, groups, aux)
        assert term is None
        p = 1 / (1 + np.exp(-head.logits([{"multi": r} for r in rows])))
        np.testing.assert_allclose(p, model.predict_proba(rows)[:, 1], atol=1e-6)
    # With RIGID scores: the written head and term give the fitted blend's probabilities.
    score = rng.random((60, 2)) * 0.01 + (y[:, None] == 1) * 0.003
    head, term, model = fit_probe(x, y, groups, rigid=score)
    z = term.blend(head.logits([{"multi": r} for r in rows]), score.reshape(-1))
    ref = model.predict_proba(np.concatenate([rows, score.reshape(-1, 1)], axis=1))[:, 1]
    np.testing.assert_allclose(1 / (1 + np.exp(-z)), ref, atol=1e-9)
    # The score alone: the term carries weight 0 and still reproduces the fitted model.
    head, term, model = fit_probe(x, y, groups, rigid=score, probe_weight=0.0)
    assert term.probe_weight == 0.0
    ref = model.predict_proba(np.concatenate([rows, score.reshape(-1, 1)], axis=1))[:, 1]
    np.testing.assert_allclose(1 / (1 + np.exp(-term.blend(0.0, score.reshape(-1)))), ref, atol=1e-9)
    with pytest.raises(ValueError, match="self-blends"):
        fit_probe(x, y, groups, blends, rigid=score)


def test_image_only_refit_keeps_the_video_fusion(tmp_path):
    from dataclasses import replace

    from vidfake.detector import DetectorConfig, FusionParams
    from vidfake.training.fusion import ScoredItem, fit_and_write

    video = FusionParams(coef={"image2d": 0.2, "tall": 0.4, "lip": 0.3}, mean={"image2d": 0.1, "tall": 1.0, "lip": 1.2},
                         bias=-1.3, fitted=True)
    base = replace(DetectorConfig(), fusion=video, image_probe=PROBE_FILE)
    rng = np.random.default_rng(0)
    rows = [ScoredItem(f"{i}.jpg", i % 2, i % 2, "m", "s", "image", {"image2d": float(rng.normal(2 * (i % 2) - 1, 1))})
            for i in range(40)]
    cfg, summary = fit_and_write(tmp_path, [], rows, base)
    assert (cfg.fusion.coef, cfg.fusion.mean, cfg.fusion.bias) == (video.coef, video.mean, video.bias)
    assert cfg.fusion.image_temperature != 1.0 and summary["image"]["n"] == 40
    assert DetectorConfig.from_file(tmp_path / "detector.json").image_probe == PROBE_FILE
