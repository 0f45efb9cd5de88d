"""Stateless frame samplers: which frame indices each branch looks at.

Samplers only do index arithmetic (pytorchvideo style): they take a frame count and return small
NamedTuples of indices into the decoded stream. The caller decodes :func:`union_indices` of all the
spans it needs once, in order, then slices.

* :func:`tall_clips`: TALL's clips of ``clip_len`` consecutive frames, one per equal segment of the
  video (Xu et al., "TALL: Thumbnail Layout for Deepfake Video Detection", ICCV 2023).
* :func:`lip_windows`: LipForensics' 25-frame mouth windows (Haliassos et al., CVPR 2021).
* :func:`even_frames` / :func:`all_frames`: single frames for the 2D detector.

Short videos never raise: clips overlap when there are too few frames to keep them apart, and a
video shorter than one clip gives one clip that repeats its last frame, marked ``padded=True`` so the
caller can decide whether to score it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["ClipSpan", "all_frames", "even_frames", "lip_windows", "tall_clips", "union_indices"]


class ClipSpan(NamedTuple):
    """Frame indices of one clip.

    Attributes:
        indices: indices into the decoded stream, in playback order; consecutive unless ``padded``.
        padded: True when the stream was shorter than the clip and the last frame is repeated.
    """

    indices: tuple[int, ...]
    padded: bool = False

    @property
    def start(self) -> int:
        """First frame index."""
        return self.indices[0]

    @property
    def end(self) -> int:
        """Last frame index (inclusive), as :class:`vidfake.result.ClipScore` counts it."""
        return self.indices[-1]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


def _padded_span(num_frames: int, length: int) -> ClipSpan:
    indices = tuple(range(num_frames)) + (num_frames - 1,) * (length - num_frames)
    return ClipSpan(indices, padded=True)


def _span(start: int, length: int) -> ClipSpan:
    return ClipSpan(tuple(range(start, start + length)), padded=False)


def _segment_starts(
    num_frames: int, num_clips: int, clip_len: int, training: bool, rng: np.random.Generator | None
) -> list[int]:
    """Start frames of ``num_clips`` clips of ``clip_len`` frames, with ``clip_len <= num_frames``.

    When the clips fit side by side, the stream is cut into ``num_clips`` integer segments (each at
    least ``clip_len`` long) and each clip lies inside its own segment: centred at test time, at a
    uniformly random start in training. Otherwise the clips overlap: their starts are spread evenly
    over the ``num_frames - clip_len + 1`` possible starts (test) or drawn one per equal share of
    those starts (training).
    """
    n, length = num_clips, clip_len
    if num_frames >= n * length:
        bounds = [(k * num_frames) // n for k in range(n + 1)]
        if training:
            gen = _rng(rng)
            return [int(gen.integers(bounds[k], bounds[k + 1] - length + 1)) for k in range(n)]
        return [bounds[k] + (bounds[k + 1] - bounds[k] - length) // 2 for k in range(n)]
    positions = num_frames - length + 1
    if training:
        gen = _rng(rng)
        starts = []
        for k in range(n):
            lo = (k * positions) // n
            hi = max(lo, -((-(k + 1) * positions) // n) - 1)  # ceil((k+1)P/n) - 1
            starts.append(int(gen.integers(lo, hi + 1)))
        return starts
    if n == 1:
        return [(positions - 1) // 2]
    return [round(k * (positions - 1) / (n - 1)) for k in range(n)]


def tall_clips(
    num_frames: int,
    num_clips: int,
    clip_len: int,
    *,
    training: bool = False,
    rng: np.random.Generator | None = None,
) -> list[ClipSpan]:
    """TALL's clips: ``num_clips`` runs of ``clip_len`` consecutive frames spread over the video.

    Test time (``training=False``): the stream is cut into ``num_clips`` equal segments and the clip
    is centred in each, deterministically. Training: one uniformly random start inside each segment.

    Short streams:
        * ``clip_len <= num_frames < num_clips * clip_len``: the clips overlap, starts spread evenly.
          At test time duplicate clips are dropped (a 6-frame stream has only 3 distinct 4-frame
          clips), so fewer than ``num_clips`` spans may come back; training always returns
          ``num_clips`` spans so batches keep their shape.
        * ``num_frames < clip_len``: a single clip of all frames with the last one repeated,
          ``padded=True`` (``num_clips`` copies of it in training).

    Args:
        num_frames: frames in the stream (>= 1).
        num_clips: clips wanted.
        clip_len: consecutive frames per clip (4 for TALL's 2x2 layout).
        training: draw random starts instead of centring.
        rng: generator for training draws; a fresh unseeded one when None.

    Returns:
        Spans in playback order.

    Raises:
        ValueError: a count is not a positive integer.
    """
    _check_positive(num_frames=num_frames, num_clips=num_clips, clip_len=clip_len)
    if num_frames < clip_len:
        return [_padded_span(num_frames, clip_len)] * (num_clips if training else 1)
    starts = _segment_starts(num_frames, num_clips, clip_len, training, rng)
    if not training:
        starts = sorted(set(starts))
    return [_span(s, clip_len) for s in starts]


def lip_windows(
    num_frames: int,
    window: int,
    *,
    num_windows: int | None = None,
    stride: int | None = None,
    training: bool = False,
    rng: np.random.Generator | None = None,
) -> list[ClipSpan]:
    """LipForensics' mouth windows of ``window`` consecutive frames (25 frames = 1 s at 25 fps).

    Test time:
        * default: as many non-overlapping windows as fit, the group centred in the stream (the
          ``num_frames % window`` frames left over are split between both ends);
        * ``stride``: windows every ``stride`` frames (overlapping when ``stride < window``), the group
          centred likewise;
        * ``num_windows``: that many windows spread like :func:`tall_clips` (one centred per segment,
          overlapping when the stream is short; duplicates dropped).

    Training: one window at a uniformly random start, or with ``num_windows`` one random window per
    segment. A stream shorter than ``window`` gives one window of all frames with the last frame
    repeated, ``padded=True``; whether a padded window is worth scoring is the detector's call.

    Args:
        num_frames: frames in the stream (>= 1).
        window: frames per window.
        num_windows: windows wanted instead of tiling the stream.
        stride: step between window starts at test time (default ``window``).
        training: draw random starts.
        rng: generator for training draws.

    Returns:
        Spans in playback order.

    Raises:
        ValueError: a count is not a positive integer, or both ``num_windows`` and ``stride`` given.
    """
    _check_positive(num_frames=num_frames, window=window)
    if num_windows is not None and stride is not None:
        raise ValueError("give num_windows or stride, not both")
    if num_windows is not None:
        _check_positive(num_windows=num_windows)
    if stride is not None:
        _check_positive(stride=stride)
    if num_frames < window:
        return [_padded_span(num_frames, window)]
    if num_windows is not None:
        return tall_clips(num_frames, num_windows, window, training=training, rng=rng)
    if training:
        return [_span(int(_rng(rng).integers(0, num_frames - window + 1)), window)]
    step = window if stride is None else stride
    count = (num_frames - window) // step + 1
    offset = (num_frames - window - (count - 1) * step) // 2
    return [_span(offset + k * step, window) for k in range(count)]


def even_frames(num_frames: int, n: int) -> tuple[int, ...]:
    """``n`` frame indices spread evenly, each at the centre of its ``num_frames / n`` segment.

    Returns every frame once when ``n >= num_frames`` (no duplicates).

    Raises:
        ValueError: a count is not a positive integer.
    """
    _check_positive(num_frames=num_frames, n=n)
    if n >= num_frames:
        return tuple(range(num_frames))
    return tuple(((2 * k + 1) * num_frames) // (2 * n) for k in range(n))


def all_frames(num_frames: int, max_frames: int | None = None) -> ClipSpan:
    """Every frame, or the first ``max_frames`` of them (one contiguous span; see :func:`even_frames`
    to spread a budget over the whole stream).

    Raises:
        ValueError: a count is not a positive integer.
    """
    _check_positive(num_frames=num_frames)
    if max_frames is not None:
        _check_positive(max_frames=max_frames)
        num_frames = min(num_frames, max_frames)
    return _span(0, num_frames)


def union_indices(spans: Iterable[ClipSpan | Sequence[int]]) -> np.ndarray:
    """Sorted unique frame indices of all ``spans``, so the caller decodes each frame once, in order.

    Args:
        spans: :class:`ClipSpan` objects or plain sequences of indices (e.g. :func:`even_frames`).

    Returns:
        ``(K,)`` int64, strictly increasing.
    """
    parts = [np.asarray(s.indices if isinstance(s, ClipSpan) else s, dtype=np.int64).ravel() for s in spans]
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(parts))
