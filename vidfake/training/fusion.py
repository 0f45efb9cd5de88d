"""Fit the fusion and the calibration on the detector's own validation scores.

The branches are trained separately; this step runs the *whole* detector (decoding, face tracking,
every branch) on labelled validation media, exactly as users and validators will, and fits:

- video: L2-regularised logistic regression on the branch logits (``tall``, ``lip``, ``image2d``),
  with each branch's mean logit kept for mean imputation when that branch cannot run;
- video: a second logistic regression, on fakes only, giving the share of the fake mass that is
  semi-synthetic (face swaps) rather than fully synthetic (talking-head generators);
- images: Platt scaling (temperature and bias) of the 2D detector's logit, and the semi-synthetic share
  among fake images.

Leave-one-out predictions on the fitting set are reported so the numbers in the model card are not
in-sample.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from vidfake.detector import BRANCHES, DETECTOR_FILE, Detector, DetectorConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoredItem:
    path: str
    label: int
    class3: int
    method: str
    source: str
    kind: str
    logits: dict[str, float]
    error: str | None = None


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def score_items(detector: Detector, items, *, progress: bool = True) -> list[ScoredItem]:
    """Run the detector on each item and keep every branch's logit (errors are kept, not dropped)."""
    from tqdm import tqdm

    out = []
    for it in tqdm(items, desc="scoring", disable=not progress):
        try:
            if it.kind == "image":
                # The image result holds the calibrated probability; the fit needs the raw logit.
                logits = {"image2d": float(detector.image_logits([_load(it.path)])[0])}
            else:
                res = detector.detect(it.path, kind=it.kind)
                logits = {b.name: _logit(b.probability) for b in res.branches if b.probability is not None}
            out.append(ScoredItem(str(it.path), it.label, it.class3, it.method, it.source, it.kind, logits))
        except Exception as e:  # reported in the fit summary; never silently replaced
            logger.error("%s: %s", it.path, e)
            out.append(ScoredItem(str(it.path), it.label, it.class3, it.method, it.source, it.kind, {}, str(e)))
    return out


def _load(path):
    from vidfake.preprocessing.images import load_image

    return load_image(path)


def _fit_logreg(X: np.ndarray, y: np.ndarray, l2: float, nonneg: bool = False) -> np.ndarray:
    """Weights ``[bias, w...]`` of an L2-regularised logistic regression (bias not penalised).

    ``nonneg`` keeps the feature weights >= 0: every branch outputs the log-odds of *fake*, so a
    negative weight could only come from a quirk of the small fitting set, and would turn a branch's
    evidence upside down on new data.
    """
    Xb = np.hstack([np.ones((len(X), 1)), X])

    def loss(w):
        z = Xb @ w
        nll = np.sum(np.logaddexp(0, z) - y * z)
        return nll + 0.5 * l2 * np.sum(w[1:] ** 2)

    def grad(w):
        p = 1 / (1 + np.exp(-(Xb @ w)))
        g = Xb.T @ (p - y)
        g[1:] += l2 * w[1:]
        return g

    bounds = [(None, None)] + [(0.0, None) if nonneg else (None, None)] * X.shape[1]
    return minimize(loss, np.zeros(Xb.shape[1]), jac=grad, method="L-BFGS-B", bounds=bounds).x


def _design(rows: list[ScoredItem], branches: tuple[str, ...], means: dict[str, float]) -> np.ndarray:
    return np.array([[r.logits.get(b, means[b]) for b in branches] for r in rows], dtype=np.float64)


def fit_video_fusion(rows: list[ScoredItem], l2: float = 1.0) -> tuple[dict, dict, float, np.ndarray]:
    """Returns (coef, mean, bias, leave-one-out probabilities)."""
    rows = [r for r in rows if r.error is None and r.logits]
    branches = tuple(b for b in BRANCHES if any(b in r.logits for r in rows))
    means = {b: float(np.mean([r.logits[b] for r in rows if b in r.logits])) for b in branches}
    X = _design(rows, branches, means)
    y = np.array([r.label for r in rows], dtype=np.float64)
    w = _fit_logreg(X, y, l2, nonneg=True)
    loo = np.empty(len(rows))
    for i in range(len(rows)):
        keep = np.arange(len(rows)) != i
        wi = _fit_logreg(X[keep], y[keep], l2, nonneg=True)
        loo[i] = 1 / (1 + np.exp(-(wi[0] + X[i] @ wi[1:])))
    coef = {b: float(c) for b, c in zip(branches, w[1:], strict=True)}
    return coef, means, float(w[0]), loo


def fit_semi_share(rows: list[ScoredItem], branches, l2: float = 4.0) -> tuple[dict, float]:
    """Among fakes: P(semi-synthetic | branch logits). Falls back to the class prior when one class is absent."""
    fakes = [r for r in rows if r.error is None and r.label == 1 and r.logits]
    y = np.array([1.0 if r.class3 == 2 else 0.0 for r in fakes])
    if len(fakes) == 0:
        return {}, 0.0
    if y.min() == y.max():
        prior = float(np.clip(y.mean(), 0.05, 0.95))
        return {}, float(np.log(prior / (1 - prior)))
    means = {b: float(np.mean([r.logits.get(b, 0.0) for r in fakes])) for b in branches}
    X = _design(fakes, tuple(branches), means)
    w = _fit_logreg(X, y, l2)
    # Missing branches at inference contribute 0 to the semi model, so centre on the means via the bias.
    bias = float(w[0])
    return {b: float(c) for b, c in zip(branches, w[1:], strict=True)}, bias


def fit_image_calibration(rows: list[ScoredItem]) -> tuple[float, float, float, np.ndarray]:
    """Platt scaling of the 2D logit: returns (temperature, bias, semi share, calibrated probabilities)."""
    rows = [r for r in rows if r.error is None and "image2d" in r.logits]
    z = np.array([r.logits["image2d"] for r in rows])
    y = np.array([r.label for r in rows], dtype=np.float64)
    w = _fit_logreg(z[:, None], y, l2=1e-3, nonneg=True)
    a, b = float(w[1]), float(w[0])
    # a == 0 (a useless logit): an effectively infinite temperature, so only the bias (the prior) is left.
    temperature = 1.0 / a if a > 1e-6 else 1e6
    p = 1 / (1 + np.exp(-(a * z + b)))
    fakes = [r for r in rows if r.label == 1]
    semi = float(np.mean([r.class3 == 2 for r in fakes])) if fakes else 0.5
    return temperature, b, semi, p


def write_detector_json(cfg: DetectorConfig, out_dir: str | Path) -> Path:
    d = asdict(cfg)
    d.pop("weights_dir", None)
    d["branches"] = list(cfg.branches)
    path = Path(out_dir) / DETECTOR_FILE
    path.write_text(json.dumps(d, indent=2) + "\n")
    return path


def fit_and_write(weights_dir: str | Path, video_rows: list[ScoredItem], image_rows: list[ScoredItem],
                  base: DetectorConfig, l2: float = 1.0) -> tuple[DetectorConfig, dict]:
    """Fit everything and write ``detector.json`` into ``weights_dir``. Returns the config and a summary."""
    from sklearn.metrics import roc_auc_score

    summary: dict = {}
    fusion = base.fusion
    for kind, rows in (("video", video_rows), ("image", image_rows)):
        labels = {r.label for r in rows if r.error is None}
        if rows and len(labels) < 2:  # a fit (and its AUC) needs real and fake items
            raise ValueError(f"fusion: the {kind} items scored hold one class only ({sorted(labels)}); "
                             "fit on media with both real and fake items")
    if video_rows:
        coef, means, bias, loo = fit_video_fusion(video_rows, l2)
        semi_coef, semi_bias = fit_semi_share(video_rows, tuple(coef))
        ok = [r for r in video_rows if r.error is None and r.logits]
        fusion = replace(fusion, coef=coef, mean=means, bias=bias, semi_coef=semi_coef, semi_bias=semi_bias)
        y = [r.label for r in ok]
        summary["video"] = {"n": len(ok), "errors": len(video_rows) - len(ok),
                            "loo_auc": float(roc_auc_score(y, loo)),
                            "coef": coef, "bias": bias}
        for b in coef:
            sel = [(r.label, r.logits[b]) for r in ok if b in r.logits]
            if len({s[0] for s in sel}) == 2:
                summary["video"][f"auc_{b}"] = float(roc_auc_score([s[0] for s in sel], [s[1] for s in sel]))
    if image_rows:
        t, b, semi, p = fit_image_calibration(image_rows)
        fusion = replace(fusion, image_temperature=t, image_bias=b, image_semi_share=semi)
        ok = [r for r in image_rows if r.error is None]
        summary["image"] = {"n": len(ok), "auc": float(roc_auc_score([r.label for r in ok], p)),
                            "temperature": t, "bias": b}
    cfg = replace(base, fusion=replace(fusion, fitted=True))
    path = write_detector_json(cfg, weights_dir)
    logger.info("wrote %s", path)
    return cfg, summary
