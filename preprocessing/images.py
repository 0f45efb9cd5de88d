"""Still images in, ``(H, W, 3) uint8 [0, 255]`` RGB arrays out.

:func:`load_image` reads JPEG (and phone MPO), PNG, GIF (first frame), WebP, BMP, TIFF, AVIF and
PPM with Pillow, restricted to those formats so a hostile file cannot reach Pillow's other plugins
(EPS, for one, runs Ghostscript). The header's dimensions are checked against
:class:`~vidfake.preprocessing.inputs.MediaLimits` before any pixel is decoded (``Image.open`` is
lazy), so a decompression bomb costs nothing. EXIF orientation is applied, as every viewer does.

:func:`subnet_image` reproduces what a BitMind validator sends at augmentation level 0.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import struct
import warnings
import zlib
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vidfake.preprocessing.errors import DecodeError, MediaTooLargeError, UnsupportedMediaError
from vidfake.preprocessing.inputs import MediaInput, MediaLimits, source_name

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "PIL_FORMATS",
    "VIDEO_EXTENSIONS",
    "load_image",
    "sniff_image_format",
    "subnet_image",
]

#: File extensions read as still images (lower case, with the dot).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".bmp", ".dib", ".tif", ".tiff",
    ".avif", ".ppm", ".pgm", ".pbm", ".pnm",
})

#: File extensions read as video (lower case, with the dot).
VIDEO_EXTENSIONS: frozenset[str] = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts",
    ".3gp", ".flv", ".wmv", ".ogv",
})

#: Pillow format identifiers :func:`load_image` lets Pillow try; no other plugin is consulted.
PIL_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "DIB", "TIFF", "AVIF", "PPM")

# What Pillow raises on corrupt or truncated data, besides OSError (its usual "truncated" error).
_PIL_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)

_EXIF_ORIENTATION = 0x0112
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})  # BITMAPINFOHEADER and its variants


def load_image(
    src: str | os.PathLike | bytes | BinaryIO | Image.Image | np.ndarray,
    *,
    source: str | None = None,
    limits: MediaLimits | None = None,
) -> np.ndarray:
    """Read one still image as RGB.

    Conversions: palette, grey, 1-bit, CMYK and YCbCr go through Pillow's ``convert("RGB")``;
    16-bit grey is scaled to 8 bits (``round(v / 257)``); alpha is dropped (the stored colour under a
    transparent pixel is kept, as ``convert("RGB")`` does). Colour profiles are not applied. For an
    animated GIF or WebP the first frame is returned.

    Args:
        src: path, bytes, binary file object, a ``PIL.Image.Image``, or an array: ``(H, W, 3)``,
            ``(H, W, 4)`` (alpha dropped), ``(H, W, 1)`` or ``(H, W)`` ``uint8``. An ``(H, W, 3)``
            contiguous array is returned as is, not copied.
        source: printable name for errors; derived from ``src`` when omitted.
        limits: resource bounds; ``max_pixels_per_frame`` stops decompression bombs.

    Returns:
        ``(H, W, 3) uint8 [0, 255]`` RGB, upright per the EXIF orientation.

    Raises:
        MediaNotFoundError: the path does not exist.
        UnsupportedMediaError: not an image format listed above, or an array of the wrong dtype/shape.
        MediaTooLargeError: the header claims more pixels than ``limits.max_pixels_per_frame``, or the
            input is larger than ``limits.max_bytes``.
        DecodeError: empty, truncated or corrupt data, or zero-size dimensions.
    """
    limits = limits or MediaLimits()
    if isinstance(src, np.ndarray):
        return _from_array(src, source or "<array>", limits)
    if isinstance(src, Image.Image):
        return _to_rgb(src, source or source_name(src), limits)
    inp = MediaInput.resolve(src, source=source, limits=limits)
    name = inp.source
    try:
        image = Image.open(inp.open(), formats=_registered_formats())
    except UnidentifiedImageError:
        fmt = sniff_image_format(inp.head(64))
        if fmt in _registered_formats():
            raise DecodeError(name, f"corrupt {fmt} header") from None
        if fmt is not None:
            raise UnsupportedMediaError(name, f"{fmt} images are not supported by this Pillow build") \
                from None
        raise UnsupportedMediaError(
            name, "not an image format vidfake reads (JPEG, PNG, GIF, WebP, BMP, TIFF, AVIF, PPM)"
        ) from None
    except Image.DecompressionBombError as e:
        raise MediaTooLargeError(name, f"decompression bomb rejected by Pillow ({e})") from e
    except _PIL_DECODE_ERRORS as e:
        raise DecodeError(name, f"corrupt image header ({e})") from e
    with image:
        return _to_rgb(image, name, limits)


def sniff_image_format(head: bytes) -> str | None:
    """Pillow's name for the image format the first bytes announce (``"JPEG"``, ``"PNG"``, ...), or None.

    HEIF/HEIC is reported as ``"HEIF"`` although Pillow needs a plugin to read it.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3] in b" \t\r\n":
        return "PPM"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "AVIF"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"):
        return "HEIF"
    return None


@functools.cache
def _registered_formats() -> tuple[str, ...]:
    """PIL_FORMATS that this Pillow build reads (plugins register on ``Image.init``)."""
    Image.init()
    return tuple(f for f in PIL_FORMATS if f in Image.OPEN)


def subnet_image(image: np.ndarray, size: int = 256, quality: int = 75) -> np.ndarray:
    """What a BitMind validator sends for an image at augmentation level 0.

    Centre crop to a square, bicubic resize to ``size`` x ``size``, JPEG round trip at ``quality``
    (Pillow/libjpeg, 4:2:0 chroma).

    Args:
        image: ``(H, W, 3) uint8 [0, 255]`` RGB.
        size: output side in pixels.
        quality: JPEG quality, 1-95.

    Returns:
        ``(size, size, 3) uint8 [0, 255]`` RGB.
    """
    if size < 1 or not 1 <= quality <= 100:
        raise ValueError(f"need size >= 1 and quality in [1, 100], got size={size}, quality={quality}")
    rgb = _from_array(image, "<array>", MediaLimits())
    square = ImageOps.fit(Image.fromarray(rgb), (size, size), method=Image.Resampling.BICUBIC,
                          centering=(0.5, 0.5))
    buffer = io.BytesIO()
    square.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer, formats=("JPEG",)) as decoded:
        return np.array(decoded.convert("RGB"), dtype=np.uint8)


def _from_array(array: np.ndarray, name: str, limits: MediaLimits) -> np.ndarray:
    if array.dtype != np.uint8:
        raise UnsupportedMediaError(name, f"expected a uint8 [0, 255] image array, got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise UnsupportedMediaError(name, f"expected an (H, W, 3) image array, got shape {array.shape}")
    limits.check_frame_size(name, array.shape[1], array.shape[0])
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4:
        array = array[:, :, :3]
    return np.ascontiguousarray(array)


def _to_rgb(image: Image.Image, name: str, limits: MediaLimits) -> np.ndarray:
    width, height = image.size
    limits.check_frame_size(name, width, height)  # from the header: nothing decoded yet
    try:
        n_frames = getattr(image, "n_frames", 1)
    except _PIL_DECODE_ERRORS as e:
        # Pillow counts GIF/WebP frames by reading the whole file, and a damaged later frame raises here
        # (a truncated GIF: IndexError). Only the first frame is used: go back to it; the load below
        # reports it if it is damaged too.
        logger.debug("%s: cannot count the frames (%s); using the first", name, e)
        n_frames = 1
        try:
            image.seek(0)
        except _PIL_DECODE_ERRORS as e2:
            raise DecodeError(name, f"corrupt or truncated image data ({e2})") from e2
    if n_frames > 1:
        logger.debug("%s: %d frames; using the first", name, n_frames)
    try:
        with warnings.catch_warnings():
            # Pillow warns about big images and palette transparency; both are handled here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Image.DecompressionBombError as e:
        raise MediaTooLargeError(name, f"decompression bomb rejected by Pillow ({e})") from e
    except _PIL_DECODE_ERRORS as e:
        raise DecodeError(name, f"corrupt or truncated image data ({e})") from e
    image = _upright(image, name)
    try:
        return _convert(image, name)
    except _PIL_DECODE_ERRORS as e:
        raise UnsupportedMediaError(name, f"cannot convert {image.mode} pixels to RGB ({e})") from e


def _upright(image: Image.Image, name: str) -> Image.Image:
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _PIL_DECODE_ERRORS as e:
        # The pixels are fine; only the rotation is unknown. Say so rather than fail the image.
        logger.warning("%s: unreadable EXIF (%s); orientation not applied", name, e)
        return image
    if orientation in (1, None):
        return image
    try:
        return ImageOps.exif_transpose(image)
    except _PIL_DECODE_ERRORS as e:
        logger.warning("%s: EXIF orientation %s not applied (%s)", name, orientation, e)
        return image


def _convert(image: Image.Image, name: str) -> np.ndarray:
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        grey = np.asarray(image).astype(np.float64)
        grey = np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        grey = np.asarray(image, dtype=np.float64)
        scale = 255.0 if np.nanmax(grey) <= 1.0 else 1.0
        grey = np.clip(np.rint(np.nan_to_num(grey) * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # the direct P -> RGB conversion warns about byte transparency
    rgb = np.array(image.convert("RGB"), dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise UnsupportedMediaError(name, f"{mode} image converted to shape {rgb.shape}, not (H, W, 3)")
    return rgb
