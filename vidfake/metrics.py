"""Classification metrics, the BitMind subnet's reward and the gasbench score, in numpy.

No scikit-learn: AUC comes from ranks (Mann-Whitney U, ties count one half), MCC from the confusion
matrix with Gorodkin's R_K generalisation, which is what ``sklearn.metrics.matthews_corrcoef`` computes
for two or more classes (and 0.0 where a marginal is constant).

Conventions: ``y_true`` holds 0 (real) / 1 (fake); ``p`` is the probability of fake in [0, 1]. A
decision at ``threshold`` is ``p >= threshold`` (as :class:`vidfake.result.DetectionResult` decides),
except in :func:`gasbench_score`, which follows gasbench's ``p > 0.5``.

The subnet's three-class labels are 0 real, 1 synthetic (fully generated), 2 semi-synthetic (a real
capture with generated or replaced regions). :func:`three_class_labels` maps our manifest's methods:

================================================================  =========  =======================
method in ``../shared/data/manifest.csv``                         class      why
================================================================  =========  =======================
``none``, ``none (driving video input)``                          0 real     captured media
Stable Diffusion 1.5 fine-tunes (Deliberate, DreamShaper, ...)    1 synth.   text-to-image
unknown text-to-image generator (real-or-ai-game)                 1 synth.   text-to-image
VASA-1 source portrait (StyleGAN2/DALL-E-3)                       1 synth.   generated portrait
SadTalker, Linly-Talker (SadTalker-based), DreamTalk              1 synth.   talking head rendered
                                                                             whole from one still
MuseV (diffusion image-to-video)                                  1 synth.   image-to-video diffusion
DeepFaceLive face swap, DFDC swaps, roop (inswapper_128)          2 semi     face replaced in a real
                                                                             capture
(VideoReTalking, Wav2Lip, reenactment, inpainting: not in the     2 semi     region edited in a real
manifest today, mapped for scanned folders)                                  capture
================================================================  =========  =======================

The talking-head rows follow gasbench's taxonomy (docs/Classification-and-Scoring.md): generation
conditioned on a captured image is synthetic when the model synthesises the complete output.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "RewardReport",
    "accuracy",
    "balanced_accuracy",
    "binary_report",
    "brier",
    "confusion_matrix",
    "gasbench_score",
    "log_loss",
    "mcc",
    "roc_auc",
    "roc_curve",
    "subnet_answer_valid",
    "subnet_reward",
    "subnet_total",
    "three_class_labels",
]


# --------------------------------------------------------------------------- input checks
def _labels(y, name: str = "y_true") -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold integer class labels, got {a[:5].tolist()}...")
        a = a.astype(np.int64)
    elif a.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integer class labels, got dtype {a.dtype}")
    return a.astype(np.int64)


def _binary(y, name: str = "y_true") -> np.ndarray:
    a = _labels(y, name)
    bad = ~np.isin(a, (0, 1))
    if bad.any():
        raise ValueError(f"{name} must be 0 (real) or 1 (fake); found {sorted(set(a[bad].tolist()))[:5]}")
    return a


def _probs(p, n: int, name: str = "p") -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the labels, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or infinite values (a failed prediction is not a score)")
    if a.min() < 0.0 or a.max() > 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got range [{a.min():.4g}, {a.max():.4g}]")
    return a


def _both_classes(y: np.ndarray, what: str) -> None:
    if y.min() == y.max():
        raise ValueError(f"{what} is undefined with a single class in y_true (all {int(y[0])})")


# --------------------------------------------------------------------------- ranking metrics
def roc_auc(y_true, p) -> float:
    """Area under the ROC curve as the Mann-Whitney U statistic.

    The probability that a random fake scores above a random real, ties counting one half.

    Args:
        y_true: ``(N,)`` 0 real / 1 fake; both classes must be present.
        p: ``(N,)`` probability (or any score) of fake, finite.

    Returns:
        AUC in [0, 1].
    """
    y = _binary(y_true)
    s = np.asarray(p, dtype=np.float64)
    if s.shape != y.shape or not np.all(np.isfinite(s)):
        raise ValueError(f"p must be {y.shape} finite scores, got shape {s.shape}")
    _both_classes(y, "ROC AUC")
    from scipy.stats import rankdata  # scipy.stats costs ~0.3 s to import; only AUC needs it

    ranks = rankdata(s)  # average ranks: a tie between a real and a fake adds 1/2 to U
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(y_true, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve at every distinct score.

    Args:
        y_true: ``(N,)`` 0 real / 1 fake; both classes must be present.
        p: ``(N,)`` scores, finite.

    Returns:
        ``(fpr, tpr, thresholds)``, each ``(K + 1,) float64`` for K distinct scores: thresholds in
        decreasing order, the first ``+inf`` (nothing called fake, the point (0, 0)); point k calls fake
        every score ``>= thresholds[k]``. Unlike scikit-learn's default, no collinear point is dropped.
    """
    y = _binary(y_true)
    s = np.asarray(p, dtype=np.float64)
    if s.shape != y.shape or not np.all(np.isfinite(s)):
        raise ValueError(f"p must be {y.shape} finite scores, got shape {s.shape}")
    _both_classes(y, "ROC curve")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[last_of_run]
    fps = (last_of_run + 1) - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return fpr, tpr, np.r_[np.inf, s[last_of_run]]


# --------------------------------------------------------------------------- decision metrics
def confusion_matrix(y_true, y_pred, labels: Sequence[int] | None = None) -> np.ndarray:
    """``(K, K) int64`` counts, rows the true class, columns the predicted class.

    Args:
        y_true, y_pred: ``(N,)`` integer labels.
        labels: the classes, in row order; default the sorted union of both.
    """
    t, q = _labels(y_true), _labels(y_pred, "y_pred")
    if t.shape != q.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {q.shape} differ in length")
    classes = np.unique(np.r_[t, q]) if labels is None else np.asarray(labels, dtype=np.int64)
    if classes.ndim != 1 or np.unique(classes).size != classes.size:
        raise ValueError(f"labels must be distinct integers, got {classes.tolist()}")
    seen = np.unique(np.r_[t, q])
    missing = seen[~np.isin(seen, classes)]
    if missing.size:
        raise ValueError(f"labels {classes.tolist()} do not include {missing.tolist()}")
    order = np.argsort(classes)
    row = order[np.searchsorted(classes[order], t)]
    col = order[np.searchsorted(classes[order], q)]
    cm = np.zeros((classes.size, classes.size), dtype=np.int64)
    np.add.at(cm, (row, col), 1)
    return cm


def accuracy(y_true, y_pred) -> float:
    """Share of exact matches."""
    t, q = _labels(y_true), _labels(y_pred, "y_pred")
    if t.shape != q.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {q.shape} differ in length")
    return float(np.mean(t == q))


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean recall over the classes present in ``y_true`` (scikit-learn's definition)."""
    cm = confusion_matrix(y_true, y_pred)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def mcc(y_true, y_pred) -> float:
    """Matthews correlation coefficient; Gorodkin's R_K for more than two classes.

    ``(c*s - t.p) / sqrt((s^2 - p.p) (s^2 - t.t))`` with c correct, s samples, t and p the true and
    predicted class counts; 0.0 when either count vector is constant (scikit-learn's convention).

    Returns:
        MCC in [-1, 1].
    """
    cm = confusion_matrix(y_true, y_pred).astype(np.float64)
    t_sum, p_sum = cm.sum(axis=1), cm.sum(axis=0)
    n, correct = cm.sum(), np.trace(cm)
    cov_tp = correct * n - t_sum @ p_sum
    cov_pp = n * n - p_sum @ p_sum
    cov_tt = n * n - t_sum @ t_sum
    if cov_pp * cov_tt == 0:
        return 0.0
    return float(cov_tp / math.sqrt(cov_tt * cov_pp))


def brier(y_true, p) -> float:
    """Mean squared error of the probability of fake against the 0/1 label."""
    y = _binary(y_true)
    q = _probs(p, y.size)
    return float(np.mean((q - y) ** 2))


def log_loss(y_true, p, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy in nats, probabilities clipped to ``[eps, 1 - eps]``."""
    y = _binary(y_true)
    q = np.clip(_probs(p, y.size), eps, 1.0 - eps)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def binary_report(y_true, p, threshold: float = 0.5) -> dict:
    """Every binary metric at once, for reports and JSON.

    Args:
        y_true: ``(N,)`` 0 real / 1 fake.
        p: ``(N,)`` probability of fake in [0, 1].
        threshold: fake when ``p >= threshold``.

    Returns:
        ``n``, ``n_fake``, ``threshold``, ``auc`` (``None`` with one class), ``accuracy``,
        ``balanced_accuracy``, ``mcc``, ``brier``, ``log_loss``, ``tpr`` and ``tnr`` (``None`` where
        their class is absent).
    """
    y = _binary(y_true)
    q = _probs(p, y.size)
    pred = (q >= threshold).astype(np.int64)
    n_fake = int(y.sum())
    return {
        "n": int(y.size),
        "n_fake": n_fake,
        "threshold": float(threshold),
        "auc": roc_auc(y, q) if 0 < n_fake < y.size else None,
        "accuracy": accuracy(y, pred),
        "balanced_accuracy": balanced_accuracy(y, pred),
        "mcc": mcc(y, pred),
        "brier": brier(y, q),
        "log_loss": log_loss(y, q),
        "tpr": float(pred[y == 1].mean()) if n_fake else None,
        "tnr": float(1.0 - pred[y == 0].mean()) if n_fake < y.size else None,
    }


# --------------------------------------------------------------------------- the subnet's reward
# BitMind subnet 34, validator scoring as of the v3 validator (BitMind-AI/bitmind-subnet):
# - bitmind/config.py (commit 07f1cf2): --scoring.binary-weight 0.75, --scoring.multiclass-weight 0.25,
#   --scoring.image-weight 0.6, --scoring.video-weight 0.4.
# - bitmind/scoring/eval_engine.py (_get_detection_rewards / _get_detection_metrics, commit 01fad75):
#   per modality, over the last 200 answers kept in MinerHistory, argmax of the 3-vectors;
#   multi-class MCC on (label, argmax), binary MCC on (label > 0, argmax > 0) (sklearn matthews_corrcoef);
#   reward = 0.75 * max(0, binary_mcc) + 0.25 * max(0, multi_class_mcc); 0 with fewer than 5 answers;
#   0 for a challenge whose answer failed (`modality == challenge_modality and error`), and failed answers
#   are never added to the history. The earlier engine multiplied the round's reward by
#   compute_penalty_multiplier(answer): 1 if |sum - 1| < 1e-6 and every entry in [0, 1], else 0.
# So each invalid answer zeroes its own round and is left out of the MCC window; averaged over the
# rounds of a window the expected reward is (valid share) x (clipped MCC reward), which is the
# `validity_penalty` below (and what the successor gas code writes out as `1 - invalid / attempts`).
SUBNET_BINARY_WEIGHT = 0.75
SUBNET_MULTICLASS_WEIGHT = 0.25
SUBNET_IMAGE_WEIGHT = 0.6
SUBNET_VIDEO_WEIGHT = 0.4
SUBNET_WINDOW = 200
SUBNET_MIN_ANSWERS = 5


@dataclass(frozen=True)
class RewardReport:
    """The subnet's reward for one modality over a window of answers.

    Attributes:
        modality: ``"image"`` or ``"video"``.
        reward: ``(0.75 max(0, binary_mcc) + 0.25 max(0, multiclass_mcc)) * validity_penalty``; 0 with
            fewer than 5 valid answers in the window.
        binary_mcc: MCC of real vs any fake on the valid answers in the window (not clipped).
        multiclass_mcc: Gorodkin MCC over real / synthetic / semi-synthetic (not clipped).
        validity_penalty: share of answers that were valid 3-vectors.
        n_answers: answers given.
        n_valid: valid answers among them.
        n_scored: valid answers inside the window (the last ``window`` valid ones).
        window: window length used.
    """

    modality: str
    reward: float
    binary_mcc: float
    multiclass_mcc: float
    validity_penalty: float
    n_answers: int
    n_valid: int
    n_scored: int
    window: int


def subnet_answer_valid(answer) -> bool:
    """True when a validator accepts ``answer``: 3 numbers in [0, 1] whose sum is within 1e-6 of 1.

    The subnet's check (``compute_penalty_multiplier``) is ``abs(sum - 1) < 1e-6`` with every entry in
    [0, 1]; NaN fails the range test. ``None``, wrong lengths and non-numbers are invalid too.
    """
    try:
        v = np.asarray(answer, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        return False
    return bool(np.all((v >= 0.0) & (v <= 1.0)) and abs(v.sum() - 1.0) < 1e-6)


def subnet_reward(
    labels_3class,
    predictions_3vec: Sequence,
    modality: Literal["image", "video"],
    *,
    window: int = SUBNET_WINDOW,
    min_answers: int = SUBNET_MIN_ANSWERS,
) -> RewardReport:
    """The validators' reward for one modality, over answers in the order they were given.

    Args:
        labels_3class: ``(N,)`` true classes, 0 real / 1 synthetic / 2 semi-synthetic.
        predictions_3vec: N answers, each ``[p_real, p_synthetic, p_semi]``; anything that is not a
            valid 3-vector (``None``, ``[-1, -1, -1]`` for a failure, a sum off by more than 1e-6)
            counts as an invalid answer.
        modality: ``"image"`` or ``"video"`` (recorded in the report).
        window: the validator keeps the last 200 valid answers per modality.
        min_answers: the validator pays nothing below 5 valid answers.

    Returns:
        A :class:`RewardReport`; see the rule in the comment above :data:`SUBNET_BINARY_WEIGHT`.
    """
    if modality not in ("image", "video"):
        raise ValueError(f"modality must be 'image' or 'video', got {modality!r}")
    y = _labels(labels_3class, "labels_3class")
    bad = ~np.isin(y, (0, 1, 2))
    if bad.any():
        raise ValueError(f"labels_3class must be 0, 1 or 2; found {sorted(set(y[bad].tolist()))[:5]}")
    if len(predictions_3vec) != y.size:
        raise ValueError(f"{len(predictions_3vec)} predictions for {y.size} labels")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    valid = np.array([subnet_answer_valid(a) for a in predictions_3vec], dtype=bool)
    n_valid = int(valid.sum())
    penalty = n_valid / y.size
    keep = np.flatnonzero(valid)[-window:]
    if keep.size:
        argmax = np.array([int(np.argmax(np.asarray(predictions_3vec[k], dtype=np.float64))) for k in keep])
        labels = y[keep]
        m_multi = mcc(labels, argmax)
        m_bin = mcc((labels > 0).astype(np.int64), (argmax > 0).astype(np.int64))
    else:
        m_multi = m_bin = 0.0
    if keep.size < min_answers:
        reward = 0.0
    else:
        reward = (SUBNET_BINARY_WEIGHT * max(0.0, m_bin) + SUBNET_MULTICLASS_WEIGHT * max(0.0, m_multi)) * penalty
    if n_valid < y.size:
        logger.info("%s: %d of %d answers invalid", modality, y.size - n_valid, y.size)
    return RewardReport(modality, float(reward), float(m_bin), float(m_multi), float(penalty),
                        int(y.size), n_valid, int(keep.size), int(window))


def subnet_total(image_report: RewardReport, video_report: RewardReport) -> float:
    """``0.6 * image reward + 0.4 * video reward`` (bitmind/config.py defaults)."""
    if image_report.modality != "image" or video_report.modality != "video":
        raise ValueError(
            f"expected (image, video) reports, got ({image_report.modality}, {video_report.modality})")
    return SUBNET_IMAGE_WEIGHT * image_report.reward + SUBNET_VIDEO_WEIGHT * video_report.reward


# --------------------------------------------------------------------------- gasbench
def gasbench_score(y_true, p_fake) -> dict:
    """The binary SN34 pass score of gasbench (BitMind-AI/gasbench, docs/Classification-and-Scoring.md).

    ``M`` is the binary MCC with fake predicted when ``p_fake > 0.5`` (gasbench's strict inequality),
    ``B`` the Brier error of ``p_fake``; then ``score = sqrt(max(1e-12, clip((M + 1) / 2, 0, 1) ** 1.2 *
    max(0, (0.25 - B) / 0.25) ** 1.8))``. A Brier error at or above 0.25 (no better than always saying
    0.5) gives gasbench's floor, 1e-6, not 0.

    Args:
        y_true: ``(N,)`` 0 real / 1 fake.
        p_fake: ``(N,)`` probability of not-real in [0, 1] (``1 - p_real`` of a 3-vector).

    Returns:
        ``{"mcc", "brier", "mcc_component", "brier_component", "score"}``.
    """
    y = _binary(y_true)
    q = _probs(p_fake, y.size, "p_fake")
    m = mcc(y, (q > 0.5).astype(np.int64))
    b = float(np.mean((q - y) ** 2))
    mcc_component = min(max((m + 1.0) / 2.0, 0.0), 1.0) ** 1.2
    brier_component = max(0.0, (0.25 - b) / 0.25) ** 1.8
    score = math.sqrt(max(1e-12, mcc_component * brier_component))
    return {"mcc": m, "brier": b, "mcc_component": mcc_component, "brier_component": brier_component,
            "score": score}


# --------------------------------------------------------------------------- three-class labels
# Checked in order; the first keyword found in the lower-cased method decides. Semi-synthetic first:
# a face swap described as "DeepFaceLab-trained model" must not fall through to a generator keyword.
_SEMI_SYNTHETIC = (
    "face swap", "face-swap", "faceswap", "deepfacelive", "deepfacelab", "dfdc", "roop", "inswapper",
    "simswap", "faceshifter", "fsgan", "reenact", "face2face", "neuraltextures", "inpaint",
    "videoretalking", "video-retalking", "video_retalking", "wav2lip", "lip-sync", "lipsync",
)
_SYNTHETIC = (
    "stable diffusion", "stable-diffusion", "sdxl", "text-to-image", "text to image", "image-to-video",
    "text-to-video", "diffusion", "dall-e", "dalle", "midjourney", "stylegan", "gan", "vasa",
    "sadtalker", "linly-talker", "dreamtalk", "musev", "emo", "liveportrait", "hallo", "aniportrait",
    "talking head", "talking-head", "generator", "generated", "flux", "sora",
)


def three_class_labels(label: str, method: str, *, default: int | None = None) -> int:
    """The subnet's class of a manifest row: 0 real, 1 synthetic, 2 semi-synthetic.

    Args:
        label: ``"real"`` or ``"fake"`` (case-insensitive).
        method: the generator or manipulation, free text (``manifest.csv``'s ``method``).
        default: class for a fake whose method names no known generator or manipulation; ``None``
            raises instead.

    Returns:
        0, 1 or 2 (see the table in the module docstring).
    """
    lab = str(label).strip().lower()
    if lab == "real":
        return 0
    if lab != "fake":
        raise ValueError(f"label must be 'real' or 'fake', got {label!r}")
    text = str(method).strip().lower()
    if any(k in text for k in _SEMI_SYNTHETIC):
        return 2
    words = text.replace("(", " ").replace(")", " ").replace(",", " ").replace(";", " ").replace("/", " ")
    tokens = set(words.split())
    # Short keywords ("gan", "emo", "flux", "sora") only as whole words: "organic" is not a GAN.
    if any((k in tokens) if len(k) <= 4 else (k in text) for k in _SYNTHETIC):
        return 1
    if default is None:
        raise ValueError(
            f"no three-class mapping for fake method {method!r}; pass default=1 (synthetic) or 2 "
            "(semi-synthetic), or name the generator or manipulation in the method")
    if default not in (1, 2):
        raise ValueError(f"default for a fake must be 1 or 2, got {default}")
    return default
