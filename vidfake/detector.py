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

Crop scale, frames per sample, layout and input size come from each branch's model config. Hugging Face
classifiers given as ``hf_image_model``/``hf_video_model`` run after these as extra branches
(:mod:`vidfake.hub`); without a fitted fusion weight they are averaged in (:meth:`FusionParams.average_in`).

Images go to the 2D detector on the whole image. A branch that cannot run (no face, clip shorter than a
lip window, branch disabled) is reported in the result and the fusion uses the branches that ran.
"""

from __future__ import annotations

import functools
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
    SCENE,
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
# A face seen in fewer of the sampled frames than this is a glimpse (a passer-by far away, a face in a
# poster, a false detection in a generated scene): scoring the clip on it would judge a whole scene by
# a few crops. Clips whose faces are all glimpses take the whole-frame path.
MIN_FACE_COVERAGE = 0.3
PROBE_FRAMES = 8  # frames a clip is probed on for faces before the tracker runs (scene path only)


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
    scene_temperature: float = 1.0
    scene_bias: float = 0.0
    scene_semi_share: float = 0.05
    fitted: bool = False

    def fuse(self, logits: dict[str, float]) -> tuple[float, dict[str, float]]:
        """Fused probability of fake and the weight each present branch got.

        A branch outside :data:`BRANCHES` (a hub branch, ``vidfake.hub``) joins the logistic sum only
        when ``coef`` has a fitted coefficient for it; otherwise it is averaged in afterwards
        (:meth:`average_in`) and its weight is its share of that mean.
        """
        z = self.bias
        weights = {}
        fitted = (*BRANCHES, *(b for b in self.coef if b not in BRANCHES))
        for b in fitted:
            c = self.coef.get(b, 0.0)
            if b in logits:
                z += c * logits[b]
                weights[b] = c
            else:
                z += c * self.mean.get(b, 0.0)
        extra = {b: sigmoid(v) for b, v in logits.items() if b not in fitted}
        return self.average_in(sigmoid(z), extra, weights)

    @staticmethod
    def average_in(p: float, extra: dict[str, float], weights: dict[str, float]) -> tuple[float, dict[str, float]]:
        """Branches without a fitted weight each count as one more vote: ``P = mean(p, *extra.values())``,
        a plain mean of probabilities (not of log-odds, so one over-confident hub model cannot swamp
        the rest); each extra branch's weight is ``1 / (1 + len(extra))``."""
        if not extra:
            return p, weights
        share = 1.0 / (1 + len(extra))
        return (p + sum(extra.values())) * share, {**weights, **dict.fromkeys(extra, share)}

    def branch_probability(self, branch: str, logit: float) -> float:
        """One branch's score on the fused probability's scale: the verdict the fusion would give if this
        branch alone had run (the others at their mean logit), so branch scores and the fused verdict
        can be read side by side.

        Raw branch logits are centred differently (the TALL-Swin's mean logit on the fitting data is
        +1.09 on real and fake alike), so their plain sigmoids contradicted the verdict. Branches the
        fusion has no weight for (hub models) keep their own probability; the scene branch gets the
        scene path's calibration.
        """
        if branch == SCENE:
            return self.calibrate_scene(logit)
        if branch not in self.coef:
            return sigmoid(logit)
        z = self.bias + sum(c * (logit if b == branch else self.mean.get(b, 0.0)) for b, c in self.coef.items())
        return sigmoid(z)

    def semi_share(self, logits: dict[str, float]) -> float:
        z = self.semi_bias + sum(self.semi_coef.get(b, 0.0) * v for b, v in logits.items())
        return sigmoid(z)

    def calibrate_image(self, logit: float) -> float:
        return sigmoid(logit / self.image_temperature + self.image_bias)

    def calibrate_scene(self, logit: float) -> float:
        """The scene path's probability: the scene head's log-odds, Platt-scaled (identity until fitted:
        the head is a logistic regression trained on class-balanced clips, so it is already a probability
        at an even prior)."""
        return sigmoid(logit / self.scene_temperature + self.scene_bias)


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
        branches: branches enabled by default; ``"scene"`` adds the scene path (``vidfake.scene``): a
            clip without a usable face is scored by the scene head instead of face branches on whole frames.
        scene_windows: scene-branch windows (16 frames at 8 fps each) per clip.
        fusion: fusion parameters.
        hf_image_model, hf_video_model: ``hf:<hub id or folder>`` transformers image/video classifiers
            that join the built-in branches as ``hf_image``/``hf_video`` (see :mod:`vidfake.hub`).
        label_map: real/fake names for the hub models' labels (``"LABEL_0=real,LABEL_1=fake"`` or a
            mapping), where the built-in name table does not know them.
        image_probe: head file (in ``weights_dir``) of the still-image probe (:mod:`vidfake.probe`):
            still images are scored by it instead of ``image_model``, which keeps the video frames.
            ``None``: ``image_model`` scores both. The probe's trunk is always the offline ImageNet Lite0,
            whatever ``pretrained`` says (``weights_dir`` unset: the shipped package folder).
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
    scene_windows: int = 1
    fusion: FusionParams = field(default_factory=FusionParams)
    hf_image_model: str | None = None
    hf_video_model: str | None = None
    label_map: dict[str, str] | str | None = None
    image_probe: str | None = None

    @property
    def hub_models(self) -> dict[str, str]:
        """Hub branch name -> ``hf:`` model, for the hub models configured."""
        named = {"hf_image": self.hf_image_model, "hf_video": self.hf_video_model}
        return {b: m for b, m in named.items() if m}

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
        windows: other branches' inputs by branch name (the scene branch's ``SceneInput`` windows).
        image: the still image (images only).
    """

    frames: dict[int, np.ndarray] = field(default_factory=dict)
    tracks: list = field(default_factory=list)
    crops: list[FrameInput] = field(default_factory=list)
    layouts: list[TallInput] = field(default_factory=list)
    mouth: list[MouthInput] = field(default_factory=list)
    windows: dict[str, list] = field(default_factory=dict)
    image: np.ndarray | None = None

    def add(self, outputs: dict[str, BranchOutput]) -> None:
        """Keep the typed inputs of branch outputs, each in its list."""
        lists = {FrameInput: self.crops, TallInput: self.layouts, MouthInput: self.mouth}
        for name, out in outputs.items():
            for item in out.inputs:
                lists.get(type(item), self.windows.setdefault(name, [])).append(item)


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

        from vidfake.temporal_models import get_config

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
            # Networks are built on first use: a still image never pays for the video branches.
            self.branches[branch] = make_branch(branch, get_config(name), device=self.device,
                                                loader=functools.partial(self._load_model, branch, name, ckpt))
        self.still = None  # the still-image probe, when configured (vidfake.probe)
        if self.config.image_probe:
            from vidfake.probe import ImageProbe

            self.still = ImageProbe(weights_dir / self.config.image_probe, device=self.device)
            self.identity[self.still.name] = _file_identity(self.still.head_path)
        if SCENE in self.config.branches:
            from vidfake.scene import SCENE_HEAD_FILE, load_scene_branch

            head = (Path(self.config.weights_dir) / SCENE_HEAD_FILE) if self.config.weights_dir else None
            self.branches[SCENE] = load_scene_branch(head if head and head.is_file() else None, device=self.device)
            self.model_names[SCENE] = Path(SCENE_HEAD_FILE).stem
            self.identity[self.model_names[SCENE]] = _file_identity(head if head and head.is_file()
                                                                    else shipped_weights_dir() / SCENE_HEAD_FILE)
        for branch, spec in self.config.hub_models.items():
            from vidfake.hub import load_hub_config, make_hub_branch  # transformers only for hub models

            cfg = load_hub_config(spec, "image" if branch == "hf_image" else "video", self.config.label_map)
            self.branches[branch] = make_hub_branch(cfg, self.device,
                                                    functools.partial(self._load_hub_model, branch))
            self.model_names[branch] = spec
        if face_workers is not None and face_workers < 1:
            raise ValueError(f"face_workers must be >= 1, got {face_workers}")
        self.face_workers = face_workers
        self._tracker = None

    def _load_model(self, branch: str, name: str, ckpt: Path | None):
        import torch

        from vidfake.temporal_models import create_model

        if ckpt is not None and ckpt.parent.resolve() == shipped_weights_dir().resolve():
            model = create_model(name, pretrained=True)  # the registry verifies the recorded sha256
        else:
            model = create_model(name, checkpoint_path=str(ckpt) if ckpt else None)
        model.eval().to(self.device)
        if self.branches[branch].channels_last:
            # Convolutions on channels-last tensors: EfficientNet-Lite0 at batch 8 takes 225 ms
            # instead of 301 ms on 2 CPU threads, NPR 432 instead of 547; outputs equal within 1e-5.
            model.to(memory_format=torch.channels_last)
        self.identity[name] = _file_identity(ckpt) if ckpt else "random-init"
        return model

    def _load_hub_model(self, branch: str):
        from vidfake.hub import load_hub_model

        model, identity = load_hub_model(self.branches[branch].config, self.device)
        self.identity[self.model_names[branch]] = identity
        return model

    def load(self, branches: Sequence[str] | None = None) -> Detector:
        """Build the branches' networks now (they are otherwise built on first use); returns self.

        The miner calls this at start, so a damaged weights file stops it there, not on a request.
        """
        for b in branches or list(self.branches):
            _ = self.branches[b].model
        if self.still is not None and (branches is None or "image2d" in branches):
            self.still.load()
        return self

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
    def branch_names(self) -> tuple[str, ...]:
        """Every branch this detector can report, in run order: the built-in ones, then hub branches."""
        return (*BRANCHES, *(b for b in self.branches if b not in BRANCHES))

    @property
    def models(self) -> dict[str, Any]:
        """Networks by branch name (building any not built yet)."""
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
            branches: subset of ``("image2d", "tall", "lip")`` plus the configured hub branches
                (``"hf_image"``, ``"hf_video"``) to run; default: the config's branches and every hub branch.
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
        names = self.branch_names
        requested = tuple((*self.config.branches, *self.config.hub_models) if branches is None else branches)
        bad = set(requested) - set(names)
        if bad:
            raise ValueError(f"unknown branches {sorted(bad)}; choose from {names}")
        with open_media(media, source=source, kind=kind, max_side=self.config.max_side) as m:
            timings = {"open": _ms(t0)}
            details = Details() if keep_details else None
            if m.kind.value == "image":
                result = self._detect_image(m.image, m.source, threshold, timings, details, requested)
            else:
                result = self._detect_video(m.video, m.source, threshold, timings, details, requested,
                                            num_clips or self.config.num_clips,
                                            num_frames or self.config.num_frames)
        timings["total"] = _ms(t0)
        return replace(result, timings_ms=timings), details

    # ------------------------------------------------------------------ images
    def _detect_image(self, image: np.ndarray, source: str, threshold: float, timings, details,
                      requested: Sequence[str] = ()):
        t = time.perf_counter()
        logit = float(self.image_logits([image])[0])
        timings["image2d"] = _ms(t)
        if details is not None:
            details.image = image
        p2d = self.config.fusion.calibrate_image(logit)
        hub = {}  # hub image classifiers on the whole image: branch -> P(fake)
        for b in self.branch_names:
            if b in requested and hasattr(self.branches.get(b), "image_logits") and b != "image2d":
                t = time.perf_counter()
                hub[b] = sigmoid(float(self.branches[b].image_logits([image])[0]))
                timings[b] = _ms(t)
        # The fitted image calibration covers the 2D detector only: hub branches are always averaged in.
        p, weights = FusionParams.average_in(p2d, hub, {"image2d": 1.0 / (1 + len(hub))})
        probs = {"image2d": p2d, **hub}
        names = {**self.model_names, "image2d": self.still_model_name}
        branches = tuple(
            BranchScore(b, probs[b], "ok", names[b], weights[b]) if b in probs
            else BranchScore(b, None, "skipped: not requested" if b == "hf_image" else "skipped: still image",
                             self.model_names[b])
            for b in self.branch_names)
        return DetectionResult(
            source=source, kind="image", probability_fake=p, threshold=threshold,
            verdict="fake" if p >= threshold else "real",
            three_class=three_class_vector(p, self.config.fusion.image_semi_share),
            branches=branches, frames=(FrameScore(0, 0.0, p2d, False),), frames_used=1, num_frames=1,
            width=int(image.shape[1]), height=int(image.shape[0]),
            models={names[b]: self.identity[names[b]] for b in probs},
            warnings=self._unfitted_warning(list(hub)),
        )

    def _unfitted_warning(self, hub: Sequence[str]) -> tuple[str, ...]:
        """The result says how branches without a fitted fusion weight were combined."""
        if not hub:
            return ()
        names = ", ".join(f"{b} ({self.model_names[b]})" for b in hub)
        return (f"no fitted fusion weight for {names}: P(fake) is the plain mean of vidfake's probability "
                f"and the hub branch probabilities, each weighted 1/{len(hub) + 1}",)

    # ------------------------------------------------------------------ videos
    def _plans(self, n: int, requested: Sequence[str], num_clips: int, num_frames: int,
               fps: float | None) -> dict[str, BranchPlan]:
        """Per requested branch, the spans of an ``n``-frame stream it scores."""
        counts = {"image2d": num_frames, "tall": num_clips, "lip": self.config.lip_windows, "one": 1}
        plans = {}
        for b in self.branch_names:
            if b not in requested:
                continue
            if b == SCENE:  # resamples to its common frame rate: it needs the clip's own
                plans[b] = self.branches[b].plan(n, self.config.scene_windows, fps=fps)
            else:  # a hub branch says whose count it shares (hf_image: the 2D frames; hf_video: one clip)
                plans[b] = self.branches[b].plan(n, counts[getattr(self.branches[b], "count_key", b)])
        return plans

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
        known = getattr(video, "info", None) is None or getattr(video.info, "fps_known", True)
        plans = self._plans(n, requested, num_clips, num_frames, fps if known else None)
        warnings = [p.warning for p in plans.values() if p.warning]

        t = time.perf_counter()
        frames, wanted, plans = self._decode(video, plans, warnings)
        timings["decode"] = _ms(t)
        by_index = {int(i): k for k, i in enumerate(wanted)}

        t = time.perf_counter()
        # Faces are tracked on the frames the face branches sample (the scene branch's own frames, at
        # its common rate, are decoded too but neither tracked nor needed to decide the path).
        face_frames = {int(i) for b, p in plans.items() if b in BRANCHES for sp in p.spans for i in sp.indices}
        rows = [k for k, i in enumerate(wanted) if int(i) in face_frames] if face_frames else list(range(len(wanted)))
        if plans.get(SCENE) and plans[SCENE].spans and not self._faces_in_probe(frames, rows):
            # A faceless clip (most text-to-video challenges) would have the tracker run the detectors on
            # every sampled frame (0.76 s of a 1.6 s wire video): a probe of a few frames decides instead.
            # A face seen in 30% of the frames lands on about two of the probe's evenly spread frames.
            tracks = []
            warnings.append(f"no face in {PROBE_FRAMES} evenly spread frames: faces not tracked")
        else:
            tracks = self.tracker.track(frames, wanted[rows], rows=rows)
        brief = [tr for tr in tracks if tr.coverage < MIN_FACE_COVERAGE]
        if brief:
            warnings.append(f"{len(brief)} face(s) seen in under {MIN_FACE_COVERAGE:.0%} of the sampled frames "
                            "left out: the clip is scored on its people, not on glimpses")
            tracks = [tr for tr in tracks if tr.coverage >= MIN_FACE_COVERAGE]
        timings["faces"] = _ms(t)
        scene_path = not tracks and bool(plans.get(SCENE, BranchPlan(())).spans)
        if scene_path:
            warnings.append("no usable face: scene path, the scene branch scores whole frames")
        elif not tracks:
            warnings.append("no face found: the 2D and TALL branches score whole frames; lip skipped")
        if details is not None:
            details.frames = {int(i): frames[k] for i, k in by_index.items()}
            details.tracks = list(tracks)

        ctx = VideoContext(frames, by_index, tracks, fps, _frame_times(video, wanted, fps))
        statuses, outputs = {}, {}
        for b in self.branch_names:
            if b == SCENE and not scene_path:
                statuses[b] = "skipped: a face is tracked (face path)" if tracks else "skipped: clip too short"
                continue
            if b in BRANCHES and scene_path:
                statuses[b] = "skipped: no usable face (scene path)"
                continue
            statuses[b], out = self._run_branch(b, plans, ctx, requested, source, timings, warnings)
            if out is not None:
                outputs[b] = out
        if scene_path and SCENE not in outputs:  # the scene branch failed: face branches on whole frames
            scene_path = False
            warnings.append("scene branch did not score: the 2D and TALL branches score whole frames")
            for b in BRANCHES:
                statuses[b], out = self._run_branch(b, plans, ctx, requested, source, timings, warnings)
                if out is not None:
                    outputs[b] = out
        if not outputs:
            raise RuntimeError(f"{source}: no branch produced a score ({list(statuses.values())})")
        if details is not None:
            details.add(outputs)

        t = time.perf_counter()
        fusion = self.config.fusion
        if scene_path:  # the scene head decides; hub branches are averaged in
            person, logits = 0, {b: o.per_track[0] for b, o in outputs.items() if 0 in o.per_track}
            hub = {b: sigmoid(z) for b, z in logits.items() if b != SCENE}
            p, weights = fusion.average_in(fusion.calibrate_scene(logits[SCENE]), hub, {SCENE: 1.0 / (1 + len(hub))})
            warnings += self._unfitted_warning(list(hub))
            semi = fusion.scene_semi_share
        else:
            person, logits = self._most_suspicious(outputs)
            p, weights = fusion.fuse(logits)
            warnings += self._unfitted_warning([b for b in logits if b not in BRANCHES and b not in fusion.coef])
            semi = fusion.semi_share(logits)
        timings["fusion"] = _ms(t)
        scores = []
        for b in self.branch_names:
            status = statuses[b]
            if b in outputs and b not in logits:
                status = f"ok: scored other faces, not face {person}"
            p_b = fusion.branch_probability(b, logits[b]) if b in logits else None
            scores.append(BranchScore(b, p_b, status, self.model_names[b]))
        if len(tracks) > 1:
            warnings.append(f"{len(tracks)} faces: the verdict is face {person}'s, the most suspicious")
        mouth_w = [i.native_width for i in outputs["lip"].inputs if math.isfinite(i.native_width)] \
            if "lip" in outputs else []
        h, w = frames.shape[1:3]
        return DetectionResult(
            source=source, kind="video", probability_fake=p, threshold=threshold,
            verdict="fake" if p >= threshold else "real", three_class=three_class_vector(p, semi),
            branches=tuple(replace(s, weight=weights.get(s.name, 0.0)) for s in scores),
            clips=tuple(replace(c, probability=_on_fused_scale(fusion, c.branch, c.probability))
                        for o in outputs.values() for c in o.clips),
            frames=tuple(sorted((replace(f, probability=_on_fused_scale(fusion, "image2d", f.probability))
                                 for o in outputs.values() for f in o.frames),
                                key=lambda f: (f.frame_index, f.track))),
            faces_found=len(tracks), frames_used=len(wanted), num_frames=n, fps=fps, width=int(w),
            height=int(h), mouth_roi_native_px=float(np.median(mouth_w)) if mouth_w else None,
            models={self.model_names[b]: self.identity[self.model_names[b]] for b in outputs},
            warnings=tuple(warnings),
        )

    def _faces_in_probe(self, frames: np.ndarray, rows: Sequence[int]) -> bool:
        """Whether the face detectors find a face in any of ``PROBE_FRAMES`` evenly spread ``rows``."""
        probe = [rows[int(k)] for k in np.unique(np.linspace(0, len(rows) - 1, PROBE_FRAMES).round())]
        return self.tracker.has_face(frames[probe])

    def _most_suspicious(self, outputs: dict[str, BranchOutput]) -> tuple[int, dict[str, float]]:
        """Fuse each person's branch scores and keep the most suspicious person: ``(track, logits)``.

        A clip is as fake as its most fake face, and the verdict, the branch scores and the three-class
        vector all describe that one face (taking each branch's maximum over different people would
        let two real people add up to a fake). Track 0 stands for whole frames when no face was used.
        """
        people = sorted({t for o in outputs.values() for t in o.per_track})
        per_person = {t: {b: o.per_track[t] for b, o in outputs.items() if t in o.per_track} for t in people}
        best = max(people, key=lambda t: (self.config.fusion.fuse(per_person[t])[0], -t))
        return best, per_person[best]

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
            if out is None:
                return f"skipped: no window with a face in {branch.min_presence:.0%} of its frames", None
        except MediaError:
            raise
        except Exception as e:  # a failing branch must not take the others down; it is reported
            logger.exception("%s: branch %s failed", source, b)
            warnings.append(f"{b} branch failed: {e}")
            return f"failed: {type(e).__name__}: {e}", None
        timings[b] = _ms(t)
        return "ok", out

    # ------------------------------------------------------------------ model plumbing
    @property
    def still_model_name(self) -> str:
        """What scores still images: the image probe's name, or the 2D model's."""
        return self.still.name if self.still is not None else self.model_names["image2d"]

    def image_logits(self, images: Sequence[np.ndarray], already_sized: bool = False) -> np.ndarray:
        """Raw fake log-odds of still images, ``(H, W, 3) uint8`` (before calibration): the image probe's
        where one is configured, else the 2D detector's. ``already_sized``: the images are 224 x 224."""
        scorer = self.still if self.still is not None else self.branches["image2d"]
        return scorer.image_logits(images, already_sized=already_sized)


def _on_fused_scale(fusion: FusionParams, branch: str, p: float) -> float:
    """A branch's per-clip or per-frame probability on the fused scale (:meth:`FusionParams.branch_probability`)."""
    return fusion.branch_probability(branch, _logit(p))


def _logit(p: float, eps: float = 1e-12) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


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
