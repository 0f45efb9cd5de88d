"""Metrics against hand-computed values, brute force, and the subnet's and gasbench's published rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidfake.metrics import (
    RewardReport,
    accuracy,
    balanced_accuracy,
    binary_report,
    brier,
    confusion_matrix,
    gasbench_score,
    log_loss,
    mcc,
    roc_auc,
    roc_curve,
    subnet_answer_valid,
    subnet_reward,
    subnet_total,
    three_class_labels,
)


# --------------------------------------------------------------------------- ranking
def test_roc_auc_golden_and_ties():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # fake 0.5 vs real 0.5 is a tie (1/2); the three other pairs are ordered: 3.5 / 4
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(0.875)
    assert roc_auc([1, 1, 0, 0], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)
    assert roc_auc([0, 1], [0.9, 0.1]) == 0.0


def test_roc_auc_matches_pairwise_count_and_curve_area():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(4, 60))
        y = rng.integers(0, 2, n)
        y[:2] = (0, 1)
        s = rng.random(n).round(1)  # many ties
        pos, neg = s[y == 1], s[y == 0]
        brute = ((pos[:, None] > neg).sum() + 0.5 * (pos[:, None] == neg).sum()) / (pos.size * neg.size)
        assert roc_auc(y, s) == pytest.approx(brute, abs=1e-12)
        fpr, tpr, _ = roc_curve(y, s)
        assert np.trapezoid(tpr, fpr) == pytest.approx(brute, abs=1e-12)


def test_roc_curve_golden():
    fpr, tpr, thr = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.8, 0.4, 0.35, 0.1])
    fpr, tpr, thr = roc_curve([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9])  # the tie is one point
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])


@pytest.mark.parametrize("fn", [roc_auc, roc_curve])
def test_ranking_needs_both_classes(fn):
    with pytest.raises(ValueError, match="single class"):
        fn([1, 1, 1], [0.2, 0.5, 0.9])


# --------------------------------------------------------------------------- decisions
def test_mcc_golden_binary_multiclass_and_degenerate():
    assert mcc([1, 1, 1, 0], [1, 0, 1, 1]) == pytest.approx(-1 / 3)
    # C = [[1,1,0],[0,2,0],[1,0,1]]: (4*6 - 12) / sqrt((36 - 12) * (36 - 14))
    assert mcc([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]) == pytest.approx(12 / math.sqrt(528))
    assert mcc([0, 1, 2, 0], [0, 1, 2, 0]) == pytest.approx(1.0)
    assert mcc([0, 1, 0, 1], [1, 1, 1, 1]) == 0.0  # constant prediction


def test_mcc_binary_equals_classic_formula():
    rng = np.random.default_rng(1)
    for _ in range(100):
        n = int(rng.integers(2, 40))
        y, q = rng.integers(0, 2, n), rng.integers(0, 2, n)
        tp, tn = int(((y == 1) & (q == 1)).sum()), int(((y == 0) & (q == 0)).sum())
        fp, fn = int(((y == 0) & (q == 1)).sum()), int(((y == 1) & (q == 0)).sum())
        d = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        assert mcc(y, q) == pytest.approx((tp * tn - fp * fn) / d if d else 0.0, abs=1e-12)


def test_confusion_accuracy_balanced_accuracy():
    np.testing.assert_array_equal(confusion_matrix([0, 0, 1, 2], [0, 1, 1, 0]), [[1, 1, 0], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(confusion_matrix([1, 0], [1, 1], labels=[1, 0]), [[1, 0], [1, 0]])
    with pytest.raises(ValueError, match="do not include"):
        confusion_matrix([0, 2], [0, 2], labels=[0, 1])
    assert accuracy([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx((2 / 3 + 1) / 2)


def test_brier_and_log_loss_golden():
    assert brier([0, 1, 1], [0.1, 0.8, 0.4]) == pytest.approx((0.01 + 0.04 + 0.36) / 3)
    assert log_loss([0, 1], [0.2, 0.7]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    assert log_loss([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-7), rel=1e-6)  # clipped, finite


@pytest.mark.parametrize("p", [[0.1, float("nan")], [0.1, 1.2], [0.1]])
def test_bad_probabilities_are_errors(p):
    with pytest.raises(ValueError):
        brier([0, 1], p)


def test_labels_must_be_binary():
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        brier([0, 2], [0.1, 0.2])


def test_binary_report_golden():
    r = binary_report([0, 0, 1, 1], [0.1, 0.5, 0.7, 0.9], threshold=0.5)
    assert r["n"] == 4 and r["n_fake"] == 2
    assert r["accuracy"] == pytest.approx(0.75)  # 0.5 >= threshold: called fake
    assert r["tpr"] == 1.0 and r["tnr"] == 0.5
    assert r["mcc"] == pytest.approx(2 / math.sqrt(12))
    assert r["auc"] == pytest.approx(1.0)
    assert r["brier"] == pytest.approx((0.01 + 0.25 + 0.09 + 0.01) / 4)
    one_class = binary_report([1, 1], [0.8, 0.2])
    assert one_class["auc"] is None and one_class["tnr"] is None and one_class["tpr"] == 0.5


# --------------------------------------------------------------------------- subnet reward
LABELS8 = [0, 1, 2, 0, 1, 2, 0, 1]


def _onehot(classes):
    return [np.eye(3)[c].tolist() for c in classes]


def test_subnet_reward_perfect():
    r = subnet_reward(LABELS8, _onehot(LABELS8), "image")
    assert isinstance(r, RewardReport)
    assert (r.reward, r.binary_mcc, r.multiclass_mcc, r.validity_penalty) == (1.0, 1.0, 1.0, 1.0)


def test_subnet_reward_swapped_fake_classes_golden():
    swapped = [0, 2, 1, 0, 2, 1, 0, 2]
    r = subnet_reward(LABELS8, _onehot(swapped), "video")
    # C = [[3,0,0],[0,0,3],[0,2,0]]: (3*8 - 21) / sqrt(42 * 42) = 1/14
    assert r.binary_mcc == pytest.approx(1.0)
    assert r.multiclass_mcc == pytest.approx(1 / 14)
    assert r.reward == pytest.approx(0.75 + 0.25 / 14)


def test_subnet_reward_invalid_answers_penalise_and_leave_the_window():
    swapped = [0, 2, 1, 0, 2, 1, 0, 2]
    answers = _onehot(swapped) + [None, [-1.0, -1.0, -1.0]]
    r = subnet_reward(LABELS8 + [1, 0], answers, "video")
    assert (r.n_answers, r.n_valid, r.n_scored) == (10, 8, 8)
    assert r.multiclass_mcc == pytest.approx(1 / 14)  # the invalid ones are not scored
    assert r.validity_penalty == pytest.approx(0.8)
    assert r.reward == pytest.approx((0.75 + 0.25 / 14) * 0.8)


def test_subnet_reward_clips_negative_mcc_and_needs_five_answers():
    wrong = [1, 0, 0, 1, 0, 0, 1, 0]  # every binary call wrong
    r = subnet_reward(LABELS8, _onehot(wrong), "image")
    assert r.binary_mcc == pytest.approx(-1.0) and r.reward == 0.0
    few = subnet_reward([0, 1, 2, 0], _onehot([0, 1, 2, 0]), "image")
    assert few.binary_mcc == pytest.approx(1.0) and few.reward == 0.0


def test_subnet_reward_window_keeps_last_valid_answers():
    labels = [0, 1] * 105
    answers = _onehot([1, 0] * 5 + [0, 1] * 100)  # 10 wrong, then 200 right
    assert subnet_reward(labels, answers, "image").reward == pytest.approx(1.0)
    assert subnet_reward(labels, answers, "image", window=210).reward < 0.95


@pytest.mark.parametrize(
    ("answer", "ok"),
    [([0.2, 0.3, 0.5], True), ([0.2, 0.3, 0.5 + 5e-7], True), ([0.2, 0.3, 0.5 + 2e-6], False),
     ([1.2, -0.2, 0.0], False), ([0.5, 0.5], False), ([float("nan"), 0.5, 0.5], False), (None, False),
     ("abc", False), ([1, 0, 0], True)],
)
def test_subnet_answer_validity(answer, ok):
    assert subnet_answer_valid(answer) is ok


def test_subnet_total_weights_and_order():
    img = RewardReport("image", 0.5, 0, 0, 1, 5, 5, 5, 200)
    vid = RewardReport("video", 0.25, 0, 0, 1, 5, 5, 5, 200)
    assert subnet_total(img, vid) == pytest.approx(0.6 * 0.5 + 0.4 * 0.25)
    with pytest.raises(ValueError, match="image, video"):
        subnet_total(vid, img)


def test_subnet_reward_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="predictions for"):
        subnet_reward([0, 1], _onehot([0]), "image")
    with pytest.raises(ValueError, match="0, 1 or 2"):
        subnet_reward([0, 3], _onehot([0, 1]), "image")
    with pytest.raises(ValueError, match="modality"):
        subnet_reward([0], _onehot([0]), "audio")


# --------------------------------------------------------------------------- gasbench
def test_gasbench_golden():
    g = gasbench_score([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9])
    # tp=2 tn=1 fp=1 fn=0: MCC 2/sqrt(12); Brier (0.01 + 0.36 + 0.09 + 0.01) / 4 = 0.1175
    m, b = 2 / math.sqrt(12), 0.1175
    assert g["mcc"] == pytest.approx(m) and g["brier"] == pytest.approx(b)
    expected = math.sqrt(((m + 1) / 2) ** 1.2 * ((0.25 - b) / 0.25) ** 1.8)
    assert g["score"] == pytest.approx(expected)
    assert g["score"] == pytest.approx(0.48976435, abs=1e-7)


def test_gasbench_extremes_and_strict_threshold():
    assert gasbench_score([0, 1], [0.0, 1.0])["score"] == pytest.approx(1.0)
    floor = gasbench_score([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])
    assert floor["brier"] == pytest.approx(0.25) and floor["score"] == pytest.approx(1e-6)
    assert floor["mcc"] == 0.0  # 0.5 is not > 0.5: everything called real


# --------------------------------------------------------------------------- three-class labels
@pytest.mark.parametrize(
    ("label", "method", "cls"),
    [("real", "none", 0), ("REAL", "anything", 0),
     ("fake", "DeepFaceLive (DFM real-time face swap, DeepFaceLab-trained model)", 2),
     ("fake", "roop (inswapper_128)", 2), ("fake", "DFDC (unspecified swap method)", 2),
     ("fake", "video-retalking lip sync", 2), ("fake", "SD inpainting", 2),
     ("fake", "Stable Diffusion 1.5 fine-tune (Deliberate 2.0)", 1), ("fake", "SadTalker", 1),
     ("fake", "MuseV (diffusion image-to-video)", 1), ("fake", "StyleGAN2", 1), ("fake", "gan", 1)],
)
def test_three_class_labels(label, method, cls):
    assert three_class_labels(label, method) == cls


def test_three_class_labels_unknown():
    with pytest.raises(ValueError, match="no three-class mapping"):
        three_class_labels("fake", "organic")  # "gan" only as a whole word
    assert three_class_labels("fake", "mystery", default=2) == 2
    with pytest.raises(ValueError, match="'real' or 'fake'"):
        three_class_labels("maybe", "x")
