"""Detection branches: one object per branch, built from its model's :class:`ModelConfig`.

timm goes from a model's config to its data config and transforms; vidfake goes one step further, from
a model's config to a *branch*: the object that knows the model's crop scale, frames per sample,
layout and input size, says which spans of a clip it needs, prepares its inputs (typed intermediates,
not dicts) and turns the model's logits into a score. The :class:`~vidfake.detector.Detector` is a
loop over branches plus fusion; the training datasets, the visualisations and the gasbench export use
the same preparation, so a number such as the face-crop scale lives in one config field.

A branch without a model (``model=None``) prepares inputs only: that is how the training datasets and
the export use it.

Layouts: frames and crops are ``(H, W, 3) uint8 [0, 255]`` RGB; mouth ROIs ``(T, 88, 88) uint8`` grey.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from vidfake.result import ClipScore, FrameScore

if TYPE_CHECKING:
    import torch

    from vidfake.preprocessing.faces import FaceTrack
    from vidfake.preprocessing.samplers import ClipSpan
    from vidfake.temporal_models.config import ModelConfig

__all__ = [
    "BRANCHES", "SCENE", "Branch", "BranchOutput", "BranchPlan", "FrameInput", "Image2DBranch", "LipBranch",
    "MouthInput", "TallBranch", "TallInput", "VideoContext", "make_branch", "sigmoid",
]

#: The face-path branches, in the order the detector runs and reports them.
BRANCHES: tuple[str, ...] = ("image2d", "tall", "lip")
#: The scene path's branch (:mod:`vidfake.scene`): clips without a usable face track.
SCENE: str = "scene"


def sigmoid(z: float) -> float:
    """Numerically stable logistic function."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# ---------------------------------------------------------------------------------------- intermediates
@dataclass(frozen=True, eq=False)
class FrameInput:
    """One 2D-detector input cut from a video frame.

    Attributes:
        track: face track number (0 when no face was tracked: the whole frame).
        index: stream index of the frame.
        crop: ``(S, S, 3) uint8`` what the model saw.
        box: ``(4,)`` square crop box ``x0, y0, x1, y1`` in frame pixels (may reach past the frame).
        face_found: whether the track had a face in this frame.
    """

    track: int
    index: int
    crop: np.ndarray
    box: np.ndarray
    face_found: bool


@dataclass(frozen=True, eq=False)
class TallInput:
    """One TALL thumbnail layout.

    Attributes:
        track: face track number (0 when no face was tracked: whole frames).
        indices: the stream indices of its frames, row-major in the grid.
        layout: ``(H, W, 3) uint8`` the layout the model saw.
        boxes: per frame, the ``(4,)`` square crop box its thumbnail was cut from (frame pixels).
    """

    track: int
    indices: tuple[int, ...]
    layout: np.ndarray
    boxes: tuple[np.ndarray, ...]


@dataclass(frozen=True, eq=False)
class MouthInput:
    """One lip-branch window.

    Attributes:
        track: face track number.
        indices: the stream indices of its frames.
        rois: ``(T, 88, 88) uint8`` aligned grey mouth crops.
        native_width: the mouth's width in frame pixels before alignment (the ROI's native size).
    """

    track: int
    indices: tuple[int, ...]
    rois: np.ndarray
    native_width: float


@dataclass(frozen=True)
class BranchPlan:
    """The spans of a clip a branch needs, or why it needs none.

    Attributes:
        spans: the clips (TALL), windows (lip) or single frames (2D) to score.
        warning: set when the branch cannot run on this clip (said in the result's warnings).
    """

    spans: tuple[ClipSpan, ...]
    warning: str | None = None

    def without(self, lost: set[int]) -> BranchPlan:
        """The plan minus every span that needs a frame that failed to decode."""
        return BranchPlan(tuple(s for s in self.spans if not set(s.indices) & lost), self.warning)


@dataclass(frozen=True)
class BranchOutput:
    """What one branch says about one video.

    Attributes:
        per_track: the fake log-odds of each face track it scored (mean over that track's spans);
            track 0 holds whole frames when no face was usable.
        clips: per-clip scores (TALL clips, lip windows).
        frames: per-frame scores (2D detector).
        inputs: the typed intermediates it scored (kept for the visualisations).
    """

    per_track: dict[int, float]
    clips: tuple[ClipScore, ...] = ()
    frames: tuple[FrameScore, ...] = ()
    inputs: tuple[Any, ...] = ()

    @property
    def logit(self) -> float:
        """The most fake track's log-odds: a clip is fake if any face is."""
        return max(self.per_track.values())


# ---------------------------------------------------------------------------------------- the clip
class VideoContext:
    """Decoded frames and face tracks of one video, with per-frame crop and landmark look-ups.

    Args:
        frames: ``(T, H, W, 3) uint8`` decoded frames.
        by_index: stream index -> row of ``frames``.
        tracks: the face tracks (``FaceTrack``), possibly none.
        fps: frame rate used where a frame has no timestamp.
        times: stream index -> presentation time in seconds.
    """

    def __init__(self, frames: np.ndarray, by_index: dict[int, int], tracks: Sequence[FaceTrack], fps: float,
                 times: dict[int, float]):
        self.frames, self.by_index, self.tracks, self.fps, self.times = frames, by_index, list(tracks), fps, times
        self._pos = [{int(i): k for k, i in enumerate(t.frame_indices)} for t in self.tracks]

    def time(self, index: int, end: bool = False) -> float:
        """Presentation time of a frame (real timestamps: variable frame rate); ``end`` adds one frame."""
        return self.times.get(int(index), index / self.fps) + (1.0 / self.fps if end else 0.0)

    def iter_tracks(self, require_face: bool = False) -> Iterator[tuple[int, FaceTrack | None]]:
        """``(track number, track)``; one ``(0, None)`` for whole frames when no face was tracked."""
        if not self.tracks:
            if not require_face:
                yield 0, None
            return
        yield from enumerate(self.tracks)

    def frame(self, index: int) -> np.ndarray:
        return self.frames[self.by_index[int(index)]]

    def face_crop(self, track: FaceTrack | None, index: int, *, scale: float, size: int
                  ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Square ``scale`` x face crop of frame ``index`` resized to ``size``.

        Without a track, the whole frame padded square (scale 1). Returns ``(crop, crop box, face
        present)``; the crop box (frame pixels, may reach past the frame) maps a heatmap on the crop
        back onto the frame.
        """
        from vidfake.preprocessing.faces import crop_faces

        frame = self.frame(index)
        if track is None:
            h, w = frame.shape[:2]
            box, scale, present = np.array([0, 0, w, h], np.float32), 1.0, False
        else:
            k = self._pos[self.tracks.index(track)][int(index)]
            box, present = track.boxes[k], bool(track.present[k])
        crops = crop_faces(frame[None], box[None], scale=scale, size=size)
        return crops.images[0], crops.boxes[0], present

    def present(self, track: FaceTrack, indices: Sequence[int]) -> float:
        """Share of ``indices`` where ``track`` has a face (1.0 = in every one)."""
        pos = self._pos[self.tracks.index(track)]
        return float(np.mean([bool(track.present[pos[int(i)]]) for i in indices]))

    def landmarks(self, track: FaceTrack, index: int) -> np.ndarray:
        return track.landmarks[self._pos[self.tracks.index(track)][int(index)]]

    def rows(self, indices: Sequence[int]) -> np.ndarray:
        """Frames of ``indices``: a view when they are adjacent rows (no copy of 25 full frames)."""
        rows = [self.by_index[int(i)] for i in indices]
        if rows == list(range(rows[0], rows[0] + len(rows))):
            return self.frames[rows[0] : rows[-1] + 1]
        return self.frames[rows]


def _usable(ctx: VideoContext, spans: Sequence[ClipSpan], min_presence: float
            ) -> list[tuple[int, FaceTrack | None, ClipSpan]]:
    """``(track number, track, span)`` for every span where a track's face is present enough; when no
    track is, every span on whole frames (track ``None``), as for a clip without faces."""
    pairs = [(tid, track, span) for tid, track in ctx.iter_tracks() for span in spans
             if track is None or ctx.present(track, span.indices) >= min_presence]
    return pairs or [(0, None, span) for span in spans]


# ---------------------------------------------------------------------------------------- branches
class Branch:
    """A detection branch: a model config, optionally its model, and how to feed it.

    Args:
        config: the model's :class:`ModelConfig` (input size, frames, layout, crop, normalisation).
        model: the network (``None``: preparation only, as training and export use it).
        device: where tensors go.
        loader: builds the network on first use of :attr:`model` (the detector builds a still image's
            branch only); ignored when ``model`` is given.

    Subclasses set :attr:`name`, implement :meth:`plan`, :meth:`prepare` and :meth:`batch`.
    """

    name: ClassVar[str]
    #: True when the branch cannot run without a tracked face.
    needs_face: ClassVar[bool] = False
    #: Share of a span's frames where a track's face must be present for the track to be scored there:
    #: a frame where a person is not seen is never scored as that person's face crop.
    min_presence: ClassVar[float] = 1.0
    #: Run convolutions on channels-last tensors.
    channels_last: ClassVar[bool] = False

    def __init__(self, config: ModelConfig, model: torch.nn.Module | None = None, device: Any = "cpu",
                 loader: Callable[[], torch.nn.Module] | None = None):
        self.config, self.device = config, device
        self._model, self._loader = model, loader
        self._lock = threading.Lock()

    @property
    def model(self) -> torch.nn.Module | None:
        """The network, built by the loader on first use; ``None`` for a preparation-only branch."""
        if self._model is None and self._loader is not None:
            with self._lock:
                if self._model is None:
                    self._model = self._loader()
        return self._model

    @model.setter
    def model(self, model: torch.nn.Module | None) -> None:
        self._model = model

    @property
    def loaded(self) -> bool:
        """Whether the network has been built."""
        return self._model is not None

    # -- what the config says
    @property
    def model_name(self) -> str:
        return self.config.name

    @property
    def crop_scale(self) -> float:
        """Face-box enlargement of the crops this branch's inputs are cut from."""
        return float(self.config.crop_scale)

    @property
    def frames_per_sample(self) -> int:
        """Frames in one model input (4 for a TALL layout, 25 for a lip window, 1 for an image)."""
        return int(self.config.num_frames)

    @property
    def input_size(self) -> int:
        """Side in pixels of one model input (the whole layout for TALL, one frame for lip)."""
        return int(self.config.input_size[-1])

    @property
    def layout(self) -> str | None:
        return self.config.layout

    # -- what a subclass says
    def plan(self, num_frames: int, count: int) -> BranchPlan:
        """The spans of a ``num_frames`` stream this branch scores, ``count`` of them at most."""
        raise NotImplementedError

    def prepare(self, ctx: VideoContext, spans: Sequence[ClipSpan]) -> list[Any]:
        """Cut the typed inputs of ``spans`` out of the clip, for every face track."""
        raise NotImplementedError

    def batch(self, inputs: Sequence[Any]) -> torch.Tensor:
        """Stack prepared inputs into the model's normalised input tensor."""
        raise NotImplementedError

    def score(self, ctx: VideoContext, inputs: Sequence[Any]) -> BranchOutput:
        """Run the model on prepared inputs: per-span scores, then mean over spans, max over tracks."""
        raise NotImplementedError

    def run(self, ctx: VideoContext, spans: Sequence[ClipSpan]) -> BranchOutput | None:
        """Prepare and score; ``None`` when no span has a usable input (no face present in any window)."""
        inputs = self.prepare(ctx, spans)
        return self.score(ctx, inputs) if inputs else None

    # -- model plumbing shared by all branches
    def to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """``(B, H, W, C) uint8`` -> ``(B, C, H, W) float32`` normalised as the model expects, on the device."""
        import torch

        cfg = self.config
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(cfg.mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(cfg.std, device=self.device).view(1, -1, 1, 1)
        x = (x - mean) / std
        # (B, H, W, C) permuted is already channels-last in memory; a channels-last branch keeps it so.
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def fake_logits(self, x: torch.Tensor) -> np.ndarray:
        """The model's fake log-odds ``(B,)`` for a normalised input batch (two-class logits)."""
        import torch

        if self.model is None:
            raise RuntimeError(f"{self.name} branch of {self.model_name!r} has no model loaded")
        fake = self.config.fake_index
        real = self.config.label_names.index("real")
        with torch.inference_mode():
            z = self.model(x)
            return (z[:, fake] - z[:, real]).cpu().numpy()

    @staticmethod
    def _pool(keys: Sequence[int], logits: Sequence[float]) -> dict[int, float]:
        """Per track, the mean log-odds over its spans."""
        per_track: dict[int, list[float]] = {}
        for k, z in zip(keys, logits, strict=True):
            per_track.setdefault(k, []).append(float(z))
        return {k: float(np.mean(v)) for k, v in per_track.items()}

    def _clip_scores(self, ctx: VideoContext, inputs, z: np.ndarray) -> BranchOutput:
        clips = tuple(
            ClipScore(self.name, a := inp.indices[0], b := inp.indices[-1], ctx.time(a), ctx.time(b, end=True),
                      sigmoid(float(zi)), inp.track)
            for inp, zi in zip(inputs, z.tolist(), strict=True))
        return BranchOutput(self._pool([i.track for i in inputs], z.tolist()), clips=clips, inputs=tuple(inputs))


class Image2DBranch(Branch):
    """2D detector: face crops (or whole frames without a face) of evenly spread frames; still images."""

    name = "image2d"
    channels_last = True  # EfficientNet-Lite0 at batch 8: 225 ms instead of 301 ms on 2 threads, same outputs

    def plan(self, num_frames: int, count: int) -> BranchPlan:
        from vidfake.preprocessing.samplers import ClipSpan, even_frames

        return BranchPlan(tuple(ClipSpan((i,)) for i in even_frames(num_frames, min(count, num_frames))))

    def prepare(self, ctx: VideoContext, spans: Sequence[ClipSpan]) -> list[FrameInput]:
        """Per track, the frames where its face is present; whole frames when no track has one there."""
        out = []
        for tid, track, span in _usable(ctx, spans, self.min_presence):
            i = int(span.indices[0])
            crop, box, present = ctx.face_crop(track, i, scale=self.crop_scale, size=self.input_size)
            out.append(FrameInput(tid, i, crop, box, present))
        return out

    def prepare_image(self, image: np.ndarray) -> np.ndarray:
        """A still image as the model sees it: short side to the input size, centre square."""
        from vidfake.preprocessing.transforms import resize_for_model

        return resize_for_model(image, self.input_size)

    def view_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        """The region of a still image that :meth:`prepare_image` keeps (``x0, y0, x1, y1``, image pixels)."""
        from vidfake.preprocessing.transforms import resize_for_model_box

        return resize_for_model_box(height, width, self.input_size)

    def batch(self, inputs: Sequence[FrameInput] | np.ndarray) -> torch.Tensor:
        crops = inputs if isinstance(inputs, np.ndarray) else np.stack([i.crop for i in inputs])
        return self.to_tensor(crops)

    def image_logits(self, images: Sequence[np.ndarray], already_sized: bool = False) -> np.ndarray:
        """Raw fake log-odds for ``(H, W, 3) uint8`` images (before calibration)."""
        if not already_sized:
            images = [self.prepare_image(im) for im in images]
        return self.fake_logits(self.to_tensor(np.stack(images)))

    def score(self, ctx: VideoContext, inputs: Sequence[FrameInput]) -> BranchOutput:
        z = self.fake_logits(self.batch(inputs))
        frames = tuple(FrameScore(i.index, ctx.time(i.index), sigmoid(float(zi)), i.face_found, i.track)
                       for i, zi in zip(inputs, z.tolist(), strict=True))
        return BranchOutput(self._pool([i.track for i in inputs], z.tolist()), frames=frames, inputs=tuple(inputs))


class TallBranch(Branch):
    """TALL: ``frames_per_sample`` consecutive face crops tiled into one thumbnail layout for a Swin."""

    name = "tall"

    @property
    def thumb_size(self) -> int:
        """Side of one thumbnail: the layout side over the grid's side (2 for ``"2x2"``)."""
        from vidfake.preprocessing.layout import GRID

        return self.input_size // GRID

    def plan(self, num_frames: int, count: int) -> BranchPlan:
        from vidfake.preprocessing.samplers import tall_clips

        return BranchPlan(tuple(tall_clips(num_frames, count, self.frames_per_sample)))

    def tile(self, thumbs: np.ndarray) -> np.ndarray:
        """``(frames_per_sample, s, s, 3)`` thumbnails -> one ``(2s, 2s, 3)`` layout (row-major)."""
        from vidfake.preprocessing.layout import tall_layout

        return tall_layout(thumbs)

    def prepare(self, ctx: VideoContext, spans: Sequence[ClipSpan]) -> list[TallInput]:
        """Per track, the clips with its face in every frame; whole frames when no track has such a clip."""
        out = []
        for tid, track, span in _usable(ctx, spans, self.min_presence):
            cut = [ctx.face_crop(track, i, scale=self.crop_scale, size=self.thumb_size) for i in span.indices]
            thumbs = np.stack([c[0] for c in cut])
            out.append(TallInput(tid, tuple(int(i) for i in span.indices), self.tile(thumbs),
                                 tuple(c[1] for c in cut)))
        return out

    def batch(self, inputs: Sequence[TallInput] | np.ndarray) -> torch.Tensor:
        layouts = inputs if isinstance(inputs, np.ndarray) else np.stack([i.layout for i in inputs])
        return self.to_tensor(layouts)

    def score(self, ctx: VideoContext, inputs: Sequence[TallInput]) -> BranchOutput:
        # TALL: video score = mean over clips; over faces, the most fake face decides.
        return self._clip_scores(ctx, inputs, self.fake_logits(self.batch(inputs)))


class LipBranch(Branch):
    """LipForensics-style lip branch: ``frames_per_sample``-frame windows of aligned grey mouth crops."""

    name = "lip"
    needs_face = True
    # Mouth ROIs are aligned on landmarks smoothed over the window; a frame or two where mesh lost the
    # face (interpolated landmarks) is how LipForensics' own preprocessing copes with detector misses.
    min_presence = 0.8

    def plan(self, num_frames: int, count: int) -> BranchPlan:
        from vidfake.preprocessing.samplers import lip_windows

        if count <= 0:
            return BranchPlan(())
        window = self.frames_per_sample
        if num_frames < window:
            return BranchPlan((), f"lip branch skipped: {num_frames} frames, fewer than one "
                                  f"{window}-frame window")
        return BranchPlan(tuple(lip_windows(num_frames, window, num_windows=count)))

    def prepare(self, ctx: VideoContext, spans: Sequence[ClipSpan]) -> list[MouthInput]:
        """Per track, the windows with its face in at least ``min_presence`` of the frames."""
        from vidfake.preprocessing.mouth import mouth_rois

        out = []
        for tid, track in ctx.iter_tracks(require_face=True):
            for span in spans:
                if ctx.present(track, span.indices) < self.min_presence:
                    continue
                lms = np.stack([ctx.landmarks(track, i) for i in span.indices])
                rois = mouth_rois(ctx.rows(span.indices), lms)
                out.append(MouthInput(tid, tuple(int(i) for i in span.indices), rois.rois,
                                      float(rois.native_mouth_width)))
        return out

    def batch(self, inputs: Sequence[MouthInput]) -> torch.Tensor:
        """``(B, 1, T, 88, 88) float32``, normalised LipForensics-style."""
        import torch

        from vidfake.preprocessing.mouth import normalize_rois

        seqs = np.stack([normalize_rois(i.rois) for i in inputs])
        return torch.from_numpy(seqs).unsqueeze(1).float().to(self.device)

    def score(self, ctx: VideoContext, inputs: Sequence[MouthInput]) -> BranchOutput:
        return self._clip_scores(ctx, inputs, self.fake_logits(self.batch(inputs)))


_BRANCH_TYPES: dict[str, type[Branch]] = {b.name: b for b in (Image2DBranch, TallBranch, LipBranch)}


def make_branch(name: str, config: ModelConfig, model: torch.nn.Module | None = None,
                device: Any = "cpu", loader: Callable[[], torch.nn.Module] | None = None) -> Branch:
    """The branch ``name`` (one of :data:`BRANCHES`) around a model config (and optionally its model or
    a loader that builds it on first use)."""
    try:
        kind = _BRANCH_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown branch {name!r}; choose from {BRANCHES}") from None
    return kind(config, model, device, loader)
