"""Leave-one-method-out check of a video branch: how it does on a generator it never saw.

For each held-out group of fake methods, the branch is retrained from its config with those fakes
removed from training (``data.exclude_methods``), then scored on every video of the held-out methods
(all splits: none was trained on) against the real videos of the validation split. Video score = mean
over the branch's validation clips. This is the number that matters to users meeting new generators;
the in-distribution validation AUC flatters (see the data README).

    python -m vidfake.training.holdout configs/train_tall.yaml --budget 8 --out runs/holdout_tall.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# Substrings of the manifest's `method` column.
HOLDOUT_GROUPS = {
    "face swap (DeepFaceLive)": ("DeepFaceLive",),
    "talking head (SadTalker, Linly-Talker)": ("SadTalker",),
    "diffusion talking head / image-to-video (DreamTalk, MuseV)": ("DreamTalk", "MuseV"),
}


def video_scores(model, dataset, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Mean clip probability per video of a Tall/Lip dataset (``dataset.index`` holds (video, clip))."""
    from vidfake.training.engine import predict

    probs, labels = predict(model, dataset, batch_size)
    per: dict[int, list[float]] = defaultdict(list)
    lab: dict[int, int] = {}
    for (v, _), p, y in zip(dataset.index, probs, labels, strict=True):
        per[v].append(float(p))
        lab[v] = int(y)
    keys = sorted(per)
    return np.array([np.mean(per[k]) for k in keys]), np.array([lab[k] for k in keys])


def run(config_path: str, budget: float, out: str | None, *, folds: list[str] | None = None,
        sbi_prob: float | None = None) -> dict:
    from sklearn.metrics import roc_auc_score

    from vidfake.temporal_models import get_config
    from vidfake.training.cache import CacheConfig, load_cached
    from vidfake.training.config import load_train_config
    from vidfake.training.data import read_manifest
    from vidfake.training.recipes import DataConfig, LipDataset, TallDataset, branch_of, train

    base = load_train_config(config_path)
    branch = branch_of(base.model)
    if branch not in ("tall", "lip"):
        raise SystemExit(f"{config_path}: leave-one-method-out is for the video branches (tall, lip)")
    dcfg = DataConfig.from_dict(dict(base.data))
    root = Path(dcfg.root)
    all_videos = read_manifest(root, kind="video")
    real_val = [i for i in all_videos if i.label == 0 and i.split == "val"]
    if sbi_prob is not None:
        base = replace(base, data=dict(base.data, sbi_prob=sbi_prob))
    report: dict = {"config": config_path, "branch": branch, "budget_minutes": budget,
                    "sbi_prob": dict(base.data).get("sbi_prob", DataConfig().sbi_prob), "folds": {}}
    for name, patterns in HOLDOUT_GROUPS.items():
        if folds and not any(f.lower() in name.lower() for f in folds):
            continue
        held = [i for i in all_videos if i.label == 1 and any(p in i.method for p in patterns)]
        slug = patterns[0].lower()
        data = dict(base.data, exclude_methods=list(patterns))
        tag = f"_sbi{report['sbi_prob']}" if sbi_prob is not None else ""
        cfg = replace(base, out_dir=f"runs/holdout_{branch}_{slug}{tag}", budget_minutes=budget, data=data)
        logger.info("fold %s: %d held-out fake videos, %d real val videos", name, len(held), len(real_val))
        fit = train(cfg)
        model_cfg = get_config(base.model)
        vids = load_cached(held + real_val, dcfg.cache_dir, CacheConfig())
        ds = (TallDataset(vids, model_cfg, dcfg, train=False) if branch == "tall"
              else LipDataset(vids, model_cfg, dcfg, train=False))
        from vidfake.temporal_models import create_model

        model = create_model(base.model, checkpoint_path=str(Path(cfg.out_dir) / "best.safetensors")).eval()
        p, y = video_scores(model, ds)
        report["folds"][name] = {
            "held_out_fake_videos": int((y == 1).sum()), "real_val_videos": int((y == 0).sum()),
            "auc_held_out_method": float(roc_auc_score(y, p)) if len(set(y)) == 2 else None,
            "in_distribution_val_auc": fit.best_auc, "epochs": fit.epochs_run,
        }
        logger.info("fold %s: %s", name, report["folds"][name])
    if out:
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vidfake.training.holdout", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a video branch's training config (configs/train_tall.yaml, train_lip.yaml)")
    p.add_argument("--budget", type=float, default=8.0, help="training minutes per fold (default: %(default)s)")
    p.add_argument("--out", default=None, help="JSON report path")
    p.add_argument("--fold", action="append", default=None, help="run only folds whose name contains this")
    p.add_argument("--sbi-prob", type=float, default=None, help="override data.sbi_prob (0 = no self-blending)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(run(args.config, args.budget, args.out, folds=args.fold, sbi_prob=args.sbi_prob), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
