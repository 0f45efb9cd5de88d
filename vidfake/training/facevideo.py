"""Leave-one-source-out (LOSO) evaluation of face-video candidates on cached frozen face-crop features.

The face videos of ``../shared/data`` come from three fake sources (DeepFaceLive face swaps, SadTalker /
Linly-Talker talking heads, DreamTalk / MuseV diffusion portraits) and three kinds of real footage
(DeepFaceLive source streams, talking-head footage, portrait driving videos). The val split holds out
people, not sources: the shipped fusion scores 0.68 there and below chance on face videos from sources
it never saw. This module gives face videos the LOSO table images have (:mod:`vidfake.training.loso`,
whose protocol it reuses: every (fake group, real fold) pair gets a head that saw neither side).

**Cache.** Each face video is decoded once (short side at most 720 px, as the evaluation's subnet
challenges are) at :data:`RUNS` runs of :data:`RUN_LEN` consecutive frames spread over the clip (clips
shorter than that give what they have). Every view of it is tracked with the project's
:class:`~vidfake.preprocessing.faces.FaceTracker`, the main face is cropped as the detector crops it
(the 2D branch's ``crop_scale`` and input size). The same pass writes two caches: the crops
themselves (``crops-<key>``, for fine-tuned models: :mod:`vidfake.training.sbi_finetune`), and per
frame (``lite0-<key>``):

- ``multi``: the frozen ImageNet EfficientNet-Lite0 multi-stage statistics (mean and std over space of
  every stage: :mod:`vidfake.training.features`' ``multi`` block), float16;
- ``shipped``: the shipped 2D detector's fake log-odds of the crop (a *reference*: it trained on every
  source here).

Views: view 0 is the clip as stored; views 1..K-1 are what a validator sends: one augmentation drawn
per clip and view (:func:`vidfake.training.features.view_params`), applied to every frame, then the wire
path's JPEG-75 encode and decode. For each *real* video the same is stored for a self-blended copy (SBI,
:func:`vidfake.training.sbi.self_blend_clip`, one blend per clip drawn from the file name): the blend is
made on the clean frames with their tracked landmarks, then goes through the same views as its real
original. These are fakes that differ from their reals only by a blending boundary, so the head cannot
learn a fake source's content.

**Candidates** (:data:`CANDIDATES`; pooled over the frames of a view):

- ``face_mean``: mean of ``multi`` over frames (appearance);
- ``face_temporal``: mean, std over frames, and mean absolute change between consecutive frames of a run
  (a temporal-inconsistency signal on frozen features: the cheap stand-in for TALL and the lip branch
  on frozen features);
- ``face_motion``: the last block of ``face_temporal`` alone (frame-to-frame change, no appearance);
- ``face_tall``: TALL on frozen features: each run's 4 crops tiled into the TALL branch's 2x2 layout,
  through the frozen Lite0, stage statistics averaged over the runs (:func:`extract_tall`; no
  self-blended copies, so only the ``labelled`` variant);
- ``face_finetune``: the shipped 2D recipe, LOSO: its trainable layers (``blocks.6`` onwards,
  ``configs/train_image2d.yaml``) retrained per fold from ImageNet on every cached crop's frozen
  ``blocks.5`` map (:func:`extract_stage5`, :class:`vidfake.training.tail.FrameTailFinetune`); a video's
  score is its frames' mean log-odds (``labelled`` variant only);
- ``face_lip``: the lip branch's input on frozen features: each cached crop's LipForensics-aligned 88 x 88
  grey mouth (face mesh on the crops, :func:`extract_lip`) through the frozen Lite0, pooled over frames
  as ``face_temporal`` is (mean, std, frame-to-frame change; ``labelled`` variant only);
  ``face_lip_motion`` the frame-to-frame change alone; ``confound_mouth_width`` the mouth's width in the
  crop alone (and whether a mesh was found), what the mouth's scale scores by itself;
- ``face_rigid``: the still-image probe's stability score (:func:`extract_rigid`) on every cached crop,
  the frames' mean per view, scored with **no training** (head ``score``): a LOSO figure by construction;
- ``confound_format``: no pixels, the file's frame rate, duration, native width and height and aspect
  (logs): what the format alone scores. Validator-style views carry none of it (256 x 256 frames
  without a rate reach the miner), so those rows are constant and score 0.5;
- ``shipped_image2d``: mean of ``shipped`` (reference, not LOSO).

Training variants: ``labelled`` (the labelled fakes of the other sources), ``+sbi`` (those plus the
self-blends of the training reals) and ``sbi_only`` (reals and their self-blends only, SBI's recipe:
no labelled fake of any source is seen).

    python -m vidfake.training.facevideo extract --data ../shared/data [--shard 0/2]
    python -m vidfake.training.facevideo extract --tall      # TALL layouts of the cached crops
    python -m vidfake.training.facevideo extract --stage5    # blocks.5 maps of the cached crops
    python -m vidfake.training.facevideo loso --data ../shared/data --out runs/loso_face_videos.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from vidfake.training.data import MediaItem

logger = logging.getLogger(__name__)

__all__ = ["CANDIDATES", "FACE_FAKE_GROUPS", "FACE_REAL_GROUPS", "FaceVideoRecipe", "cache_file",
           "crops_dir", "extract", "extract_one", "extract_stage5", "extract_tall", "face_video_items", "load",
           "pool", "run_frames", "stage5_dir"]

FACE_FAKE_GROUPS = ("face swap (DeepFaceLive)", "talking head (SadTalker, Linly-Talker)",
                    "diffusion talking head / portrait I2V (DreamTalk, MuseV)")
FACE_REAL_GROUPS = ("DeepFaceLive source streams", "talking-head footage (DreamTalk, video-retalking, SadTalker)",
                    "portrait driving videos (LivePortrait, first-order-model, AniPortrait)")
# Each fake source and the real source filmed alike (same streams, same studios): holding them out
# together cancels what the pair shares, so what is left to score is the manipulation (``loso --pairs``).
MATCHED_REAL = {
    FACE_FAKE_GROUPS[0]: FACE_REAL_GROUPS[0],
    FACE_FAKE_GROUPS[1]: FACE_REAL_GROUPS[1],
    FACE_FAKE_GROUPS[2]: FACE_REAL_GROUPS[2],
}
RUNS = 4
RUN_LEN = 4
DECODE_MAX_SIDE = 720  # what vidfake.evaluate.subnet_challenge decodes at
DEFAULT_CACHE = Path("cache/facevideo")
CANDIDATES = ("face_mean", "face_temporal", "face_motion", "face_tall", "face_lip", "face_lip_motion", "face_finetune",
              "face_rigid", "confound_format", "confound_mouth_width", "shipped_image2d")
VARIANTS = ("labelled", "+sbi", "sbi_only")


@dataclass(frozen=True)
class FaceVideoRecipe:
    """Everything the cached numbers depend on (hashed into the cache folder's name)."""

    views: int = 3
    seed: int = 0
    runs: int = RUNS
    run_len: int = RUN_LEN
    max_side: int = DECODE_MAX_SIDE
    wire_quality: int = 75

    def key(self, crop_scale: float, input_size: int, lite0_sha: str, shipped_sha: str) -> str:
        blob = json.dumps({"v": 1, **self.__dict__, "crop_scale": crop_scale, "input_size": input_size,
                           "lite0": lite0_sha, "shipped": shipped_sha, "sbi": "self_blend_clip jitter 0"},
                          sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]


def face_video_items(data: str | Path) -> tuple[list[MediaItem], list[str]]:
    """The face videos of the manifest and their source groups.

    Raises:
        KeyError: a group named here is no longer a rule of :mod:`vidfake.training.groups`.
    """
    from vidfake.training.data import read_manifest
    from vidfake.training.groups import RULES, assign_groups

    names = {r.name for r in RULES if r.kind == "video"}
    missing = [g for g in (*FACE_FAKE_GROUPS, *FACE_REAL_GROUPS) if g not in names]
    if missing:
        raise KeyError(f"face-video groups missing from vidfake.training.groups.RULES: {missing}")
    items = read_manifest(data, kind="video")
    groups = assign_groups(items)
    keep = [k for k, g in enumerate(groups) if g in FACE_FAKE_GROUPS or g in FACE_REAL_GROUPS]
    return [items[k] for k in keep], [groups[k] for k in keep]


def run_frames(num_frames: int, runs: int = RUNS, run_len: int = RUN_LEN) -> tuple[np.ndarray, np.ndarray]:
    """``runs`` runs of ``run_len`` consecutive frame indices spread evenly over a clip, and each index's
    run; a clip shorter than ``runs * run_len`` frames gives each frame once, in runs of ``run_len``."""
    if num_frames < 1:
        raise ValueError("a clip without frames")
    if num_frames <= runs * run_len:
        idx = np.arange(num_frames)
        return idx, idx // run_len
    starts = np.linspace(0, num_frames - run_len, runs).round().astype(int)
    idx = np.concatenate([np.arange(s, s + run_len) for s in starts])
    return idx, np.repeat(np.arange(runs), run_len)


def _wire(frames: np.ndarray, quality: int) -> np.ndarray:
    from vidfake.preprocessing.wire import decode_video_b85, encode_video_b85

    return decode_video_b85(encode_video_b85(frames, quality=quality)).frames


class _Scorer:
    """Tracker, frozen Lite0 and the shipped 2D branch, built once per extraction run."""

    def __init__(self):
        from vidfake.detector import Detector
        from vidfake.preprocessing.faces import FaceTracker
        from vidfake.training.features import _lite0_backbone

        self.tracker = FaceTracker(max_faces=2)
        self.lite0 = _lite0_backbone()
        self.image2d = Detector().branches["image2d"]  # its network loads on first use only
        self.crop_scale = float(self.image2d.crop_scale)
        self.size = int(self.image2d.input_size)

    def track(self, frames: np.ndarray, idx: np.ndarray):
        """The main face track, or where no face is found (the validators' crop or blur can lose it),
        the centre square of every frame with ``present`` False: what the 2D branch scores then."""
        tracks = self.tracker.track(frames, idx)
        if tracks:
            return tracks[0]
        h, w = frames.shape[1:3]
        side = min(h, w) / self.crop_scale
        box = np.array([(w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2], np.float32)
        return SimpleNamespace(boxes=np.repeat(box[None], len(frames), 0), landmarks=None,
                               present=np.zeros(len(frames), bool))

    def crop(self, frames: np.ndarray, track) -> np.ndarray:
        """The main face of every frame as the 2D branch crops it: ``(T, S, S, 3) uint8``."""
        from vidfake.preprocessing.faces import crop_faces

        return crop_faces(frames, track.boxes, scale=self.crop_scale, size=self.size).images

    def features(self, crops: np.ndarray, track) -> dict[str, np.ndarray]:
        from vidfake.training.features import _to_input

        multi = self.lite0.pooled(_to_input(crops))["multi"].astype(np.float16)
        shipped = self.image2d.fake_logits(self.image2d.batch(crops)).astype(np.float32)
        return {"multi": multi, "shipped": shipped, "present": track.present.astype(bool)}


def _views(frames: np.ndarray, name: str, recipe: FaceVideoRecipe) -> list[np.ndarray]:
    from vidfake.training.augment import apply_subnet_aug
    from vidfake.training.features import ViewSpec, view_params

    spec = ViewSpec(recipe.views, recipe.seed)
    return [frames, *(_wire(apply_subnet_aug(frames, view_params(name, v, spec)), recipe.wire_quality)
                      for v in range(1, recipe.views))]


WIDE_SCALE = 2.0  # SBI blends inside twice the landmarks' box: the training crops keep that context
WIDE_SIZE = 320


def _wide(frames: np.ndarray, track) -> dict[str, np.ndarray]:
    """``wide (T, 320, 320, 3)`` crops at :data:`WIDE_SCALE` and ``wide_landmarks (T, 478, 2)`` in their
    pixel coordinates, for self-blending at training time."""
    from vidfake.preprocessing.faces import crop_faces

    wide = crop_faces(frames, track.boxes, scale=WIDE_SCALE, size=WIDE_SIZE)
    side = (wide.boxes[:, 2] - wide.boxes[:, 0]).astype(np.float32)
    lm = (track.landmarks - wide.boxes[:, None, :2].astype(np.float32)) * (WIDE_SIZE / side)[:, None, None]
    return {"wide": wide.images, "wide_landmarks": lm.astype(np.float32)}


def extract_one(item: MediaItem, scorer: _Scorer, recipe: FaceVideoRecipe
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One decode and one tracking per view, two caches: ``(features, crops)``.

    ``features``: per view and frame ``multi``, ``shipped`` and ``present`` (a view where no face was
    found is scored on centre squares, as the 2D branch scores a clip without a face), and for a real
    video the same of its self-blend under ``sbi_*``. ``crops``: ``crops (K, T, S, S, 3)`` as the 2D
    branch crops them (what a fine-tuned model is trained and scored on), ``present (K, T)`` and the
    clean view's :func:`_wide` crops. Both carry ``run``.

    Raises:
        ValueError: no face in the clean frames (the caller records it; the item is left out).
    """
    from vidfake.preprocessing.decoders import open_video
    from vidfake.training.features import _name_seed, item_id
    from vidfake.training.sbi import self_blend_clip

    name = item_id(item.path)
    with open_video(item.path, max_side=recipe.max_side) as video:
        idx, run = run_frames(video.num_frames, recipe.runs, recipe.run_len)
        frames = video.get_frames(idx.tolist())
    feats: dict[str, list] = {}
    crops: dict[str, list] = {"crops": [], "present": []}
    clean_track = None
    for v, view in enumerate(_views(frames, name, recipe)):
        track = scorer.track(view, idx)
        if v == 0:
            if not track.present.any():
                raise ValueError(f"{item.path}: no face found in the clean frames")
            clean_track = track
            wide = _wide(view, track)
        face = scorer.crop(view, track)
        crops["crops"].append(face)
        crops["present"].append(track.present.astype(bool))
        for key, val in scorer.features(face, track).items():
            feats.setdefault(key, []).append(val)
    if item.label == 0:
        rng = np.random.default_rng([_name_seed(name), recipe.seed, 7])
        blended, _ = self_blend_clip(frames, clean_track.landmarks, rng, jitter=0.0)
        for view in _views(blended, name, recipe):
            track = scorer.track(view, idx)
            for key, val in scorer.features(scorer.crop(view, track), track).items():
                feats.setdefault(f"sbi_{key}", []).append(val)
    run = run.astype(np.int16)
    return ({**{k: np.stack(v) for k, v in feats.items()}, "run": run},
            {**{k: np.stack(v) for k, v in crops.items()}, **wide, "run": run})


def _cache_dir(root: str | Path, recipe: FaceVideoRecipe, kind: str = "lite0") -> Path:
    """``<root>/<kind>-<key>``: ``lite0`` features, ``crops`` and ``tall`` share the recipe's key."""
    from vidfake.detector import DetectorConfig
    from vidfake.temporal_models.image2d import IMAGENET_LITE0_SHA256

    branch = DetectorConfig().branch("image2d")  # no network: its crop and input size
    shipped = branch.config.weights_sha256 or "unknown"
    key = recipe.key(float(branch.crop_scale), int(branch.input_size), IMAGENET_LITE0_SHA256, shipped)
    return Path(root) / f"{kind}-{key}"


def cache_file(folder: Path, item: MediaItem) -> Path:
    from vidfake.training.features import item_id

    return folder / (item_id(item.path).replace("/", "__") + ".npz")


def tall_dir(root: str | Path, recipe: FaceVideoRecipe = FaceVideoRecipe()) -> Path:
    """Where :func:`extract_tall`'s features are cached (same key as the crops they are made from)."""
    return _cache_dir(root, recipe, "tall")


def extract_tall(items: Sequence[MediaItem], recipe: FaceVideoRecipe = FaceVideoRecipe(),
                 root: str | Path = DEFAULT_CACHE) -> dict[str, str]:
    """TALL on frozen features (issue 16 (g)): every run of consecutive cached face crops tiled into the
    TALL branch's 2x2 layout (its thumbnail size and tiling), through the frozen ImageNet Lite0, stage
    statistics pooled as for the other candidates. Reads the crop cache; no video is decoded again."""
    import cv2

    from vidfake.detector import DetectorConfig
    from vidfake.training.features import _lite0_backbone, _to_input

    tall = DetectorConfig().branch("tall")
    n, thumb = int(tall.frames_per_sample), int(tall.thumb_size)
    lite0 = _lite0_backbone()

    def features(crops: np.ndarray, run: np.ndarray) -> dict[str, np.ndarray]:
        per_view = []
        for view in crops:
            layouts = [tall.tile(np.stack([cv2.resize(c, (thumb, thumb), interpolation=cv2.INTER_AREA)
                                           for c in view[run == r][:n]]))
                       for r in np.unique(run) if (run == r).sum() >= n]
            if not layouts:  # a clip shorter than one TALL clip
                layouts = [tall.tile(np.stack([cv2.resize(view[min(t, len(view) - 1)], (thumb, thumb),
                                                          interpolation=cv2.INTER_AREA) for t in range(n)]))]
            per_view.append(lite0.pooled(_to_input(np.stack(layouts), lite0.size))["multi"].mean(0))
        return {"tall": np.stack(per_view).astype(np.float16)}

    return _from_crops(items, recipe, root, tall_dir(root, recipe), features)


def _from_crops(items: Sequence[MediaItem], recipe: FaceVideoRecipe, root: str | Path, out: Path,
                features: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]) -> dict[str, str]:
    """Cache ``features(crops (K, T, S, S, 3), run (T,))`` of every video's cached crops under ``out``
    (resumable: a video already there is skipped). Returns ``{path: "cached" | "exists" | "no crops"}``."""
    src = crops_dir(root, recipe)
    out.mkdir(parents=True, exist_ok=True)
    status = {}
    for item in items:
        f, g = cache_file(src, item), cache_file(out, item)
        if g.exists() or not f.exists():
            status[str(item.path)] = "exists" if g.exists() else "no crops"
            continue
        with np.load(f) as z:
            crops, run = z["crops"], z["run"]
        _save(g, features(crops, run))
        status[str(item.path)] = "cached"
    return status


def stage5_dir(root: str | Path, recipe: FaceVideoRecipe = FaceVideoRecipe()) -> Path:
    """Where :func:`extract_stage5`'s maps are cached (same key as the crops they are made from)."""
    return _cache_dir(root, recipe, "stage5")


def extract_stage5(items: Sequence[MediaItem], recipe: FaceVideoRecipe = FaceVideoRecipe(),
                   root: str | Path = DEFAULT_CACHE) -> dict[str, str]:
    """The shipped 2D recipe, LOSO (issue 16 (a)): every cached face crop through the frozen ImageNet
    Lite0 up to ``blocks.5`` (:func:`vidfake.training.features.stage5_maps`), the input of the layers the
    recipe trains, so :class:`vidfake.training.tail.FrameTailFinetune` can retrain them per fold. Reads
    the crop cache; ``(K, T, 9408)`` float16 per video."""
    from vidfake.training.features import _lite0_backbone, stage5_maps

    lite0 = _lite0_backbone()

    def features(crops: np.ndarray, run: np.ndarray) -> dict[str, np.ndarray]:
        return {"map": np.stack([stage5_maps(view, lite0) for view in crops]).astype(np.float16), "run": run}

    return _from_crops(items, recipe, root, stage5_dir(root, recipe), features)


def lip_dir(root: str | Path, recipe: FaceVideoRecipe = FaceVideoRecipe()) -> Path:
    """Where :func:`extract_lip`'s features are cached (same key as the crops they are made from)."""
    return _cache_dir(root, recipe, "lip")


def mouth_box_rois(crops: np.ndarray) -> np.ndarray:
    """Landmark-free mouth squares of face crops (the 2D branch's x1.3 face boxes): the centre half of
    the width, from 58 % to 88 % of the height, grey and resized to 88 x 88, ``(T, 88, 88) uint8``."""
    import cv2

    h, w = crops.shape[1:3]
    y0, y1, x0, x1 = int(0.58 * h), int(0.88 * h), int(0.35 * w), int(0.65 * w)
    return np.stack([cv2.resize(cv2.cvtColor(c[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY), (88, 88),
                                interpolation=cv2.INTER_AREA) for c in crops])


def extract_lip(items: Sequence[MediaItem], recipe: FaceVideoRecipe = FaceVideoRecipe(),
                root: str | Path = DEFAULT_CACHE) -> dict[str, str]:
    """The lip branch's input on frozen features (issue 16 (g)): per cached face crop, the face mesh
    (mediapipe, tracked through each run of consecutive crops), the LipForensics-style aligned 88 x 88
    grey mouth (:func:`vidfake.preprocessing.mouth.mouth_rois`, the lip branch's own crop), then the
    frozen ImageNet Lite0's stage statistics of it (grey repeated to 3 channels, 224 px). A view whose
    crops hold no face mesh takes :func:`mouth_box_rois` instead (``found`` says which). Reads the crop
    cache; ``multi (K, T, 4128)`` float16 per video, pooled over frames as ``face_temporal`` is, and
    ``width (K,)``, the median mouth width in crop pixels (NaN where not found), for the confound row."""
    from vidfake.preprocessing.faces import FaceTracker
    from vidfake.preprocessing.mouth import mouth_rois
    from vidfake.training.features import _lite0_backbone, _to_input

    tracker = FaceTracker(max_faces=1)
    lite0 = _lite0_backbone()

    def features(crops: np.ndarray, run: np.ndarray) -> dict[str, np.ndarray]:
        # Stream indices: consecutive inside a run, a gap between runs (the tracker re-detects there).
        idx = np.arange(len(run)) + 1000 * run.astype(np.int64)
        multi, found, width = [], [], []
        for view in crops:
            tracks = tracker.track(view, idx)
            ok = bool(tracks and tracks[0].present.any())
            if ok:
                m = mouth_rois(view, tracks[0].landmarks)
                rois, w = m.rois, m.native_mouth_width
            else:
                rois, w = mouth_box_rois(view), float("nan")
            found.append(ok)
            width.append(w)
            grey3 = np.repeat(rois[..., None], 3, axis=-1)
            multi.append(lite0.pooled(_to_input(grey3, lite0.size))["multi"])
        return {"multi": np.stack(multi).astype(np.float16), "run": run, "found": np.array(found),
                "width": np.array(width, np.float32)}

    return _from_crops(items, recipe, root, lip_dir(root, recipe), features)


def rigid_dir(root: str | Path, recipe: FaceVideoRecipe = FaceVideoRecipe()) -> Path:
    """Where :func:`extract_rigid`'s scores are cached (same key as the crops they are made from)."""
    return _cache_dir(root, recipe, "rigid")


def extract_rigid(items: Sequence[MediaItem], recipe: FaceVideoRecipe = FaceVideoRecipe(),
                  root: str | Path = DEFAULT_CACHE) -> dict[str, str]:
    """The still-image probe's training-free stability score (:class:`vidfake.probe.RigidTerm`, as shipped:
    its stored draw on the map that feeds ``blocks.5``) on every cached face crop. ``(K, T)`` float32 per
    video; the ``face_rigid`` candidate is its mean over frames, scored with no training."""
    from vidfake.probe import ImageProbe, rigid_score

    probe = ImageProbe().load()
    term = probe.rigid
    if term is None:
        raise ValueError(f"{probe.head_path}: the shipped image probe has no stability term to score")

    def features(crops: np.ndarray, run: np.ndarray) -> dict[str, np.ndarray]:
        out = []
        for view in crops:
            feats, noisy = probe.trunk.perturbed_features(view, term.start, term.perturb)
            out.append(rigid_score(feats, noisy))
        return {"score": np.stack(out).astype(np.float32)}

    return _from_crops(items, recipe, root, rigid_dir(root, recipe), features)


def crops_dir(root: str | Path, recipe: FaceVideoRecipe = FaceVideoRecipe()) -> Path:
    """Where :func:`extract_one`'s crops are cached (beside the features, same key)."""
    return _cache_dir(root, recipe, "crops")


def _save(path: Path, arrays: dict[str, np.ndarray], compressed: bool = False) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    (np.savez_compressed if compressed else np.savez)(tmp, **arrays)
    tmp.rename(path)


def extract(items: Sequence[MediaItem], recipe: FaceVideoRecipe = FaceVideoRecipe(),
            root: str | Path = DEFAULT_CACHE, shard: tuple[int, int] = (0, 1)) -> dict[str, str]:
    """Cache the features and the crops (:func:`extract_one`) of every item of ``items[shard[0]::shard[1]]``
    that lacks either; resumable (one file per video and cache, written atomically). Returns
    ``{path: status}``; a video that fails is reported, never replaced."""
    from tqdm import tqdm

    todo = list(items)[shard[0]::shard[1]]
    scorer = _Scorer()
    folders = _cache_dir(root, recipe), crops_dir(root, recipe)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "recipe.json").write_text(json.dumps(recipe.__dict__, indent=1) + "\n")
    status = {}
    for item in tqdm(todo, desc="face videos", mininterval=30):
        f, c = (cache_file(folder, item) for folder in folders)
        if f.exists() and c.exists():
            status[str(item.path)] = "exists"
            continue
        t = time.perf_counter()
        try:
            features, crops = extract_one(item, scorer, recipe)
        except Exception as e:  # one bad video is reported and the rest go on
            logger.warning("%s: %s: %s", item.path, type(e).__name__, e)
            status[str(item.path)] = f"error: {type(e).__name__}: {e}"
            f.with_suffix(".error").write_text(f"{type(e).__name__}: {e}\n")
            continue
        if not f.exists():
            _save(f, features)
        if not c.exists():
            _save(c, crops, compressed=True)
        status[str(item.path)] = f"cached ({time.perf_counter() - t:.1f} s)"
    return status


def pool(multi: np.ndarray, run: np.ndarray, candidate: str) -> np.ndarray:
    """Per-view video features from per-frame ones: ``multi (K, T, D)`` -> ``(K, D')``."""
    x = multi.astype(np.float32)
    if candidate == "face_mean":
        return x.mean(1)
    if candidate in ("face_temporal", "face_motion"):
        same = run[1:] == run[:-1]
        diff = np.abs(np.diff(x, axis=1))[:, same].mean(1) if same.any() else np.zeros_like(x[:, 0])
        return diff if candidate == "face_motion" else np.concatenate([x.mean(1), x.std(1), diff], axis=1)
    raise KeyError(f"unknown face-video candidate {candidate!r}; known: {CANDIDATES}")


def load(items: Sequence[MediaItem], groups: Sequence[str], candidate: str, *,
         recipe: FaceVideoRecipe = FaceVideoRecipe(), root: str | Path = DEFAULT_CACHE):
    """``(X (N, K, D), labels, groups, sbi X (M, K, D), sbi groups, left out)`` for the cached items."""
    folder = _cache_dir(root, recipe)
    xs, ys, gs, sx, sg, missing = [], [], [], [], [], []
    for item, g in zip(items, groups, strict=True):
        f = cache_file(folder, item)
        if not f.exists():
            missing.append(str(item.path))
            continue
        if candidate in ("face_tall", "face_finetune", "face_rigid", "face_lip", "face_lip_motion",
                         "confound_mouth_width"):
            where = {"face_tall": tall_dir, "face_finetune": stage5_dir, "face_rigid": rigid_dir,
                     "face_lip": lip_dir, "face_lip_motion": lip_dir, "confound_mouth_width": lip_dir}[candidate]
            t = cache_file(where(root, recipe), item)
            if not t.exists():
                missing.append(str(item.path))
                continue
            with np.load(t) as z:
                if candidate == "face_tall":
                    xs.append(z["tall"].astype(np.float32))
                elif candidate == "face_rigid":  # (K, 1): the frames' mean score per view
                    xs.append(z["score"].mean(1, keepdims=True))
                elif candidate == "confound_mouth_width":  # (K, 2): log width (0 where not found), not found
                    w = z["width"].astype(np.float32)
                    xs.append(np.stack([np.log(np.nan_to_num(w, nan=1.0)), np.isnan(w).astype(np.float32)], 1))
                elif candidate in ("face_lip", "face_lip_motion"):  # pooled like face_temporal / face_motion
                    xs.append(pool(z["multi"], z["run"], "face_temporal" if candidate == "face_lip" else "face_motion"))
                else:  # every frame's map in one row per view; a short clip's frames repeat to RUNS x RUN_LEN
                    maps = z["map"][:, np.arange(RUNS * RUN_LEN) % z["map"].shape[1]]
                    xs.append(maps.reshape(maps.shape[0], -1).astype(np.float32))
            ys.append(item.label)
            gs.append(g)
            continue
        with np.load(f) as z:
            if candidate == "confound_format":
                xs.append(_format_row(item.path, recipe.views))
                sbi = None
            elif candidate == "shipped_image2d":
                xs.append(z["shipped"].mean(1, keepdims=True))
                sbi = z["sbi_shipped"].mean(1, keepdims=True) if "sbi_shipped" in z else None
            else:
                xs.append(pool(z["multi"], z["run"], candidate))
                sbi = pool(z["sbi_multi"], z["run"], candidate) if "sbi_multi" in z else None
        ys.append(item.label)
        gs.append(g)
        if sbi is not None:
            sx.append(sbi)
            sg.append(g)
    if not xs:
        raise FileNotFoundError(f"nothing cached for {candidate} under {folder.parent}: run the extract step first")
    return (np.stack(xs), np.array(ys), np.array(gs), np.stack(sx) if sx else None, np.array(sg), missing)


def _format_row(path: Path, views: int) -> np.ndarray:
    from vidfake.preprocessing.decoders import open_video

    with open_video(path) as v:
        i = v.info
        row = [np.log(i.fps), np.log(max(i.duration, 1e-3)), np.log(i.native_width), np.log(i.native_height),
               np.log(i.native_width / i.native_height)]
    out = np.zeros((views, len(row)), np.float32)
    out[0] = row
    return out


def _loso(args) -> int:
    from threadpoolctl import threadpool_limits

    from vidfake.training import loso

    items, groups = face_video_items(args.data)
    recipe = FaceVideoRecipe(views=args.views)
    folds = [loso.Fold(f, (r,)) for f, r in MATCHED_REAL.items()] if args.pairs else None
    out = Path(args.out or f"runs/loso_face_videos{'_pairs' if args.pairs else ''}_{date.today().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    results, rows = [], []
    with threadpool_limits(1):
        for cand in args.candidate or CANDIDATES:
            try:
                x, y, g, sx, sg, missing = load(items, groups, cand, recipe=recipe, root=args.cache)
            except FileNotFoundError as e:
                logger.warning("skipping %s: %s", cand, e)
                continue
            if missing:
                logger.warning("%s: %d of %d face videos not cached (no face or not extracted)", cand,
                               len(missing), len(items))
            if cand in ("confound_format", "confound_mouth_width", "face_tall", "face_lip", "face_lip_motion",
                        "face_finetune"):
                head = "logreg"
                if cand == "face_finetune":  # the shipped recipe's layers, retrained per fold on every frame
                    from vidfake.training.tail import FrameTailFinetune

                    def finetune_tail():
                        return FrameTailFinetune(frames=RUNS * RUN_LEN)

                    head = finetune_tail
                r = loso.evaluate(x, y, g, head, candidate=cand, real_folds=args.real_folds, folds=folds)
                results.append(r)
                rows.append({"variant": "labelled", "n": int(len(y)), "left_out": missing})
                continue
            if cand in ("shipped_image2d", "face_rigid"):  # no training: the reference row, or a LOSO score
                r = loso.evaluate(x, y, g, None if cand == "shipped_image2d" else "score", candidate=cand,
                                  real_folds=args.real_folds, folds=folds)
                results.append(r)
                rows.append({"variant": "reference" if cand == "shipped_image2d" else "no training", "n": int(len(y)),
                             "left_out": missing})
                continue
            for variant in args.variant or VARIANTS:
                for head in args.head or ["logreg"]:
                    aux = (sx, sg) if variant in ("+sbi", "sbi_only") else None
                    r = loso.evaluate(x, y, g, head, candidate=f"{cand} [{variant}]", real_folds=args.real_folds,
                                      aux=aux, train_fakes=variant != "sbi_only", folds=folds)
                    logger.info("%s [%s] / %s: %s", cand, variant, head, r.summary())
                    results.append(r)
                    rows.append({"variant": variant, "n": int(len(y)), "left_out": missing})
            loso._write_results(out, results, args.real_folds)
    if not results:
        print(f"vidfake: no face-video features cached under {args.cache}: run "
              "python -m vidfake.training.facevideo extract (and extract --tall) first", file=sys.stderr)
        return 1
    loso._write_results(out, results, args.real_folds)
    report = json.loads(out.read_text())
    report["modality"] = "face video"
    report["protocol"] = ("each fake source held out with its matched real source" if args.pairs
                          else f"every fake source x {args.real_folds} real folds")
    report["recipe"] = recipe.__dict__
    report["rows"] = rows
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(loso.markdown_table(results))
    for r in results:
        print()
        print(loso.group_table(r))
    logger.info("report: %s", out)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vidfake.training.facevideo", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    e = sub.add_parser("extract", help="cache face-crop features and crops of every face video (resumable)")
    lo = sub.add_parser("loso", help="LOSO table from the cache")
    for q in (e, lo):
        q.add_argument("--data", default=os.environ.get("VIDFAKE_DATA", "../shared/data"))
        q.add_argument("--cache", default=str(DEFAULT_CACHE))
        q.add_argument("--views", type=int, default=3, help="K: view 0 clean, 1..K-1 validator-style")
    e.add_argument("--shard", default="0/1", help="i/n: this process takes every n-th video from the i-th")
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--tall", action="store_true", help="then: TALL layouts of the cached crops through frozen Lite0")
    e.add_argument("--stage5", action="store_true",
                   help="then: the cached crops' frozen Lite0 blocks.5 maps (for the face_finetune candidate)")
    e.add_argument("--rigid", action="store_true",
                   help="then: the cached crops' stability scores (for the face_rigid candidate, no training)")
    e.add_argument("--lip", action="store_true",
                   help="then: aligned mouth crops of the cached crops through frozen Lite0 (face_lip candidate)")
    lo.add_argument("--candidate", action="append", choices=CANDIDATES)
    lo.add_argument("--variant", action="append", choices=VARIANTS)
    lo.add_argument("--head", action="append", choices=("logreg", "logreg_cv", "mlp"))
    lo.add_argument("--real-folds", type=int, default=2)
    lo.add_argument("--pairs", action="store_true",
                    help="hold out each fake source with the real source filmed alike (MATCHED_REAL) instead of "
                         "every (fake source, real fold) pair: content cancels, the manipulation is left")
    lo.add_argument("--out", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.step == "loso":
        return _loso(args)
    import torch

    torch.set_num_threads(args.threads)
    i, n = (int(v) for v in args.shard.split("/"))
    items, _ = face_video_items(args.data)
    if args.tall or args.stage5 or args.rigid or args.lip:
        step = (extract_tall if args.tall else extract_stage5 if args.stage5 else extract_rigid if args.rigid
                else extract_lip)
        status = step(items[i::n], FaceVideoRecipe(views=args.views), args.cache)
        logger.info("%s", {v: list(status.values()).count(v) for v in set(status.values())})
        return 0
    status = extract(items, FaceVideoRecipe(views=args.views), args.cache, (i, n))
    bad = {k: v for k, v in status.items() if v.startswith("error")}
    logger.info("%d videos: %d errors %s", len(status), len(bad), bad)
    return 0


if __name__ == "__main__":
    sys.exit(main())
