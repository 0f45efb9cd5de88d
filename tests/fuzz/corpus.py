"""Small valid media that every fuzz mutation starts from, built the same way on every machine.

Nothing here is copied from the development data: frames are synthetic (a gradient, a moving square and
seeded noise) or scikit-image's bundled astronaut photograph (a real face, so the face and lip branches
run). Each builder is cached: a process builds each seed once.

Layouts: frames are ``(T, H, W, 3) uint8 [0, 255]`` RGB; images ``(H, W, 3) uint8``.
"""

from __future__ import annotations

import base64
import functools
import io
import os
import tempfile
import zlib

import numpy as np
from PIL import Image

#: Video seeds: name -> (container, codec or None for the container's lossless default, lossless, frames).
VIDEO_SEEDS: dict[str, tuple[str, str | None, bool, str]] = {
    "mp4-x264rgb": ("mp4", "libx264rgb", True, "small"),
    "mp4-x264": ("mp4", "libx264", False, "small"),
    "mp4-mjpeg": ("mp4", "mjpeg", False, "small"),
    "mp4-face": ("mp4", "libx264", False, "face"),
    "mov-x264rgb": ("mov", "libx264rgb", True, "small"),
    "webm-vp9": ("webm", "libvpx-vp9", False, "small"),
    "mkv-ffv1": ("mkv", "ffv1", True, "small"),
    "mkv-x264": ("mkv", "libx264", False, "small"),
    "avi-mjpeg": ("avi", "mjpeg", False, "small"),
}
#: Seeds built with extra writer options (rotation, variable frame rate, index first).
SPECIAL_VIDEO_SEEDS = ("mp4-rot90", "mkv-vfr", "mp4-faststart")
#: Containers that hold no video stream at all.
NO_VIDEO_SEEDS = ("mp4-aac-only", "mkv-pcm-only", "mka-opus-only")
IMAGE_SEEDS = (
    "jpeg", "jpeg-progressive", "jpeg-cmyk", "jpeg-exif-rot", "jpeg-face", "png", "png-rgba", "png-gray16",
    "png-palette-trns", "gif-animated", "webp", "bmp", "tiff", "tiff-float-nan", "ppm",
)


def synthetic_frames(n: int = 12, height: int = 48, width: int = 48, seed: int = 0) -> np.ndarray:
    """A gradient with a moving square and mild noise: ``(n, height, width, 3) uint8``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                     (x + y) * 127 // max(width + height - 2, 1)], axis=-1).astype(np.int16)
    out = np.empty((n, height, width, 3), np.uint8)
    side = max(2, min(height, width) // 4)
    for t in range(n):
        frame = base + rng.integers(-8, 9, size=base.shape)
        top, left = (3 * t) % max(1, height - side), (5 * t) % max(1, width - side)
        frame[top : top + side, left : left + side] = (250, 40, 40)
        out[t] = np.clip(frame, 0, 255)
    return out


@functools.cache
def face_image(size: int = 128) -> np.ndarray:
    """scikit-image's astronaut photograph (a real face), resized: ``(size, size, 3) uint8``."""
    from skimage.data import astronaut

    return np.asarray(Image.fromarray(astronaut()).resize((size, size), Image.BILINEAR))


def face_frames(n: int = 28, size: int = 128) -> np.ndarray:
    """``n`` frames of the photograph panning slowly (a face in every frame)."""
    base = face_image(size + 16)
    return np.stack([base[t % 16 : t % 16 + size, (2 * t) % 16 : (2 * t) % 16 + size] for t in range(n)])


def _frames_for(kind: str) -> np.ndarray:
    return face_frames() if kind == "face" else synthetic_frames()


def _encode(frames: np.ndarray, **kwargs) -> bytes:
    from vidfake.preprocessing.writers import write_video

    buffer = io.BytesIO()
    write_video(buffer, frames, 25.0, **kwargs)
    return buffer.getvalue()


@functools.cache
def video(name: str) -> bytes:
    """The bytes of one video seed (see :data:`VIDEO_SEEDS`, :data:`SPECIAL_VIDEO_SEEDS`, :data:`NO_VIDEO_SEEDS`).

    Raises:
        KeyError: unknown seed name.
    """
    if name in VIDEO_SEEDS:
        container, codec, lossless, kind = VIDEO_SEEDS[name]
        return _encode(_frames_for(kind), container=container, codec=codec, lossless=lossless)
    if name == "mp4-rot90":
        return _encode(synthetic_frames(8, 32, 48), container="mp4", rotation=90)
    if name == "mkv-vfr":
        times = np.cumsum(np.r_[0.0, np.linspace(0.02, 0.08, 11)])
        return _encode(synthetic_frames(12), container="mkv", timestamps=times)
    if name == "mp4-faststart":
        from vidfake.preprocessing.writers import write_video

        fd, path = tempfile.mkstemp(suffix=".mp4")
        os.close(fd)
        try:
            write_video(path, synthetic_frames(12), 25.0, container="mp4", faststart=True)
            with open(path, "rb") as f:
                return f.read()
        finally:
            os.unlink(path)
    if name in NO_VIDEO_SEEDS:
        return _audio_only(name)
    raise KeyError(f"unknown video seed {name!r}")


def _audio_only(name: str) -> bytes:
    """A container with one audio stream and no video stream."""
    import av

    fmt, codec, sample_fmt, rate = {
        "mp4-aac-only": ("mp4", "aac", "fltp", 8000),
        "mkv-pcm-only": ("matroska", "pcm_s16le", "s16", 8000),
        "mka-opus-only": ("matroska", "libopus", "s16", 48000),
    }[name]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        samples = stream.codec_context.frame_size or 1024
        t = np.arange(samples * 8) / rate
        wave = 0.3 * np.sin(2 * np.pi * 440 * t)
        data = wave.astype(np.float32) if sample_fmt == "fltp" else (wave * 32767).astype(np.int16)
        for k in range(8):
            chunk = data[None, k * samples : (k + 1) * samples]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=sample_fmt, layout="mono")
            frame.sample_rate = rate
            frame.pts = k * samples
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@functools.cache
def image(name: str) -> bytes:
    """The bytes of one image seed (see :data:`IMAGE_SEEDS`).

    Raises:
        KeyError: unknown seed name.
    """
    rgb = Image.fromarray(synthetic_frames(1, 64, 64, seed=1)[0])
    if name == "jpeg":
        return _save(rgb, "JPEG", quality=75)
    if name == "jpeg-progressive":
        return _save(rgb, "JPEG", quality=80, progressive=True)
    if name == "jpeg-cmyk":
        return _save(rgb.convert("CMYK"), "JPEG", quality=80)
    if name == "jpeg-exif-rot":
        exif = Image.Exif()
        exif[0x0112] = 6
        return _save(rgb, "JPEG", quality=80, exif=exif.tobytes())
    if name == "jpeg-face":
        return _save(Image.fromarray(face_image(128)), "JPEG", quality=75)
    if name == "png":
        return _save(rgb, "PNG")
    if name == "png-rgba":
        rgba = rgb.convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
        return _save(rgba, "PNG")
    if name == "png-gray16":
        grey = (np.asarray(rgb.convert("L"), np.uint16) * 257).astype(np.uint16)
        return _save(Image.fromarray(grey), "PNG")
    if name == "png-palette-trns":
        pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        return _save(pal, "PNG", transparency=0)
    if name == "gif-animated":
        frames = [Image.fromarray(f).convert("P") for f in synthetic_frames(3, 32, 32)]
        buffer = io.BytesIO()
        frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
        return buffer.getvalue()
    if name == "webp":
        return _save(rgb, "WEBP", quality=70)
    if name == "bmp":
        return _save(rgb, "BMP")
    if name == "tiff":
        return _save(rgb, "TIFF")
    if name == "tiff-float-nan":
        grey = np.asarray(rgb.convert("L"), np.float32) / 255.0
        grey[::7, ::5] = np.nan
        grey[3, 3] = np.inf
        return _save(Image.fromarray(grey, mode="F"), "TIFF")
    if name == "ppm":
        return _save(rgb, "PPM")
    raise KeyError(f"unknown image seed {name!r}")


@functools.cache
def wire_frames(n: int = 10, size: int = 64, quality: int = 75) -> tuple[bytes, ...]:
    """JPEG files of ``n`` synthetic frames, as a validator concatenates them in a video payload."""
    return tuple(_save(Image.fromarray(f), "JPEG", quality=quality) for f in synthetic_frames(n, size, size, seed=2))


def b85_payload(blob: bytes, level: int = 6) -> str:
    """``base64.b85encode(zlib.compress(blob))`` as text: the v2 video wire format."""
    return base64.b85encode(zlib.compress(blob, level)).decode("ascii")


def b64_payload(data: bytes) -> str:
    """Standard base64 text: the image wire format."""
    return base64.b64encode(data).decode("ascii")


@functools.cache
def png_bomb(width: int = 9000, height: int = 9000) -> bytes:
    """A real decompression bomb: a grey PNG of ``width`` x ``height`` zeros, a few hundred KB on disk.

    The IDAT stream is compressed in slices, so building it never holds the whole image in memory.
    """
    raw_row = b"\x00" + b"\x00" * width  # filter byte + pixels
    comp = zlib.compressobj(9)
    parts = []
    rows_per_chunk = max(1, (1 << 22) // len(raw_row))
    for start in range(0, height, rows_per_chunk):
        parts.append(comp.compress(raw_row * min(rows_per_chunk, height - start)))
    parts.append(comp.flush())
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b"")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")


@functools.cache
def zlib_bomb(expanded_bytes: int = 300 * 1024**2) -> bytes:
    """zlib data that inflates to ``expanded_bytes`` zeros (about 1000:1), built in 4 MiB slices."""
    comp = zlib.compressobj(9)
    block = b"\x00" * (4 << 20)
    parts = [comp.compress(block) for _ in range(expanded_bytes // len(block))]
    parts.append(comp.compress(b"\x00" * (expanded_bytes % len(block))))
    parts.append(comp.flush())
    return b"".join(parts)
