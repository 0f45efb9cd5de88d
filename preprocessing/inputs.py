"""What an input is and what it may cost: :class:`MediaInput`, :class:`MediaLimits`, :func:`source_name`.

These types are shared by every reader (images, videos, the subnet's wire formats, :func:`open_media`),
so they live apart from the decoder backends in :mod:`vidfake.preprocessing.decoders`: a module that
only needs to name, bound or resolve an input imports this one and no backend code. Nothing here
decodes; :meth:`MediaInput.resolve` checks a path or reads a file object, nothing more.
"""

from __future__ import annotations

import io
import math
import os
import stat
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from vidfake.preprocessing.errors import (
    DecodeError,
    MediaNotFoundError,
    MediaTooLargeError,
    UnsupportedMediaError,
)

__all__ = ["MediaInput", "MediaLimits", "source_name"]


@dataclass(frozen=True)
class MediaLimits:
    """Bounds on what one input may cost, so hostile or absurd files fail fast with a typed error.

    The defaults let a 4-hour 4K video through while stopping decompression bombs and headers that
    claim absurd sizes. Anything above a limit raises :class:`MediaTooLargeError` before the work is
    done; decoding past ``decode_timeout_s`` raises :class:`DecodeTimeoutError`.

    Attributes:
        max_bytes: size of a file, byte string or wire payload (4 GiB).
        max_pixels_per_frame: width x height of one image or video frame (8192 x 8192, 67 Mpx).
        max_frames: frames in one video stream or wire payload (500,000: 4.6 h at 30 fps).
        max_duration_s: duration of one video stream (6 h).
        max_decoded_bytes: bytes of decoded RGB frames returned by one call, e.g. one
            ``get_frames`` or one wire video (4 GiB: 500 frames of 1080p); ask for fewer frames or
            pass ``max_side`` above it.
        max_decompressed_bytes: bytes a zlib wire payload may expand to (1 GiB).
        decode_timeout_s: wall time for one indexing pass or one ``get_frames`` call (120 s).
            Checked between frames, so it bounds slow decoding, not a single stuck native call.
    """

    max_bytes: int = 4 * 1024**3
    max_pixels_per_frame: int = 8192 * 8192
    max_frames: int = 500_000
    max_duration_s: float = 6 * 3600.0
    max_decoded_bytes: int = 4 * 1024**3
    max_decompressed_bytes: int = 1024**3
    decode_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"MediaLimits.{name} must be a positive number, got {value!r}")

    def deadline(self) -> float:
        """A ``time.monotonic()`` value ``decode_timeout_s`` from now."""
        return time.monotonic() + self.decode_timeout_s

    def check_bytes(self, source: str, n_bytes: int) -> None:
        if n_bytes == 0:
            raise DecodeError(source, "empty input (0 bytes)")
        if n_bytes > self.max_bytes:
            raise MediaTooLargeError(source, f"{n_bytes:,} bytes exceeds the limit of {self.max_bytes:,}")

    def check_frame_size(self, source: str, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise DecodeError(source, f"zero-size frame dimensions {width}x{height}")
        if width * height > self.max_pixels_per_frame:
            raise MediaTooLargeError(
                source,
                f"frame of {width}x{height} = {width * height:,} pixels exceeds the limit of "
                f"{self.max_pixels_per_frame:,} (decompression bomb or corrupt header?)",
            )

    def check_num_frames(self, source: str, n: int) -> None:
        if n > self.max_frames:
            raise MediaTooLargeError(source, f"{n:,} frames exceeds the limit of {self.max_frames:,}")

    def check_duration(self, source: str, seconds: float) -> None:
        if seconds > self.max_duration_s:
            raise MediaTooLargeError(
                source, f"duration {seconds:,.0f} s exceeds the limit of {self.max_duration_s:,.0f} s"
            )

    def check_decoded(self, source: str, n_frames: int, height: int, width: int) -> None:
        n_bytes = n_frames * height * width * 3
        if n_bytes > self.max_decoded_bytes:
            raise MediaTooLargeError(
                source,
                f"{n_frames} RGB frames of {width}x{height} need {n_bytes / 2**30:.2f} GiB, above the "
                f"limit of {self.max_decoded_bytes / 2**30:.2f} GiB: request fewer frames or set max_side",
            )


def source_name(src: Any) -> str:
    """A printable name for an input, used in every error and log line about it."""
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(src, np.ndarray):
        return "<array>"
    name = getattr(src, "name", None) or getattr(src, "filename", None)
    if isinstance(name, str) and name:
        return name
    return f"<{type(src).__name__}>"


@dataclass(frozen=True)
class MediaInput:
    """An input resolved to a regular file path or to bytes held in memory.

    File objects are read into memory (bounded by :attr:`MediaLimits.max_bytes`): decord reads them
    whole anyway, and both backends can then reopen the data.

    Attributes:
        source: printable name of the input.
        path: the file, when the input is a path.
        data: the bytes, when the input is bytes or a file object.
        size: length in bytes.
    """

    source: str
    path: str | None
    data: bytes | None
    size: int

    @classmethod
    def resolve(
        cls,
        src: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO,
        *,
        source: str | None = None,
        limits: MediaLimits | None = None,
    ) -> MediaInput:
        """Check an input and wrap it; nothing is decoded.

        Raises:
            MediaNotFoundError: the path does not exist.
            UnsupportedMediaError: the path is a directory or not a regular file.
            DecodeError: the input is empty.
            MediaTooLargeError: the input exceeds ``limits.max_bytes``.
            TypeError: ``src`` is none of the accepted types.
        """
        if isinstance(src, MediaInput):
            return src
        limits = limits or MediaLimits()
        name = source or source_name(src)
        if isinstance(src, (str, os.PathLike)):
            path = os.fspath(src)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise MediaNotFoundError(name, "no such file") from None
            except OSError as e:
                raise UnsupportedMediaError(name, f"cannot access the file ({e.strerror or e})") from e
            except ValueError as e:  # e.g. an embedded NUL byte
                raise UnsupportedMediaError(name, f"invalid path ({e})") from e
            if stat.S_ISDIR(st.st_mode):
                raise UnsupportedMediaError(name, "is a directory, not a media file")
            if not stat.S_ISREG(st.st_mode):
                raise UnsupportedMediaError(name, "is not a regular file")
            limits.check_bytes(name, st.st_size)
            return cls(name, path, None, st.st_size)
        if isinstance(src, (bytes, bytearray, memoryview)):
            data = bytes(src)
        elif hasattr(src, "read"):
            try:
                data = src.read(limits.max_bytes + 1)
            except OSError as e:
                raise DecodeError(name, f"reading the stream failed ({e})") from e
            if isinstance(data, str):
                raise TypeError(f"{name}: file object is in text mode; open it with 'rb'")
            data = bytes(data or b"")
        else:
            raise TypeError(f"cannot read media from a {type(src).__name__}")
        limits.check_bytes(name, len(data))
        return cls(name, None, data, len(data))

    def head(self, n: int = 64) -> bytes:
        """The first ``n`` bytes (for format sniffing)."""
        if self.data is not None:
            return self.data[:n]
        with open(self.path, "rb") as f:  # type: ignore[arg-type]
            return f.read(n)

    def open(self) -> str | io.BytesIO:
        """Something ``av.open``, ``decord.VideoReader`` and ``PIL.Image.open`` accept."""
        return self.path if self.path is not None else io.BytesIO(self.data)  # type: ignore[arg-type]
