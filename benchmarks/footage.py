"""Multi-person and cut clips built at run time from ``../shared/data`` real dev clips (never committed).

Real footage has several people, cuts, and faces that come and go; the bundled samples have one face.
These builders make 10 s 1280x720 H.264 clips for ``benchmarks/detect.py``: two real people side by
side, and a cut from one real person to another.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Two different real people (MEAD's M030 via DreamTalk, and a video-retalking example), both frontal.
PEOPLE = ("videos/real/ali-vilab__dreamtalk__data_style_clip_video_M030_front_happy_level3_001.mp4",
          "videos/real/OpenTalker__video-retalking__examples_face_1.mp4")


def available() -> bool:
    return all((DATA / p).is_file() for p in PEOPLE)


def _frames(rel: str, count: int, size: tuple[int, int]) -> np.ndarray:
    """``count`` frames of a dev clip (looped), letterboxed into ``size`` (w, h)."""
    import cv2

    from vidfake.preprocessing.decoders import open_video

    with open_video(DATA / rel) as v:
        n = min(v.num_frames, count)
        frames = v.get_frames(list(range(n)))
    w, h = size
    out = np.zeros((count, h, w, 3), np.uint8)
    scale = min(w / frames.shape[2], h / frames.shape[1])
    nw, nh = int(frames.shape[2] * scale) // 2 * 2, int(frames.shape[1] * scale) // 2 * 2
    y0, x0 = (h - nh) // 2, (w - nw) // 2
    for k in range(count):
        out[k, y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(frames[k % n], (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def two_people(count: int = 250, size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    """Two real people side by side for ``count`` frames."""
    half = (size[0] // 2, size[1])
    return np.concatenate([_frames(PEOPLE[0], count, half), _frames(PEOPLE[1], count, half)], axis=2)


def cut(count: int = 250, size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    """One real person for the first half, a hard cut, another real person for the second."""
    first = count // 2
    return np.concatenate([_frames(PEOPLE[0], first, size), _frames(PEOPLE[1], count - first, size)])
