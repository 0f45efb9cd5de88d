"""Evaluation of the detector on labelled media: the numbers in the model cards come from here.

For each item the detector runs exactly as users and validators will meet it:

- ``clean``: the file as it is;
- ``subnet``: what a validator sends: one augmentation parameter set per challenge (levels 0-3, the
  same on every frame), JPEG q75 at 256x256, and for videos the v2 wire encoding (base85 of zlib of
  concatenated JPEG frames) decoded back, so the wire path is exercised too.

Reported per modality: AUC, accuracy, balanced accuracy, MCC, Brier, log loss at the threshold (the
detector's own, from its weights, unless one is given; the report says which), the
subnet's v2 reward (0.75 binary MCC + 0.25 multi-class MCC, times the validity penalty; 0.6 image + 0.4
video) and the gasbench score; then per source repository and per method.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidfake.branches import BRANCHES

logger = logging.getLogger(__name__)

SUBNET_VIDEO_FRAMES = 32  # validators send 8 to ~137 frames; a middle value, first frames of the clip


@dataclass
class Prediction:
    """One item's outcome. ``threshold`` is the decision threshold the detector applied (its
    ``DetectionResult.threshold``, the weights' own); ``None`` when the item failed."""

    path: str
    kind: str
    label: int
    class3: int
    method: str
    source: str
    p_fake: float | None
    three_class: tuple[float, float, float] | None
    branches: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    threshold: float | None = None


def subnet_challenge(item, rng: np.random.Generator, *, level: int | None = None):
    """Media as a validator would send it: ``(256, 256, 3)`` image or ``(T, 256, 256, 3)`` wire-decoded frames."""
    from vidfake.preprocessing.decoders import open_video
    from vidfake.preprocessing.images import load_image
    from vidfake.preprocessing.wire import decode_video_b85, encode_video_b85
    from vidfake.training.augment import apply_subnet_aug, sample_subnet_aug

    params = sample_subnet_aug(level, rng, size=256)  # level None: the validators' level probabilities
    if item.kind == "image":
        return apply_subnet_aug(load_image(item.path), params)
    with open_video(item.path, max_side=720) as v:
        n = min(v.num_frames, SUBNET_VIDEO_FRAMES)
        frames = v.get_frames(list(range(n)))
    frames = apply_subnet_aug(frames, params)
    return decode_video_b85(encode_video_b85(frames, quality=75)).frames


def item_key(item) -> int:
    """A stable number for an item, from its kind and file name: the validator-style augmentation of an
    item depends on ``(seed, item_key)`` alone, not on which other items are evaluated before it or on
    where the data lies (``--kind video`` and ``--kind both`` score the videos alike)."""
    import zlib

    return zlib.crc32(f"{item.kind}/{Path(item.path).name}".encode())


def predict(detector, items, *, mode: str = "clean", seed: int = 0, progress: bool = True) -> list[Prediction]:
    """Run the detector on every item; failures are kept as predictions with ``error`` set."""
    import time

    from tqdm import tqdm

    out = []
    for it in tqdm(items, desc=f"eval ({mode})", disable=not progress):
        rng = np.random.default_rng([seed, item_key(it)])
        t0 = time.perf_counter()
        try:
            media = it.path if mode == "clean" else subnet_challenge(it, rng)
            res = detector.detect(media, source=str(it.path), kind=it.kind)
            out.append(Prediction(str(it.path), it.kind, it.label, it.class3, it.method, it.source,
                                  res.probability_fake, res.three_class,
                                  {b.name: b.probability for b in res.branches},
                                  seconds=time.perf_counter() - t0, threshold=res.threshold))
        except Exception as e:  # reported and counted; a failure is never replaced by a guess
            logger.error("%s: %s", it.path, e)
            out.append(Prediction(str(it.path), it.kind, it.label, it.class3, it.method, it.source, None, None,
                                  error=f"{type(e).__name__}: {e}", seconds=time.perf_counter() - t0))
    return out


def _safe_auc(y, p):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(y)) == 2 else None


def summarise(preds: list[Prediction], threshold: float | None = None) -> dict:
    """Metrics per modality, per source and per method, the subnet reward and the gasbench score.

    Args:
        preds: from :func:`predict`.
        threshold: decision threshold for the accuracy, MCC and per-source figures; ``None``: the one
            the detector applied (its weights' own, carried by the predictions). The report says which
            (``threshold``, ``threshold_source``: ``"weights"`` or ``"given"``).
    """
    from vidfake.metrics import binary_report, gasbench_score, subnet_reward, subnet_total

    threshold, source = resolve_threshold(preds, threshold)
    report: dict = {"threshold": threshold, "threshold_source": source, "modalities": {}}
    rewards = {}
    for kind in ("image", "video"):
        ps = [p for p in preds if p.kind == kind]
        if not ps:
            continue
        ok = [p for p in ps if p.error is None]
        y = [p.label for p in ok]
        pf = [p.p_fake for p in ok]
        m = {}
        if ok:
            m.update(binary_report(y, pf, threshold))
        m.update({"n": len(ps), "errors": len(ps) - len(ok), "n_scored": len(ok)})
        if ok:
            m["gasbench"] = gasbench_score(y, pf)
            # A failed item is an answer the validator would score as invalid.
            vecs = [p.three_class if p.error is None else [-1.0, -1.0, -1.0] for p in ps]
            rw = subnet_reward([p.class3 for p in ps], vecs, kind)
            rewards[kind] = rw
            m["subnet_reward"] = rw.__dict__ if hasattr(rw, "__dict__") else rw
            m["by_source"] = _breakdown(ok, "source", threshold)
            m["by_method"] = _breakdown(ok, "method", threshold)
            branch_auc = {}
            for b in BRANCHES:
                sel = [(p.label, p.branches.get(b)) for p in ok if p.branches.get(b) is not None]
                if sel:
                    branch_auc[b] = _safe_auc([s[0] for s in sel], [s[1] for s in sel])
            m["branch_auc"] = branch_auc
            m["median_seconds"] = float(np.median([p.seconds for p in ok]))
        report["modalities"][kind] = m
    if "image" in rewards and "video" in rewards:
        report["subnet_total"] = subnet_total(rewards["image"], rewards["video"])
    return report


def resolve_threshold(preds: list[Prediction], threshold: float | None) -> tuple[float | None, str]:
    """``(threshold, source)``: the given one (``"given"``), else the one the detector applied to the
    predictions (``"weights"``); ``(None, "none")`` when no item was scored.

    Raises:
        ValueError: none is given and the scored predictions carry no threshold, or different ones.
    """
    if threshold is not None:
        return float(threshold), "given"
    scored = [p for p in preds if p.error is None]
    used = {p.threshold for p in scored}
    if not scored:
        return None, "none"
    if None in used or len(used) > 1:
        raise ValueError(f"predictions carry no single threshold ({sorted(used, key=str)}); pass one")
    return used.pop(), "weights"


def _breakdown(preds: list[Prediction], key: str, threshold: float) -> dict:
    groups: dict[str, list[Prediction]] = {}
    for p in preds:
        groups.setdefault(getattr(p, key), []).append(p)
    out = {}
    for name, ps in sorted(groups.items()):
        y = [p.label for p in ps]
        pf = [p.p_fake for p in ps]
        out[name] = {"n": len(ps), "fake_share": float(np.mean(y)), "auc": _safe_auc(y, pf),
                     "accuracy": float(np.mean([(q >= threshold) == bool(t)
                                                for q, t in zip(pf, y, strict=True)]))}
    return out


def plot_roc(preds: list[Prediction], path: str | Path, title: str = "") -> Path:
    """ROC curves per modality (and per branch for video) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for kind in ("image", "video"):
        ok = [p for p in preds if p.kind == kind and p.error is None]
        y = [p.label for p in ok]
        if len(set(y)) < 2:
            continue
        # drop_intermediate (the default) leaves out collinear points only: the curve drawn is the same.
        fpr, tpr, _ = roc_curve(y, [p.p_fake for p in ok])
        ax.plot(fpr, tpr, label=f"{kind} (AUC {_safe_auc(y, [p.p_fake for p in ok]):.3f})", lw=2)
        if kind == "video":
            for b in BRANCHES:
                sel = [(p.label, p.branches.get(b)) for p in ok if p.branches.get(b) is not None]
                if len({s[0] for s in sel}) == 2:
                    ys, ps = [s[0] for s in sel], [s[1] for s in sel]
                    fpr, tpr, _ = roc_curve(ys, ps)
                    ax.plot(fpr, tpr, lw=1, ls="--", label=f"video/{b} ({_safe_auc(ys, ps):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or "ROC")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
