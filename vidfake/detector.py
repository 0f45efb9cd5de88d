"""The one library call: :meth:`Detector.detect` turns an image or a video into a :class:`DetectionResult`.

The CLI, the miner, the benchmarks, the visualisations and the tests all go through here; none of them
re-implements a piece of the pipeline.

Video path (``(T, H, W, 3) uint8`` frames from :mod:`vidfake.preprocessing`)::

    each branch plans its spans (2D frames, TALL clips, lip windows) -> decode their union once
    -> track every face (mediapipe) -> each branch (``vidfake.branches``), per track:
         image2d  on face crops of evenly spread frames                -> per-frame scores
         tall     on 2x2 layouts of consecutive face crops             -> per-clip scores
         lip      on aligned 88x88 grey mouth windows                  -> per-window scores
    -> per branch: mean over its clips, max over face tracks (a clip is fake if any face is)
    -> fusion (logistic regression on branch logits, fitted on validation scores) -> p(fake)

Crop scale, frames per sample, layout and input size come from each branch's model config.

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

from vidfake.branches import (
    BRANCHES,
    Branch,
    BranchOutput,
    BranchPlan,
    FrameInput,
    MouthInput,
    TallInput,
    VideoContext,
    make_branch,
    sigmoid,
)
from vidfake.preprocessing.errors import MediaError
from vidfake.result import BranchScore, DetectionResult, FrameScore, three_class_vector

logger = logging.getLogger(__name__)

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
        return sigmoid(z), weights

    def semi_share(self, logits: dict[str, float]) -> float:
        z = self.semi_bias + sum(self.semi_coef.get(b, 0.0) * v for b, v in logits.items())
        return sigmoid(z)

    def calibrate_image(self, logit: float) -> float:
        return sigmoid(logit / self.image_temperature + self.image_bias)


@dataclass(frozen=True)
class DetectorConfig:
    """What the detector runs. Preprocessing sizes come from each model's own config.

    Attributes:
        image_model, tall_model, lip_model: registered model names (``vidfake.temporal_models``).
        weights_dir: folder holding ``<model>.safetensors`` files; ``None`` = the shipped package folder.
        pretrained: load weights (False = random init, only for tests of the plumbing).
        num_clips: TALL clips per video (frames per clip: the TALL model config's ``num_frames``).
        num_frames: frames scored by the 2D detector per video.
        lip_windows: mouth windows (of the lip model's frames per sample) per video (0 disables).
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

    def model_name(self, branch: str) -> str:
        """The registered model a branch runs."""
        names = {"image2d": self.image_model, "tall": self.tall_model, "lip": self.lip_model}
        try:
            return names[branch]
        except KeyError:
            raise ValueError(f"unknown branch {branch!r}; choose from {BRANCHES}") from None

    def branch(self, name: str) -> Branch:
        """Branch ``name`` without its network: its spans, crops and input preparation (training, export)."""
        from vidfake.temporal_models import get_config

        return make_branch(name, get_config(self.model_name(name)))

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


def shipped_weights_dir() -> Path:
    return Path(str(resources.files("vidfake.temporal_models.pretrained")))


@dataclass
class Details:
    """Intermediates kept for the visualisations (not part of the JSON result).

    Attributes:
        frames: decoded frames by stream index, ``(H, W, 3) uint8``.
        tracks: face tracks (``vidfake.preprocessing.faces.FaceTrack``).
        crops: the 2D detector's inputs (:class:`~vidfake.branches.FrameInput`), per track and frame.
        layouts: the TALL layouts (:class:`~vidfake.branches.TallInput`), per track and clip.
        mouth: the lip windows (:class:`~vidfake.branches.MouthInput`), per track and window.
        image: the still image (images only).
    """

    frames: dict[int, np.ndarray] = field(default_factory=dict)
    tracks: list = field(default_factory=list)
    crops: list[FrameInput] = field(default_factory=list)
    layouts: list[TallInput] = field(default_factory=list)
    mouth: list[MouthInput] = field(default_factory=list)
    image: np.ndarray | None = None

    def add(self, outputs) -> None:
        """Keep the typed inputs of branch outputs, each in its list."""
        lists = {FrameInput: self.crops, TallInput: self.layouts, MouthInput: self.mouth}
        for out in outputs:
            for item in out.inputs:
                lists[type(item)].append(item)


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
        self.branches: dict[str, Branch] = {}
        self.identity: dict[str, str] = {}
        self.model_names = {b: self.config.model_name(b) for b in BRANCHES}
        weights_dir = Path(self.config.weights_dir) if self.config.weights_dir else shipped_weights_dir()
        for branch, name in self.model_names.items():
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
            self.branches[branch] = make_branch(branch, get_config(name), model, self.device)
            if self.branches[branch].channels_last:
                # Convolutions on channels-last tensors: EfficientNet-Lite0 at batch 8 takes 225 ms
                # instead of 301 ms on 2 CPU threads, NPR 432 instead of 547; outputs equal within 1e-5.
                model.to(memory_format=torch.channels_last)
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
    def models(self) -> dict[str, Any]:
        """Loaded networks by branch name."""
        return {b: br.model for b, br in self.branches.items()}

    @property
    def model_configs(self) -> dict[str, Any]:
        """Model configs by branch name."""
        return {b: br.config for b, br in self.branches.items()}

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
        requested = tuple(self.config.branches if branches is None else branches)
        bad = set(requested) - set(BRANCHES)
        if bad:
            raise ValueError(f"unknown branches {sorted(bad)}; choose from {BRANCHES}")
        with open_media(media, source=source, kind=kind, max_side=self.config.max_side) as m:
            timings = {"open": _ms(t0)}
            details = Details() if keep_details else None
            if m.kind.value == "image":
                result = self._detect_image(m.image, m.source, threshold, timings, details)
            else:
                result = self._detect_video(m.video, m.source, threshold, timings, details, requested,
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
        name = self.branches["image2d"].model_name
        skipped = tuple(BranchScore(b, None, "skipped: still image", self.model_names[b])
                        for b in BRANCHES if b != "image2d")
        return DetectionResult(
            source=source, kind="image", probability_fake=p, threshold=threshold,
            verdict="fake" if p >= threshold else "real",
            three_class=three_class_vector(p, self.config.fusion.image_semi_share),
            branches=(BranchScore("image2d", p, "ok", name, 1.0), *skipped),
            frames=(FrameScore(0, 0.0, p, False),), frames_used=1, num_frames=1,
            width=int(image.shape[1]), height=int(image.shape[0]),
            models={name: self.identity[name]},
        )

    # ------------------------------------------------------------------ videos
    def _plans(self, n: int, requested: Sequence[str], num_clips: int, num_frames: int) -> dict[str, BranchPlan]:
        """Per requested branch, the spans of an ``n``-frame stream it scores."""
        counts = {"image2d": num_frames, "tall": num_clips, "lip": self.config.lip_windows}
        return {b: self.branches[b].plan(n, counts[b]) for b in BRANCHES if b in requested}

    def _decode(self, video, plans: dict[str, BranchPlan], warnings: list[str]):
        """Decode every frame a plan needs, once; drop the spans that need a frame that did not decode."""
        from vidfake.preprocessing import samplers

        wanted = samplers.union_indices([s for p in plans.values() for s in p.spans])
        frames, wanted, lost = _decode_available(video, wanted)
        if lost:
            warnings.append(f"{len(lost)} sampled frame(s) failed to decode and were left out: {lost[:10]}")
            plans = {b: p.without(set(lost)) for b, p in plans.items()}
        warnings += [w for w in getattr(video, "warnings", ()) if w not in warnings]
        return frames, wanted, plans

    def _detect_video(self, video, source, threshold, timings, details, requested, num_clips, num_frames):
        n = video.num_frames
        fps = float(video.fps) if video.fps and math.isfinite(video.fps) and video.fps > 0 else 25.0
        plans = self._plans(n, requested, num_clips, num_frames)
        warnings = [p.warning for p in plans.values() if p.warning]

        t = time.perf_counter()
        frames, wanted, plans = self._decode(video, plans, warnings)
        timings["decode"] = _ms(t)
        by_index = {int(i): k for k, i in enumerate(wanted)}

        t = time.perf_counter()
        tracks = self.tracker.track(frames, wanted)
        timings["faces"] = _ms(t)
        if not tracks:
            warnings.append("no face found: the 2D and TALL branches score whole frames; lip skipped")
        if details is not None:
            details.frames = {int(i): frames[k] for i, k in by_index.items()}
            details.tracks = list(tracks)

        ctx = VideoContext(frames, by_index, tracks, fps, _frame_times(video, wanted, fps))
        scores, outputs = [], {}
        for b in BRANCHES:
            status, out = self._run_branch(b, plans, ctx, requested, source, timings, warnings)
            if out is not None:
                outputs[b] = out
            scores.append(BranchScore(b, sigmoid(out.logit) if out else None, status, self.model_names[b]))
        if not outputs:
            raise RuntimeError(f"{source}: no branch produced a score ({[s.status for s in scores]})")
        if details is not None:
            details.add(outputs.values())

        t = time.perf_counter()
        logits = {b: o.logit for b, o in outputs.items()}
        p, weights = self.config.fusion.fuse(logits)
        semi = self.config.fusion.semi_share(logits)
        timings["fusion"] = _ms(t)
        mouth_w = [i.native_width for i in outputs["lip"].inputs if math.isfinite(i.native_width)] \
            if "lip" in outputs else []
        h, w = frames.shape[1:3]
        return DetectionResult(
            source=source, kind="video", probability_fake=p, threshold=threshold,
            verdict="fake" if p >= threshold else "real", three_class=three_class_vector(p, semi),
            branches=tuple(replace(s, weight=weights.get(s.name, 0.0)) for s in scores),
            clips=tuple(c for o in outputs.values() for c in o.clips),
            frames=tuple(sorted((f for o in outputs.values() for f in o.frames),
                                key=lambda f: (f.frame_index, f.track))),
            faces_found=len(tracks), frames_used=len(wanted), num_frames=n, fps=fps, width=int(w),
            height=int(h), mouth_roi_native_px=float(np.median(mouth_w)) if mouth_w else None,
            models={self.model_names[b]: self.identity[self.model_names[b]] for b in outputs},
            warnings=tuple(warnings),
        )

    def _run_branch(self, b: str, plans: dict[str, BranchPlan], ctx: VideoContext, requested, source: str,
                    timings: dict, warnings: list[str]) -> tuple[str, BranchOutput | None]:
        """Run one branch on the clip: ``(status, output or None)``; a branch's failure is reported."""
        if b not in requested:
            return "skipped: not requested", None
        if not plans[b].spans:
            return "skipped: clip too short", None
        branch = self.branches[b]
        if branch.needs_face and not ctx.tracks:
            return "skipped: no face tracked", None
        t = time.perf_counter()
        try:
            out = branch.run(ctx, plans[b].spans)
        except MediaError:
            raise
        except Exception as e:  # a failing branch must not take the others down; it is reported
            logger.exception("%s: branch %s failed", source, b)
            warnings.append(f"{b} branch failed: {e}")
            return f"failed: {type(e).__name__}: {e}", None
        timings[b] = _ms(t)
        return "ok", out

    # ------------------------------------------------------------------ model plumbing
    def image_logits(self, images: Sequence[np.ndarray], already_sized: bool = False) -> np.ndarray:
        """Raw fake log-odds of the 2D detector for ``(H, W, 3) uint8`` images (before calibration)."""
        return self.branches["image2d"].image_logits(images, already_sized=already_sized)


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
