"""Fuzz cases: recipes that build one hostile input each, and the deterministic case list.

A case is ``(entry, index, seed)`` plus the recipe drawn for it; everything else (the bytes, the file
name, the expectation) is built from ``numpy.random.default_rng([seed, entry, index])``, so case
``detect/42`` of seed 0 is the same input in every run size and on every machine with the pinned PyAV and
Pillow (their encoders make the seed media): a failure reported by the by-hand run is reproduced with
``python benchmarks/fuzz.py --seed 0 --only detect/42``.

Entries:

- ``detect``: :meth:`vidfake.Detector.detect` on bytes, a path, a file object or an array.
- ``cli``: the ``vidfake`` command's ``main`` on one path (see :mod:`fuzz.runner`).
- ``miner``: the axon handlers (``MinerServer.forward_image`` / ``forward_video``) called with a synapse.
- ``axon``: a real ``bt.Dendrite`` sending the synapse to a real ``bt.Axon`` on 127.0.0.1.

Expectations: ``"error"`` (must end in a typed :class:`~vidfake.preprocessing.errors.MediaError`, or a
400 refusal from the miner), ``"result"`` (a valid answer: the input is valid, however odd), or
``"either"`` (damaged input that may still hold decodable frames).
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fuzz import corpus, mutate

ENTRIES = ("detect", "cli", "miner", "axon")
#: ``selftest`` cases check the supervisor itself (hang, crash, memory); :func:`generate` never draws them.
_ENTRY_KEY = {name: i for i, name in enumerate((*ENTRIES, "selftest"))}
EXPECTATIONS = ("error", "result", "either")


@dataclass(frozen=True)
class Case:
    """One fuzz case: which entry point, which recipe, and where its randomness comes from."""

    entry: str
    index: int
    seed: int
    recipe: str

    @property
    def id(self) -> str:
        return f"{self.entry}/{self.index}"

    def rng(self) -> np.random.Generator:
        """The case's own generator: the recipe draw is its first use, the build continues from there."""
        rng = np.random.default_rng([self.seed, _ENTRY_KEY[self.entry], self.index])
        rng.random()  # the recipe draw (see generate)
        return rng


@dataclass
class MediaSpec:
    """A media input for ``detect`` or the CLI.

    Attributes:
        expect: ``"error"``, ``"result"`` or ``"either"``.
        note: what was done to the input, for the report.
        data: file content (bytes), or an ``ndarray`` (``detect`` only), or ``None`` for special paths.
        name: file name as bytes (may be non-UTF-8); ``None``: the default for the recipe.
        special: a path that is not a plain file: ``dir``, ``fifo``, ``devzero``, ``devnull``,
            ``symlink-loop``, ``dangling``, ``missing``, ``name-too-long``, ``path-too-long``,
            ``sparse-5g`` (over the 4 GiB size limit), ``sparse-zeros`` (64 MiB of zeros).
        deliver: ``detect`` only: ``bytes``, ``path``, ``fileobj``, ``failing-stream`` or ``array``.
        kind: forced ``"image"``/``"video"``, or ``None`` to sniff.
    """

    expect: str
    note: str
    data: bytes | np.ndarray | None = None
    name: bytes | None = None
    special: str | None = None
    deliver: str = "bytes"
    kind: str | None = None


@dataclass
class WireSpec:
    """A synapse payload for the miner: ``modality`` is ``"image"`` or ``"video"``."""

    expect: str
    note: str
    modality: str
    payload: str
    frames: int = 0


@dataclass
class SelfTestSpec:
    """What a ``selftest`` case does in the worker: ``ok``, ``hang``, ``crash`` or ``memory``."""

    expect: str
    note: str
    action: str


@dataclass(frozen=True)
class Recipe:
    name: str
    build: Callable[[np.random.Generator], MediaSpec | WireSpec | SelfTestSpec]
    weights: dict[str, float] = field(default_factory=dict)  # entry -> weight


RECIPES: dict[str, Recipe] = {}


def recipe(name: str, **weights: float):
    def register(fn):
        RECIPES[name] = Recipe(name, fn, weights)
        return fn

    return register


def _pick(rng: np.random.Generator, items):
    items = list(items)
    return items[int(rng.integers(0, len(items)))]


_ALL_VIDEO_SEEDS = (*corpus.VIDEO_SEEDS, *corpus.SPECIAL_VIDEO_SEEDS)
_BMFF_SEEDS = ("mp4-x264rgb", "mp4-x264", "mp4-mjpeg", "mp4-face", "mov-x264rgb", "mp4-rot90", "mp4-faststart")
_EBML_SEEDS = ("webm-vp9", "mkv-ffv1", "mkv-x264", "mkv-vfr")
_EXT = {"mp4": b".mp4", "mov": b".mov", "webm": b".webm", "mkv": b".mkv", "avi": b".avi", "mka": b".mka"}
_IMAGE_EXT = {"jpeg": b".jpg", "png": b".png", "gif": b".gif", "webp": b".webp", "bmp": b".bmp", "tiff": b".tif",
              "ppm": b".ppm"}


def _video_name(seed: str) -> bytes:
    return b"clip" + _EXT[seed.split("-")[0]]


def _image_name(seed: str) -> bytes:
    return b"image" + _IMAGE_EXT[seed.split("-")[0]]


def _media_delivery(rng: np.random.Generator) -> str:
    return _pick(rng, ("bytes", "bytes", "path", "path", "fileobj"))


# ---------------------------------------------------------------------------------------- videos


@recipe("video/valid", detect=2, cli=3)
def _video_valid(rng):
    seed = _pick(rng, _ALL_VIDEO_SEEDS)
    return MediaSpec("result", f"{seed} unmodified", corpus.video(seed), _video_name(seed), deliver=_media_delivery(rng))


@recipe("video/mangle", detect=14, cli=6)
def _video_mangle(rng):
    seed = _pick(rng, _ALL_VIDEO_SEEDS)
    data, note = mutate.mangle(corpus.video(seed), rng)
    return MediaSpec("either", f"{seed}: {note}", data, _video_name(seed), deliver=_media_delivery(rng))


@recipe("video/truncate", detect=6, cli=3)
def _video_truncate(rng):
    seed = _pick(rng, _ALL_VIDEO_SEEDS)
    data, note = mutate.truncate(corpus.video(seed), rng)
    expect = "error" if len(data) == 0 else "either"
    return MediaSpec(expect, f"{seed}: {note}", data, _video_name(seed), deliver=_media_delivery(rng))


@recipe("video/mp4-header", detect=8, cli=3)
def _video_mp4_header(rng):
    seed = _pick(rng, _BMFF_SEEDS)
    data, note = mutate.patch_bmff(corpus.video(seed), rng)
    return MediaSpec("either", f"{seed}: {note}", data, _video_name(seed), deliver=_media_delivery(rng))


@recipe("video/mp4-strip", detect=3, cli=1)
def _video_mp4_strip(rng):
    seed = _pick(rng, _BMFF_SEEDS)
    data, note = mutate.strip_bmff(corpus.video(seed), rng)
    return MediaSpec("either", f"{seed}: {note}", data, _video_name(seed), deliver=_media_delivery(rng))


@recipe("video/mkv-header", detect=6, cli=2)
def _video_mkv_header(rng):
    seed = _pick(rng, _EBML_SEEDS)
    data, note = mutate.patch_ebml(corpus.video(seed), rng)
    return MediaSpec("either", f"{seed}: {note}", data, _video_name(seed), deliver=_media_delivery(rng))


@recipe("video/no-video-stream", detect=3, cli=2)
def _video_no_stream(rng):
    seed = _pick(rng, corpus.NO_VIDEO_SEEDS)
    return MediaSpec("error", f"{seed}: audio only", corpus.video(seed), _video_name(seed),
                     deliver=_media_delivery(rng))


@recipe("video/kind-mismatch", detect=2)
def _video_kind_mismatch(rng):
    if rng.random() < 0.5:
        seed = _pick(rng, _ALL_VIDEO_SEEDS)
        return MediaSpec("error", f"{seed} forced to kind=image", corpus.video(seed), deliver="bytes", kind="image")
    seed = _pick(rng, ("jpeg", "png", "gif-animated", "webp", "bmp"))
    # FFmpeg reads a still image as a one-frame video: a result is fine, a typed error too.
    return MediaSpec("either", f"{seed} forced to kind=video", corpus.image(seed), deliver="bytes", kind="video")


@recipe("video/polyglot", detect=3, cli=1)
def _video_polyglot(rng):
    n = int(rng.integers(16, 4096))
    prefix, label = _pick(rng, (
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "ftyp then noise"),
        (b"\x1a\x45\xdf\xa3", "EBML magic then noise"),
        (b"RIFF\x00\x00\x00\x00AVI ", "RIFF AVI then noise"),
        (b"\x00\x00\x01\xba", "MPEG-PS start code then noise"),
        (b"OggS", "Ogg page then noise"),
        (b"FLV\x01", "FLV header then noise"),
        (b"\xff\xd8\xff\xe0", "JPEG SOI then mp4"),
    ))
    body = corpus.video("mp4-x264") if "mp4" in label else rng.bytes(n)
    return MediaSpec("either", label, prefix + body, b"polyglot" + _pick(rng, (b".mp4", b".mkv", b".bin")),
                     deliver=_media_delivery(rng))


# ---------------------------------------------------------------------------------------- images


@recipe("image/valid", detect=3, cli=3)
def _image_valid(rng):
    seed = _pick(rng, corpus.IMAGE_SEEDS)
    return MediaSpec("result", f"{seed} unmodified", corpus.image(seed), _image_name(seed), deliver=_media_delivery(rng))


@recipe("image/mangle", detect=10, cli=4)
def _image_mangle(rng):
    seed = _pick(rng, corpus.IMAGE_SEEDS)
    data, note = mutate.mangle(corpus.image(seed), rng)
    expect = "error" if len(data) == 0 else "either"
    return MediaSpec(expect, f"{seed}: {note}", data, _image_name(seed), deliver=_media_delivery(rng))


def _absurd_size(rng) -> tuple[int, int]:
    return _pick(rng, ((0, 64), (64, 0), (65535, 65535), (1, 65535), (65535, 1), (0x7FFFFFFF, 0x7FFFFFFF),
                       (100_000, 100_000), (9000, 9000)))


@recipe("image/header-size", detect=6, cli=2)
def _image_header_size(rng):
    fmt = _pick(rng, ("png", "jpeg", "gif", "bmp"))
    w, h = _absurd_size(rng)
    if fmt == "png":
        data = mutate.patch_png_size(corpus.image("png"), w, h)
    elif fmt == "jpeg":
        data = mutate.patch_jpeg_size(corpus.image(_pick(rng, ("jpeg", "jpeg-progressive"))), w & 0xFFFF, h & 0xFFFF)
    elif fmt == "gif":
        data = mutate.patch_gif_size(corpus.image("gif-animated"), w & 0xFFFF, h & 0xFFFF)
    else:
        h = -h if rng.random() < 0.3 and h < 0x7FFFFFFF else h
        data = mutate.patch_bmp_size(corpus.image("bmp"), min(w, 0x7FFFFFFF), h)
    return MediaSpec("either", f"{fmt} header claims {w}x{h}", data, _image_name(fmt), deliver=_media_delivery(rng))


def _extreme_aspect_png(rng) -> tuple[bytes, str]:
    """A PNG of 1 or 2 pixels by tens of thousands: tiny on disk, a memory trap for resize-then-crop."""
    from PIL import Image

    short, long = int(_pick(rng, (1, 2))), int(_pick(rng, (20_000, 60_000, 65_000)))
    size = (long, short) if rng.random() < 0.5 else (short, long)
    noise = np.random.default_rng(int(rng.integers(0, 1 << 30))).integers(0, 256, (size[1], size[0], 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    return buffer.getvalue(), f"PNG of {size[0]}x{size[1]}"


@recipe("image/extreme-aspect", detect=2, cli=1)
def _image_extreme_aspect(rng):
    data, label = _extreme_aspect_png(rng)
    return MediaSpec("result", label, data, b"strip.png", deliver=_media_delivery(rng))


@recipe("image/bomb", detect=2, cli=1)
def _image_bomb(rng):
    return MediaSpec("error", "PNG of 9000x9000 zeros (81 Mpx, 79 KB)", corpus.png_bomb(), b"bomb.png",
                     deliver=_pick(rng, ("bytes", "path")))


@recipe("image/jpeg-markers", detect=4, cli=2)
def _image_jpeg_markers(rng):
    seed = _pick(rng, ("jpeg", "jpeg-progressive", "jpeg-face", "jpeg-exif-rot"))
    marker = _pick(rng, mutate.JPEG_MARKERS)
    data = mutate.drop_jpeg_marker(corpus.image(seed), marker)
    return MediaSpec("either", f"{seed} without {marker}", data, b"frame.jpg", deliver=_media_delivery(rng))


# ---------------------------------------------------------------------------------------- bytes and paths


@recipe("bytes/empty", detect=1, cli=1)
def _bytes_empty(rng):
    return MediaSpec("error", "zero-length input", b"", _pick(rng, (b"empty.mp4", b"empty.jpg")),
                     deliver=_pick(rng, ("bytes", "path", "fileobj")))


@recipe("bytes/random", detect=3, cli=1)
def _bytes_random(rng):
    n = int(np.exp(rng.uniform(0, np.log(1 << 20))))
    data = rng.bytes(n)
    # FFmpeg probes a file named .mp4/.jpg by its content as well as its name: noise can pass a probe
    # (e.g. as MPEG audio) and still must end in a typed error; bytes without a name are never sniffed.
    name = _pick(rng, (b"noise.mp4", b"noise.jpg", b"noise.webm"))
    return MediaSpec("error", f"{n} random bytes", data, name, deliver=_pick(rng, ("bytes", "path", "fileobj")))


@recipe("path/special", detect=4, cli=3)
def _path_special(rng):
    special = _pick(rng, ("dir", "fifo", "devzero", "devnull", "symlink-loop", "dangling", "missing",
                          "name-too-long", "path-too-long", "sparse-5g", "sparse-zeros"))
    expect = "either" if special == "sparse-zeros" else "error"
    return MediaSpec(expect, special, None, None, special=special, deliver="path")


_ODD_NAMES = (
    b"\xff\xfe non-utf8 \xe9t\xe9",           # latin-1 bytes, invalid UTF-8
    b"\xed\xa0\x80 surrogate",                # an encoded surrogate: invalid UTF-8
    b"x" * 240,                               # long but legal (the suffix makes 244 bytes)
    b"new\nline\ttab",
    b"-starts-with-dash",
    b"--weights",
    b"quote\"s 'and' $(echo no) ;|&",
    "\u202eevil\u202c rtl".encode(),
    "\U0001f600 emoji \u00e9\u4e2d".encode(),
    b" leading and trailing ",
    b"...",
)


@recipe("path/odd-name", detect=3, cli=6)
def _path_odd_name(rng):
    stem = _pick(rng, _ODD_NAMES)
    if rng.random() < 0.5:
        seed = _pick(rng, ("mp4-x264", "webm-vp9", "mkv-ffv1"))
        data, ext = corpus.video(seed), _pick(rng, (_video_name(seed)[4:], b".jpg", b".txt", b""))
    else:
        seed = _pick(rng, ("jpeg", "png", "webp"))
        data, ext = corpus.image(seed), _pick(rng, (_image_name(seed)[5:], b".mp4", b".txt", b""))
    return MediaSpec("result", f"{seed} named {stem[:40]!r}{ext.decode()}", data, stem + ext, deliver="path")


@recipe("stream/failing", detect=1)
def _stream_failing(rng):
    return MediaSpec("error", "file object whose read() raises OSError", corpus.video("mp4-x264"),
                     deliver="failing-stream")


# ---------------------------------------------------------------------------------------- arrays (detect only)


@recipe("array/constant", detect=3)
def _array_constant(rng):
    value = int(_pick(rng, (0, 255, 128)))
    if rng.random() < 0.5:
        h, w = _pick(rng, ((64, 64), (33, 47), (224, 224)))
        return MediaSpec("result", f"constant image {h}x{w} = {value}", np.full((h, w, 3), value, np.uint8),
                         deliver="array")
    t = int(_pick(rng, (1, 4, 12, 30)))
    return MediaSpec("result", f"constant video {t}x48x48 = {value}", np.full((t, 48, 48, 3), value, np.uint8),
                     deliver="array")


@recipe("array/tiny", detect=3)
def _array_tiny(rng):
    shape = _pick(rng, ((1, 1, 3), (2, 2, 3), (1, 2000, 3), (2000, 1, 3), (1, 1, 1, 3), (3, 1, 1, 3),
                        (5, 2, 300, 3), (2, 7, 5, 3)))
    data = np.random.default_rng(int(rng.integers(0, 1 << 30))).integers(0, 256, shape, dtype=np.uint8)
    what = "video" if len(shape) == 4 else "image"
    return MediaSpec("result", f"tiny {what} {shape}", data, deliver="array")


@recipe("array/bad", detect=3)
def _array_bad(rng):
    label, data = _pick(rng, (
        ("float32 with NaN", np.full((32, 32, 3), np.nan, np.float32)),
        ("float64 in [0, 1]", np.random.default_rng(0).random((32, 32, 3))),
        ("int64", np.zeros((32, 32, 3), np.int64)),
        ("bool", np.zeros((32, 32, 3), bool)),
        ("object", np.array([[None]], dtype=object)),
        ("empty (0, 0, 3)", np.zeros((0, 0, 3), np.uint8)),
        ("empty video (0, 8, 8, 3)", np.zeros((0, 8, 8, 3), np.uint8)),
        ("zero-height video (4, 0, 8, 3)", np.zeros((4, 0, 8, 3), np.uint8)),
        ("2 channels", np.zeros((8, 8, 2), np.uint8)),
        ("5 channels", np.zeros((8, 8, 5), np.uint8)),
        ("5-D", np.zeros((2, 2, 8, 8, 3), np.uint8)),
        ("1-D", np.zeros(12, np.uint8)),
        ("0-D", np.array(3, np.uint8)),
        ("video with 4 channels", np.zeros((4, 8, 8, 4), np.uint8)),
        ("float16 video", np.zeros((4, 8, 8, 3), np.float16)),
    ))
    return MediaSpec("error", f"array: {label}", data, deliver="array")


@recipe("array/layout", detect=2)
def _array_layout(rng):
    base = corpus.synthetic_frames(8, 40, 40, seed=int(rng.integers(0, 100)))
    label, data = _pick(rng, (
        ("strided video view", base[::2, ::2, ::2]),
        ("reversed frames", base[::-1]),
        ("Fortran-ordered image", np.asfortranarray(base[0])),
        ("BGR view of an image", base[0][:, :, ::-1]),
        ("read-only video", _readonly(base)),
        ("grey image (H, W)", base[0, :, :, 0]),
        ("RGBA image", np.concatenate([base[0], np.full((40, 40, 1), 255, np.uint8)], axis=-1)),
    ))
    return MediaSpec("result", f"array: {label}", data, deliver="array")


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


# ---------------------------------------------------------------------------------------- wire: images


def _b64_variants(data: bytes, rng) -> tuple[str, str]:
    text = corpus.b64_payload(data)
    style = _pick(rng, ("plain", "plain", "data-uri", "wrapped", "padded-ws"))
    if style == "data-uri":
        return "data:image/jpeg;base64," + text, "data URI"
    if style == "wrapped":
        return "\n".join(text[i : i + 76] for i in range(0, len(text), 76)), "MIME line breaks"
    if style == "padded-ws":
        return "  " + text + " \n", "surrounding whitespace"
    return text, "plain"


@recipe("wire-image/valid", miner=3, axon=3)
def _wire_image_valid(rng):
    seed = _pick(rng, ("jpeg", "jpeg-face", "png", "png-rgba", "webp", "gif-animated", "bmp", "jpeg-cmyk"))
    payload, style = _b64_variants(corpus.image(seed), rng)
    return WireSpec("result", f"{seed}, {style}", "image", payload)


@recipe("wire-image/mangled", miner=8, axon=2)
def _wire_image_mangled(rng):
    seed = _pick(rng, corpus.IMAGE_SEEDS)
    data, note = mutate.mangle(corpus.image(seed), rng)
    expect = "error" if not data else "either"
    return WireSpec(expect, f"{seed}: {note}", "image", corpus.b64_payload(data))


@recipe("wire-image/bad-base64", miner=6, axon=2)
def _wire_image_bad_b64(rng):
    good = corpus.b64_payload(corpus.image("jpeg"))
    k = int(rng.integers(0, len(good)))
    label, payload = _pick(rng, (
        ("printable garbage", "".join(chr(c) for c in rng.integers(33, 127, size=int(rng.integers(1, 5000))))),
        ("one character replaced by '!'", good[:k] + "!" + good[k + 1 :]),
        ("padding stripped", good.rstrip("=") + ("A" if len(good.rstrip("=")) % 4 == 0 else "")),
        ("url-safe alphabet", good.replace("+", "-").replace("/", "_") + "-_-_"),
        ("data URI without base64", "data:image/jpeg," + good),
        ("odd length", good + "A"),
        ("base85 instead of base64", base64.b85encode(corpus.image("jpeg")).decode()),
        ("NUL bytes", good[:k] + "\x00\x00" + good[k:]),
    ))
    return WireSpec("error", label, "image", payload)


@recipe("wire-image/non-ascii", miner=2, axon=1)
def _wire_image_non_ascii(rng):
    label, payload = _pick(rng, (
        ("accented letters", "\u00e9" * 100),
        ("emoji", "\U0001f600" * 10),
        ("lone surrogate", "abcd\ud800efgh"),
        ("base64 then a non-ASCII letter", corpus.b64_payload(corpus.image("jpeg")) + "\u00ff"),
    ))
    return WireSpec("error", label, "image", payload)


@recipe("wire-image/empty", miner=2, axon=1)
def _wire_image_empty(rng):
    return WireSpec("error", "empty or blank payload", "image", _pick(rng, ("", " ", "\n\t ", "====")))


@recipe("wire-image/not-an-image", miner=3, axon=1)
def _wire_image_not_image(rng):
    label, data = _pick(rng, (
        ("an mp4", corpus.video("mp4-x264")),
        ("text", b"hello, validator " * 50),
        ("zlib data", zlib.compress(b"\x00" * 100_000)),
        ("random bytes", rng.bytes(int(rng.integers(1, 20_000)))),
        ("one byte", b"\xff"),
    ))
    return WireSpec("error", f"base64 of {label}", "image", corpus.b64_payload(data))


@recipe("wire-image/header-size", miner=3, axon=1)
def _wire_image_header_size(rng):
    w, h = _absurd_size(rng)
    if rng.random() < 0.5:
        data = mutate.patch_png_size(corpus.image("png"), w, h)
    else:
        data = mutate.patch_jpeg_size(corpus.image("jpeg"), w & 0xFFFF, h & 0xFFFF)
    return WireSpec("either", f"header claims {w}x{h}", "image", corpus.b64_payload(data))


@recipe("wire-image/bomb", miner=1, axon=1)
def _wire_image_bomb(rng):
    return WireSpec("error", "base64 of a 9000x9000 PNG bomb", "image", corpus.b64_payload(corpus.png_bomb()))


@recipe("wire-image/extreme-aspect", miner=1.5, axon=0.5)
def _wire_image_extreme_aspect(rng):
    data, label = _extreme_aspect_png(rng)
    return WireSpec("result", label, "image", corpus.b64_payload(data))


@recipe("wire-image/huge", miner=0.5)
def _wire_image_huge(rng):
    n = int(_pick(rng, (70, 90))) << 20  # over the miner's 64 MiB payload limit
    return WireSpec("error", f"{n >> 20} MiB of base64", "image", "QUFB" * (n // 4))


@recipe("wire-image/odd-valid", miner=3, axon=1)
def _wire_image_odd(rng):
    value = int(_pick(rng, (0, 255, 128)))
    shape = _pick(rng, ((256, 256), (1, 1), (1, 512), (512, 1), (3, 3)))
    fmt = _pick(rng, ("JPEG", "PNG"))
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((*shape, 3), value, np.uint8)).save(buffer, format=fmt)
    return WireSpec("result", f"constant {fmt} {shape[1]}x{shape[0]} = {value}", "image",
                    corpus.b64_payload(buffer.getvalue()))


# ---------------------------------------------------------------------------------------- wire: videos


def _frames_blob(rng, n: int | None = None) -> tuple[list[bytes], int]:
    frames = list(corpus.wire_frames())
    n = n or int(rng.integers(1, len(frames) + 1))
    return frames[:n], n


@recipe("wire-video/valid", miner=3, axon=3)
def _wire_video_valid(rng):
    parts, n = _frames_blob(rng)
    level = int(_pick(rng, (0, 1, 6, 9)))
    return WireSpec("result", f"{n} frames, zlib level {level}", "video", corpus.b85_payload(b"".join(parts), level), n)


@recipe("wire-video/bad-base85", miner=4, axon=1)
def _wire_video_bad_b85(rng):
    good = corpus.b85_payload(b"".join(corpus.wire_frames()[:2]))
    k = int(rng.integers(0, len(good)))
    label, payload = _pick(rng, (
        ("characters outside base85", good[:k] + '"\\ ,\'' + good[k:]),
        ("printable garbage with quotes", "".join(chr(c) for c in rng.integers(32, 127, size=int(rng.integers(5, 3000))))),
        ("base64 instead of base85", base64.b64encode(zlib.compress(b"".join(corpus.wire_frames()[:2]))).decode() + "="),
        ("one trailing character", good + "~"),
        ("value overflow", "|NsC0|NsC0" * 3),
    ))
    return WireSpec("error", label, "video", payload)


@recipe("wire-video/bad-zlib", miner=6, axon=2)
def _wire_video_bad_zlib(rng):
    blob = zlib.compress(b"".join(corpus.wire_frames()[:3]))
    label, data = _pick(rng, (
        ("random bytes, not zlib", rng.bytes(int(rng.integers(1, 4000)))),
        ("zlib truncated", blob[: int(rng.integers(0, len(blob) - 1))]),
        ("zlib with a flipped byte", mutate.bitflip(blob, rng, "any")[0]),
        ("raw deflate without header", zlib.compress(b"x" * 100)[2:-4]),
        ("gzip instead of zlib", gzip.compress(b"".join(corpus.wire_frames()[:2]), mtime=0)),
    ))
    expect = "either" if "flipped" in label else "error"  # a flip can land in a JPEG and keep the zlib valid
    return WireSpec(expect, label, "video", base64.b85encode(data).decode())


@recipe("wire-video/zlib-bomb", miner=1, axon=0.5)
def _wire_video_zlib_bomb(rng):
    return WireSpec("error", "zlib inflating to 300 MiB of zeros", "video",
                    base64.b85encode(corpus.zlib_bomb()).decode())


@recipe("wire-video/no-jpeg", miner=3, axon=1)
def _wire_video_no_jpeg(rng):
    label, blob = _pick(rng, (
        ("zeros", b"\x00" * int(rng.integers(1, 100_000))),
        ("random bytes", rng.bytes(int(rng.integers(1, 50_000)))),
        ("PNG frames", corpus.image("png") * 3),
        ("frames without SOI", b"".join(mutate.drop_jpeg_marker(f, "SOI") for f in corpus.wire_frames()[:3])),
        ("an SOI and nothing else", b"\xff\xd8\xff"),
        ("empty zlib stream", b""),
    ))
    return WireSpec("error", f"zlib of {label}", "video", corpus.b85_payload(blob))


@recipe("wire-video/missing-markers", miner=6, axon=1)
def _wire_video_markers(rng):
    parts, n = _frames_blob(rng)
    marker = _pick(rng, ("EOI", "SOS", "DQT", "DHT", "SOF", "APP0"))
    hit = rng.random(n) < 0.5
    hit[int(rng.integers(0, n))] = True
    parts = [mutate.drop_jpeg_marker(p, marker) if h else p for p, h in zip(parts, hit, strict=True)]
    return WireSpec("either", f"{int(hit.sum())} of {n} frames without {marker}", "video",
                    corpus.b85_payload(b"".join(parts)), n)


@recipe("wire-video/mangled-frames", miner=8, axon=2)
def _wire_video_mangled(rng):
    parts, n = _frames_blob(rng)
    notes = []
    for k in rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False).tolist():
        parts[k], note = mutate.mangle(parts[k], rng)
        notes.append(f"frame {k}: {note}")
    return WireSpec("either", "; ".join(notes)[:300], "video", corpus.b85_payload(b"".join(parts)), n)


@recipe("wire-video/mangled-blob", miner=4, axon=1)
def _wire_video_mangled_blob(rng):
    parts, n = _frames_blob(rng)
    blob, note = mutate.mangle(b"".join(parts), rng)
    expect = "error" if not blob else "either"
    return WireSpec(expect, f"stream of {n} frames: {note}", "video", corpus.b85_payload(blob), n)


@recipe("wire-video/header-size", miner=3, axon=1)
def _wire_video_header_size(rng):
    parts, n = _frames_blob(rng)
    w, h = _absurd_size(rng)
    k = int(rng.integers(0, n))
    parts[k] = mutate.patch_jpeg_size(parts[k], w & 0xFFFF, h & 0xFFFF)
    return WireSpec("either", f"frame {k} of {n} claims {w & 0xFFFF}x{h & 0xFFFF}", "video",
                    corpus.b85_payload(b"".join(parts)), n)


@recipe("wire-video/too-many-frames", miner=1, axon=0.5)
def _wire_video_too_many(rng):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="JPEG", quality=50)
    n = int(_pick(rng, (1025, 1500, 5000)))
    return WireSpec("error", f"{n} JPEG frames of 8x8 (limit 1024)", "video", corpus.b85_payload(buffer.getvalue() * n), n)


@recipe("wire-video/odd-valid", miner=4, axon=1)
def _wire_video_odd(rng):
    from PIL import Image

    value = int(_pick(rng, (0, 255, 128)))
    shape = _pick(rng, ((64, 64), (1, 1), (2, 300), (300, 2), (256, 256), (1, 30000), (30000, 1)))
    n = int(_pick(rng, (1, 2, 8, 26)))
    buffer = io.BytesIO()
    Image.fromarray(np.full((*shape, 3), value, np.uint8)).save(buffer, format="JPEG", quality=75)
    return WireSpec("result", f"{n} constant frames {shape[1]}x{shape[0]} = {value}", "video",
                    corpus.b85_payload(buffer.getvalue() * n), n)


@recipe("wire-video/mixed", miner=3, axon=1)
def _wire_video_mixed(rng):
    parts, n = _frames_blob(rng, 6)
    label, extra = _pick(rng, (
        ("a frame of another size", [_jpeg(np.zeros((32, 48, 3), np.uint8))]),
        ("stray bytes between frames", [b"garbage" * 20]),
        ("a PNG between frames", [corpus.image("png")]),
        ("a grey JPEG between frames", [_jpeg(np.zeros((64, 64), np.uint8))]),
    ))
    k = int(rng.integers(1, n))
    blob = b"".join(parts[:k] + extra + parts[k:])
    trailing = rng.random() < 0.3
    payload = base64.b85encode(zlib.compress(blob) + (b"trailing" if trailing else b"")).decode()
    return WireSpec("result", f"{label} at {k}" + (", data after the zlib stream" if trailing else ""), "video",
                    payload, n)


def _jpeg(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


@recipe("wire-video/not-jpeg-frames", miner=2, axon=1)
def _wire_video_other(rng):
    seed = _pick(rng, ("mp4-mjpeg", "avi-mjpeg", "mp4-x264"))
    # Motion-JPEG containers hold real JPEG frames: finding and scoring them is fine; h264 has none.
    expect = "error" if seed == "mp4-x264" else "either"
    return WireSpec(expect, f"zlib of a whole {seed} file (v3 bytes in the v2 field)", "video",
                    corpus.b85_payload(corpus.video(seed)))


@recipe("wire-video/non-ascii-or-empty", miner=2, axon=1)
def _wire_video_text(rng):
    label, payload = _pick(rng, (("empty", ""), ("blank", "  \n "), ("accented", "\u00e9\u00e8" * 50),
                                 ("emoji", "\U0001f4f9" * 20)))
    return WireSpec("error", label, "video", payload)


@recipe("wire-video/huge", miner=0.5)
def _wire_video_huge(rng):
    n = 70 << 20
    return WireSpec("error", f"{n >> 20} MiB of base85", "video", "0" * n)


# ---------------------------------------------------------------------------------------- supervisor self-tests

for _action in ("ok", "hang", "crash", "memory"):
    RECIPES[f"selftest/{_action}"] = Recipe(
        f"selftest/{_action}",
        lambda rng, a=_action: SelfTestSpec("result" if a == "ok" else "error", f"selftest: {a}", a),
        {"selftest": 1.0},
    )


# ---------------------------------------------------------------------------------------- the case list


def weights_for(entry: str) -> dict[str, float]:
    """Recipe -> weight for one entry point (recipes that do not serve it are left out)."""
    return {name: r.weights[entry] for name, r in RECIPES.items() if r.weights.get(entry, 0) > 0}


def generate(seed: int, counts: dict[str, int]) -> list[Case]:
    """The cases for ``counts`` (entry -> number of cases), drawn from ``seed``.

    Case ``i`` of an entry depends only on ``(seed, entry, i)``: a larger run contains the smaller one.
    """
    cases = []
    for entry, count in counts.items():
        if entry not in ENTRIES:
            raise ValueError(f"unknown entry {entry!r}; choose from {ENTRIES}")
        table = weights_for(entry)
        names = sorted(table)
        p = np.array([table[n] for n in names], np.float64)
        cdf = np.cumsum(p / p.sum())
        for i in range(count):
            u = np.random.default_rng([seed, _ENTRY_KEY[entry], i]).random()
            cases.append(Case(entry, i, seed, names[min(int(np.searchsorted(cdf, u, side="right")), len(names) - 1)]))
    return cases


def build(case: Case) -> MediaSpec | WireSpec | SelfTestSpec:
    """The input of one case (deterministic)."""
    spec = RECIPES[case.recipe].build(case.rng())
    if spec.expect not in EXPECTATIONS:  # pragma: no cover - a recipe bug
        raise ValueError(f"{case.recipe}: bad expectation {spec.expect!r}")
    return spec


# ---------------------------------------------------------------------------------------- materialising paths

SPARSE_5G = 5 * 1024**3
SPARSE_ZEROS = 64 * 1024**2


def materialize(spec: MediaSpec, folder: Path, default_name: bytes = b"input.bin") -> bytes:
    """Write a media spec under ``folder`` (a fresh, empty folder) and return its path as bytes.

    Special paths are created as described in :class:`MediaSpec`; ``sparse-*`` files take no disk space.
    """
    base = os.fsencode(folder)
    s = spec.special
    if s is None:
        path = os.path.join(base, spec.name or default_name)
        with open(path, "wb") as f:
            f.write(spec.data if isinstance(spec.data, bytes) else b"")
        return path
    if s == "dir":
        path = os.path.join(base, b"a-folder.mp4")
        os.mkdir(path)
        return path
    if s == "fifo":
        path = os.path.join(base, b"pipe.mp4")
        os.mkfifo(path)
        return path
    if s in ("devzero", "devnull"):
        return b"/dev/zero" if s == "devzero" else b"/dev/null"
    if s == "symlink-loop":
        a, b = os.path.join(base, b"loop-a.mp4"), os.path.join(base, b"loop-b.mp4")
        os.symlink(b, a)
        os.symlink(a, b)
        return a
    if s == "dangling":
        path = os.path.join(base, b"dangling.jpg")
        os.symlink(os.path.join(base, b"nowhere.jpg"), path)
        return path
    if s == "missing":
        return os.path.join(base, b"missing.mp4")
    if s == "name-too-long":
        return os.path.join(base, b"n" * 300 + b".jpg")
    if s == "path-too-long":
        return os.path.join(base, b"d/" * 2100 + b"x.jpg")
    if s in ("sparse-5g", "sparse-zeros"):
        path = os.path.join(base, b"sparse.mp4")
        with open(path, "wb") as f:
            f.truncate(SPARSE_5G if s == "sparse-5g" else SPARSE_ZEROS)
        return path
    raise ValueError(f"unknown special path {s!r}")

