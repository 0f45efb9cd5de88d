"""Media in, tensors out: decoding, sampling, faces, mouth regions and the TALL layout.

This is the lowest layer of vidfake: it never imports ``vidfake.temporal_models`` or ``vidfake``'s
detector. Heavy backends (decord, PyAV, mediapipe) are imported when used, not here; the media
entry points below are imported on first access (PEP 562), so ``import vidfake.preprocessing``
stays cheap.
"""

from importlib import import_module

from vidfake.preprocessing.errors import (
    BackendUnavailableError,
    DecodeError,
    DecodeTimeoutError,
    FrameIndexError,
    MediaError,
    MediaNotFoundError,
    MediaTooLargeError,
    SourcedError,
    UnsupportedMediaError,
    VidfakeError,
    WireFormatError,
)

# public name -> submodule that defines it, imported on first access
_LAZY = {
    "ArrayDecoder": "decoders",
    "Backend": "decoders",
    "MediaLimits": "inputs",
    "VideoDecoder": "decoders",
    "VideoInfo": "decoders",
    "open_video": "decoders",
    "load_image": "images",
    "subnet_image": "images",
    "IMAGE_EXTENSIONS": "images",
    "VIDEO_EXTENSIONS": "images",
    "Media": "media",
    "MediaKind": "media",
    "open_media": "media",
    "sniff_kind": "media",
    "WireVideo": "wire",
    "decode_image_b64": "wire",
    "decode_video_b85": "wire",
    "decode_video_mp4": "wire",
    "encode_image_b64": "wire",
    "encode_video_b85": "wire",
    "encode_video_mp4": "wire",
    "split_jpeg_stream": "wire",
    "write_video": "writers",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
    *_LAZY,
]
