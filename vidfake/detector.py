"""The one library call: :meth:`Detector.detect` turns an image or a video into a :class:`DetectionResult`.

The CLI, the miner, the benchmarks, the visualisations and the tests all go through here; none of them
re-implements a piece of the pipeline.

Video path (``(T, H, W, 3) uint8`` frames from :mod:`vidfake.preprocessing`)::

    sample indices (TALL clips, lip windows, 2D frames) -> decode once, sequentially
    -> track every face (mediapipe) -> per track:
         image2d  on x1.3 face crops of the 2D frames         -> per-frame scores
         tall     on 2x2 layouts of 4 consecutive face crops  -> per-clip scores
         lip      on 25-frame 88x88 mouth windows             -> per-window scores
    -> per branch: mean over its clips, max over face tracks (a clip is fake if any face is)
    -> fusion (logistic regression on branch logits, fitted on validation scores) -> p(fake)

Images go to the 2D detector on the whole image. A branch that cannot run (no face, clip shorter than a
lip window, branch disabled) is reported in the result and the fusion uses the branches that ran.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from vidfake.preprocessing.errors import MediaError
from vidfake.result import BranchScore, ClipScore, DetectionResult, FrameScore, three_class_vector

logger = logging.getLogger(__name__)

BRANCHES = ("image2d", "tall", "lip")
DETECTOR_FILE = "detector.json"


@dataclass(frozen=True)
class FusionParams:
    """Logistic fusion of branch logits, fitted on validation scores (see ``vidfake.training.fusion``).

    ``p(fake) = sigmoid(bias + sum_b coef[b] * logit_b)``; a branch that did not run contributes
    ``coef[b] * mean[b]``, its mean logit on the fitting data (mean imputation), so the other branches
    decide. ``semi_coef``/``semi_bias`` give the share of the fake mass that is semi-synthetic.
    """

    coef: dict[str, float] = field(default_factory=lambda: {b: 1.0 for b in BRANCHES})
    mean: dict[str, float] = field(default_factory=lambda: {b: 0.0 for b in BRANCHES})
    bias: float = 0.0
    semi_coef: dict[str, float] = field(default_factory=dict)
    semi_bias: float = 0.0
    image_temperature: float = 1.0
    image_bias: float = 0.0
    image_semi_share: float = 0.5
    fitted: bool = False

    def fuse(self, logits: dict[str, float]) -> tuple[float, dict[str, float]]:
        """Fused probability of fake and the weight each present branch got."""
        z = self.bias
        weights = {}
        for b in BRANCHES:
            c = self.coef.get(b, 0.0)
            if b in logits:
                z += c * logits[b]
                weights[b] = c
            else:
                z += c * self.mean.get(b, 0.0)
        return _sigmoid(z), weights

    def semi_share(self, logits: dict[str, float]) -> float:
        z = self.semi_bias + sum(self.semi_coef.get(b, 0.0) * v for b, v in logits.items())
        return _sigmoid(z)

    def calibrate_image(self, logit: float) -> float:
        return _sigmoid(logit / self.image_temperature + self.image_bias)


@dataclass(frozen=True)
class DetectorConfig:
    """What the detector runs. Preprocessing sizes come from each model's own config.

    Attributes:
        image_model, tall_model, lip_model: registered model names (``vidfake.temporal_models``).
        weights_dir: folder holding ``<model>.safetensors`` files; ``None`` = the shipped package folder.
        pretrained: load weights (False = random init, only for tests of the plumbing).
        num_clips: TALL clips of 4 consecutive frames per video.
        num_frames: frames scored by the 2D detector per video.
        lip_windows: 25-frame mouth windows per video (0 disables).
        max_faces: faces tracked per video; the video is as fake as its most fake face.
        max_side: videos are decoded with their long side at most this (bounds memory on 4K).
        threshold: decision threshold on the fused probability.
        branches: branches enabled by default.
        fusion: fusion parameters.
    """

    image_model: str = "efficientnet_lite0_detector"
    tall_model: str = "tall_swin_compact"
    lip_model: str = "lip_compact_mstcn"
    weights_dir: str | None = None
    pretrained: bool = True
    num_clips: int = 8
    num_frames: int = 16
    lip_windows: int = 2
    max_faces: int = 2
    max_side: int = 1280
    threshold: float = 0.5
    branches: tuple[str, ...] = BRANCHES
    fusion: FusionParams = field(default_factory=FusionParams)

    @classmethod
    def from_file(cls, path: str | Path) -> DetectorConfig:
        """Read a ``detector.json`` (written by training) into a config; unknown keys are an error."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read detector config: {e}") from e
        fusion = FusionParams(**data.pop("fusion", {}))
        if "branches" in data:
            data["branches"] = tuple(data["branches"])
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown detector config keys {sorted(unknown)}")
        return cls(**data, fusion=fusion)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _logit(p: float, eps: float = 1e-6) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


def shipped_weights_dir() -> Path:
    return Path(str(resources.files("vidfake.temporal_models.pretrained")))


@dataclass
class Details:
    """Intermediates kept for the visualisations (not part of the JSON result).

    Attributes:
        frames: decoded frames by stream index, ``(H, W, 3) uint8``.
        tracks: face tracks (``vidfake.preprocessing.faces.FaceTrack``).
        layouts: per (track, clip) the TALL layout ``(224, 224, 3) uint8``, its 4 stream indices and
            the 4 square crop boxes (frame pixels) each thumbnail was cut from.
        mouth: per (track, window) the ``(25, 88, 88) uint8`` mouth strip.
        image: the still image (images only).
    """

    frames: dict[int, np.ndarray] = field(default_factory=dict)
    tracks: list = field(default_factory=list)
    layouts: list[dict[str, Any]] = field(default_factory=list)
    mouth: list[dict[str, Any]] = field(default_factory=list)
    image: np.ndarray | None = None


class Detector:
    """Loads the branches once and scores media with them.

    Args:
        config: what to run; the shipped default when omitted.
        device: torch device string.
        threads: torch intra-op threads (process-wide in torch); ``None`` leaves torch's default.
        face_workers: face-tracking threads (each holds its own mediapipe graphs, about 150 MB);
            ``None``: ``min(2, CPUs)``. See :class:`~vidfake.preprocessing.faces.FaceTracker`.
    """

    def __init__(self, config: DetectorConfig | None = None, *, device: str = "cpu", threads: int | None = None,
                 face_workers: int | None = None):
        import torch

        from vidfake.temporal_models import create_model, get_config

        self.config = config or DetectorConfig.from_file(shipped_weights_dir() / DETECTOR_FILE)
        self.device = torch.device(device)
        if threads:
            torch.set_num_threads(int(threads))
        self.models: dict[str, torch.nn.Module] = {}
        self.model_configs: dict[str, Any] = {}
        self.identity: dict[str, str] = {}
        names = {"image2d": self.config.image_model, "tall": self.config.tall_model, "lip": self.config.lip_model}
        weights_dir = Path(self.config.weights_dir) if self.config.weights_dir else shipped_weights_dir()
        for branch, name in names.items():
            if branch not in self.config.branches and branch != "image2d":
                continue
            ckpt = None
            if self.config.pretrained:
                ckpt = weights_dir / f"{name}.safetensors"
                if not ckpt.is_file():
                    raise FileNotFoundError(
                        f"weights for {branch} model {name!r} not found at {ckpt}; train them with "
                        f"`vidfake train configs/...` or pass --weights DIR"
                    )
            if ckpt is not None and ckpt.parent.resolve() == shipped_weights_dir().resolve():
                model = create_model(name, pretrained=True)  # the registry verifies the recorded sha256
            else:
                model = create_model(name, checkpoint_path=str(ckpt) if ckpt else None)
            model.eval().to(self.device)
            if branch == "image2d":
                # Convolutions on channels-last tensors: EfficientNet-Lite0 at batch 8 takes 225 ms
                # instead of 301 ms on 2 CPU threads, NPR 432 instead of 547; outputs equal within 1e-5.
                model.to(memory_format=torch.channels_last)
            self.models[branch] = model
            self.model_configs[branch] = get_config(name)
            self.identity[name] = _file_identity(ckpt) if ckpt else "random-init"
        if face_workers is not None and face_workers < 1:
            raise ValueError(f"face_workers must be >= 1, got {face_workers}")
        self.face_workers = face_workers
        self._tracker = None

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = "default", *, device: str = "cpu",
                        threads: int | None = None, face_workers: int | None = None, **overrides) -> Detector:
        """Build a detector from a registered name or a weights folder.

        Args:
            name_or_path: ``"default"`` (shipped weights), ``"tiny"`` (tiny random-init test variants:
                plumbing tests only, meaningless scores), or a folder with ``detector.json`` and
                ``<model>.safetensors`` files.
            overrides: DetectorConfig fields to replace (e.g. ``num_clips=4``).
        """
        if str(name_or_path) == "default":
            cfg = DetectorConfig.from_file(shipped_weights_dir() / DETECTOR_FILE)
        elif str(name_or_path) == "tiny":
            cfg = DetectorConfig(image_model="image2d_test", tall_model="tall_swin_test",
                                 lip_model="lip_test", pretrained=False, num_clips=2, num_frames=4,
                                 lip_windows=1)
        else:
            path = Path(name_or_path)
            if path.is_file():
                path = path.parent
            if not (path / DETECTOR_FILE).is_file():
                raise FileNotFoundError(f"{path}: no {DETECTOR_FILE} here; expected a vidfake weights folder")
            cfg = replace(DetectorConfig.from_file(path / DETECTOR_FILE), weights_dir=str(path))
        if overrides:
            cfg = replace(cfg, **overrides)
        return cls(cfg, device=device, threads=threads, face_workers=face_workers)

    @property
    def tracker(self):
        if self._tracker is None:
            from vidfake.preprocessing.faces import FaceTracker

            self._tracker = FaceTracker(max_faces=self.config.max_faces, workers=self.face_workers)
        return self._tracker

    def close(self) -> None:
        """Release the face tracker's mediapipe graphs (about 100 MB that garbage collection does not free)."""
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the call
    def detect(self, media, *, source: str | None = None, kind: str | None = None,
               branches: Sequence[str] | None = None, num_clips: int | None = None,
               num_frames: int | None = None, threshold: float | None = None) -> DetectionResult:
        """Score one image or video.

        Args:
            media: a path, bytes, a binary file object, a PIL image, an ``(H, W, 3) uint8`` image, a
                ``(T, H, W, 3) uint8`` video (RGB, [0, 255]) or an open ``VideoDecoder``.
            source: name used in the result and in errors.
            kind: ``"image"`` or ``"video"`` to override sniffing (a ``(T, H, W, 3)`` array is a video).
            branches: subset of ``("image2d", "tall", "lip")`` to run (videos); default from config.
            num_clips: TALL clips to score (speed/accuracy trade-off).
            num_frames: frames for the 2D detector.
            threshold: decision threshold on ``probability_fake``.

        Raises:
            MediaError: the input cannot be read (the message names it and the problem).
        """
        return self.analyze(media, source=source, kind=kind, branches=branches, num_clips=num_clips,
                            num_frames=num_frames, threshold=threshold)[0]

    def analyze(self, media, *, source=None, kind=None, branches=None, num_clips=None, num_frames=None,
                threshold=None, keep_details: bool = False) -> tuple[DetectionResult, Details | None]:
        """:meth:`detect`, also returning the intermediates the visualisations draw."""
        from vidfake.preprocessing.media import open_media

        t0 = time.perf_counter()
        threshold = self.config.threshold if threshold is None else float(threshold)
        branches = tuple(self.config.branches if branches is None else branches)
        bad = set(branches) - set(BRANCHES)
        if bad:
            raise ValueError(f"unknown branches {sorted(bad)}; choose from {BRANCHES}")
        with open_media(media, source=source, kind=kind, max_side=self.config.max_side) as m:
            timings = {"open": _ms(t0)}
            details = Details() if keep_details else None
            if m.kind.value == "image":
                result = self._detect_image(m.image, m.source, threshold, timings, details)
            else:
                result = self._detect_video(m.video, m.source, threshold, timings, details, branches,
                                            num_clips or self.config.num_clips,
                                            num_frames or self.config.num_frames)
        timings["total"] = _ms(t0)
        return replace(result, timings_ms=timings), details

    # ------------------------------------------------------------------ images
    def _detect_image(self, image: np.ndarray, source: str, threshold: float, timings, details):
        t = time.perf_counter()
        logit = float(self.image_logits([image])[0])
        timings["image2d"] = _ms(t)
        if details is not None:
            details.image = image
        p = self.config.fusion.calibrate_image(logit)
        name = self.config.image_model
        return DetectionResult(
            source=source, kind="image", probability_fake=p, threshold=threshold,
            verdict="fake" if p >= threshold else "real",
            three_class=three_class_vector(p, self.config.fusion.image_semi_share),
            branches=(BranchScore("image2d", p, "ok", name, 1.0),
                      BranchScore("tall", None, "skipped: still image", self.config.tall_model),
                      BranchScore("lip", None, "skipped: still image", self.config.lip_model)),
            frames=(FrameScore(0, 0.0, p, False),), frames_used=1, num_frames=1,
            width=int(image.shape[1]), height=int(image.shape[0]),
            models={name: self.identity[name]},
        )

    # ------------------------------------------------------------------ videos
    def _detect_video(self, video, source, threshold, timings, details, branches, num_clips, num_frames):
        from vidfake.preprocessing import samplers

        n = video.num_frames
        fps = float(video.fps) if video.fps and math.isfinite(video.fps) and video.fps > 0 else 25.0
        warnings: list[str] = []
        clips = samplers.tall_clips(n, num_clips, 4) if "tall" in branches else []
        windows = []
        if "lip" in branches and self.config.lip_windows > 0:
            if n >= 25:
                windows = samplers.lip_windows(n, 25, num_windows=self.config.lip_windows)
            else:
                warnings.append(f"lip branch skipped: {n} frames, fewer than one 25-frame window")
        frame_ids = samplers.even_frames(n, min(num_frames, n)) if "image2d" in branches else ()
        wanted = samplers.union_indices([*clips, *windows, samplers.ClipSpan(tuple(frame_ids), False)])

        t = time.perf_counter()
        frames, wanted, lost = _decode_available(video, wanted)
        timings["decode"] = _ms(t)
        if lost:
            warnings.append(f"{len(lost)} sampled frame(s) failed to decode and were left out: {lost[:10]}")
            clips = [c for c in clips if not set(c.indices) & set(lost)]
            windows = [w for w in windows if not set(w.indices) & set(lost)]
            frame_ids = tuple(i for i in frame_ids if i not in set(lost))
        warnings += [w for w in getattr(video, "warnings", ()) if w not in warnings]
        by_index = {int(i): k for k, i in enumerate(wanted)}
        times = _frame_times(video, wanted, fps)

        t = time.perf_counter()
        tracks = self.tracker.track(frames, wanted)
        timings["faces"] = _ms(t)
        if not tracks:
            warnings.append("no face found: the 2D and TALL branches score whole frames; lip skipped")
        if details is not None:
            details.frames = {int(i): frames[k] for i, k in by_index.items()}
            details.tracks = list(tracks)

        ctx = _VideoCtx(frames, by_index, tracks, fps, times)
        branch_scores, clip_scores, frame_scores, logits = [], [], [], {}
        runners = {"image2d": (self._video_image2d, frame_ids), "tall": (self._video_tall, clips),
                   "lip": (self._video_lip, windows)}
        for b in BRANCHES:
            model_name = {"image2d": self.config.image_model, "tall": self.config.tall_model,
                          "lip": self.config.lip_model}[b]
            if b not in branches:
                branch_scores.append(BranchScore(b, None, "skipped: not requested", model_name))
                continue
            fn, spans = runners[b]
            if not len(spans):
                branch_scores.append(BranchScore(b, None, "skipped: clip too short", model_name))
                continue
            if b == "lip" and not tracks:
                branch_scores.append(BranchScore(b, None, "skipped: no face tracked", model_name))
                continue
            t = time.perf_counter()
            try:
                logit, clips_b, frames_b = fn(ctx, spans, details)
            except MediaError:
                raise
            except Exception as e:  # a failing branch must not take the others down; it is reported
                logger.exception("%s: branch %s failed", source, b)
                branch_scores.append(BranchScore(b, None, f"failed: {type(e).__name__}: {e}", model_name))
                warnings.append(f"{b} branch failed: {e}")
                continue
            timings[b] = _ms(t)
            logits[b] = logit
            clip_scores += clips_b
            frame_scores += frames_b
            branch_scores.append(BranchScore(b, _sigmoid(logit), "ok", model_name))
        if not logits:
            raise RuntimeError(f"{source}: no branch produced a score ({[s.status for s in branch_scores]})")

        t = time.perf_counter()
        p, weights = self.config.fusion.fuse(logits)
        semi = self.config.fusion.semi_share(logits)
        timings["fusion"] = _ms(t)
        branch_scores = [replace(s, weight=weights.get(s.name, 0.0)) for s in branch_scores]
        mouth_w = [w for w in ctx.mouth_widths if math.isfinite(w)]
        h, w = frames.shape[1:3]
        return DetectionResult(
            source=source, kind="video", probability_fake=p, threshold=threshold,
            verdict="fake" if p >= threshold else "real", three_class=three_class_vector(p, semi),
            branches=tuple(branch_scores), clips=tuple(clip_scores),
            frames=tuple(sorted(frame_scores, key=lambda f: (f.frame_index, f.track))),
            faces_found=len(tracks), frames_used=len(wanted), num_frames=n, fps=fps, width=int(w),
            height=int(h), mouth_roi_native_px=float(np.median(mouth_w)) if mouth_w else None,
            models={name: self.identity[name] for b, name in
                    (("image2d", self.config.image_model), ("tall", self.config.tall_model),
                     ("lip", self.config.lip_model)) if b in logits},
            warnings=tuple(warnings),
        )

    def _video_image2d(self, ctx: _VideoCtx, frame_ids, details):
        crops, meta = [], []
        for tid, track in ctx.iter_tracks():
            for i in frame_ids:
                crop, present = ctx.face_crop(track, i, self._image_size("image2d"))
                crops.append(crop)
                meta.append((tid, i, present))
        logits = self.image_logits(crops, already_sized=True)
        per_track: dict[int, list[float]] = {}
        frames_out = []
        for (tid, i, present), z in zip(meta, logits, strict=True):
            per_track.setdefault(tid, []).append(float(z))
            frames_out.append(FrameScore(int(i), ctx.time(i), _sigmoid(float(z)), present, tid))
        return max(float(np.mean(v)) for v in per_track.values()), [], frames_out

    def _video_tall(self, ctx: _VideoCtx, clips, details):
        import torch

        from vidfake.preprocessing.layout import THUMB, tall_layout

        layouts, meta = [], []
        for tid, track in ctx.iter_tracks():
            for clip in clips:
                thumbs, boxes = zip(*(ctx.face_crop(track, i, THUMB, with_box=True) for i in clip.indices),
                                    strict=True)
                layout = tall_layout(np.stack(thumbs))
                layouts.append(layout)
                meta.append((tid, clip))
                if details is not None:
                    details.layouts.append({"track": tid, "indices": clip.indices, "layout": layout,
                                            "boxes": [b for b, _ in boxes]})
        x = self._to_tensor(np.stack(layouts), "tall")
        with torch.inference_mode():
            z = self._logit_fake(self.models["tall"](x))
        per_track: dict[int, list[float]] = {}
        clips_out = []
        for (tid, clip), zi in zip(meta, z.tolist(), strict=True):
            per_track.setdefault(tid, []).append(zi)
            a, b = clip.indices[0], clip.indices[-1]
            clips_out.append(ClipScore("tall", a, b, ctx.time(a), ctx.time(b, end=True), _sigmoid(zi), tid))
        # TALL: video score = mean over clips; over faces, the most fake face decides.
        return max(float(np.mean(v)) for v in per_track.values()), clips_out, []

    def _video_lip(self, ctx: _VideoCtx, windows, details):
        import torch

        from vidfake.preprocessing.mouth import mouth_rois, normalize_rois

        seqs, meta = [], []
        for tid, track in ctx.iter_tracks(require_face=True):
            for win in windows:
                rows = [ctx.by_index[i] for i in win.indices]
                # Adjacent rows (the usual case) are a view: no copy of 25 full frames.
                consecutive = rows == list(range(rows[0], rows[0] + len(rows)))
                frames = ctx.frames[rows[0]:rows[-1] + 1] if consecutive else ctx.frames[rows]
                lms = np.stack([ctx.landmarks(track, i) for i in win.indices])
                rois = mouth_rois(frames, lms)
                ctx.mouth_widths.append(float(rois.native_mouth_width))
                seqs.append(normalize_rois(rois.rois))
                meta.append((tid, win))
                if details is not None:
                    details.mouth.append({"track": tid, "indices": win.indices, "rois": rois.rois})
        x = torch.from_numpy(np.stack(seqs)).unsqueeze(1).float().to(self.device)  # (B, 1, 25, 88, 88)
        with torch.inference_mode():
            z = self._logit_fake(self.models["lip"](x))
        per_track: dict[int, list[float]] = {}
        clips_out = []
        for (tid, win), zi in zip(meta, z.tolist(), strict=True):
            per_track.setdefault(tid, []).append(zi)
            a, b = win.indices[0], win.indices[-1]
            clips_out.append(ClipScore("lip", a, b, ctx.time(a), ctx.time(b, end=True), _sigmoid(zi), tid))
        return max(float(np.mean(v)) for v in per_track.values()), clips_out, []

    # ------------------------------------------------------------------ model plumbing
    def _image_size(self, branch: str) -> int:
        return int(self.model_configs[branch].input_size[-1])

    def _to_tensor(self, images: np.ndarray, branch: str):
        """``(B, H, W, 3) uint8`` -> normalised ``(B, 3, H, W) float32`` on the device."""
        import torch

        cfg = self.model_configs[branch]
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(cfg.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(cfg.std, device=self.device).view(1, 3, 1, 1)
        x = (x - mean) / std
        # (B, H, W, 3) permuted is already channels-last in memory; the 2D detector keeps it so.
        return x.contiguous(memory_format=torch.channels_last if branch == "image2d" else torch.contiguous_format)

    @staticmethod
    def _logit_fake(logits):
        """Two-class logits ``(B, 2)`` -> the log-odds of fake ``(B,)``."""
        return logits[:, 1] - logits[:, 0]

    def image_logits(self, images: Sequence[np.ndarray], already_sized: bool = False) -> np.ndarray:
        """Raw fake log-odds of the 2D detector for ``(H, W, 3) uint8`` images (before calibration)."""
        import torch

        from vidfake.preprocessing.transforms import resize_for_model

        size = self._image_size("image2d")
        if not already_sized:
            images = [resize_for_model(im, size) for im in images]
        x = self._to_tensor(np.stack(images), "image2d")
        with torch.inference_mode():
            return self._logit_fake(self.models["image2d"](x)).cpu().numpy()


class _VideoCtx:
    """Decoded frames and face tracks of one video, with per-frame crop look-ups."""

    def __init__(self, frames: np.ndarray, by_index: dict[int, int], tracks: list, fps: float,
                 times: dict[int, float]):
        self.frames, self.by_index, self.tracks, self.fps = frames, by_index, tracks, fps
        self.times = times
        self.mouth_widths: list[float] = []
        self._pos = [{int(i): k for k, i in enumerate(t.frame_indices)} for t in tracks]

    def time(self, index: int, end: bool = False) -> float:
        """Presentation time of a frame (real timestamps: variable frame rate); ``end`` adds one frame."""
        return self.times.get(int(index), index / self.fps) + (1.0 / self.fps if end else 0.0)

    def iter_tracks(self, require_face: bool = False):
        if not self.tracks:
            if not require_face:
                yield 0, None
            return
        yield from enumerate(self.tracks)

    def face_crop(self, track, index: int, size: int, with_box: bool = False):
        """Square x1.3 face crop of frame ``index`` resized to ``size`` (whole frame, padded, if no track).

        With ``with_box`` also returns ``(crop_box, face_present)``: the square crop box in frame pixels
        (x0, y0, x1, y1; may reach past the frame), which maps a heatmap on the crop back to the frame.
        """
        from vidfake.preprocessing.faces import crop_faces

        frame = self.frames[self.by_index[int(index)]]
        if track is None:
            h, w = frame.shape[:2]
            box, scale, present = np.array([0, 0, w, h], np.float32), 1.0, False
        else:
            k = self._pos[self.tracks.index(track)][int(index)]
            box, scale, present = track.boxes[k], 1.3, bool(track.present[k])
        crops = crop_faces(frame[None], box[None], scale=scale, size=size)
        crop, crop_box = crops.images[0], crops.boxes[0]
        return (crop, (crop_box, present)) if with_box else (crop, present)

    def landmarks(self, track, index: int) -> np.ndarray:
        tid = self.tracks.index(track)
        return track.landmarks[self._pos[tid][int(index)]]


def _decode_available(video, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Decode ``wanted`` frames; if some are damaged, keep the ones that decode (documented partial result).

    Returns ``(frames (T, H, W, 3) uint8, indices that decoded, indices that did not)``. Raises the
    decoder's error when no frame decodes at all.
    """
    from vidfake.preprocessing.errors import DecodeError, DecodeTimeoutError

    try:
        return video.get_frames(wanted.tolist()), wanted, []
    except DecodeTimeoutError:
        raise  # out of time, not damaged: retrying frame by frame would take the time box again per frame
    except DecodeError as first:
        good, frames, lost = [], [], []
        deadline = video.limits.deadline()  # one time box for the whole retry, not one per frame
        for i in wanted.tolist():
            if time.monotonic() > deadline:
                raise DecodeTimeoutError(video.source, "decoding the frames one by one after damage "
                                         f"took over {video.limits.decode_timeout_s:g} s") from first
            try:
                frames.append(video.get_frames([i])[0])
                good.append(i)
            except DecodeTimeoutError:
                raise
            except (DecodeError, IndexError):  # damaged, or past the count the decoder shrank to
                lost.append(i)
        if not good:
            raise first
        return np.stack(frames), np.asarray(good), lost


def _frame_times(video, indices: np.ndarray, fps: float) -> dict[int, float]:
    try:
        t = np.asarray(video.frame_times(indices.tolist()), dtype=float)
    except Exception:  # decoders without timestamps: constant frame rate
        return {int(i): i / fps for i in indices}
    return {int(i): float(x) if np.isfinite(x) else i / fps for i, x in zip(indices, t, strict=True)}


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 2)


def _file_identity(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
