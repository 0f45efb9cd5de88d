"""Score an exported model package exactly as gasbench's base pass would, on labelled media.

Each item is fed as gasbench feeds it (:mod:`vidfake.export.feed`: the config's resize, the first
``num_frames`` frames) to the package's own ``model.py`` loaded the way gasbench loads it; the logits
become ``p(not real) = 1 - softmax(logits)[0]`` (gasbench's binary collapse, which also covers a
three-class head). Reported per modality: AUC, accuracy and MCC with fake predicted when
``p > 0.5`` (gasbench's argmax: a tie counts as real), Brier, log loss, the SN34 score
(:func:`vidfake.metrics.gasbench_score`), the entrance exam's accuracy bar (80 %), per method and per
source.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["ENTRANCE_EXAM_ACCURACY", "evaluate_package", "package_probabilities"]

ENTRANCE_EXAM_ACCURACY = 0.8
"""bitmind-subnet docs/Discriminative-Mining.md: a model must reach 80 % accuracy on `gasbench run --small`."""


def _feed(item, config: dict) -> np.ndarray:
    from vidfake.export.feed import gasbench_image, gasbench_video

    size = tuple(config["preprocessing"]["resize"])
    if config["modality"] == "image":
        return gasbench_image(item.path, size)
    pre = config["preprocessing"]
    return gasbench_video(item.path, size, int(pre.get("num_frames", 16)), pre.get("frame_rate"))


def package_probabilities(model, batch: np.ndarray, device: str = "cpu") -> np.ndarray:
    """``p(not real)`` for a ``uint8`` batch in the package's input layout, as gasbench computes it."""
    import torch

    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(batch)).to(device))
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"the package returned {type(logits).__name__} {getattr(logits, 'shape', '')}, "
                         "expected logits (B, 2)")
    probs = torch.softmax(logits.float(), dim=1)
    return (1.0 - probs[:, 0]).cpu().numpy().astype(np.float64)


def _metrics(labels: list[int], probs: list[float]) -> dict:
    from sklearn.metrics import accuracy_score, matthews_corrcoef

    from vidfake.metrics import binary_report, gasbench_score

    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    m = binary_report(y, p, 0.5)
    pred = (p > 0.5).astype(np.int64)  # gasbench: argmax of the softmax, ties to class 0 (real)
    m["accuracy"] = float(accuracy_score(y, pred))
    m["mcc"] = float(matthews_corrcoef(y, pred))
    m["gasbench"] = gasbench_score(y, p)
    return m


def _breakdown(rows: list[dict], key: str) -> dict:
    from sklearn.metrics import roc_auc_score

    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(str(r[key]), []).append(r)
    out = {}
    for name, rs in sorted(groups.items()):
        y = [r["label"] for r in rs]
        p = [r["p_fake"] for r in rs]
        out[name] = {
            "n": len(rs),
            "accuracy": float(np.mean([(pi > 0.5) == bool(yi) for yi, pi in zip(y, p, strict=True)])),
            "mean_p_fake": float(np.mean(p)),
            "auc": float(roc_auc_score(y, p)) if len(set(y)) == 2 else None,
        }
    return out


def evaluate_package(package_dir: str | Path, items: Sequence, threads: int | None = None, *,
                     batch_size: int | None = None, device: str = "cpu", progress: bool = True) -> dict:
    """Score a model package on labelled media as gasbench's base pass would.

    Args:
        package_dir: the package folder (``vidfake export`` output).
        items: :class:`vidfake.training.data.MediaItem` (``path``, ``label`` 0/1, ``kind``, ``method``,
            ``source``); items of the other modality are counted and left out.
        threads: torch CPU threads.
        batch_size: items per forward (default 8 for images, 2 for videos).
        device: torch device.
        progress: show a progress bar on a terminal.

    Returns:
        ``{"package", "config", "gasbench": {"threshold": 0.5, "modalities": {kind: {...}}},
        "skipped_other_modality", "predictions"}``; per modality ``n`` (items), ``errors``, ``n_scored``
        (items with a prediction, which the metrics use), ``auc``, ``accuracy``,
        ``mcc``, ``brier``, ``log_loss``, ``gasbench`` (``mcc``, ``brier``, ``score``, ...),
        ``entrance_exam`` (``accuracy``, ``required``, ``passes``), ``by_method``, ``by_source``,
        ``median_seconds`` (feed + forward, per item).

    Raises:
        PackageError: the package cannot be loaded.
    """
    import torch
    from tqdm import tqdm

    from vidfake.export.package import load_package_model

    if threads:
        torch.set_num_threads(int(threads))
    model, config = load_package_model(package_dir, device=device)
    kind = config["modality"]
    mine = [it for it in items if it.kind == kind]
    batch_size = batch_size or (8 if kind == "image" else 2)
    rows: list[dict] = []
    pending: list[tuple[object, np.ndarray, float]] = []

    def flush() -> None:
        if not pending:
            return
        t0 = time.perf_counter()
        try:
            probs = package_probabilities(model, np.stack([x for _, x, _ in pending]), device)
        except Exception as e:  # gasbench fails the run on an inference error; we report each item
            logger.error("%s: inference failed on %d items: %s", package_dir, len(pending), e)
            probs = [None] * len(pending)
            err = f"{type(e).__name__}: {e}"
        else:
            err = None
        share = (time.perf_counter() - t0) / len(pending)
        for (it, _, feed_s), p in zip(pending, probs, strict=True):
            rows.append(_row(it, None if p is None else float(p), err, feed_s + share))
        pending.clear()

    for it in tqdm(mine, desc=f"gasbench ({kind})", disable=not progress):
        t0 = time.perf_counter()
        try:
            x = _feed(it, config)
        except Exception as e:  # an unreadable file is reported by name and the run goes on
            logger.error("%s: %s", it.path, e)
            rows.append(_row(it, None, f"{type(e).__name__}: {e}", time.perf_counter() - t0))
            continue
        pending.append((it, x, time.perf_counter() - t0))
        if len(pending) >= batch_size:
            flush()
    flush()

    ok = [r for r in rows if r["error"] is None]
    m: dict = {"n": len(rows), "errors": len(rows) - len(ok)}
    if ok:
        metrics = _metrics([r["label"] for r in ok], [r["p_fake"] for r in ok])
        metrics["n_scored"] = metrics.pop("n")
        m.update(metrics)
        m["entrance_exam"] = {"accuracy": m["accuracy"], "required": ENTRANCE_EXAM_ACCURACY,
                              "passes": m["accuracy"] >= ENTRANCE_EXAM_ACCURACY}
        m["by_method"] = _breakdown(ok, "method")
        m["by_source"] = _breakdown(ok, "source")
        m["median_seconds"] = float(np.median([r["seconds"] for r in ok]))
    return {
        "package": str(package_dir),
        "config": config,
        "gasbench": {"threshold": 0.5, "modalities": {kind: m}},
        "skipped_other_modality": len(items) - len(mine),
        "predictions": rows,
    }


def _row(item, p: float | None, error: str | None, seconds: float) -> dict:
    return {"path": str(item.path), "label": int(item.label), "method": item.method, "source": item.source,
            "p_fake": p, "error": error, "seconds": round(seconds, 4)}
