"""The SN34 score as gasbench computes it, against values worked out by hand.

gasbench (BitMind-AI/gasbench docs/Classification-and-Scoring.md), binary pass: predict "not real" when
``p_not_real > 0.5``; ``M`` = MCC of those predictions, ``B`` = mean ``(p - y)^2``;
``score = sqrt(max(1e-12, clip((M + 1) / 2, 0, 1) ** 1.2 * max(0, (0.25 - B) / 0.25) ** 1.8))``.
A Brier error of 0.25 or worse gives the numerical floor 1e-6 (issue 8 says "0"; gasbench's published
formula and docs give sqrt(1e-12)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidfake.export.evaluate import package_probabilities
from vidfake.metrics import gasbench_score


def test_perfect_ranking_imperfect_confidence():
    # y = 0 0 1 1, p = .1 .4 .6 .9 -> predictions 0 0 1 1: MCC = 1, mcc_component = 1 ** 1.2 = 1.
    # Brier = (.01 + .16 + .16 + .01) / 4 = .085; brier_component = ((.25 - .085) / .25) ** 1.8 = .66 ** 1.8
    # = exp(1.8 ln .66) = exp(-.747927) = .473346; score = sqrt(.473346) = .688002.
    s = gasbench_score([0, 0, 1, 1], [0.1, 0.4, 0.6, 0.9])
    assert s["mcc"] == pytest.approx(1.0)
    assert s["brier"] == pytest.approx(0.085)
    assert s["mcc_component"] == pytest.approx(1.0)
    assert s["brier_component"] == pytest.approx(0.473346, abs=1e-6)
    assert s["score"] == pytest.approx(0.688002, abs=1e-6)


def test_one_error_per_class():
    # y = 0 0 0 1 1 1, p = .2 .6 .3 .7 .4 .9 -> predictions 0 1 0 1 0 1: TP 2, TN 2, FP 1, FN 1.
    # MCC = (2*2 - 1*1) / sqrt(3 * 3 * 3 * 3) = 3 / 9 = 1/3; mcc_component = (2/3) ** 1.2 = .614739.
    # Brier = (.04 + .36 + .09 + .09 + .36 + .01) / 6 = .95 / 6 = .158333;
    # brier_component = (.091667 / .25) ** 1.8 = .366667 ** 1.8 = .164319; score = sqrt(.614739 * .164319) = .317826.
    s = gasbench_score([0, 0, 0, 1, 1, 1], [0.2, 0.6, 0.3, 0.7, 0.4, 0.9])
    assert s["mcc"] == pytest.approx(1 / 3)
    assert s["brier"] == pytest.approx(0.95 / 6)
    assert s["mcc_component"] == pytest.approx(0.614739, abs=1e-6)
    assert s["brier_component"] == pytest.approx(0.164319, abs=1e-6)
    assert s["score"] == pytest.approx(0.317826, abs=1e-6)


def test_chance_mcc_with_useful_probabilities():
    # y = 0 0 1 1, p = .51 .1 .49 .9 -> predictions 1 0 0 1: TP 1, TN 1, FP 1, FN 1, MCC = 0;
    # mcc_component = .5 ** 1.2 = .435275. Brier = (.2601 + .01 + .2601 + .01) / 4 = .13505;
    # brier_component = (.11495 / .25) ** 1.8 = .4598 ** 1.8 = .246959; score = sqrt(.435275 * .246959) = .327864.
    s = gasbench_score([0, 0, 1, 1], [0.51, 0.1, 0.49, 0.9])
    assert s["mcc"] == pytest.approx(0.0)
    assert s["brier"] == pytest.approx(0.13505)
    assert s["score"] == pytest.approx(0.327864, abs=1e-6)


def test_half_is_real_and_brier_at_baseline_hits_the_floor():
    # p = .5 is not > .5, so both are predicted real: constant predictions give MCC 0.
    # Brier = (.25 + .25) / 2 = .25 = the baseline: brier_component = 0 -> score = sqrt(1e-12) = 1e-6.
    s = gasbench_score([0, 1], [0.5, 0.5])
    assert s["mcc"] == 0.0
    assert s["brier"] == pytest.approx(0.25)
    assert s["brier_component"] == 0.0
    assert s["score"] == pytest.approx(1e-6)


def test_confidently_wrong_scores_the_floor():
    # y = 0 1, p = .9 .1: both wrong, MCC = -1 -> mcc_component = 0; Brier = .81 > .25 -> 0.
    s = gasbench_score([0, 1], [0.9, 0.1])
    assert s["mcc"] == pytest.approx(-1.0)
    assert s["brier"] == pytest.approx(0.81)
    assert s["score"] == pytest.approx(1e-6)


def test_formula_on_random_data_matches_a_direct_transcription():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.35 + rng.random(200) * 0.65, 0, 1)
    s = gasbench_score(y, p)
    pred = p > 0.5
    tp, tn = np.sum(pred & (y == 1)), np.sum(~pred & (y == 0))
    fp, fn = np.sum(pred & (y == 0)), np.sum(~pred & (y == 1))
    m = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    b = float(np.mean((p - y) ** 2))
    expected = math.sqrt(max(1e-12, min(max((m + 1) / 2, 0), 1) ** 1.2 * max(0.0, (0.25 - b) / 0.25) ** 1.8))
    assert s["mcc"] == pytest.approx(m)
    assert s["brier"] == pytest.approx(b)
    assert s["score"] == pytest.approx(expected)


class _Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)

    def forward(self, x):
        return self.logits[: x.shape[0]]


def test_probability_of_fake_is_one_minus_p_real():
    # Two logits [0, ln 3]: softmax = [.25, .75] -> p(fake) = .75.
    # Three logits [0, 0, 0] (real, synthetic, semi-synthetic): p(not real) = 1 - 1/3 = 2/3.
    x = np.zeros((1, 3, 4, 4), np.uint8)
    assert package_probabilities(_Fixed([[0.0, math.log(3.0)]]), x)[0] == pytest.approx(0.75)
    assert package_probabilities(_Fixed([[0.0, 0.0, 0.0]]), x)[0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="expected logits"):
        package_probabilities(_Fixed([[0.0]]), x)
