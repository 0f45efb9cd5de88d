"""Train the still-image probe (:mod:`vidfake.probe`) from the frozen-feature cache.

The shipped file is the LOSO table's ``rigid_draws1`` row (``docs/loso_images.md``, fifth pass): a
training-free stability score (noise on the feature map that feeds ``blocks.5``, the fixed draw the file
stores) standardised on the training rows, with the head's weight ``--probe-weight 0``. The head is still
fitted and stored, so ``--probe-weight 1`` writes the equal-weight blend of the fourth pass
(``lite0_multi+rigid_draws1`` / ``blend_score``): the ImageNet Lite0 trunk's multi-stage statistics of
every image under K views (view 0 the validators' level-0 input, views 1..K-1 their augmentation mix), a
standardised L2 logistic regression in which every source group of a label weighs the same, and the
score added to its log-odds (:class:`vidfake.probe.RigidTerm`). ``--no-rigid`` leaves the score out: the
``lite0_multi`` / ``logreg_groupbal`` row; ``--no-rigid --blends`` adds self-blended copies of the real
images that have a face, extractor ``lite0_sbi``, as extra fakes: the ``+sbi`` row. Here it is fitted
once on the train split (all views); the val split is left for the Platt calibration
(``vidfake train configs/fusion_image.yaml``) and for the model card. Features missing from the cache are
extracted first (about 0.2 s an image on 2 cores).

    python -m vidfake.training.probe --data ../shared/data --out temporal_models/pretrained/image_probe.safetensors
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import date
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["CANDIDATE", "HEAD", "fit_probe", "head_from_pipeline"]

CANDIDATE = "lite0_multi"  # vidfake.training.features: what vidfake.scene.Lite0Trunk.frame_features computes
HEAD = "logreg_groupbal"
RIGID = "rigid_draws1"  # the training-free stability score under the shipped fixed draw (vidfake.probe.RigidTerm)
PROBE_WEIGHT = 0.0  # the head's weight in the blend: docs/loso_images.md, fifth pass
RIGID_HEAD = "blend_score"
BLENDS = "lite0_multi_sbi"  # the same features of self-blended copies of the images with a face


def head_from_pipeline(model):
    """A fitted ``logreg_groupbal`` head (standardiser + logistic regression) as a :class:`SceneHead`."""
    from vidfake.probe import PROBE_FEATURES
    from vidfake.scene import SceneHead

    pipe = getattr(model, "model", model)
    scaler, lr = pipe.steps[0][1], pipe.steps[-1][1]
    return SceneHead(PROBE_FEATURES, scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64),
                     lr.coef_[0].astype(np.float64), float(lr.intercept_[0]))


def fit_probe(features: np.ndarray, labels: np.ndarray, groups: np.ndarray,
              aux: tuple[np.ndarray, np.ndarray] | None = None, rigid: np.ndarray | None = None,
              probe_weight: float = 1.0):
    """Fit the head on ``(N, K, D)`` features (every view a row); returns ``(SceneHead, RigidTerm or None,
    fitted model)``.

    ``aux``: extra *fake* rows ``(features (M, K, D), groups (M,))``, the self-blends of real images, each
    tagged with its real's source group, as :func:`vidfake.training.loso.evaluate` adds them.
    ``rigid``: ``(N, K)`` RIGID scores of the same views: the model is then the LOSO table's
    ``blend_score`` head (its last column the score), and the :class:`~vidfake.probe.RigidTerm` holds its
    standardisation and the fixed inference noise. ``probe_weight``: the head's weight in that blend (1: the
    equal-weight blend; 0: the stability score alone decides, the head only rides along in the file).
    """
    from vidfake.probe import RIGID_SIGMA, RIGID_START, RigidTerm, rigid_noise
    from vidfake.training.loso import HEADS

    if rigid is not None:
        if aux is not None:
            raise ValueError("self-blends have no RIGID scores cached; fit with rigid=None")
        features = np.concatenate([features, np.asarray(rigid, features.dtype)[..., None]], axis=2)

    k = features.shape[1]
    x = features.reshape(-1, features.shape[-1])
    y = np.repeat(labels, k)
    g = np.repeat(groups, k)
    if aux is not None:
        ax, ag = aux
        x = np.concatenate([x, ax.reshape(-1, ax.shape[-1])])
        y = np.concatenate([y, np.ones(len(ax) * ax.shape[1], dtype=y.dtype)])
        g = np.concatenate([g, np.repeat(np.asarray(ag).astype(str), ax.shape[1])])
    model = HEADS[HEAD]() if rigid is None else HEADS[RIGID_HEAD](probe_weight)
    model.fit(x, y, groups=g)
    if rigid is None:
        return head_from_pipeline(model), None, model
    term = RigidTerm(rigid_noise(), RIGID_START, RIGID_SIGMA, *map(float, model.stats), probe_weight)
    return head_from_pipeline(model.model), term, model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vidfake.training.probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("VIDFAKE_DATA", "../shared/data"),
                   help="folder with manifest.csv (default: %(default)s)")
    p.add_argument("--cache", default="cache/features", help="feature cache root (default: %(default)s)")
    p.add_argument("--out", default="temporal_models/pretrained/image_probe.safetensors",
                   help="head file to write (default: %(default)s)")
    p.add_argument("--report", default="runs/image_probe.json", help="val figures (default: %(default)s)")
    p.add_argument("--blends", action="store_true",
                   help="add self-blends of the train-split reals with a face as extra fakes (lite0_multi +sbi: "
                        "LOSO 0.571 / 0.349 against 0.563 / 0.235, val 0.765 against 0.822; off by default, "
                        "see docs/loso_images.md)")
    p.add_argument("--rigid", action=argparse.BooleanOptionalAction, default=True,
                   help="use the training-free stability score (rigid_draws1: LOSO 0.591 / 0.299 alone, "
                        "against 0.563 / 0.235 for the head without it; see docs/loso_images.md)")
    p.add_argument("--probe-weight", type=float, default=PROBE_WEIGHT,
                   help="weight of the head's logit next to the stability score (default %(default)s: the score "
                        "alone, LOSO 0.591 / 0.299 against 0.604 / 0.203 for 1, the equal-weight blend; with "
                        "the ImageNet reals the frozen trunk trained on never scored, 0.596 / 0.306 against "
                        "0.581 / 0.214; see docs/loso_images.md, fifth pass)")
    args = p.parse_args(argv)
    if not 0 <= args.probe_weight <= 1:
        p.error(f"--probe-weight must be in [0, 1], got {args.probe_weight}")
    if args.rigid and args.blends:
        p.error("--blends has no RIGID scores cached: add --no-rigid")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    from vidfake.training.data import read_manifest
    from vidfake.training.features import (
        CANDIDATES,
        EXTRACTORS,
        FeatureCache,
        extract,
        load_features,
        spec_for,
    )
    from vidfake.training.groups import assign_groups

    items = read_manifest(args.data, kind="image")
    extractors = [CANDIDATES[c][0] for c in (CANDIDATE, *([BLENDS] if args.blends else []),
                                             *([RIGID] if args.rigid else []))]
    status = extract(items, extractors, root=args.cache)
    failed = {f"{e} {k}": v for e in extractors for k, v in status[e].items() if v.startswith("error")}
    if failed:
        raise SystemExit(f"{len(failed)} images failed feature extraction, first: {next(iter(failed.items()))}")
    x = load_features(items, CANDIDATE, root=args.cache)
    y = np.array([i.label for i in items])
    g = np.asarray(assign_groups(items))
    split = np.array([i.split for i in items])
    train, val = split == "train", split == "val"
    aux = None
    if args.blends:
        blends = load_features(items, BLENDS, root=args.cache)
        keep = train & (y == 0) & np.isfinite(blends).all(axis=(1, 2))  # train-split reals with a face
        aux = (blends[keep], g[keep])
    r = load_features(items, RIGID, root=args.cache)[..., 0] if args.rigid else None
    head, term, model = fit_probe(x[train], y[train], g[train], aux, None if r is None else r[train],
                                  args.probe_weight)
    cand, head_name = (f"{CANDIDATE}+{RIGID}", RIGID_HEAD) if args.rigid else (CANDIDATE, HEAD)
    report: dict = {"candidate": cand, "head": head_name, "blends": 0 if aux is None else len(aux[0]),
                    "probe_weight": None if term is None else term.probe_weight,
                    "train_items": int(train.sum()), "val_items": int(val.sum()), "views": int(x.shape[1]),
                    "cache": [str(FeatureCache(EXTRACTORS[e], spec_for(e), args.cache).dir) for e in extractors]}
    if val.any():
        for name, views in (("clean", [0]), ("validator", list(range(1, x.shape[1])))):
            xv = x[val][:, views].reshape(-1, x.shape[-1])
            yv = np.repeat(y[val], len(views))
            z = head.logits([{"multi": row} for row in xv]) if term is None or term.probe_weight else 0.0
            if term is not None:
                rv = r[val][:, views].reshape(-1)
                z = term.blend(z, rv)
                xv = np.concatenate([xv, rv[:, None]], axis=1)
            ref = model.predict_proba(xv)[:, 1]
            # The written head is the fitted model: same probabilities to float precision.
            if not np.allclose(1 / (1 + np.exp(-z)), ref, atol=1e-6):
                raise RuntimeError(f"{args.out}: the head to write differs from the fitted model (max |dp| "
                                   f"{np.abs(1 / (1 + np.exp(-z)) - ref).max():.2g}); nothing written")
            report[f"val_auc_{name}"] = float(roc_auc_score(yv, z))
            report[f"val_mcc_{name}_at_0"] = float(matthews_corrcoef(yv, z >= 0))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from vidfake.probe import save_probe

    save_probe(out, head, term, metadata={"candidate": cand, "head": head_name, "data": str(args.data),
                                          "split": "train", "blends": BLENDS if args.blends else "none",
                                          "date": date.today().isoformat()})
    logger.info("wrote %s", out)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
