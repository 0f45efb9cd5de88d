"""SBI's recipe as it is, for leave-one-source-out: an ImageNet EfficientNet-Lite0 fine-tuned end to end
on real face frames and their self-blends only, then scored on face-video sources it never saw.

Shiohara & Yamasaki (CVPR 2022) train on real faces and self-blended fakes only (no fake of any
generator), which is what makes the detector generalise to unseen face swaps. Here (issue 16 (h)):

- **Data.** The face-video crop cache (:func:`vidfake.training.facevideo.extract_one`): per real video, 16
  clean frames in 4 runs, each as a wide crop (:data:`~vidfake.training.facevideo.WIDE_SCALE` times
  the face box) with its mediapipe landmarks. Only the reals of the *training* real groups are used; the
  other real groups and every fake group are held out.
- **Sample.** A random frame of a random training video (videos drawn uniformly, so long clips do not
  dominate); with probability 1/2 it is self-blended (:func:`vidfake.training.sbi.self_blend`, a fresh
  blend each time) and labelled fake. The 2D branch's crop (its ``crop_scale`` around the face) is cut
  from the wide crop, then (``--degrade validator``, the default) degraded as a validator's challenge
  degrades a face: down-scaled to a face size drawn from the challenges' range, one of the validators'
  augmentation levels, JPEG 75, and back to the input size (``mild``: 112-224 px and JPEG 75 only;
  ``none``: as cropped). The real and the fake side get the same treatment.
- **Model.** ``efficientnet_lite0_detector`` from the offline ImageNet weights, every layer trained
  (SBI fine-tunes the whole network) with its fresh two-class head zero-initialised, AdamW, one-cycle
  schedule, batch 16, channels-last.
- **Resumable.** A checkpoint every 50 steps; a rerun with the same ``--out`` resumes from it.
- **Scored** on the cached views of every face video (clean and validator-style, the same crops the
  frozen-feature candidates used) and put through the same LOSO protocol
  (:func:`vidfake.training.loso.evaluate`): the fine-tuned model's mean frame logit per view is the score,
  and a fold counts only where its real groups are the ones this model did not train on.

    python -m vidfake.training.sbi_finetune train --fold 0 --degrade none --out runs/sbi_ft_fold0_none
    python -m vidfake.training.sbi_finetune score --run runs/sbi_ft_fold0_none
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["degrade", "real_folds", "sample", "score_runs", "train"]

FACE_SIDES = (48, 160)  # face crop side after a validator's 256 px resize of a 360-1080 p frame, in px


DEFAULT_DATA = os.environ.get("VIDFAKE_DATA", "../shared/data")


def real_folds(items, groups, n: int = 2) -> list[tuple[str, ...]]:
    """The face videos' real groups dealt into ``n`` folds as the LOSO protocol deals them."""
    from vidfake.training.loso import deal_real_folds

    sizes: dict[str, int] = {}
    for it, g in zip(items, groups, strict=True):
        if it.label == 0:
            sizes[g] = sizes.get(g, 0) + 1
    return deal_real_folds(sizes, n)


DEGRADE = ("validator", "mild", "none")


def degrade(crop: np.ndarray, size: int, rng: np.random.Generator, how: str = "validator") -> np.ndarray:
    """A face crop as it reaches the 2D branch from a validator's challenge (see the module docstring).

    ``how``: ``"validator"`` (face side drawn from :data:`FACE_SIDES`, the validators' level mix),
    ``"mild"`` (face side 112-224 px, level 0: JPEG 75 only) or ``"none"`` (the crop as it is).
    """
    import cv2

    from vidfake.training.augment import apply_subnet_aug, sample_subnet_aug

    if how == "none":
        return crop
    if how not in DEGRADE:
        raise ValueError(f"how must be one of {DEGRADE}, got {how!r}")
    lo, hi = FACE_SIDES if how == "validator" else (112, size)
    side = int(rng.integers(lo, hi + 1))
    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    # The validators' level mix on the small face (geometry, colour, noise, blur), then their JPEG 75.
    small = apply_subnet_aug(small, sample_subnet_aug(None if how == "validator" else 0, rng, size=side))
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)


def _face_box(wide: np.ndarray, crop_scale: float, size: int) -> np.ndarray:
    import cv2

    from vidfake.training.facevideo import WIDE_SCALE

    s = wide.shape[0]
    side = int(round(s * crop_scale / WIDE_SCALE))
    o = (s - side) // 2
    return cv2.resize(wide[o : o + side, o : o + side], (size, size), interpolation=cv2.INTER_AREA)


def sample(wide: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, crop_scale: float, size: int,
           how: str = "validator") -> tuple[np.ndarray, int]:
    """One training sample from one wide real crop: ``(image, label)``, label 1 when self-blended."""
    from vidfake.training.sbi import self_blend

    label = int(rng.random() < 0.5)
    image = wide
    if label:
        try:
            image, _ = self_blend(wide, landmarks, rng=rng)
        except Exception:  # a hull too small to blend: the real frame, labelled real
            label = 0
    return degrade(_face_box(image, crop_scale, size), size, rng, how), label


def _load_reals(items, item_groups, groups: tuple[str, ...], split: str | None, cache: str | Path):
    """The cached wide crops and landmarks of the real videos of ``groups`` (of ``split`` if given)."""
    from vidfake.training.facevideo import cache_file, crops_dir

    folder = crops_dir(cache)
    videos = []
    for it, g in zip(items, item_groups, strict=True):
        if it.label == 0 and g in groups and split in (None, it.split) and cache_file(folder, it).exists():
            with np.load(cache_file(folder, it)) as z:
                videos.append((z["wide"], z["wide_landmarks"]))
    return videos


def train(fold: int, steps: int, out: Path, *, folds: int = 2, batch: int = 16, lr: float = 2e-4,
          seed: int = 0, save_every: int = 50, threads: int = 1, how: str = "validator",
          device: str = "cpu", data: str | Path = DEFAULT_DATA, cache: str | Path = "cache/facevideo") -> Path:
    """Fine-tune on the reals of every real group outside fold ``fold`` and their self-blends."""
    import torch

    from vidfake.detector import DetectorConfig
    from vidfake.temporal_models import create_model
    from vidfake.training.facevideo import face_video_items
    from vidfake.training.features import _to_input

    torch.set_num_threads(threads)
    items, item_groups = face_video_items(data)
    dealt = real_folds(items, item_groups, folds)
    # fold -1: the train split of every real source (people held out, not sources): fakes stay unseen.
    held = dealt[fold] if fold >= 0 else ()
    train_groups = tuple(g for f in dealt for g in f if g not in held)
    split = "train" if fold < 0 else None
    branch = DetectorConfig().branch("image2d")
    crop_scale, size = float(branch.crop_scale), int(branch.input_size)
    videos = _load_reals(items, item_groups, train_groups, split, cache)
    if not videos:
        raise FileNotFoundError("no cached real face crops: run python -m vidfake.training.facevideo extract")
    out.mkdir(parents=True, exist_ok=True)
    model = create_model("efficientnet_lite0_detector", imagenet_init=True).to(memory_format=torch.channels_last)
    # The runs in docs/loso_face_videos.md started from a zero head; the model's own ImageNet init (a head
    # of std 0.01) came after them. Zero keeps those runs reproducible.
    torch.nn.init.zeros_(model.get_classifier().weight)
    torch.nn.init.zeros_(model.get_classifier().bias)
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    ckpt = out / "checkpoint.pt"
    start = 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = state["step"]
        logger.info("resumed at step %d", start)
    (out / "run.json").write_text(json.dumps({"fold": fold, "held_out_real_groups": held,
                                              "train_real_groups": train_groups, "real_split": split,
                                              "videos": len(videos),
                                              "steps": steps, "batch": batch, "lr": lr, "seed": seed,
                                              "degrade": how}, indent=1))
    model.train()
    t0 = time.perf_counter()
    losses = []
    for step in range(start, steps):
        rng = np.random.default_rng([seed, fold if fold >= 0 else 999, step])
        xs, ys = [], []
        for _ in range(batch):
            wide, lms = videos[int(rng.integers(len(videos)))]
            t = int(rng.integers(len(wide)))
            x, y = sample(wide[t], lms[t], rng, crop_scale, size, how)
            xs.append(x)
            ys.append(y)
        x = _to_input(np.stack(xs)).contiguous(memory_format=torch.channels_last).to(device)
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor(ys, device=device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % save_every == 0 or step + 1 == steps:
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step + 1}, tmp)
            tmp.replace(ckpt)
            logger.info("step %d/%d loss %.3f (%.1f s/step)", step + 1, steps, float(np.mean(losses[-50:])),
                        (time.perf_counter() - t0) / (step + 1 - start))
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    return out / "model.safetensors"


def _frame_logits(model, crops: np.ndarray, batch: int = 32) -> np.ndarray:
    import torch

    from vidfake.training.features import _to_input

    out = []
    with torch.inference_mode():
        for s in range(0, len(crops), batch):
            z = model(_to_input(crops[s : s + batch]).contiguous(memory_format=torch.channels_last))
            out.append((z[:, 1] - z[:, 0]).numpy())
    return np.concatenate(out)


def score_runs(runs: list[Path], out: Path, threads: int = 2, *, data: str | Path = DEFAULT_DATA,
               cache: str | Path = "cache/facevideo") -> dict:
    """Score every cached face video with each run's model and report LOSO figures (see the docstring)."""
    import torch
    from safetensors.torch import load_file

    from vidfake.temporal_models import create_model
    from vidfake.training import loso
    from vidfake.training.facevideo import cache_file, crops_dir, face_video_items

    torch.set_num_threads(threads)
    items, groups = face_video_items(data)
    folder = crops_dir(cache)
    keep = [k for k, it in enumerate(items) if cache_file(folder, it).exists()]
    items, groups = [items[k] for k in keep], np.array([groups[k] for k in keep])
    labels = np.array([it.label for it in items])
    report: dict = {"runs": [], "n": len(items)}
    scores, meta_of = {}, {}
    for run in runs:
        meta = json.loads((run / "run.json").read_text())
        model = create_model("efficientnet_lite0_detector", imagenet_init=False)
        model.load_state_dict(load_file(run / "model.safetensors"))
        model = model.eval().to(memory_format=torch.channels_last)
        x = []
        for it in items:
            with np.load(cache_file(folder, it)) as z:
                crops = z["crops"]
            k, t = crops.shape[:2]
            x.append(_frame_logits(model, crops.reshape(k * t, *crops.shape[2:])).reshape(k, t).mean(1))
        scores[str(run)] = np.stack(x)[..., None]
        meta_of[str(run)] = meta
        report["runs"].append(meta)
    # Each model is scored only on reals it never saw (its held-out real fold, or for fold -1 the val
    # split), against every fake group (no model saw any fake).
    splits = np.array([it.split for it in items])
    results = []
    for run, x in scores.items():
        meta = meta_of[run]
        held = tuple(meta["held_out_real_groups"])
        if meta.get("real_split"):
            sel = (labels == 1) | (splits == "val")
            name = "sbi_finetune (reals: the val split of every real source, whose train split it saw)"
        else:
            sel = (labels == 1) | np.isin(groups, list(held))
            name = f"sbi_finetune (reals held out: {', '.join(held)})"
        r = loso.evaluate(x[sel], labels[sel], groups[sel], None, candidate=name, real_folds=1)
        # Scored without training here, and the model never saw a fake: every fake group is unseen.
        results.append(dataclasses.replace(
            r, loso=True, head=f"fine-tune, {meta['steps']} steps, degrade {meta.get('degrade', 'validator')}"))
    loso._write_results(out, results, 1)
    print(loso.markdown_table(results))
    for r in results:
        print()
        print(loso.group_table(r))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vidfake.training.sbi_finetune", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    t = sub.add_parser("train")
    t.add_argument("--fold", type=int, required=True,
                   help="real fold held out (0 or 1); -1: the train split of every real source (fakes unseen, "
                        "real sources seen)")
    t.add_argument("--steps", type=int, default=300)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--degrade", choices=DEGRADE, default="validator", help="how training crops are degraded")
    t.add_argument("--device", default="cpu", help="torch device (a GPU session: cuda)")
    t.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("score")
    s.add_argument("--run", type=Path, action="append", required=True)
    s.add_argument("--out", type=Path, default=Path("runs/loso_face_videos_sbi_finetune.json"))
    s.add_argument("--threads", type=int, default=2)
    for q in (t, s):
        q.add_argument("--data", default=DEFAULT_DATA, help="folder with manifest.csv (default: %(default)s)")
        q.add_argument("--cache", default="cache/facevideo", help="face-video cache root (default: %(default)s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.step == "train":
        train(args.fold, args.steps, args.out, batch=args.batch, lr=args.lr, threads=args.threads, how=args.degrade,
              device=args.device, data=args.data, cache=args.cache)
    else:
        score_runs(args.run, args.out, args.threads, data=args.data, cache=args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
