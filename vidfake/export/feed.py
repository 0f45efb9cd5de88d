"""Media as gasbench feeds it to a model package (its clean, unaugmented pass).

Reproduced from BitMind-AI/gasbench (retrieved 2026-11):

- images: ``PIL.Image.open(...).convert("RGB")`` (no EXIF rotation) - ``processing/media.py``
  ``process_image_sample``;
- videos: PyAV, the best video stream, frames in decode order; with no ``frame_rate`` the first
  ``num_frames`` consecutive frames, otherwise every ``round(fps / frame_rate)``-th frame (fps from the
  stream's average rate, 30 when unknown); display rotation by quarter turns applied; a clip shorter than
  ``num_frames`` repeats its last frame - ``processing/video_decode.py`` ``decode_video``;
- both: ``ResizeShortestEdge``: the largest centred crop with the target's aspect ratio, then
  ``cv2.resize(..., INTER_LINEAR)`` to exactly ``[H, W]`` - ``processing/transforms/spatial.py``;
- the model receives ``uint8`` ``[B, 3, H, W]`` / ``[B, T, 3, H, W]``.

The benchmark's scored runs add random crops, flips, distortions and JPEG q75 on top (its augmentation
pass); this module is the base pass that the issue's numbers are computed on.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vidfake.preprocessing.errors import DecodeError, MediaError

__all__ = ["gasbench_image", "gasbench_resize", "gasbench_video"]


def gasbench_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre crop to the target aspect ratio, then bilinear resize to exactly ``size``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        size: ``(H, W)`` target.

    Returns:
        ``(size[0], size[1], 3)`` uint8.
    """
    import cv2

    th, tw = int(size[0]), int(size[1])
    h, w = image.shape[:2]
    scale = min(h / th, w / tw)
    ch, cw = min(int(round(scale * th)), h), min(int(round(scale * tw)), w)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = image[top : top + ch, left : left + cw]
    return cv2.resize(crop, (tw, th), interpolation=cv2.INTER_LINEAR)


def gasbench_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """An image file as gasbench feeds it: ``(3, H, W)`` uint8 RGB.

    Raises:
        DecodeError: the file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DecodeError(str(path), f"cannot read image: {e}") from e
    if min(rgb.shape[:2]) < 1:
        raise DecodeError(str(path), "image has no pixels")
    return np.ascontiguousarray(gasbench_resize(rgb, size).transpose(2, 0, 1))


def gasbench_video(path: str | Path, size: tuple[int, int], num_frames: int = 16,
                   frame_rate: float | None = None) -> np.ndarray:
    """A video file as gasbench feeds it: ``(T, 3, H, W)`` uint8 RGB, ``T = num_frames``.

    Args:
        path: the video file.
        size: ``(H, W)`` after resizing.
        num_frames: frames the model receives.
        frame_rate: sample at about this rate (every ``round(fps / frame_rate)``-th frame); ``None``
            takes consecutive frames from the start.

    Raises:
        ValueError: ``num_frames`` or ``frame_rate`` out of range.
        DecodeError: no video stream, or no frame decodes.
    """
    import av
    from av.video.reformatter import Colorspace

    if type(num_frames) is not int or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if frame_rate is not None and not (math.isfinite(frame_rate) and frame_rate > 0):
        raise ValueError(f"frame_rate must be positive and finite, got {frame_rate!r}")
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.best("video")
            if stream is None:
                raise DecodeError(str(path), "no video stream")
            stream.codec_context.thread_count = 1
            fps = float(stream.average_rate or 30)
            if not math.isfinite(fps) or fps <= 0:
                fps = 30.0
            step = 1 if frame_rate is None else max(1, round(fps / frame_rate))
            for index, frame in enumerate(container.decode(stream)):
                if index % step:
                    continue
                pixels = frame.to_ndarray(format="rgb24", src_colorspace=frame.colorspace,
                                          dst_colorspace=Colorspace.DEFAULT, src_color_range=frame.color_range)
                rotation = frame.rotation % 360
                if rotation in (90, 180, 270):
                    pixels = np.rot90(pixels, rotation // 90)
                frames.append(gasbench_resize(np.ascontiguousarray(pixels), size))
                if len(frames) == num_frames:
                    break
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise DecodeError(str(path), f"cannot decode video: {e}") from e
    if not frames:
        raise DecodeError(str(path), "no frames decoded")
    frames.extend([frames[-1]] * (num_frames - len(frames)))
    return np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2))
