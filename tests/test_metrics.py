"""The binary report against scikit-learn, the subnet's reward and gasbench's score against their rules."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from vidfake.metrics import (
    RewardReport,
    binary_report,
    gasbench_score,
    subnet_answer_valid,
    subnet_reward,
    subnet_total,
    three_class_labels,
)


# --------------------------------------------------------------------------- binary report
def test_binary_report_golden():
    r = binary_report([0, 0, 1, 1], [0.1, 0.5, 0.7, 0.9], threshold=0.5)
    assert r["n"] == 4 and r["n_fake"] == 2
    assert r["accuracy"] == pytest.approx(0.75)  # 0.5 >= threshold: called fake
    assert r["balanced_accuracy"] == pytest.approx(0.75)
    assert r["tpr"] == 1.0 and r["tnr"] == 0.5
    assert r["mcc"] == pytest.approx(2 / math.sqrt(12))
    assert r["auc"] == pytest.approx(1.0)
    assert r["brier"] == pytest.approx((0.01 + 0.25 + 0.09 + 0.01) / 4)
    assert r["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.5) + math.log(0.7) + math.log(0.9)) / 4)


def test_binary_report_one_class_conventions_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one class is an ordinary evaluation set, not a warning
        one_class = binary_report([1, 1], [0.8, 0.2])
    assert one_class["auc"] is None and one_class["tnr"] is None and one_class["tpr"] == 0.5
    assert one_class["mcc"] == 0.0 and one_class["balanced_accuracy"] == 0.5
    only_real = binary_report([0, 0, 0], [0.1, 0.2, 0.9])
    assert only_real["tpr"] is None and only_real["tnr"] == pytest.approx(2 / 3)


def test_binary_report_log_loss_is_sklearns_on_clipped_probabilities():
    # sklearn alone clips at float64 eps (-ln 2.2e-16 = 36 nats); the report clips at 1e-7 first.
    r = binary_report([1, 0], [0.0, 1.0])
    assert r["log_loss"] == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert r["log_loss"] < skm.log_loss([1, 0], [0.0, 1.0])


def test_binary_report_equals_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(4, 80))
        y = rng.integers(0, 2, n)
        y[:2] = (0, 1)
        p = rng.random(n).round(2)  # ties, and exact 0 / 1 now and then
        t = float(rng.choice([0.3, 0.5, 0.7]))
        r = binary_report(y, p, threshold=t)
        pred = (p >= t).astype(int)
        assert r["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
        assert r["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred), abs=1e-12)
        assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
        assert r["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)
        assert r["brier"] == pytest.approx(np.mean((p - y) ** 2), abs=1e-12)
        assert r["brier"] == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
        assert r["log_loss"] == pytest.approx(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-12)
        assert r["tpr"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
        assert r["tnr"] == pytest.approx(skm.recall_score(y, pred, pos_label=0), abs=1e-12)


@pytest.mark.parametrize("p", [[0.1, float("nan")], [0.1, 1.2], [0.1]])
def test_bad_probabilities_are_errors(p):
    with pytest.raises(ValueError):
        binary_report([0, 1], p)


def test_labels_must_be_binary():
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        binary_report([0, 2], [0.1, 0.2])


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


def test_subnet_reward_mcc_is_matthews_corrcoef():
    labels = [0, 1, 2, 2, 1, 0, 0, 2, 1, 1, 0, 2]
    called = [0, 2, 2, 1, 1, 0, 1, 2, 0, 1, 0, 0]
    answers = [np.roll([0.6, 0.3, 0.1], c).tolist() for c in called]  # argmax is c
    r = subnet_reward(labels, answers, "image")
    y, q = np.array(labels), np.array(called)
    assert r.multiclass_mcc == pytest.approx(skm.matthews_corrcoef(y, q), abs=1e-12)
    assert r.binary_mcc == pytest.approx(skm.matthews_corrcoef(y > 0, q > 0), abs=1e-12)
    assert r.reward == pytest.approx(0.75 * max(0.0, r.binary_mcc) + 0.25 * max(0.0, r.multiclass_mcc))


def test_subnet_reward_all_fake_window_is_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = subnet_reward([1, 2, 1, 2, 1], _onehot([1, 1, 1, 1, 1]), "video")
    assert r.binary_mcc == 0.0 and r.multiclass_mcc == 0.0 and r.reward == 0.0


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
