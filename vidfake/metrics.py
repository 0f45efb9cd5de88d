"""The BitMind subnet's reward, the gasbench score and the binary report of our evaluations.

Plain metrics (ROC AUC and curve, MCC, accuracy, balanced accuracy, Brier, log loss, confusion matrix)
are ``sklearn.metrics``' own: callers import them from there. What lives here is what scikit-learn does
not define: the validators' reward (MCC by ``sklearn.metrics.matthews_corrcoef``, as the validators
compute it), gasbench's SN34 score, the report dict written by ``vidfake evaluate`` and the export, and
the mapping of our manifest's methods to the subnet's three classes. scikit-learn is imported inside the
functions that use it: ``vidfake.training.data`` imports this module, and neither the CLI nor the miner
should pay for scikit-learn at start.

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

import contextlib
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "LOG_LOSS_EPS",
    "RewardReport",
    "binary_report",
    "gasbench_score",
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


# --------------------------------------------------------------------------- binary report
# Probabilities are clipped to [eps, 1 - eps] before sklearn's log_loss, so one confident mistake costs
# -ln(1e-7) = 16.1 nats instead of sklearn's own float64-machine-eps clip (-ln(2.2e-16) = 36.0):
# the figure stays comparable with the reports written before scikit-learn computed it.
LOG_LOSS_EPS = 1e-7


@contextlib.contextmanager
def _one_class_is_fine():
    """Silence sklearn's warnings for a single class in ``y_true`` (and ``y_pred``).

    An evaluation set of one modality may hold only fakes, and a window of subnet answers may be all
    fake and all called fake; the conventions documented here (MCC 0.0, balanced accuracy the recall
    of the one class) are the answers wanted, not a problem to report.
    """
    with warnings.catch_warnings():
        for message in ("A single label was found", "y_pred contains classes not in y_true"):
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield


def binary_report(y_true, p, threshold: float = 0.5) -> dict:
    """Every binary metric at once, for reports and JSON, each from ``sklearn.metrics``.

    Args:
        y_true: ``(N,)`` 0 real / 1 fake.
        p: ``(N,)`` probability of fake in [0, 1].
        threshold: fake when ``p >= threshold``.

    Returns:
        ``n``, ``n_fake``, ``threshold``, ``auc`` (``None`` with one class), ``accuracy``,
        ``balanced_accuracy``, ``mcc``, ``brier``, ``log_loss`` (sklearn's on probabilities clipped
        to ``[1e-7, 1 - 1e-7]``, see :data:`LOG_LOSS_EPS`), ``tpr`` and ``tnr`` (``None`` where their
        class is absent).
    """
    from sklearn import metrics as skm  # ~0.5 s to import: not on the CLI's or the miner's start path

    y = _binary(y_true)
    q = _probs(p, y.size)
    pred = (q >= threshold).astype(np.int64)
    n_fake = int(y.sum())
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel().tolist()
    with _one_class_is_fine():
        balanced = skm.balanced_accuracy_score(y, pred)
        m = skm.matthews_corrcoef(y, pred)
    return {
        "n": int(y.size),
        "n_fake": n_fake,
        "threshold": float(threshold),
        "auc": float(skm.roc_auc_score(y, q)) if 0 < n_fake < y.size else None,
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced),
        "mcc": float(m),
        "brier": float(skm.brier_score_loss(y, q, pos_label=1)),
        "log_loss": float(skm.log_loss(y, np.clip(q, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS), labels=[0, 1])),
        "tpr": tp / (tp + fn) if n_fake else None,
        "tnr": tn / (tn + fp) if n_fake < y.size else None,
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
    from sklearn.metrics import matthews_corrcoef

    valid = np.array([subnet_answer_valid(a) for a in predictions_3vec], dtype=bool)
    n_valid = int(valid.sum())
    penalty = n_valid / y.size
    keep = np.flatnonzero(valid)[-window:]
    if keep.size:
        argmax = np.array([int(np.argmax(np.asarray(predictions_3vec[k], dtype=np.float64))) for k in keep])
        labels = y[keep]
        with _one_class_is_fine():  # a window of only fakes, all called fake, is an ordinary window
            m_multi = matthews_corrcoef(labels, argmax)
            m_bin = matthews_corrcoef(labels > 0, argmax > 0)
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
    from sklearn.metrics import brier_score_loss, matthews_corrcoef

    y = _binary(y_true)
    q = _probs(p_fake, y.size, "p_fake")
    # gasbench writes its binary MCC out from TP/TN/FP/FN with 0.0 on a zero denominator, which is
    # matthews_corrcoef for two classes; its Brier error is mean((p - y)^2), which brier_score_loss
    # returns for a 1-D probability of the positive class (scale_by_half="auto" halves its two-column sum).
    with _one_class_is_fine():
        m = float(matthews_corrcoef(y, (q > 0.5).astype(np.int64)))
    b = float(brier_score_loss(y, q, pos_label=1))
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
