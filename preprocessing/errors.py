"""Typed errors for everything that reads media.

Every error names the input (``source``) and says what is wrong with it, so a CLI batch, the miner
or a training loop can report the failure and go on. Nothing in vidfake replaces a failed input with
another sample or a default answer.
"""

from __future__ import annotations

# The generic bases live in vidfake.errors (importable from every layer); re-exported here, where
# they have always been imported from.
from vidfake.errors import BackendUnavailableError, SourcedError, VidfakeError

__all__ = [
    "BackendUnavailableError",
    "DecodeError",
    "DecodeTimeoutError",
    "FrameIndexError",
    "MediaError",
    "MediaNotFoundError",
    "MediaTooLargeError",
    "SourcedError",
    "UnsupportedMediaError",
    "VidfakeError",
    "WireFormatError",
]


class MediaError(SourcedError):
    """An input cannot be turned into frames (``source``: file path, ``"<bytes>"``, ``"<wire:video>"``)."""


class MediaNotFoundError(MediaError, FileNotFoundError):
    """The input path does not exist."""


class FrameIndexError(MediaError, IndexError):
    """A requested frame index is negative or not below the stream's frame count."""


class UnsupportedMediaError(MediaError):
    """The input is not an image or video format vidfake reads."""


class DecodeError(MediaError):
    """The container or bitstream is corrupt, truncated or empty."""


class MediaTooLargeError(MediaError):
    """Dimensions, frame counts or payload sizes exceed the configured limits (e.g. a decompression bomb)."""


class DecodeTimeoutError(DecodeError):
    """Decoding did not finish within its time box."""


class WireFormatError(MediaError):
    """A subnet wire payload (base64 image, base85+zlib JPEG frames) is malformed."""

