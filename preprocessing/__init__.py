"""Media in, tensors out: decoding, sampling, faces, mouth regions and the TALL layout.

This is the lowest layer of vidfake: it never imports ``vidfake.temporal_models`` or ``vidfake``'s
detector. Heavy backends (decord, PyAV, mediapipe) are imported when used, not here.
"""

from vidfake.preprocessing.errors import (
    BackendUnavailableError,
    DecodeError,
    DecodeTimeoutError,
    MediaError,
    MediaTooLargeError,
    UnsupportedMediaError,
    VidfakeError,
    WireFormatError,
)

__all__ = [
    "BackendUnavailableError",
    "DecodeError",
    "DecodeTimeoutError",
    "MediaError",
    "MediaTooLargeError",
    "UnsupportedMediaError",
    "VidfakeError",
    "WireFormatError",
]
