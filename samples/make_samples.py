"""Render vidfake's sample media from scikit-image's astronaut photo (public domain, NASA).

    python samples/make_samples.py            # writes into samples/
    python samples/make_samples.py --out DIR

Everything is synthesised here, deterministically (fixed seeds, fixed geometry); nothing comes from
the development data. Needs scikit-image (``pip install -e .[test]``) for the photo.

* ``real_face.mp4``: the astronaut "talking": 3.2 s at 25 fps, 320x320, a slow head sway (rotation,
  shift and zoom about the face), the jaw opening and closing (a smooth warp of the lower face that
  shades the opened gap), mild sensor noise, H.264 yuv420p at CRF 23 (ordinary web quality).
* ``fake_face.mp4``: the same frames with a face-swap-like manipulation in every frame: the inner face
  is colour-shifted, resampled (down x0.5 then up, losing the sensor noise), nudged by a pixel and
  pasted back through a soft elliptical mask whose size and feather flicker from frame to frame -
  the blending boundary, colour mismatch and resampling traces face-forgery detectors look for.
* ``real_photo.jpg``: the photo itself, JPEG quality 90.
* ``generated.png``: a synthetic "generated" image: smooth procedural colour fields rendered at
  128x128 and brought to 256x256 by zero-insertion upsampling with an uneven 3x3 kernel, which leaves
  the periodic checkerboard of transposed-convolution generators in the spectrum.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from vidfake.preprocessing.writers import write_video

logger = logging.getLogger("make_samples")

FPS = 25
NUM_FRAMES = 80  # 3.2 s
SIZE = 320
# Geometry of the astronaut photo (512x512), measured once with vidfake's FaceTracker and fixed here
# so the samples do not depend on landmark jitter: face box, mouth line and centre, in photo pixels.
FACE_BOX = (179.0, 70.0, 271.0, 177.0)
FACE_CENTRE = (225.0, 124.0)
MOUTH_CENTRE = (223.0, 146.0)
VIEW = (225.0, 175.0, 330.0)  # centre x, centre y and side of the photo region shown


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _mouth_warp(photo: np.ndarray, opening: float) -> np.ndarray:
    """Part the lips by ``opening`` pixels: pull the lower lip and jaw down, shade the opened gap."""
    height, width = photo.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    mx, my = MOUTH_CENTRE
    # Horizontally: full at the mouth centre, zero at the corners (22 px away), so the gap is lens-shaped.
    across = np.sqrt(np.clip(1.0 - ((xs - mx) / 22.0) ** 2, 0.0, 1.0))
    # Vertically: 0 above the lip line, 1 three pixels below it, fading out down to the chin.
    below = np.clip((ys - my + 1.0) / 3.0, 0.0, 1.0)
    fade = np.clip((my + 45.0 - ys) / 30.0, 0.0, 1.0)
    shift = np.float32(opening) * across * below * fade
    warped = cv2.remap(
        photo, xs, (ys - shift).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    # Rows the warp stretches are the mouth interior now on show: darken them.
    stretch = np.clip(np.gradient(shift, axis=0), 0.0, 1.0)
    return np.clip(warped * (1.0 - 0.55 * stretch)[..., None], 0, 255).astype(np.uint8)


def _view_matrix(k: int) -> np.ndarray:
    """Photo -> output frame affine for frame ``k``: the view crop plus a slow head sway about the face."""
    t = k / FPS
    angle = 2.5 * np.sin(2 * np.pi * 0.35 * t)  # degrees
    zoom = 1.0 + 0.03 * np.sin(2 * np.pi * 0.22 * t + 1.0)
    shift = np.array([5.0 * np.sin(2 * np.pi * 0.3 * t), 3.0 * np.sin(2 * np.pi * 0.41 * t + 0.5)])
    sway = cv2.getRotationMatrix2D(FACE_CENTRE, angle, zoom)
    sway[:, 2] += shift
    cx, cy, side = VIEW
    s = SIZE / side
    crop = np.array([[s, 0, -(cx - side / 2) * s], [0, s, -(cy - side / 2) * s]])
    return np.vstack([crop, [0, 0, 1]]) @ np.vstack([sway, [0, 0, 1]])


def real_frames(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The talking-astronaut clip ``(T, 320, 320, 3) uint8`` and each frame's photo -> frame map.

    The maps are ``(T, 3, 3)`` affine matrices from photo pixels to frame pixels.

    Sensor noise is added last, so a pasted face (``fake_frames``) that is resampled loses it.
    """
    rng = np.random.default_rng(seed)
    photo = astronaut()
    frames = np.empty((NUM_FRAMES, SIZE, SIZE, 3), np.uint8)
    maps = np.empty((NUM_FRAMES, 3, 3))
    for k in range(NUM_FRAMES):
        # Syllable-like jaw motion: a 3.5 Hz open/close with a slower envelope, never negative.
        t = k / FPS
        opening = 6.0 * max(0.0, np.sin(2 * np.pi * 3.5 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
        matrix = _view_matrix(k)
        frame = cv2.warpAffine(
            _mouth_warp(photo, opening),
            matrix[:2],
            (SIZE, SIZE),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        noise = rng.normal(0.0, 2.0, frame.shape)
        frames[k] = np.clip(frame + noise, 0, 255).astype(np.uint8)
        maps[k] = matrix
    return frames, maps


def fake_frames(real: np.ndarray, maps: np.ndarray, seed: int = 1) -> np.ndarray:
    """Paste a colour-shifted, resampled copy of the inner face back through a flickering soft mask."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(real)
    x0, y0, x1, y1 = FACE_BOX
    centre_photo = np.array([(x0 + x1) / 2, (y0 + y1) / 2 + 8.0, 1.0])
    axes_photo = np.array([(x1 - x0) * 0.42, (y1 - y0) * 0.45])
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    for k, frame in enumerate(real):
        matrix = maps[k]
        cx, cy = (matrix @ centre_photo)[:2]
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))
        jitter = 1.0 + rng.uniform(-0.04, 0.04)
        ax, ay = axes_photo * scale * jitter
        # The swapped face: colour shift, resampling at half resolution, a one-pixel misalignment.
        face = frame.astype(np.float32) * np.array([1.07, 0.98, 0.92]) + np.array([6.0, 0.0, -4.0])
        face = np.clip(face, 0, 255).astype(np.uint8)
        small = cv2.resize(face, (SIZE // 2, SIZE // 2), interpolation=cv2.INTER_AREA)
        face = cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        face = cv2.warpAffine(
            face, np.float32([[1.01, 0, 1.0 - 0.01 * cx], [0, 1.01, 0.5 - 0.01 * cy]]), (SIZE, SIZE)
        )
        inside = (((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2) <= 1.0
        feather = float(rng.uniform(4.0, 9.0))
        mask = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), feather)[..., None]
        out[k] = np.clip(face * mask + frame * (1.0 - mask), 0, 255).astype(np.uint8)
    return out


def generated_image(seed: int = 2) -> np.ndarray:
    """Smooth procedural colours at 128x128, upsampled x2 the way a transposed convolution does."""
    rng = np.random.default_rng(seed)
    low = 128
    ys, xs = np.mgrid[0:low, 0:low].astype(np.float32) / low
    image = np.zeros((low, low, 3), np.float32)
    for _ in range(9):  # soft coloured blobs over a dark ground
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.06, 0.22)
        colour = rng.uniform(0, 1, 3) ** 2 * 255
        image += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r * r))[..., None] * colour
    image += 25 * (1 + np.sin(14 * xs + 6 * ys))[..., None] * np.array([0.2, 0.1, 0.5])
    image = np.clip(image, 0, None)
    image = image / image.max() * 240 + 8
    # Zero-insertion x2 and a 3x3 kernel, as a stride-2 transposed convolution: each of the four pixel
    # phases sums a different subset of taps. Normalised per phase, then left 3% uneven, the phases
    # form a faint period-2 checkerboard (peaks at the Nyquist frequencies of the spectrum).
    up = np.zeros((2 * low, 2 * low, 3), np.float32)
    up[::2, ::2] = image
    ones = np.zeros((2 * low, 2 * low), np.float32)
    ones[::2, ::2] = 1.0
    kernel = np.array([[0.5, 1.0, 0.5], [1.0, 1.0, 1.0], [0.5, 1.0, 0.5]], np.float32)
    up = cv2.filter2D(up, -1, kernel, borderType=cv2.BORDER_REFLECT)
    up /= cv2.filter2D(ones, -1, kernel, borderType=cv2.BORDER_REFLECT)[..., None]
    gain = np.ones((2 * low, 2 * low), np.float32)
    gain[::2, 1::2], gain[1::2, ::2], gain[1::2, 1::2] = 1.03, 0.98, 1.02
    return np.clip(up * gain[..., None], 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    h264 = {"crf": "23", "preset": "medium", "threads": "1"}  # one thread: byte-identical reruns

    real, maps = real_frames()
    write_video(out / "real_face.mp4", real, FPS, lossless=False, options=h264)
    write_video(out / "fake_face.mp4", fake_frames(real, maps), FPS, lossless=False, options=h264)
    cv2.imwrite(
        str(out / "real_photo.jpg"),
        cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, 90],
    )
    cv2.imwrite(str(out / "generated.png"), cv2.cvtColor(generated_image(), cv2.COLOR_RGB2BGR))
    for name in ("real_face.mp4", "fake_face.mp4", "real_photo.jpg", "generated.png"):
        logger.info("%-15s %7.1f KB", name, (out / name).stat().st_size / 1024)


if __name__ == "__main__":
    main()
