"""Write frames to video files with PyAV: lossless test fixtures, wire payloads, exports.

The decoders are tested against files written here: a lossless encode (``libx264rgb`` at CRF 0 in
mp4/mov, VP9 lossless in webm, FFV1 in mkv/avi) decodes back to exactly the frames that went in, so
tests can assert frame equality instead of "close enough". Options for rotation metadata, variable
frame rate and ``faststart`` let tests make the awkward files users send (phone video, screen
recordings, files truncated after a moov-first upload).

PyAV is imported when a function runs, not when this module is imported.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["CONTAINER_FORMATS", "default_codec", "write_video"]

#: Container name -> FFmpeg muxer name.
CONTAINER_FORMATS: dict[str, str] = {
    "mp4": "mp4",
    "mov": "mov",
    "mkv": "matroska",
    "webm": "webm",
    "avi": "avi",
}

# Timestamps of variable-frame-rate files are written on a 90 kHz clock (the MPEG clock), which
# represents any millisecond time exactly; muxers with a coarser clock (webm: 1 ms) round.
_VFR_TIME_BASE = Fraction(1, 90_000)


@dataclass(frozen=True)
class _CodecSpec:
    """How to drive one encoder losslessly and lossily (``None``: the mode is not available)."""

    lossless_pix_fmt: str | None
    lossy_pix_fmt: str | None
    lossless_options: dict[str, str] = field(default_factory=dict)
    lossy_options: dict[str, str] = field(default_factory=dict)
    even_dims_when_lossy: bool = False


_CODECS: dict[str, _CodecSpec] = {
    # libx264rgb codes the RGB planes directly: CRF 0 is bit-exact, unlike libx264 in any YUV format.
    "libx264rgb": _CodecSpec("rgb24", "rgb24", {"crf": "0", "preset": "ultrafast"}, {"crf": "18"}),
    "libx264": _CodecSpec(
        None, "yuv420p", {}, {"crf": "18", "preset": "veryfast"}, even_dims_when_lossy=True
    ),
    # VP9 lossless in GBR is exact. libvpx 1.x rejects frames after a few dozen in lossless
    # "realtime" mode (avcodec_send_frame: invalid data), so the faster "good" speed 4 is used.
    "libvpx-vp9": _CodecSpec(
        "gbrp",
        "yuv420p",
        {"lossless": "1", "deadline": "good", "cpu-used": "4"},
        {"crf": "32", "b": "0", "deadline": "good", "cpu-used": "4"},
    ),
    "ffv1": _CodecSpec("bgr0", None),
    "png": _CodecSpec("rgb24", None),
    # qmin = qmax pins the JPEG quantiser scale (what ``ffmpeg -q:v N`` does for mjpeg).
    "mjpeg": _CodecSpec(None, "yuvj420p", {}, {"qmin": "3", "qmax": "3"}),
    "mpeg4": _CodecSpec(None, "yuv420p", {}, {"qmin": "3", "qmax": "3"}, even_dims_when_lossy=True),
}

_DEFAULT_CODECS: dict[str, tuple[str, str]] = {  # container -> (lossless codec, lossy codec)
    "mp4": ("libx264rgb", "libx264"),
    "mov": ("libx264rgb", "libx264"),
    "mkv": ("ffv1", "libx264"),
    "webm": ("libvpx-vp9", "libvpx-vp9"),
    "avi": ("ffv1", "mjpeg"),
}

_ROTATION_CONTAINERS = frozenset({"mp4", "mov", "mkv", "webm"})


def default_codec(container: str, lossless: bool = True) -> str:
    """The encoder :func:`write_video` uses for ``container`` when none is given."""
    container = _normalise_container(container)
    return _DEFAULT_CODECS[container][0 if lossless else 1]


def write_video(
    dst: str | Path | BinaryIO,
    frames: np.ndarray,
    fps: float = 25.0,
    *,
    container: str | None = None,
    codec: str | None = None,
    lossless: bool = True,
    rotation: int = 0,
    timestamps: Sequence[float] | np.ndarray | None = None,
    faststart: bool = False,
    options: Mapping[str, str] | None = None,
) -> None:
    """Encode frames into a video file or file object.

    Args:
        dst: output path, or a seekable binary file object (e.g. ``io.BytesIO``).
        frames: ``(T, H, W, 3) uint8 [0, 255]`` RGB frames, ``T >= 1``.
        fps: nominal frame rate; with ``timestamps`` it is only the rate stored in the header.
        container: ``"mp4"``, ``"mov"``, ``"mkv"``, ``"webm"`` or ``"avi"``; taken from ``dst``'s
            suffix when omitted (``"mp4"`` for file objects).
        codec: FFmpeg encoder name; by default the container's lossless (or lossy) codec, see
            :func:`default_codec`.
        lossless: encode so that decoding gives back exactly ``frames``.
        rotation: display rotation written as container metadata, degrees counter-clockwise (a
            multiple of 90). A reader that honours it delivers ``np.rot90(frame, rotation // 90)``.
            Not available in avi.
        timestamps: presentation time of each frame in seconds (strictly increasing, ``T`` values)
            for a variable-frame-rate file. Not available in avi (constant rate only).
        faststart: put the mp4/mov index (moov) before the media data, as streaming uploads do. Only
            for path outputs: the muxer re-reads the file to move the index.
        options: extra encoder options (FFmpeg AVOptions), overriding the defaults.

    Raises:
        ValueError: bad frames or an option the container/codec cannot honour.
    """
    frames = _check_frames(frames)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive finite number, got {fps}")
    container = _normalise_container(container or _container_from_dst(dst))
    codec = codec or default_codec(container, lossless)
    pix_fmt, codec_options = _codec_settings(codec, lossless, frames.shape[1:3])
    codec_options.update(options or {})
    if rotation % 90 != 0:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    if rotation % 360 and container not in _ROTATION_CONTAINERS:
        raise ValueError(f"{container} cannot carry rotation metadata")
    pts = _pts_from_timestamps(timestamps, len(frames), container)
    if faststart and (container not in ("mp4", "mov") or not isinstance(dst, (str, os.PathLike))):
        raise ValueError("faststart needs an mp4/mov path output (the muxer rewrites the file)")

    av = _import_av()
    target = os.fspath(dst) if isinstance(dst, (str, os.PathLike)) else dst
    container_options = {"movflags": "faststart"} if faststart else {}
    with av.open(target, mode="w", format=CONTAINER_FORMATS[container], options=container_options) as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1_000_000))
        stream.width = int(frames.shape[2])
        stream.height = int(frames.shape[1])
        stream.pix_fmt = pix_fmt
        stream.options = dict(codec_options)
        if pts is not None:
            stream.codec_context.time_base = _VFR_TIME_BASE
        if rotation % 360:
            stream.set_display_rotation(int(rotation))
        for i, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if pts is not None:
                video_frame.pts = int(pts[i])
                video_frame.time_base = _VFR_TIME_BASE
            out.mux(stream.encode(video_frame))
        out.mux(stream.encode(None))
    logger.debug("wrote %d frames %dx%d %s/%s to %s", len(frames), frames.shape[2], frames.shape[1],
                 container, codec, target if isinstance(target, str) else "<file object>")


def _check_frames(frames: np.ndarray) -> np.ndarray:
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if min(frames.shape[:3]) < 1:
        raise ValueError(f"frames must hold at least one non-empty frame, got shape {frames.shape}")
    return np.ascontiguousarray(frames)


def _normalise_container(container: str) -> str:
    name = container.lower().lstrip(".")
    name = {"matroska": "mkv", "qt": "mov", "quicktime": "mov", "m4v": "mp4"}.get(name, name)
    if name not in CONTAINER_FORMATS:
        raise ValueError(f"unsupported container {container!r}; choose one of {sorted(CONTAINER_FORMATS)}")
    return name


def _container_from_dst(dst: str | Path | BinaryIO) -> str:
    if isinstance(dst, (str, os.PathLike)):
        suffix = Path(dst).suffix
        if not suffix:
            raise ValueError(f"cannot infer the container of {os.fspath(dst)!r}: pass container=")
        return suffix
    return "mp4"


def _codec_settings(codec: str, lossless: bool, size_hw: tuple[int, int]) -> tuple[str, dict[str, str]]:
    spec = _CODECS.get(codec)
    if spec is None:
        raise ValueError(f"no settings for encoder {codec!r}; known: {sorted(_CODECS)}")
    pix_fmt = spec.lossless_pix_fmt if lossless else spec.lossy_pix_fmt
    if pix_fmt is None:
        mode = "losslessly" if lossless else "lossily"
        raise ValueError(f"{codec} is not used {mode} here; pass lossless={not lossless} or another codec")
    if not lossless and spec.even_dims_when_lossy and (size_hw[0] % 2 or size_hw[1] % 2):
        raise ValueError(f"{codec} with {pix_fmt} needs even width and height, got {size_hw[1]}x{size_hw[0]}")
    return pix_fmt, dict(spec.lossless_options if lossless else spec.lossy_options)


def _pts_from_timestamps(timestamps, n: int, container: str) -> np.ndarray | None:
    if timestamps is None:
        return None
    if container == "avi":
        raise ValueError("avi stores a constant frame rate: variable timestamps need mp4, mov, mkv or webm")
    times = np.asarray(timestamps, dtype=np.float64)
    if times.shape != (n,):
        raise ValueError(f"need one timestamp per frame ({n}), got shape {times.shape}")
    if not np.all(np.isfinite(times)) or times[0] < 0:
        raise ValueError("timestamps must be finite and non-negative")
    pts = np.round(times / float(_VFR_TIME_BASE)).astype(np.int64)
    if np.any(np.diff(pts) <= 0):
        raise ValueError("timestamps must be strictly increasing (after rounding to 1/90000 s)")
    return pts


def _import_av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is a core dependency
        from vidfake.preprocessing.errors import BackendUnavailableError

        raise BackendUnavailableError("writing video needs PyAV: pip install av") from e
    return av
