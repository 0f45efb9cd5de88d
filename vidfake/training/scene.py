"""Scene-video dataset on the wire path, with the dev data's confounds neutralised; LOSO and head export.

The dev data's scene fakes are short and slow (median 10 fps, 2 s, many 256 x 256 squares, many from GIFs)
while its scene reals run at 25-30 fps for 5 s at up to 512 px (data README, confounds). Frame rate,
duration and frame size each separate the labels on their own. Every view of every clip therefore goes
through the same recipe, whatever its label (:data:`RECIPE`):

1. *time*: resampled to :attr:`SceneConfig.rate` (8 fps; no clip here is slower, so no frame repeats) and
   cut to a window of ``L ~ U(8, 16)`` frames (clipped to what the clip has; 16 is what the fakes have at
   8 fps, so a longer window would tell reals by length) at a random start, both drawn from a generator
   seeded by ``(seed, file name, view)``;
2. *size*: the frame's short side brought to ``s ~ U(192, 256)`` px (area), so that "native 256 px, never
   resampled" (the fakes) and "downscaled from 512 px" (the reals) look alike before the validators'
   resize; nothing in the subnet's fakes (480p-720p generators) is native 256 px either;
3. *wire*: view 0 (*clean*) the validators' level 0 (centre square, 256 px, JPEG 75), views 1..K-1
   (*validator-style*) :func:`~vidfake.training.augment.sample_subnet_aug` levels, then the wire's JPEG-75
   round trip (:func:`~vidfake.preprocessing.wire.encode_video_b85`), exactly as
   :func:`vidfake.evaluate.subnet_challenge` builds a challenge.

Per view it caches (``cache/scene/scene-<key>/``, resumable, keyed by the recipe, the trunk's sha256,
the views and the seed; :class:`~vidfake.training.features.FeatureCache`):

- ``lite0``: frozen Lite0 multi-stage features, mean and std over the window's frames (8256);
- ``temporal``: :func:`vidfake.scene.temporal_features` (frame differences, DIS flow, warp residual);
- confound blocks, measured on the original file (``orig_fps``, ``orig_duration`` (seconds and frames),
  ``orig_size`` (width, height, |log aspect|, square, log pixels)) and on the wire path (``wire_fps``,
  ``wire_duration``, ``wire_size``): the latter must score near AUC 0.5.

Which rows: the four scene fake families of :mod:`vidfake.training.groups` and the real groups without
faces (street/surveillance, object/tracking demo clips); the three face-footage real groups are left
out (the branch runs only when no face is tracked, and "a face means real" is a cue it must not learn).

LOSO reuses :func:`vidfake.training.loso.evaluate` (one fake family and one real group held out per
head, per-family AUC, mean and worst), clean and validator-style, for logistic heads on ``lite0``,
``temporal``, both, and on each confound block.

    python -m vidfake.training.scene --data ../shared/data --views 4            # extract (resumable) + LOSO
    python -m vidfake.training.scene --data ../shared/data --views 4 --export   # + fit and ship the head
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import date
from pathlib import Path

import numpy as np

from vidfake.scene import SceneConfig, SceneHead, available_frames, resample_indices, window_features
from vidfake.training.data import MediaItem
from vidfake.training.features import Extractor, FeatureCache, ViewSpec, item_id

logger = logging.getLogger(__name__)

__all__ = [
    "CANDIDATES", "RECIPE", "SCENE_FAKE_GROUPS", "SCENE_REAL_GROUPS", "extract", "fit_head", "load",
    "scene_extractor", "scene_items", "view_frames", "view_plan",
]

DEFAULT_CACHE = Path("cache/scene")
SCENE_FAKE_GROUPS: tuple[str, ...] = (
    "AnimateDiff", "VideoCrafter/DynamiCrafter", "LaVie/SEINE",
    "DiT text-to-video (Sora, Open-Sora-Plan, CogVideoX, EasyAnimate, Allegro)",
)
SCENE_REAL_GROUPS: tuple[str, ...] = (
    "street/surveillance clips (intel sample-videos, YOLOv4, lane lines)",
    "object/tracking demo clips (SAM 2, Track-Anything, mmaction2, depth, ...)",
)
CFG = SceneConfig()
MIN_LEN, MAX_LEN = 8, CFG.window
SIZE_RANGE = (192, 256)
RECIPE = {"v": 2, "rate": CFG.rate, "length": f"U({MIN_LEN},{MAX_LEN}) clipped to available, random start",
          "size": f"short side U{SIZE_RANGE} area", "view0": "level 0", "views": "sample_subnet_aug(None)",
          "wire": "encode_video_b85 q75 round trip", "trunk": "lite0 multi, 224, mean+std over frames",
          "temporal": "vidfake.scene.temporal_features v1"}

# Candidate -> feature blocks concatenated.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "lite0": ("lite0",),
    "temporal": ("temporal",),
    "lite0+temporal": ("lite0", "temporal"),
    "confound: fps (original)": ("orig_fps",),
    "confound: duration (original)": ("orig_duration",),
    "confound: frame size (original)": ("orig_size",),
    "confound: fps (wire)": ("wire_fps",),
    "confound: duration (wire)": ("wire_duration",),
    "confound: frame size (wire)": ("wire_size",),
}
BLOCKS = ("lite0", "temporal", "orig_fps", "orig_duration", "orig_size", "wire_fps", "wire_duration",
          "wire_size")


def scene_items(data: str | Path) -> tuple[list[MediaItem], list[str]]:
    """Scene rows (fake scene families, face-free real groups) and their groups."""
    from vidfake.training.data import read_manifest
    from vidfake.training.groups import assign_groups

    items = read_manifest(Path(data), kind="video")
    groups = assign_groups(items)
    keep = set(SCENE_FAKE_GROUPS) | set(SCENE_REAL_GROUPS)
    pairs = [(i, g) for i, g in zip(items, groups, strict=True) if g in keep]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _seed(name: str) -> int:
    return int(hashlib.sha1(name.encode()).hexdigest()[:12], 16)


def view_plan(name: str, view: int, num_frames: int, fps: float, spec: ViewSpec) -> tuple[np.ndarray, int]:
    """Stream indices of view ``view`` of clip ``name`` and the short side its frames are brought to."""
    rng = np.random.default_rng([spec.seed, _seed(name), view])
    avail = available_frames(num_frames, fps, CFG.rate)
    length = min(int(rng.integers(MIN_LEN, MAX_LEN + 1)), avail)
    start = int(rng.integers(0, avail - length + 1))
    side = int(rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1))
    return resample_indices(num_frames, fps, CFG.rate, length, start), side


def view_frames(frames: np.ndarray, name: str, view: int, side: int, spec: ViewSpec) -> np.ndarray:
    """``(T, H, W, 3) uint8`` resampled frames -> ``(T, 256, 256, 3) uint8`` as a miner receives them."""
    import cv2

    from vidfake.preprocessing.wire import decode_video_b85, encode_video_b85
    from vidfake.training.augment import SubnetAugParams, apply_subnet_aug, sample_subnet_aug

    h, w = frames.shape[1:3]
    s = side / min(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    frames = np.stack([cv2.resize(f, size, interpolation=interp) for f in frames])
    if view == 0:
        params = SubnetAugParams(level=0)
    else:
        params = sample_subnet_aug(None, np.random.default_rng([spec.seed, _seed(name), view, 1]))
    frames = apply_subnet_aug(frames, params)
    return decode_video_b85(encode_video_b85(frames, quality=75)).frames


def _confounds(info, n_wire: int) -> dict[str, np.ndarray]:
    w, h = info.native_width or info.width, info.native_height or info.height
    a = abs(float(np.log(w / h)))
    f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731
    return {"orig_fps": f32([info.fps]), "orig_duration": f32([info.duration, info.num_frames]),
            "orig_size": f32([w, h, a, float(w == h), np.log(w * h)]),
            "wire_fps": f32([CFG.rate]), "wire_duration": f32([n_wire / CFG.rate, n_wire]),
            "wire_size": f32([256, 256, 0.0, 1.0, np.log(256 * 256)])}


def scene_extractor() -> Extractor:
    """The cache's identity: recipe, trunk and its weights (the features module's key and shard layout)."""
    from vidfake.temporal_models.image2d import IMAGENET_LITE0_SHA256

    return Extractor("scene", "tf_efficientnet_lite0 ImageNet + DIS flow", BLOCKS, RECIPE,
                     weights=lambda: IMAGENET_LITE0_SHA256)


def extract(items: Sequence[MediaItem], spec: ViewSpec, root: str | Path = DEFAULT_CACHE, *,
            shard_items: int = 8, with_trunk: bool = True) -> dict[str, str]:
    """Compute and cache every view of every clip not cached yet; ``{item id: status}``.

    A clip that fails is reported (``"error: ..."``) and left out, never replaced by another.
    """
    from tqdm import tqdm

    from vidfake.preprocessing.decoders import open_video
    from vidfake.scene import Lite0Trunk

    cache = FeatureCache(scene_extractor(), spec, root)
    done = cache.cached_ids()
    status = {item_id(i.path): "exists" for i in items if item_id(i.path) in done}
    todo = [i for i in items if item_id(i.path) not in done]
    if not todo:
        return status
    trunk = Lite0Trunk() if with_trunk else None
    ids: list[str] = []
    arrays: dict[str, list[np.ndarray]] = {b: [] for b in BLOCKS}
    t0 = time.perf_counter()
    for item in tqdm(todo, desc="scene"):
        name = item_id(item.path)
        try:
            per_view = []
            with open_video(item.path, max_side=720) as v:
                info = v.info
                for view in range(spec.views):
                    idx, side = view_plan(name, view, v.num_frames, v.fps, spec)
                    frames = view_frames(v.get_frames(idx.tolist()), name, view, side, spec)
                    feats = window_features(trunk, frames)
                    if trunk is None:
                        feats["lite0"] = np.zeros(8256, np.float32)
                    per_view.append({**feats, **_confounds(info, len(idx))})
        except Exception as e:  # reported, the rest go on
            logger.exception("%s failed", item.path)
            status[name] = f"error: {type(e).__name__}: {e}"
            continue
        ids.append(name)
        for b in BLOCKS:
            arrays[b].append(np.stack([pv[b] for pv in per_view]))
        status[name] = "cached"
        if len(ids) >= shard_items:
            cache.write_shard(ids, arrays)
            ids, arrays = [], {b: [] for b in BLOCKS}
    if ids:
        cache.write_shard(ids, arrays)
    logger.info("scene: %d clips in %.0f s", len(todo), time.perf_counter() - t0)
    return status


def load(items: Sequence[MediaItem], spec: ViewSpec, candidate: str, root: str | Path = DEFAULT_CACHE
         ) -> np.ndarray:
    """``(N, K, D)`` features of ``candidate`` (see :data:`CANDIDATES`) in ``items`` order."""
    stored = FeatureCache(scene_extractor(), spec, root).load()
    missing = [item_id(i.path) for i in items if item_id(i.path) not in stored]
    if missing:
        raise KeyError(f"{len(missing)} of {len(items)} clips not cached (first: {missing[0]})")
    return np.stack([np.concatenate([stored[item_id(i.path)][b] for b in CANDIDATES[candidate]], -1)
                     for i in items])


def fit_head(x: np.ndarray, y: np.ndarray, features: tuple[str, ...], c: float) -> SceneHead:
    """Standardised L2 logistic regression (balanced classes) on ``(N, K, D)`` views -> :class:`SceneHead`."""
    k = x.shape[1]
    model = logreg(c).fit(x.reshape(-1, x.shape[-1]), np.repeat(y, k))
    sc, lr = model[0], model[-1]
    return SceneHead(features, sc.mean_, sc.scale_, lr.coef_[0].astype(np.float64), float(lr.intercept_[0]))


def _val_auc(x: np.ndarray, y: np.ndarray, items: Sequence[MediaItem], c: float) -> dict[str, float]:
    """Train on the manifest's train split, AUC on its val split (clean view 0, validator views 1..)."""
    from sklearn.metrics import roc_auc_score

    split = np.array([i.split for i in items])
    tr, va = split == "train", split == "val"
    if len(set(y[va])) < 2:
        return {}
    head = fit_head(x[tr], y[tr], ("x",), c)
    blocks = lambda a: [{"x": r} for r in a]  # noqa: E731
    out = {"n_val": int(va.sum()), "clean": float(roc_auc_score(y[va], head.logits(blocks(x[va, 0]))))}
    if x.shape[1] > 1:
        xv = x[va, 1:].reshape(-1, x.shape[-1])
        out["validator"] = float(roc_auc_score(np.repeat(y[va], x.shape[1] - 1), head.logits(blocks(xv))))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vidfake.training.scene", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("VIDFAKE_DATA", "../shared/data"),
                   help="folder with manifest.csv (default: %(default)s)")
    p.add_argument("--views", type=int, default=4, help="K views per clip, view 0 clean (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="view seed (default: %(default)s)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="cache root (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    p.add_argument("--c", type=float, default=0.01, help="logistic regression C (default: %(default)s)")
    p.add_argument("--no-loso", action="store_true", help="extract only")
    p.add_argument("--export", default=None, nargs="?", const="auto", metavar="CANDIDATE",
                   help="fit on every clip and write temporal_models/pretrained/scene_head.safetensors from "
                        "CANDIDATE (default: the best validator-style LOSO mean of the learned candidates)")
    p.add_argument("--out", default=None, help="JSON report (default: runs/loso_scene_<date>.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch
    from threadpoolctl import threadpool_limits

    from vidfake.training.loso import evaluate, group_table, markdown_table

    torch.set_num_threads(args.threads)
    items, groups = scene_items(args.data)
    labels = np.array([i.label for i in items])
    spec = ViewSpec(args.views, args.seed)
    status = extract(items, spec, args.cache)
    failed = {k: v for k, v in status.items() if v.startswith("error")}
    for k, v in failed.items():
        logger.error("%s: %s", k, v)
    if failed:
        return 1
    if args.no_loso:
        return 0
    results, val = [], {}

    def head():
        return logreg(args.c)

    head.__name__ = f"logreg C={args.c:g}"  # the name the LOSO table prints
    with threadpool_limits(1):
        for cand in CANDIDATES:
            x = load(items, spec, cand, args.cache)
            r = evaluate(x, labels, groups, head, candidate=cand, real_folds=len(SCENE_REAL_GROUPS))
            results.append(r)
            val[cand] = _val_auc(x, labels, items, args.c)
            logger.info("%s: %s val %s", cand, r.summary(), val[cand])
    print(markdown_table(results))
    for r in results:
        print()
        print(group_table(r))
    print("\nval split (train split -> val split):", json.dumps(val, indent=1))
    out = Path(args.out or f"runs/loso_scene_{date.today().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": date.today().isoformat(), "views": args.views, "seed": args.seed,
                               "c": args.c, "recipe": RECIPE, "n": len(items), "val": val,
                               "results": [dict(asdict(r), summary=r.summary(), real_summary=r.summary("real_groups"))
                                           for r in results]}, indent=2) + "\n")
    logger.info("report: %s", out)
    if args.export:
        learned = [r for r in results if not r.candidate.startswith("confound")]
        cand = args.export if args.export != "auto" else max(
            learned, key=lambda r: r.summary()["auc_validator_mean"] or 0).candidate
        from vidfake.scene import scene_head_path

        x = load(items, spec, cand, args.cache)
        head = fit_head(x, labels, CANDIDATES[cand], args.c)
        head.save(scene_head_path(), {"candidate": cand, "recipe": json.dumps(RECIPE), "views": str(args.views),
                                      "seed": str(args.seed), "c": str(args.c), "clips": str(len(items)),
                                      "date": date.today().isoformat()})
        logger.info("exported %s head to %s", cand, scene_head_path())
    return 0


def logreg(c: float):
    """Standardised L2 logistic regression, balanced class weights (the LOSO module's ``logreg`` head)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=1000))


if __name__ == "__main__":
    sys.exit(main())
