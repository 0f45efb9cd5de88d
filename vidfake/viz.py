"""Where and when media looks manipulated: a timeline, Grad-CAM heatmaps, mouth strips, an HTML report.

One call serves the CLI (``vidfake clip.mp4 --viz out/``) and library users::

    result, details = detector.analyze("clip.mp4", keep_details=True)
    paths = render_report(result, details, "out/", detector=detector)
    # {"timeline": out/clip_timeline.png, "heatmaps": ..., "mouth": ..., "html": out/clip.html}

Pictures (PNG, matplotlib's Agg renderer through :class:`matplotlib.figure.Figure`, no pyplot state):

* **timeline** (videos): the 2D detector's per-frame probability of fake, each TALL clip, lip window and
  scene window as a horizontal segment spanning its frames, the decision threshold, a face-presence strip
  under the plot and the most suspicious segment shaded (:func:`most_suspicious_segment`).
* **heatmaps**: Grad-CAM (Selvaraju et al., ICCV 2017) of the fake log-odds ``logit_fake - logit_real``
  with respect to the last feature map of a branch. For videos, the highest-scoring TALL clip: the
  ``(224, 224)`` layout heatmap is split back into its 4 thumbnails (:func:`tall_inverse`) and each is
  pasted onto its frame through the square face crop box (:func:`heatmap_to_frame`). When TALL did
  not run, the 4 highest-scoring 2D frames are shown the same way through the 2D detector's crops. On
  the scene path (no usable face), 4 frames of the highest-scoring scene window, each heatmap over the
  whole prepared frame pasted back through the centre square it was cut from
  (:meth:`vidfake.scene.SceneBranch.gradcam`). For images, the still-image detector's heatmap (the
  image probe's, :meth:`vidfake.probe.ImageProbe.gradcam`, where the detector has one) over the region
  of the image the model saw.
* **mouth**: the 25 mouth crops of the highest-scoring lip window, tiled row-major.

The HTML report is one file with every picture embedded as a base64 PNG data URI, so it opens in a
browser with no server; all text from the input (file names, warnings) is escaped.

Heatmaps are relative: each map is divided by its own maximum (0 = no evidence for "fake", 1 = the
strongest evidence in that map; a TALL layout's 4 frames share one maximum). Grad-CAM of the last stage
is coarse: one value per 32x32 input pixels for Swin and EfficientNet at 224, upsampled bilinearly. On a
TALL layout the 7x7 cells do not line up with the 112-pixel thumbnails (the middle row and column of
cells straddle two thumbnails), so a little heat can cross a thumbnail border.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vidfake.result import ClipScore, DetectionResult

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

    from vidfake.branches import Branch
    from vidfake.detector import Details, Detector

__all__ = [
    "IMAGE_HEATMAP_SIZE",
    "TIMELINE_SIZE",
    "VIDEO_HEATMAP_SIZE",
    "FrameHeatmap",
    "Segment",
    "VideoHeatmaps",
    "cam_from_gradients",
    "gradcam",
    "gradcam_image",
    "gradcam_tall",
    "most_suspicious_segment",
    "mouth_strip",
    "overlay_heatmap",
    "plot_timeline",
    "render_report",
    "suspicion_curve",
    "video_heatmaps",
]

logger = logging.getLogger(__name__)

DPI = 100
TIMELINE_SIZE = (1200, 450)
"""``(width, height)`` in pixels of the timeline PNG."""
VIDEO_HEATMAP_SIZE = (1600, 840)
"""``(width, height)`` in pixels of a video's heatmap PNG (2 rows of 4 panels)."""
IMAGE_HEATMAP_SIZE = (1200, 640)
"""``(width, height)`` in pixels of an image's heatmap PNG (image and overlay side by side)."""
MOUTH_GAP = 2
"""White pixels between the tiles of the mouth strip."""
DEFAULT_FPS = 25.0
_BRANCH_COLOURS = {"image2d": "#1f77b4", "tall": "#d62728", "lip": "#2ca02c", "scene": "#9467bd"}
_BRANCH_LABELS = {"image2d": "2D frame", "tall": "TALL clip", "lip": "lip window",
                  "scene": "scene window (whole frames)"}
_CLIP_WIDTHS = {"tall": 5.0, "lip": 3.0, "scene": 6.0}
_OTHER_COLOURS = ("#8c564b", "#e377c2", "#17becf", "#bcbd22")
_SCENE = "scene"  # the scene branch (vidfake.scene.SceneBranch.name)
_GRADCAM_BATCH = 8
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}


# ---------------------------------------------------------------------------------------- segment
@dataclass(frozen=True)
class Segment:
    """The stretch of a video the branches find most suspicious.

    Attributes:
        start_frame, end_frame: inclusive stream indices.
        start_time, end_time: seconds; ``end_time`` is the end of the last frame (the start of the next).
        score: mean of :func:`suspicion_curve`'s combined per-frame probability of fake over the
            window, in [0, 1].
        branches: the branches with a score inside the window (a 2D frame in it, a clip overlapping it).
    """

    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    score: float
    branches: tuple[str, ...]


def _fps(result: DetectionResult) -> float:
    fps = result.fps
    return float(fps) if fps and math.isfinite(fps) and fps > 0 else DEFAULT_FPS


class _Clock:
    """Stream index <-> presentation time, from the times the result reports (variable frame rates too).

    Known ``(index, time)`` pairs come from the 2D frames and the clip starts and ends; other frames are
    interpolated linearly between them and extrapolated at ``fps`` beyond them.
    """

    def __init__(self, result: DetectionResult):
        self.fps = _fps(result)
        pairs: dict[int, float] = {}
        for f in result.frames:
            pairs.setdefault(f.frame_index, f.time)
        for c in result.clips:
            pairs.setdefault(c.start_frame, c.start_time)
            pairs.setdefault(c.end_frame + 1, c.end_time)
        index, times = [0], [0.0]
        if pairs:
            index, times = [], []
            for i in sorted(pairs):
                if math.isfinite(pairs[i]) and (not times or pairs[i] > times[-1]):  # keep it invertible
                    index.append(i)
                    times.append(pairs[i])
        self.index = np.array(index or [0], dtype=np.float64)
        self.times = np.array(times or [0.0], dtype=np.float64)

    def time(self, frames: Any) -> np.ndarray:
        """Start time in seconds of (fractional) stream indices."""
        return self._map(np.asarray(frames, dtype=np.float64), self.index, self.times, 1.0 / self.fps)

    def frame(self, times: Any) -> np.ndarray:
        """Inverse of :meth:`time`."""
        return self._map(np.asarray(times, dtype=np.float64), self.times, self.index, self.fps)

    @staticmethod
    def _map(x: np.ndarray, xp: np.ndarray, fp: np.ndarray, slope: float) -> np.ndarray:
        y = np.interp(x, xp, fp)
        y = np.where(x < xp[0], fp[0] + (x - xp[0]) * slope, y)
        return np.where(x > xp[-1], fp[-1] + (x - xp[-1]) * slope, y)


def _stream_length(result: DetectionResult) -> int:
    last = [f.frame_index for f in result.frames] + [c.end_frame for c in result.clips]
    return max([result.num_frames, *(i + 1 for i in last)])


def _branch_evidence(result: DetectionResult) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per branch ``(lo, hi, probability)`` frame spans; several faces on one span count as their maximum."""
    spans: dict[str, dict[tuple[int, int], float]] = {}
    for f in result.frames:
        key = (f.frame_index, f.frame_index)
        d = spans.setdefault("image2d", {})
        d[key] = max(d.get(key, -1.0), f.probability)
    for c in result.clips:
        key = (c.start_frame, c.end_frame)
        d = spans.setdefault(c.branch, {})
        d[key] = max(d.get(key, -1.0), c.probability)
    out = {}
    for branch, d in sorted(spans.items()):
        keys = np.array(list(d.keys()), dtype=np.int64).reshape(-1, 2)
        out[branch] = (keys[:, 0], keys[:, 1], np.array(list(d.values()), dtype=np.float64))
    return out


def _nearest_fill(n: int, lo: np.ndarray, hi: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``(n,)`` per-frame values: the span covering each frame, else the nearest one (ties: the larger)."""
    frames = np.arange(n, dtype=np.int64)[:, None]
    dist = np.maximum(lo[None, :] - frames, 0) + np.maximum(frames - hi[None, :], 0)  # (n, spans)
    nearest = dist == dist.min(axis=1, keepdims=True)
    return np.where(nearest, values[None, :], -np.inf).max(axis=1)


def suspicion_curve(result: DetectionResult) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-frame probability of fake over the whole stream, per branch and averaged over branches.

    Each branch's scores are spread over every frame: a frame takes the score of the 2D frame, TALL clip
    or lip window covering it, else of the nearest one (several faces: the most fake). The combined
    curve is the mean over the branches that produced scores, so each branch has one vote whatever its
    sampling density.

    Args:
        result: a detection result.

    Returns:
        ``(combined, per_branch)``: ``(N,)`` float64 arrays in [0, 1], ``N`` frames in the stream;
        ``combined`` is empty when the result holds no per-frame or per-clip scores.
    """
    evidence = _branch_evidence(result)
    n = _stream_length(result)
    per_branch = {b: _nearest_fill(n, *spans) for b, spans in evidence.items()}
    if not per_branch:
        return np.zeros(0), {}
    return np.mean(np.stack(list(per_branch.values())), axis=0), per_branch


def _window_sums(values: np.ndarray, length: int) -> np.ndarray:
    """``out[a] = values[a : a + length].sum()`` for every full window."""
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    return cumulative[length:] - cumulative[:-length]


def most_suspicious_segment(result: DetectionResult, *, window_s: float = 1.0) -> Segment | None:
    """The window of ``window_s`` seconds where the mean probability of fake across branches is highest.

    The window is ``round(window_s * fps)`` consecutive frames (at least 4, one TALL clip; at most the
    whole stream); its score is the mean of :func:`suspicion_curve`'s combined curve over its frames. The
    highest-scoring window wins; among equal scores, the one holding the most frames a branch actually
    looked at, then the earliest.

    Args:
        result: a detection result (a still image gives its single frame).
        window_s: window length in seconds.

    Returns:
        The segment, or ``None`` when the result holds no per-frame or per-clip scores.
    """
    combined, _ = suspicion_curve(result)
    if not len(combined):
        return None
    clock, n = _Clock(result), len(combined)
    length = int(min(n, max(4, round(window_s * clock.fps))))
    evidence = _branch_evidence(result)
    covered = np.zeros(n, dtype=np.float64)  # frames some branch actually looked at
    for lo, hi, _ in evidence.values():
        for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
            covered[a : b + 1] = 1.0
    sums, looked = _window_sums(combined, length), _window_sums(covered, length)
    # Highest mean first (rounded: float noise must not decide), then most frames looked at, then earliest.
    best = int(np.lexsort((np.arange(len(sums)), -looked, -np.round(sums, 9)))[0])
    a, b = best, best + length - 1
    used = tuple(name for name, (lo, hi, _) in evidence.items() if np.any((lo <= b) & (hi >= a)))
    start, end = clock.time([a, b + 1])
    return Segment(a, b, float(start), float(end), float(sums[best] / length), used)


# ---------------------------------------------------------------------------------------- timeline
def _new_figure(size: tuple[int, int]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)


def _save(fig: Figure, path: Path) -> Path:
    # No bbox_inches="tight": the PNG keeps the documented pixel size.
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _presence(result: DetectionResult, details: Details | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Sampled stream indices and whether any face was found there, from the tracks or the 2D scores."""
    if details is not None and details.tracks:
        found: dict[int, bool] = {}
        for track in details.tracks:
            for i, p in zip(np.asarray(track.frame_indices).tolist(), np.asarray(track.present).tolist(),
                            strict=True):
                found[int(i)] = found.get(int(i), False) or bool(p)
    elif details is not None and details.frames:
        found = {int(i): False for i in details.frames}
    elif result.frames:
        found = {}
        for f in result.frames:
            found[f.frame_index] = found.get(f.frame_index, False) or f.face_found
    else:
        return None
    keys = sorted(found)
    return np.array(keys, dtype=np.int64), np.array([found[k] for k in keys], dtype=bool)


def _draw_scores(ax, result: DetectionResult, clock: _Clock) -> list:
    from matplotlib.lines import Line2D

    handles = []
    combined, per_branch = suspicion_curve(result)
    if len(per_branch) > 1:
        t = clock.time(np.arange(len(combined)) + 0.5)
        ax.plot(t, combined, color="#7f7f7f", lw=1.0, alpha=0.9, zorder=1)
        handles.append(Line2D([], [], color="#7f7f7f", lw=1.0, label="mean over branches"))
    tracks = sorted({f.track for f in result.frames})
    styles = ("-", "--", ":", "-.")
    for k, tid in enumerate(tracks):
        pts = sorted((f for f in result.frames if f.track == tid), key=lambda f: f.frame_index)
        t = clock.time([f.frame_index + 0.5 for f in pts])
        p = np.array([f.probability for f in pts])
        face = np.array([f.face_found for f in pts], dtype=bool)
        colour = _BRANCH_COLOURS["image2d"]
        ax.plot(t, p, styles[k % len(styles)], color=colour, lw=1.2, alpha=0.8)
        ax.plot(t[face], p[face], "o", color=colour, ms=4)
        ax.plot(t[~face], p[~face], "o", mfc="white", mec=colour, ms=4)
        suffix = f" (face {tid})" if len(tracks) > 1 else ""
        handles.append(Line2D([], [], color=colour, ls=styles[k % len(styles)], marker="o", ms=4,
                              label=f"2D detector per frame{suffix}"))
    # Known clip branches first, then any other (a hub video model), each under its own name.
    others = sorted({c.branch for c in result.clips} - set(_CLIP_WIDTHS))
    for k, branch in enumerate([*_CLIP_WIDTHS, *others]):
        clips = [c for c in result.clips if c.branch == branch]
        if not clips:
            continue
        colour = _BRANCH_COLOURS.get(branch, _OTHER_COLOURS[(k - len(_CLIP_WIDTHS)) % len(_OTHER_COLOURS)])
        lw = _CLIP_WIDTHS.get(branch, 3.0)
        ax.hlines([c.probability for c in clips], [c.start_time for c in clips], [c.end_time for c in clips],
                  colors=colour, lw=lw, alpha=0.85)
        if branch == _SCENE:  # a clip has one to a few windows: write each one's probability on it
            for c in clips:
                ax.annotate(f"p = {c.probability:.2f}", ((c.start_time + c.end_time) / 2, c.probability),
                            xytext=(0, -14 if c.probability > 0.9 else 6), textcoords="offset points",
                            ha="center", fontsize=8, color=colour)
        handles.append(Line2D([], [], color=colour, lw=lw, label=f"{_BRANCH_LABELS.get(branch, branch)} "
                                                                 f"({len(clips)})"))
    return handles


def _draw_presence(strip, result: DetectionResult, details: Details | None, clock: _Clock,
                   duration: float) -> list:
    from matplotlib.patches import Patch

    strip.set_facecolor("#e6e6e6")
    strip.set_yticks([])
    strip.set_ylabel("face", rotation=0, ha="right", va="center")
    presence = _presence(result, details)
    if presence is None:
        strip.text(0.5, 0.5, "face presence unknown (no per-frame data)", transform=strip.transAxes,
                   ha="center", va="center", fontsize=8)
        return []
    idx, found = presence
    start = clock.time(idx)
    width = np.maximum(clock.time(idx + 1) - start, duration / 600.0)  # >= 2 px: sparse samples stay visible
    strip.bar(start, 1.0, width=width, align="edge", color=np.where(found, "#4daf4a", "#e41a1c"), lw=0)
    strip.set_ylim(0, 1)
    return [Patch(color="#4daf4a", label="face found"), Patch(color="#e41a1c", label="no face"),
            Patch(color="#e6e6e6", label="frame not sampled")]


def plot_timeline(result: DetectionResult, path: str | Path, *, details: Details | None = None,
                  segment: Segment | None = None) -> Path:
    """Draw the inconsistency timeline of a video into a PNG of :data:`TIMELINE_SIZE` pixels.

    One time axis (seconds; stream frame numbers on top): per-frame 2D scores (filled markers where a
    face was found, hollow where the whole frame was scored), TALL clips, lip windows and scene windows
    (each scene window with its probability written on it; other branches' clips under their own names)
    as horizontal segments spanning their frames, the threshold dashed, the most suspicious segment shaded, and a
    strip below marking the sampled frames with and without a face.

    Args:
        result: a video's detection result.
        path: PNG file to write (parent folder must exist).
        details: intermediates from ``Detector.analyze(..., keep_details=True)``; face presence then comes
            from the face tracks (every decoded frame), otherwise from the 2D frame scores.
        segment: segment to shade; :func:`most_suspicious_segment` of ``result`` when omitted.

    Returns:
        ``path``.

    Raises:
        ValueError: ``result`` is not a video.
    """
    if result.kind != "video":
        raise ValueError(f"{result.source}: a timeline needs a video, got a {result.kind}")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    path = Path(path)
    clock = _Clock(result)
    duration = float(clock.time(_stream_length(result)))
    segment = segment or most_suspicious_segment(result)
    fig = _new_figure(TIMELINE_SIZE)
    grid = fig.add_gridspec(2, 1, height_ratios=(9, 1), hspace=0.12, left=0.06, right=0.80, top=0.84,
                            bottom=0.11)
    ax = fig.add_subplot(grid[0])
    strip = fig.add_subplot(grid[1], sharex=ax)
    handles = _draw_scores(ax, result, clock)
    ax.axhline(result.threshold, color="black", ls="--", lw=1)
    handles.append(Line2D([], [], color="black", ls="--", lw=1, label=f"threshold {result.threshold:.2f}"))
    if segment is not None:
        for a in (ax, strip):
            a.axvspan(segment.start_time, segment.end_time, color="#ff7f00", alpha=0.22, lw=0)
        handles.append(Patch(color="#ff7f00", alpha=0.4, label=(
            f"most suspicious: {segment.start_time:.2f}-{segment.end_time:.2f} s\n"
            f"(frames {segment.start_frame}-{segment.end_frame}, mean {segment.score:.2f})")))
    handles += _draw_presence(strip, result, details, clock, duration)
    ax.set_xlim(0, duration)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("probability of fake")
    ax.grid(alpha=0.3)
    ax.tick_params(labelbottom=False)
    top = ax.secondary_xaxis("top", functions=(clock.frame, clock.time))
    top.set_xlabel("frame")
    fps_note = "" if result.fps else f" (fps unknown: {DEFAULT_FPS:g} assumed)"
    strip.set_xlabel(f"time (s){fps_note}")
    name = _mpl_text(_display_name(result.source))
    fig.suptitle(f"{name}: {result.verdict}, p(fake) = {result.probability_fake:.3f}", fontsize=12)
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.805, 0.5), fontsize=8, frameon=False)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------- Grad-CAM
def _to_nchw(feats: torch.Tensor, model: Any) -> torch.Tensor:
    """A feature map in the model's own format (timm's ``output_fmt``) -> ``(B, C, h, w)``."""
    if feats.ndim == 3:  # (B, N, C) tokens on a square grid
        side = math.isqrt(feats.shape[1])
        if side * side != feats.shape[1]:
            raise ValueError(f"cannot arrange {feats.shape[1]} tokens on a square grid for Grad-CAM")
        return feats.transpose(1, 2).reshape(feats.shape[0], feats.shape[2], side, side)
    if feats.ndim != 4:
        raise ValueError(f"Grad-CAM needs a spatial feature map, forward_features gave {tuple(feats.shape)}")
    return feats.permute(0, 3, 1, 2) if getattr(model, "output_fmt", "NCHW") == "NHWC" else feats


def gradcam(model: Any, x: torch.Tensor, *, fake_index: int = 1, real_index: int = 0) -> np.ndarray:
    """Grad-CAM of the fake log-odds over a model's last feature map, upsampled to the input size.

    Uses the model surface every vidfake network has: ``forward_features(x)`` gives the last map
    (``(B, C, h, w)``, or ``(B, h, w, C)`` when ``model.output_fmt == "NHWC"`` as in Swin) and
    ``forward_head(features)`` the logits. The target is ``logit[fake] - logit[real]``; channel weights
    are the spatially averaged gradients, the map is ``relu(sum_c w_c * A_c)``, bilinearly upsampled
    and divided by its maximum. Gradients are taken with respect to the features only (parameters'
    ``.grad`` are left alone), in eval mode, even when called inside ``torch.inference_mode``.

    Args:
        model: the network (its train/eval mode is restored afterwards).
        x: ``(B, C, H, W)`` float input, normalised as the model expects.
        fake_index, real_index: logit positions of the two classes.

    Returns:
        ``(B, H, W)`` float32 in [0, 1]; all zeros where nothing argues for "fake".
    """
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            inp = x.detach().clone().requires_grad_(True)  # a normal tensor even if x is an inference one
            feats = model.forward_features(inp)
            logits = model.forward_head(feats)
            target = logits[:, fake_index] - logits[:, real_index]
            (grads,) = torch.autograd.grad(target.sum(), feats)
        cam = cam_from_gradients(_to_nchw(feats.detach(), model), _to_nchw(grads, model), tuple(x.shape[-2:]))
    finally:
        model.train(was_training)
    return cam


def cam_from_gradients(fmap: torch.Tensor, grads: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Grad-CAM maps from a feature map and the gradient of the target with respect to it.

    Channel weights are the spatially averaged gradients; each map is ``relu(sum_c w_c * A_c)``,
    bilinearly upsampled to ``size`` and divided by its own maximum. :func:`gradcam` and
    :meth:`vidfake.scene.SceneBranch.gradcam` share this convention.

    Args:
        fmap: ``(B, C, h, w)`` feature map (detached).
        grads: ``(B, C, h, w)`` gradient of the target with respect to ``fmap``.
        size: ``(H, W)`` of the output maps.

    Returns:
        ``(B, H, W)`` float32 in [0, 1]; all zeros where nothing argues for the target.
    """
    import torch
    import torch.nn.functional as F

    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * fmap).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam.float(), size=tuple(size), mode="bilinear", align_corners=False)
    cam = cam[:, 0].clamp_min(0)
    peak = cam.amax(dim=(1, 2), keepdim=True)
    cam = torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.zeros_like(cam))
    return cam.detach().cpu().numpy().astype(np.float32)


def _branch(detector: Detector, name: str) -> Branch:
    branch = detector.branches.get(name)
    if branch is None or branch.model is None:
        raise ValueError(f"the detector has no {name!r} model loaded (branches: {sorted(detector.branches)})")
    return branch


def _batched_gradcam(detector: Detector, images: np.ndarray, name: str) -> np.ndarray:
    """Grad-CAM of a branch over ``(N, S, S, 3) uint8`` model-sized inputs -> ``(N, S, S)``."""
    branch = _branch(detector, name)
    fake, real = branch.config.fake_index, branch.config.label_names.index("real")
    out = [gradcam(branch.model, branch.to_tensor(images[i : i + _GRADCAM_BATCH]),
                   fake_index=fake, real_index=real)
           for i in range(0, len(images), _GRADCAM_BATCH)]
    return np.concatenate(out) if out else np.zeros((0, *images.shape[1:3]), np.float32)


def gradcam_tall(detector: Detector, layouts: np.ndarray) -> np.ndarray:
    """Grad-CAM of the TALL branch over thumbnail layouts.

    Args:
        detector: a detector with its ``"tall"`` model loaded.
        layouts: ``(N, 224, 224, 3)`` (or one ``(224, 224, 3)``) uint8 RGB [0, 255] layouts, as in
            ``Details.layouts[k].layout``.

    Returns:
        ``(N, 224, 224)`` float32 in [0, 1], one map per layout (split it into the 4 frames with
        :func:`vidfake.preprocessing.layout.tall_inverse`).

    Raises:
        ValueError: wrong shape or dtype, or no TALL model.
    """
    layouts = np.asarray(layouts)
    if layouts.ndim == 3:
        layouts = layouts[None]
    size = tuple(detector.branches["tall"].config.input_size[1:]) if "tall" in detector.branches else None
    if layouts.ndim != 4 or layouts.shape[3] != 3 or layouts.dtype != np.uint8 or (
            size is not None and layouts.shape[1:3] != size):
        raise ValueError(f"gradcam_tall: expected (N, {size[0] if size else 224}, "
                         f"{size[1] if size else 224}, 3) uint8 layouts, got {layouts.shape} {layouts.dtype}")
    return _batched_gradcam(detector, layouts, "tall")


def gradcam_image(detector: Detector, image: np.ndarray) -> np.ndarray:
    """Grad-CAM of the still-image detector over a still image, mapped back onto the image.

    The detector's image probe where it has one (:meth:`vidfake.probe.ImageProbe.gradcam`, over the
    frozen trunk's last map), else its 2D model.

    The image goes through the same resize and centre crop as in detection; the map is pasted back
    over the region the model saw, and the parts it did not see (beyond the centre square of a
    non-square image) are 0.

    Args:
        detector: a detector (its image probe, or its ``"image2d"`` model).
        image: ``(H, W, 3)`` uint8 RGB [0, 255].

    Returns:
        ``(H, W)`` float32 in [0, 1].

    Raises:
        ValueError: ``image`` is not ``(H, W, 3)`` uint8.
    """
    from vidfake.preprocessing.layout import heatmap_to_frame

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise ValueError(f"gradcam_image: expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    if detector.still is not None:  # the image probe scores still images (vidfake.probe)
        cam = detector.still.gradcam(detector.still.prepare_image(image))
        box = detector.still.view_box(image.shape[0], image.shape[1])
    else:
        branch = _branch(detector, "image2d")
        cam = _batched_gradcam(detector, branch.prepare_image(image)[None], "image2d")[0]
        box = branch.view_box(image.shape[0], image.shape[1])
    return np.clip(heatmap_to_frame(cam, box, image.shape), 0.0, 1.0)


# ---------------------------------------------------------------------------------------- pictures
def overlay_heatmap(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.6,
                    cmap: str = "jet") -> np.ndarray:
    """Blend a heatmap over an image, opaque in proportion to the heat (cold areas stay untouched).

    Args:
        image: ``(H, W, 3)`` uint8 RGB [0, 255].
        heat: ``(H, W)`` float in [0, 1].
        alpha: opacity where ``heat == 1``.
        cmap: matplotlib colormap name.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    import matplotlib

    heat = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    if heat.shape != image.shape[:2]:
        raise ValueError(f"overlay_heatmap: heat {heat.shape} does not match image {image.shape}")
    colours = matplotlib.colormaps[cmap](heat)[..., :3] * 255.0
    a = alpha * heat[..., None]
    return np.clip(image.astype(np.float32) * (1.0 - a) + colours * a + 0.5, 0, 255).astype(np.uint8)


def mouth_strip(rois: np.ndarray, *, cols: int | None = None, gap: int = MOUTH_GAP) -> np.ndarray:
    """Tile a mouth-ROI sequence row-major into one grey picture, frames separated by white lines.

    Args:
        rois: ``(T, h, w)`` uint8 grey [0, 255] (``(25, 88, 88)`` for a lip window).
        cols: tiles per row; ``ceil(sqrt(T))`` when omitted (5 for 25 frames). Empty tiles are black.
        gap: white pixels between tiles.

    Returns:
        ``(rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap)`` uint8; ``(448, 448)`` for
        ``(25, 88, 88)``.
    """
    rois = np.asarray(rois)
    if rois.ndim != 3 or rois.dtype != np.uint8 or len(rois) == 0:
        raise ValueError(f"mouth_strip: expected (T, h, w) uint8 crops, got {rois.shape} {rois.dtype}")
    t, h, w = rois.shape
    cols = cols or math.ceil(math.sqrt(t))
    rows = math.ceil(t / cols)
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap), 255, np.uint8)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = rois[k] if k < t else 0
    return out


@dataclass(frozen=True, eq=False)
class FrameHeatmap:
    """Grad-CAM of one video frame: on what the model saw, and mapped back onto the frame.

    Attributes:
        frame_index: stream index.
        frame: ``(H, W, 3)`` uint8 RGB decoded frame.
        crop_box: ``(4,)`` square crop box ``x0, y0, x1, y1`` in frame pixels (may reach past the frame).
        model_input: ``(s, s, 3)`` uint8 crop the model saw (a TALL thumbnail, ``s = 112``, the 2D
            detector's input, or the scene branch's 256 px prepared frame).
        heat_input: ``(s, s)`` float32 [0, 1] heatmap over ``model_input``.
        heat_frame: ``(H, W)`` float32 [0, 1] the same heatmap pasted onto the frame (0 outside the crop).
    """

    frame_index: int
    frame: np.ndarray
    crop_box: np.ndarray
    model_input: np.ndarray
    heat_input: np.ndarray
    heat_frame: np.ndarray


@dataclass(frozen=True)
class VideoHeatmaps:
    """The frames a video's heatmap figure shows.

    Attributes:
        branch: ``"tall"`` (the 4 frames of the highest-scoring TALL clip; heatmaps of one layout share
            one normalisation), ``"image2d"`` (the highest-scoring 2D frames, each normalised alone) or
            ``"scene"`` (4 frames of the highest-scoring scene window, each normalised alone).
        frames: the frames in stream order.
        title: what was explained, in words.
    """

    branch: str
    frames: tuple[FrameHeatmap, ...]
    title: str


def _tall_views(result: DetectionResult, details: Details, detector: Detector) -> VideoHeatmaps | None:
    from vidfake.preprocessing.layout import heatmap_to_frame, tall_inverse

    clips = [c for c in result.clips if c.branch == "tall"]
    by_key = {(d.track, d.indices[0], d.indices[-1]): d for d in details.layouts}
    clips = [c for c in clips if (c.track, c.start_frame, c.end_frame) in by_key]
    if not clips:
        return None
    clip = max(clips, key=lambda c: c.probability)
    entry = by_key[(clip.track, clip.start_frame, clip.end_frame)]
    cam = gradcam_tall(detector, entry.layout)[0]
    heats, thumbs = tall_inverse(cam), tall_inverse(np.asarray(entry.layout))
    views = []
    for k, index in enumerate(entry.indices):
        frame = details.frames[int(index)]
        box = np.asarray(entry.boxes[k], dtype=np.float64)  # the square crop box the thumbnail came from
        heat_frame = np.clip(heatmap_to_frame(heats[k], box, frame.shape), 0, 1)
        views.append(FrameHeatmap(int(index), frame, box, thumbs[k], heats[k], heat_frame))
    title = (f"Grad-CAM of the TALL branch on its highest-scoring clip: frames {clip.start_frame}-"
             f"{clip.end_frame} ({clip.start_time:.2f}-{clip.end_time:.2f} s), "
             f"p(fake) = {clip.probability:.3f}")
    if len(details.tracks) > 1:
        title += f", face {clip.track}"
    return VideoHeatmaps("tall", tuple(views), title)


def _image2d_views(result: DetectionResult, details: Details, detector: Detector,
                   count: int = 4) -> VideoHeatmaps | None:
    from vidfake.preprocessing.layout import heatmap_to_frame

    # The 2D detector's own inputs, kept by the detector: the crop the model saw and its box.
    inputs = {(i.track, i.index): i for i in details.crops}
    scored = [f for f in result.frames if (f.track, f.frame_index) in inputs and f.frame_index in details.frames]
    if not scored:
        return None
    top = sorted(sorted(scored, key=lambda f: -f.probability)[:count], key=lambda f: (f.frame_index, f.track))
    chosen = [inputs[(f.track, f.frame_index)] for f in top]
    crops, boxes = [i.crop for i in chosen], [i.box for i in chosen]
    frames = [details.frames[f.frame_index] for f in top]
    cams = _batched_gradcam(detector, np.stack(crops), "image2d")
    views = [FrameHeatmap(f.frame_index, fr, b, cr, cam, np.clip(heatmap_to_frame(cam, b, fr.shape), 0, 1))
             for f, fr, b, cr, cam in zip(top, frames, boxes, crops, cams, strict=True)]
    title = (f"Grad-CAM of the 2D detector on its {len(views)} highest-scoring frames "
             f"(max p(fake) = {max(f.probability for f in top):.3f})")
    return VideoHeatmaps("image2d", tuple(views), title)


def _scene_views(result: DetectionResult, details: Details, detector: Detector,
                 count: int = 4) -> VideoHeatmaps | None:
    from vidfake.preprocessing.layout import heatmap_to_frame

    # Scene windows score whole frames (track 0): a window is known by its first and last frame.
    windows = {(w.indices[0], w.indices[-1]): w for w in details.windows.get(_SCENE, [])
               if all(int(i) in details.frames for i in w.indices)}
    clips = [c for c in result.clips if c.branch == _SCENE and (c.start_frame, c.end_frame) in windows]
    if not clips:
        return None
    clip = max(clips, key=lambda c: c.probability)
    entry = windows[(clip.start_frame, clip.end_frame)]
    branch = _branch(detector, _SCENE)
    cams = branch.gradcam(entry)
    picks = np.unique(np.linspace(0, len(entry.indices) - 1, min(count, len(entry.indices))).round().astype(int))
    views = []
    for k in picks.tolist():
        index = int(entry.indices[k])
        frame = details.frames[index]
        box = np.asarray(branch.view_box(frame.shape[0], frame.shape[1]), dtype=np.float64)
        heat_frame = np.clip(heatmap_to_frame(cams[k], box, frame.shape), 0, 1)
        views.append(FrameHeatmap(index, frame, box, entry.frames[k], cams[k], heat_frame))
    rate = getattr(branch.config, "rate", None)
    at = f" at {rate:g} fps" if rate else ""
    title = (f"Grad-CAM of the scene branch on its highest-scoring window: frames {clip.start_frame}-"
             f"{clip.end_frame} ({clip.start_time:.2f}-{clip.end_time:.2f} s, {len(entry.indices)} frames"
             f"{at}), p(fake) = {clip.probability:.3f}; {len(views)} of its frames")
    return VideoHeatmaps(_SCENE, tuple(views), title)


def video_heatmaps(result: DetectionResult, details: Details, detector: Detector, *,
                   branch: str | None = None) -> VideoHeatmaps | None:
    """Grad-CAM heatmaps of the most suspicious frames of a video, mapped back onto the frames.

    ``"tall"``: the highest-scoring TALL clip's layout, explained with :func:`gradcam_tall`, split into
    its 4 thumbnails with :func:`~vidfake.preprocessing.layout.tall_inverse` and pasted onto each frame
    through the square crop box the thumbnail was cut from
    (:func:`~vidfake.preprocessing.layout.heatmap_to_frame`). ``"image2d"``: the 4 highest-scoring 2D
    frames, each through the 2D detector's own crop (the enlarged face box, or the whole frame, padded square,
    when no face was tracked). ``"scene"`` (the scene path, no usable face): the highest-scoring scene
    window (``Details.windows["scene"]``), explained with :meth:`vidfake.scene.SceneBranch.gradcam`; 4 of
    its frames, evenly spread, each map over the whole 256 px prepared frame and pasted onto the decoded
    frame through the centre square :func:`vidfake.scene.prepare_frames` cut
    (:meth:`~vidfake.scene.SceneBranch.view_box`).

    Args:
        result: the video's detection result.
        details: its intermediates (``keep_details=True``).
        detector: the detector that produced them.
        branch: ``"tall"``, ``"image2d"`` or ``"scene"``; by default TALL when it ran, else the 2D
            detector, else the scene branch.

    Returns:
        The heatmaps, or ``None`` when the branch left nothing to explain.
    """
    if branch not in (None, "tall", "image2d", _SCENE):
        raise ValueError(f"video_heatmaps: branch must be 'tall', 'image2d' or 'scene', got {branch!r}")
    views = None
    if branch in (None, "tall") and "tall" in detector.branches:
        views = _tall_views(result, details, detector)
    if views is None and branch in (None, "image2d") and "image2d" in detector.branches:
        views = _image2d_views(result, details, detector)
    if views is None and branch in (None, _SCENE) and _SCENE in detector.branches:
        views = _scene_views(result, details, detector)
    return views


def _plot_video_heatmaps(heatmaps: VideoHeatmaps, clock: _Clock, scores: dict[int, float],
                         path: Path) -> Path:
    from matplotlib.patches import Rectangle

    fig = _new_figure(VIDEO_HEATMAP_SIZE)
    axes = fig.subplots(2, 4, gridspec_kw=dict(left=0.01, right=0.99, top=0.9, bottom=0.01, hspace=0.12,
                                                 wspace=0.03))
    for k in range(4):
        top, bottom = axes[0, k], axes[1, k]
        for a in (top, bottom):
            a.set_axis_off()
        if k >= len(heatmaps.frames):
            continue
        v = heatmaps.frames[k]
        top.imshow(overlay_heatmap(v.model_input, v.heat_input))
        score = scores.get(v.frame_index)
        score_text = f", 2D p = {score:.2f}" if score is not None else ""
        when = float(clock.time(v.frame_index))
        top.set_title(f"frame {v.frame_index} ({when:.2f} s){score_text}\nmodel input", fontsize=9)
        bottom.imshow(overlay_heatmap(v.frame, v.heat_frame))
        x0, y0, x1, y1 = (float(c) for c in v.crop_box)
        bottom.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="white", lw=1.2,
                                   ls="--"))
        bottom.set_title("mapped onto the frame (crop box dashed)", fontsize=9)
    fig.suptitle(_mpl_text(heatmaps.title), fontsize=11)
    return _save(fig, path)


def _plot_image_heatmap(image: np.ndarray, heat: np.ndarray, title: str, path: Path) -> Path:
    fig = _new_figure(IMAGE_HEATMAP_SIZE)
    axes = fig.subplots(1, 2, gridspec_kw=dict(left=0.01, right=0.99, top=0.88, bottom=0.02, wspace=0.03))
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=10)
    axes[1].imshow(overlay_heatmap(image, heat))
    axes[1].set_title("Grad-CAM of the still-image detector (fake evidence)", fontsize=10)
    for a in axes:
        a.set_axis_off()
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def _write_heatmaps(result: DetectionResult, details: Details, detector: Detector, path: Path) -> str:
    """Write the heatmap PNG; returns its caption."""
    if result.kind == "image":
        if details.image is None:
            raise ValueError("details hold no image")
        heat = gradcam_image(detector, details.image)
        _plot_image_heatmap(details.image, heat, f"{_mpl_text(_display_name(result.source))}: p(fake) = "
                            f"{result.probability_fake:.3f}", path)
        return ("Grad-CAM of the still-image detector's fake log-odds over the region of the image the model saw "
                "(red: strongest evidence for fake; relative to this image's maximum).")
    heatmaps = video_heatmaps(result, details, detector)
    if heatmaps is None:
        raise ValueError("no TALL clip, 2D frame or scene window with kept intermediates to explain")
    scores: dict[int, float] = {}
    for f in result.frames:
        scores[f.frame_index] = max(scores.get(f.frame_index, 0.0), f.probability)
    _plot_video_heatmaps(heatmaps, _Clock(result), scores, path)
    if heatmaps.branch == _SCENE:
        return (f"{heatmaps.title}. Top: the whole frame as the scene branch saw it (256 px centre square, "
                "JPEG 75), with its heatmap over the trunk's last feature map; bottom: the heatmap mapped "
                "back onto the decoded frame through that centre square (dashed). Each frame's map is "
                "relative to its own maximum (red: strongest evidence for fake).")
    return (f"{heatmaps.title}. Top: what the model saw, with its heatmap; bottom: the heatmap mapped back "
            "onto the frame through the crop box (red: strongest evidence for fake).")


def _write_mouth(result: DetectionResult, details: Details, path: Path) -> str | None:
    """Write the mouth strip of the highest-scoring lip window; returns its caption, or None if none."""
    from PIL import Image

    by_key = {(d.track, d.indices[0], d.indices[-1]): d for d in details.mouth}
    clips = [c for c in result.clips if c.branch == "lip" and (c.track, c.start_frame, c.end_frame) in by_key]
    if clips:
        clip: ClipScore | None = max(clips, key=lambda c: c.probability)
        entry = by_key[(clip.track, clip.start_frame, clip.end_frame)]
    elif details.mouth:
        clip, entry = None, details.mouth[0]
    else:
        return None
    Image.fromarray(mouth_strip(np.asarray(entry.rois))).save(path, format="PNG")
    indices = [int(i) for i in entry.indices]
    what = (f"the highest-scoring lip window, p(fake) = {clip.probability:.3f}" if clip is not None
            else "the first lip window")
    return (f"Mouth crops of {what}: frames {indices[0]}-{indices[-1]} ({len(indices)} crops, row-major, "
            f"88x88 grey as the lip model sees them).")


# ---------------------------------------------------------------------------------------- report
def _display_name(source: str) -> str:
    name = str(source).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return name or str(source)


def _mpl_text(text: str) -> str:
    """Text matplotlib draws literally (a ``$`` in a file name would start mathtext)."""
    return text.replace("$", r"\$")


def _safe_stem(source: str) -> str:
    """A file-name stem from a source name: its base name without extension, [A-Za-z0-9._-] only."""
    name = _display_name(source)
    if "." in name[1:]:
        name = name.rsplit(".", 1)[0]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:80] or "media"
    return f"{stem}_" if stem.upper() in _WINDOWS_RESERVED else stem


_SUFFIXES = ("_timeline.png", "_heatmaps.png", "_mouth.png", ".html")


def _reserve_stem(out_dir: Path, source: str) -> tuple[str, Path]:
    """Pick ``stem``, ``stem-1``, ... so no file of this report overwrites another; create the HTML file."""
    base = _safe_stem(source)
    for k in range(100_000):
        stem = base if k == 0 else f"{base}-{k}"
        if any((out_dir / f"{stem}{s}").exists() for s in _SUFFIXES):
            continue
        html_path = out_dir / f"{stem}.html"
        try:
            html_path.open("x").close()  # atomic: two reports of the same name never share a stem
        except FileExistsError:
            continue
        return stem, html_path
    raise FileExistsError(f"{out_dir}: no free report name for {source!r}")


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1240px;
color:#222;padding:0 1em}
h1{font-size:1.4em;word-break:break-all}h2{font-size:1.15em;margin-top:1.6em}
.verdict{display:inline-block;padding:.3em .8em;border-radius:.4em;color:#fff;font-weight:600;font-size:1.2em}
.fake{background:#c62828}.real{background:#2e7d32}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;
font-size:.92em}th{background:#f3f3f3}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
img.pixelated{image-rendering:pixelated;width:448px;max-width:100%}
figcaption{font-size:.9em;color:#444;margin-top:.3em}.warn{color:#8a4b00}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:.8em}
"""


def _scene_path(result: DetectionResult) -> bool:
    """Whether the scene branch decided the verdict (it scores only clips without a usable face)."""
    return any(b.name == _SCENE and b.probability is not None for b in result.branches)


def _summary_rows(result: DetectionResult, segment: Segment | None) -> list[tuple[str, str]]:
    real, synthetic, semi = result.three_class
    rows = [("probability of fake", f"{result.probability_fake:.4f} (threshold {result.threshold:.2f})"),
            ("real / synthetic / semi-synthetic", f"{real:.3f} / {synthetic:.3f} / {semi:.3f}"),
            ("kind", result.kind), ("size", f"{result.width} x {result.height} px"),
            ("faces found", str(result.faces_found))]
    if _scene_path(result):
        rows.append(("decided by", "the scene path: no usable face, so the face branches were skipped and "
                                   "the scene branch scored whole frames"))
    if result.kind == "video":
        fps, duration = _fps(result), float(_Clock(result).time(result.num_frames))
        rows += [("frames", f"{result.frames_used} analysed of {result.num_frames}"),
                 ("fps / duration", f"{fps:.3f} / {duration:.2f} s"
                                    + ("" if result.fps else " (fps unknown)"))]
        if result.mouth_roi_native_px is not None:
            rows.append(("mouth width in the source", f"{result.mouth_roi_native_px:.1f} px"))
        if segment is not None:
            rows.append(("most suspicious segment",
                         f"{segment.start_time:.2f}-{segment.end_time:.2f} s (frames {segment.start_frame}-"
                         f"{segment.end_frame}), mean p(fake) {segment.score:.3f} over "
                         f"{', '.join(segment.branches)}"))
    return rows


def _html(result: DetectionResult, segment: Segment | None, figures: list[tuple[str, Path, str, str]],
          notes: list[str]) -> str:
    esc = html.escape
    name = _display_name(result.source)
    summary = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>"
                      for k, v in _summary_rows(result, segment))
    branches = _table(("branch", "p(fake)", "status", "model", "fusion weight"),
                      [(b.name, _fmt(b.probability), b.status, b.model, _fmt(b.weight, 2))
                       for b in result.branches])
    timings = _table(("stage", "ms"), [(k, f"{v:.1f}") for k, v in result.timings_ms.items()])
    models = _table(("model", "weights"), list(result.models.items()))
    warnings = [*result.warnings, *notes]
    warn_html = ("<ul>" + "".join(f'<li class="warn">{esc(w)}</li>' for w in warnings) + "</ul>"
                 if warnings else "<p>none</p>")
    pictures = "".join(
        f'<h2>{esc(title)}</h2><figure><img class="{cls}" src="{_data_uri(path)}" alt="{esc(title)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
        for title, path, caption, cls in figures)
    raw = esc(json.dumps(result.to_dict(), indent=2, default=str))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vidfake: {esc(name)}</title><style>{_CSS}</style></head>
<body>
<h1>vidfake report: {esc(name)}</h1>
<p>source: <code>{esc(str(result.source))}</code></p>
<p><span class="verdict {esc(result.verdict)}">{esc(result.verdict.upper())}</span>
&nbsp;p(fake) = {result.probability_fake:.3f}</p>
<table>{summary}</table>
<h2>Branches</h2>{branches}
<h2>Warnings</h2>{warn_html}
{pictures}
<h2>Timings</h2>{timings}
<h2>Models</h2>{models}
<details><summary>Full result (JSON)</summary><pre>{raw}</pre></details>
</body></html>
"""


def render_report(result: DetectionResult, details: Details | None, out_dir: str | Path, *,
                  detector: Detector | None = None) -> dict[str, Path]:
    """Write the pictures and the self-contained HTML report of one analysed input.

    Files, named after the source (base name without extension, reduced to ``[A-Za-z0-9._-]``, with
    ``-1``, ``-2``, ... appended when a report of that name is already in ``out_dir``):

    * ``<stem>_timeline.png`` (videos): :func:`plot_timeline`;
    * ``<stem>_heatmaps.png`` (needs ``details`` and ``detector``): Grad-CAM of the highest-scoring
      TALL clip mapped onto its 4 frames (or of the 4 highest-scoring 2D frames when TALL did not run,
      or of 4 frames of the highest-scoring scene window on the scene path), or of the still-image
      detector over a still image;
    * ``<stem>_mouth.png`` (videos where the lip branch ran, needs ``details``): :func:`mouth_strip` of
      the highest-scoring lip window;
    * ``<stem>.html``: verdict, scores, branch table, faces, frames, timings, warnings, then the
      pictures embedded as base64 PNGs.

    A picture that cannot be drawn (no intermediates, no detector, a Grad-CAM failure) is left out and
    the reason is listed in the report's warnings and logged, and the rest of the report is written.

    Args:
        result: the detection result.
        details: intermediates from ``Detector.analyze(..., keep_details=True)``, or ``None``.
        out_dir: output folder, created if missing.
        detector: the detector that produced ``result`` (its models give the heatmaps).

    Returns:
        Paths written, keyed ``"timeline"``, ``"heatmaps"``, ``"mouth"``, ``"html"`` (only those written).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem, html_path = _reserve_stem(out_dir, result.source)
    paths: dict[str, Path] = {}
    figures: list[tuple[str, Path, str, str]] = []
    notes: list[str] = []
    segment = most_suspicious_segment(result) if result.kind == "video" else None
    try:
        if result.kind == "video":
            paths["timeline"] = plot_timeline(result, out_dir / f"{stem}_timeline.png", details=details,
                                              segment=segment)
            scored = ("scene window (whole frames, each window's own probability; the verdict is the "
                      "calibrated mean over windows)" if _scene_path(result)
                      else "2D frame, TALL clip and lip window")
            figures.append(("Inconsistency timeline", paths["timeline"],
                            f"Probability of fake per {scored} on one time axis; "
                            "the shaded span is the 1 s window with the highest mean score across branches; "
                            "the strip below marks sampled frames with and without a face.", ""))
        if details is None:
            notes.append("no heatmaps or mouth crops: run Detector.analyze(..., keep_details=True)")
        else:
            if detector is None:
                notes.append("no heatmaps: pass detector= to render_report for Grad-CAM")
            else:
                path = out_dir / f"{stem}_heatmaps.png"
                try:
                    caption = _write_heatmaps(result, details, detector, path)
                except Exception as e:  # a picture that fails is reported; the verdict still gets its report
                    logger.exception("%s: heatmaps failed", result.source)
                    notes.append(f"heatmaps not drawn: {type(e).__name__}: {e}")
                    path.unlink(missing_ok=True)
                else:
                    paths["heatmaps"] = path
                    figures.append(("Where: Grad-CAM heatmaps", path, caption, ""))
            if result.kind == "video":
                path = out_dir / f"{stem}_mouth.png"
                caption = _write_mouth(result, details, path)
                if caption is not None:
                    paths["mouth"] = path
                    figures.append(("Mouth region", path, caption, "pixelated"))
        html_path.write_text(_html(result, segment, figures, notes), encoding="utf-8")
    except BaseException:
        for written in (*paths.values(), html_path):  # no half report, nor the reserved empty file
            written.unlink(missing_ok=True)
        raise
    paths["html"] = html_path
    logger.info("%s: report written to %s", result.source, html_path)
    return paths
