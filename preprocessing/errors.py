"""Typed errors for everything that reads media.

Every error names the input (``source``) and says what is wrong with it, so a CLI batch, the miner
or a training loop can report the failure and go on. Nothing in vidfake replaces a failed input with
another sample or a default answer.
"""

from __future__ import annotations


class VidfakeError(Exception):
    """Base class of vidfake's own errors."""


class SourcedError(VidfakeError, ValueError):
    """Something given to vidfake is unusable: the message is ``"<source>: <problem>"``.

    Args:
        source: a printable name of what was given (a file, ``"<bytes>"``, a config, a package).
        problem: what is wrong, in words a user understands.
    """

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class MediaError(SourcedError):
    """An input cannot be turned into frames (``source``: file path, ``"<bytes>"``, ``"<wire:video>"``)."""


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


class BackendUnavailableError(VidfakeError, ImportError):
    """An optional backend (decord, PyAV, mediapipe) is not installed; the message says what to install."""
