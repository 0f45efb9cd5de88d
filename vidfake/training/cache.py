"""Cache of what is expensive in a video: decoded face crops, landmarks and mouth regions.

Face tracking (mediapipe) costs ~10 ms a frame on this CPU; an epoch must not pay it again. For each
video we keep ``segments`` runs of ``segment_len`` consecutive frames spread over the clip (enough for
TALL's 4-frame clips and LipForensics' 25-frame windows), and per frame:

- ``crops``: ``(T, S, S, 3) uint8``, a square crop around the tracked face enlarged ``crop_scale`` times
  (wider than the face models' own crop, so augmentations and self-blending have context to work with);
- ``landmarks``: ``(T, 478, 2) float32`` mediapipe landmarks in crop pixel coordinates;
- ``mouth``: ``(T, 88, 88) uint8`` LipForensics mouth ROIs cut from the original frames, as the
  detector cuts them at inference;
- ``present``: ``(T,) bool`` face found in that frame (False: interpolated);
- ``mouth_width``: native mouth width in source pixels (a known confound: see the data README).

Only the most persistent, largest face track is cached (a known limit for clips with two faces where
one is swapped). The cache lives outside the repository (``cache/`` is git-ignored) because it is cut
from the development data, which must never be committed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vidfake.training.data import MediaItem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheConfig:
    segments: int = 3
    segment_len: int = 25
    crop_size: int = 192
    crop_scale: float = 1.7
    max_side: int = 1280


@dataclass(frozen=True)
class CachedVideo:
    """One cached video; arrays as described in the module docstring. ``seg`` gives each frame's segment."""

    item: MediaItem
    crops: np.ndarray
    landmarks: np.ndarray
    mouth: np.ndarray
    present: np.ndarray
    seg: np.ndarray
    frame_index: np.ndarray
    mouth_width: float
    crop_scale: float

    def segment_frames(self, s: int) -> np.ndarray:
        return np.flatnonzero(self.seg == s)


def cache_key(path: Path, cfg: CacheConfig) -> str:
    h = hashlib.sha1(f"{Path(path).resolve()}|{sorted(asdict(cfg).items())}".encode()).hexdigest()
    return h[:20]


def build_one(item: MediaItem, cfg: CacheConfig, tracker) -> dict[str, np.ndarray] | None:
    """Decode, track and crop one video. Returns ``None`` (logged) when no face is tracked."""
    from vidfake.preprocessing.decoders import open_video
    from vidfake.preprocessing.faces import crop_faces
    from vidfake.preprocessing.mouth import mouth_rois

    with open_video(item.path, max_side=cfg.max_side) as video:
        n = video.num_frames
        L = min(cfg.segment_len, n)
        starts = np.linspace(0, max(n - L, 0), cfg.segments).round().astype(int)
        starts = np.unique(starts)
        idx = np.concatenate([np.arange(s, s + L) for s in starts])
        seg = np.concatenate([np.full(L, k) for k in range(len(starts))])
        # Segments overlap on short clips: decode and track each frame once, in playback order.
        uniq, inverse = np.unique(idx, return_inverse=True)
        decoded = video.get_frames(uniq.tolist())
    tracks = tracker.track(decoded, uniq)
    frames = decoded[inverse]
    if not tracks:
        logger.warning("%s: no face tracked; not cached", item.path)
        return None
    tr = tracks[0]
    pos = {int(i): k for k, i in enumerate(tr.frame_indices)}
    keep = np.array([int(i) in pos for i in idx])
    idx, seg, frames = idx[keep], seg[keep], frames[keep]
    rows = [pos[int(i)] for i in idx]
    boxes, lms, present = tr.boxes[rows], tr.landmarks[rows], tr.present[rows]
    crops, crop_boxes = crop_faces(frames, boxes, scale=cfg.crop_scale, size=cfg.crop_size)
    # Landmarks into crop pixel coordinates through the crop boxes crop_faces used.
    scale = cfg.crop_size / (crop_boxes[:, 2] - crop_boxes[:, 0]).astype(np.float32)
    lm_crop = (lms - crop_boxes[:, None, :2].astype(np.float32)) * scale[:, None, None]
    mouths = []
    widths = []
    for s in np.unique(seg):
        sel = seg == s
        m = mouth_rois(frames[sel], lms[sel])
        mouths.append(m.rois)
        widths.append(m.native_mouth_width)
    return {
        "crops": crops, "landmarks": lm_crop.astype(np.float32), "mouth": np.concatenate(mouths),
        "present": present.astype(bool), "seg": seg.astype(np.int16), "frame_index": idx.astype(np.int32),
        "mouth_width": np.float32(np.nanmedian(widths)), "crop_scale": np.float32(cfg.crop_scale),
    }


def build_cache(items: list[MediaItem], out_dir: str | Path, cfg: CacheConfig = CacheConfig(),
                progress: bool = True) -> dict[str, str]:
    """Cache every video of ``items`` under ``out_dir`` (skipping ones already cached).

    Returns:
        ``{str(path): status}`` with status ``"cached"``, ``"exists"``, ``"no face"`` or ``"error: ..."``.
        A video that fails is reported, never replaced by another.
    """
    from tqdm import tqdm

    from vidfake.preprocessing.errors import MediaError
    from vidfake.preprocessing.faces import FaceTracker

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    with FaceTracker(max_faces=2) as tracker:
        for item in tqdm(items, desc="face cache", disable=not progress):
            f = out / f"{cache_key(item.path, cfg)}.npz"
            if f.exists():
                status[str(item.path)] = "exists"
                continue
            try:
                arrays = build_one(item, cfg, tracker)
            except MediaError as e:
                logger.error("%s", e)
                status[str(item.path)] = f"error: {e.problem}"
                continue
            except Exception as e:  # one bad video is reported and the rest are cached
                logger.exception("%s: caching failed", item.path)
                status[str(item.path)] = f"error: {type(e).__name__}: {e}"
                continue
            if arrays is None:
                status[str(item.path)] = "no face"
                continue
            tmp = f.with_suffix(f".{os.getpid()}.tmp.npz")  # per process: DDP ranks may build at once
            np.savez(tmp, **arrays)
            tmp.rename(f)
            status[str(item.path)] = "cached"
    return status


def load_cached(items: list[MediaItem], out_dir: str | Path, cfg: CacheConfig = CacheConfig()
                ) -> list[CachedVideo]:
    """Load the cached videos of ``items`` (those without a cache entry are logged and left out)."""
    videos = []
    missing = 0
    for item in items:
        f = Path(out_dir) / f"{cache_key(item.path, cfg)}.npz"
        if not f.exists():
            missing += 1
            continue
        with np.load(f) as z:
            videos.append(CachedVideo(
                item=item, crops=z["crops"], landmarks=z["landmarks"], mouth=z["mouth"],
                present=z["present"], seg=z["seg"], frame_index=z["frame_index"],
                mouth_width=float(z["mouth_width"]), crop_scale=float(z["crop_scale"])))
    if missing:
        logger.warning("%d of %d videos have no cache entry (no face or not built)", missing, len(items))
    return videos
