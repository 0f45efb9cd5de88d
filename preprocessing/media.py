"""One entry point for every input: :func:`open_media` decides image or video and opens it.

The kind comes from the first bytes (magic numbers), not from the file name: a ``.jpg`` that is
really an mp4 is read as video. The extension is consulted only when the bytes match no known
signature (raw streams without a container header). Animated GIF and WebP count as images: their
first frame is used, as the subnet's validators do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from vidfake.preprocessing.decoders import ArrayDecoder, Backend, VideoDecoder, open_video
from vidfake.preprocessing.errors import UnsupportedMediaError
from vidfake.preprocessing.images import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, load_image, sniff_image_format
from vidfake.preprocessing.inputs import MediaInput, MediaLimits, source_name

logger = logging.getLogger(__name__)

__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "Media", "MediaKind", "open_media", "sniff_kind"]


class MediaKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"


# Top-level QuickTime atoms that can open a .mov written without an ``ftyp`` atom.
_QUICKTIME_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})


def sniff_kind(head: bytes, name: str | None = None) -> MediaKind:
    """Image or video, from the first bytes of a file (pass 512; MPEG-TS needs 189).

    Recognised: JPEG, PNG, GIF, WebP, BMP, TIFF, PNM, AVIF/HEIF (images); ISO-BMFF/QuickTime
    (mp4, mov, m4v, 3gp), EBML (mkv, webm), RIFF AVI, MPEG-TS, MPEG-PS, FLV, Ogg, ASF/WMV (video).
    Animated GIF/WebP are images (first frame).

    Args:
        head: the first bytes of the input.
        name: file name, consulted only when the bytes match no signature.

    Raises:
        UnsupportedMediaError: neither the bytes nor the extension identify a format.
    """
    kind = _sniff_magic(head)
    if kind is not None:
        return kind
    source = name or "<bytes>"
    if not head:
        raise UnsupportedMediaError(source, "empty input")
    suffix = Path(name).suffix.lower() if name else ""
    if suffix in VIDEO_EXTENSIONS:
        logger.debug("%s: no known signature; treating as video from its extension", source)
        return MediaKind.VIDEO
    if suffix in IMAGE_EXTENSIONS:
        logger.debug("%s: no known signature; treating as image from its extension", source)
        return MediaKind.IMAGE
    raise UnsupportedMediaError(
        source, f"not a recognised image or video format (starts with {head[:12].hex(' ')})"
    )


def _sniff_magic(h: bytes) -> MediaKind | None:
    image, video = MediaKind.IMAGE, MediaKind.VIDEO
    if sniff_image_format(h) is not None:
        return image
    if h[4:8] == b"ftyp":  # ISO-BMFF whose major brand is not a still-image one: video
        return video
    if h[4:8] in _QUICKTIME_ATOMS:
        return video
    if h.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska, WebM
        return video
    if h[:4] == b"RIFF" and h[8:12] in (b"AVI ", b"AVIX"):
        return video
    if h.startswith(b"\x00\x00\x01\xba") or h.startswith(b"\x00\x00\x01\xb3"):  # MPEG-PS / -ES
        return video
    if len(h) > 188 and h[0] == 0x47 and h[188] == 0x47:  # MPEG-TS: a sync byte every 188 bytes
        return video
    if h.startswith(b"FLV\x01") or h.startswith(b"OggS"):
        return video
    if h.startswith(bytes.fromhex("3026b2758e66cf11")):  # ASF (wmv)
        return video
    return None


@dataclass
class Media:
    """An opened input: exactly one of ``image`` and ``video`` is set.

    Attributes:
        kind: image or video.
        source: printable name of the input.
        image: ``(H, W, 3) uint8 [0, 255]`` RGB for images.
        video: the decoder for videos (close it, or use the ``Media`` as a context manager).
    """

    kind: MediaKind
    source: str
    image: np.ndarray | None = None
    video: VideoDecoder | None = None

    def close(self) -> None:
        if self.video is not None:
            self.video.close()

    def __enter__(self) -> Media:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_media(
    src: str | Path | bytes | BinaryIO | Image.Image | np.ndarray | VideoDecoder,
    *,
    source: str | None = None,
    kind: MediaKind | str | None = None,
    backend: Backend | str = "auto",
    max_side: int | None = None,
    limits: MediaLimits | None = None,
    fps: float | None = None,
) -> Media:
    """Open any supported input as an image or a video.

    Args:
        src: path, bytes, binary file object, ``PIL.Image.Image``, an array (``(H, W, 3) uint8`` is
            an image, ``(T, H, W, 3) uint8`` a video), or a :class:`VideoDecoder` (passed through).
        source: printable name for errors; derived from ``src`` when omitted.
        kind: force image or video instead of sniffing the bytes.
        backend: video backend, see :func:`~vidfake.preprocessing.decoders.open_video`.
        max_side: video only: decode at reduced size so the longer side is at most this.
        limits: resource bounds.
        fps: frame rate of a ``(T, H, W, 3)`` array (arrays carry none; ``None``: unknown, 25 is used
            for times and ``video.info.fps_known`` is False).

    Raises:
        MediaNotFoundError: the path does not exist.
        UnsupportedMediaError: a directory, or bytes of no recognised format.
        DecodeError: empty, truncated or corrupt input.
        MediaTooLargeError: the input exceeds ``limits``.
    """
    limits = limits or MediaLimits()
    forced = MediaKind(kind) if kind is not None else None
    if isinstance(src, VideoDecoder):
        return Media(MediaKind.VIDEO, source or src.source, video=src)
    if isinstance(src, Image.Image):
        name = source or source_name(src)
        return Media(MediaKind.IMAGE, name, image=load_image(src, source=name, limits=limits))
    if isinstance(src, np.ndarray):
        name = source or "<array>"
        if src.ndim == 4:
            video = ArrayDecoder(src, fps, name, max_side=max_side, limits=limits)
            return Media(MediaKind.VIDEO, name, video=video)
        return Media(MediaKind.IMAGE, name, image=load_image(src, source=name, limits=limits))
    inp = MediaInput.resolve(src, source=source, limits=limits)
    media_kind = forced or sniff_kind(inp.head(512), inp.path or inp.source)
    if media_kind == MediaKind.IMAGE:
        return Media(MediaKind.IMAGE, inp.source, image=load_image(inp, limits=limits))
    video = open_video(inp, backend=backend, max_side=max_side, limits=limits)
    return Media(MediaKind.VIDEO, inp.source, video=video)
