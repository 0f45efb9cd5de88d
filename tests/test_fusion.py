"""Fusion and calibration fitting (vidfake.training.fusion) and its round trip through detector.json."""

from __future__ import annotations

import numpy as np
import pytest

from vidfake.detector import DetectorConfig, FusionParams
from vidfake.training.fusion import (
    ScoredItem,
    fit_and_write,
    fit_image_calibration,
    fit_semi_share,
    fit_video_fusion,
)


def _rows(n=60, seed=0, missing_lip_every=4):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        y = i % 2
        cls3 = 0 if y == 0 else (2 if i % 4 == 1 else 1)
        logits = {
            "image2d": rng.normal(2.0 * y - 1.0, 1.0),     # informative
            "tall": rng.normal(-1.5 * y + 0.5, 1.0),       # anti-correlated on this set: must get weight 0
            "lip": rng.normal(1.0 * y - 0.5, 1.0),          # weakly informative
        }
        if i % missing_lip_every == 0:
            del logits["lip"]
        rows.append(ScoredItem(f"v{i}", y, cls3, "m", "s", "video", logits))
    return rows


def test_video_fusion_weights_signal_and_never_inverts_a_branch():
    coef, means, bias, loo = fit_video_fusion(_rows(), l2=1.0)
    assert coef["image2d"] > 0.5
    assert coef["tall"] == pytest.approx(0.0, abs=1e-6)
    assert coef["lip"] >= 0.0
    y = np.array([r.label for r in _rows()])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, loo) > 0.8  # leave-one-out, not in-sample
    # Mean imputation uses the mean over rows where the branch ran.
    lips = [r.logits["lip"] for r in _rows() if "lip" in r.logits]
    assert means["lip"] == pytest.approx(np.mean(lips))


def test_missing_branch_contributes_its_mean():
    fp = FusionParams(coef={"image2d": 1.0, "tall": 0.0, "lip": 2.0}, mean={"image2d": 0.0, "tall": 0.0,
                      "lip": 0.5}, bias=-0.25)
    p_missing, w = fp.fuse({"image2d": 1.0})
    p_at_mean, _ = fp.fuse({"image2d": 1.0, "lip": 0.5})
    assert p_missing == pytest.approx(p_at_mean)
    assert set(w) == {"image2d"}


def test_semi_share_and_image_calibration():
    rows = _rows()
    coef, bias = fit_semi_share(rows, ("image2d", "tall", "lip"))
    assert set(coef) == {"image2d", "tall", "lip"} and np.isfinite(bias)
    img = [ScoredItem(f"i{k}", k % 2, k % 2, "m", "s", "image", {"image2d": 4.0 * (k % 2) - 2.0 + 0.3 * np.sin(k)})
           for k in range(40)]
    t, b, semi, p = fit_image_calibration(img)
    assert t > 0 and 0.0 <= semi <= 1.0
    assert np.all(p[1::2] > 0.5) and np.all(p[0::2] < 0.5)


def test_detector_json_round_trip(tmp_path):
    base = DetectorConfig(image_model="image2d_test", tall_model="tall_swin_test", lip_model="lip_test")
    img = [ScoredItem(f"i{k}", k % 2, k % 2, "m", "s", "image", {"image2d": float(k % 2) * 2 - 1}) for k in range(20)]
    cfg, summary = fit_and_write(tmp_path, _rows(), img, base)
    back = DetectorConfig.from_file(tmp_path / "detector.json")
    assert back.fusion == cfg.fusion and back.fusion.fitted
    assert back.image_model == "image2d_test"
    assert summary["video"]["loo_auc"] > 0.8 and "auc_image2d" in summary["video"]


def test_unknown_detector_config_key_is_an_error(tmp_path):
    (tmp_path / "detector.json").write_text('{"image_model": "x", "colour": "blue"}')
    with pytest.raises(ValueError, match="colour"):
        DetectorConfig.from_file(tmp_path / "detector.json")
