"""open_media: one entry for every input kind, sniffed by content, and typed errors for the rest."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vidfake.preprocessing.decoders import ArrayDecoder, MediaNotFoundError, VideoDecoder, open_video
from vidfake.preprocessing.errors import DecodeError, MediaError, UnsupportedMediaError
from vidfake.preprocessing.media import Media, MediaKind, open_media, sniff_kind
from vidfake.preprocessing.writers import write_video

T, H, W = 10, 48, 64


def pattern_frames(t: int = T) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([np.dstack([(xx * 4 + i * 11) % 256, (yy * 5) % 256, (xx + yy + i) % 256])
                     for i in range(t)]).astype(np.uint8)


def image_bytes(img: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return pattern_frames()


@pytest.fixture(scope="module")
def files(tmp_path_factory, frames) -> dict[str, bytes]:
    """The first bytes of real files of every kind, as written by PIL and PyAV."""
    root = tmp_path_factory.mktemp("kinds")
    out = {}
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM"):
        out[fmt] = image_bytes(frames[0], fmt)
    for ext in ("mp4", "mov", "mkv", "webm", "avi"):
        path = root / f"clip.{ext}"
        write_video(path, frames, lossless=ext != "avi")
        out[ext] = path.read_bytes()
    return out


@pytest.mark.parametrize("name", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM"])
def test_sniff_images(files, name):
    assert sniff_kind(files[name][:64]) == MediaKind.IMAGE


@pytest.mark.parametrize("name", ["mp4", "mov", "mkv", "webm", "avi"])
def test_sniff_videos(files, name):
    assert sniff_kind(files[name][:512]) == MediaKind.VIDEO


def test_sniff_uses_the_extension_only_as_a_last_resort(files):
    assert sniff_kind(files["mp4"][:64], "holiday.jpg") == MediaKind.VIDEO  # content wins
    raw = b"\x00\x00\x00\x01\x67\x42\x00\x1e" + bytes(40)  # raw H.264 has no container signature
    assert sniff_kind(raw, "clip.h264.mp4") == MediaKind.VIDEO
    assert sniff_kind(raw, "odd.png") == MediaKind.IMAGE
    with pytest.raises(UnsupportedMediaError, match="not a recognised"):
        sniff_kind(raw, "notes.txt")
    with pytest.raises(UnsupportedMediaError):
        sniff_kind(b"")
    animated = io.BytesIO()
    first, second = (Image.new("RGB", (8, 8), c) for c in ("red", "blue"))
    first.save(animated, format="GIF", save_all=True, append_images=[second])
    assert sniff_kind(animated.getvalue()[:64]) == MediaKind.IMAGE  # first frame, documented


def test_open_image_from_every_kind_of_source(tmp_path, files, frames):
    path = tmp_path / "still.png"
    path.write_bytes(files["PNG"])
    sources = (path, str(path), files["PNG"], io.BytesIO(files["PNG"]), Image.fromarray(frames[0]), frames[0])
    for src in sources:
        with open_media(src) as media:
            assert media.kind == MediaKind.IMAGE and media.video is None
            np.testing.assert_array_equal(media.image, frames[0])
    assert open_media(path).source == str(path)
    assert open_media(files["PNG"], source="upload-17").source == "upload-17"


def test_open_video_from_every_kind_of_source(tmp_path, files, frames):
    path = tmp_path / "clip.mp4"
    path.write_bytes(files["mp4"])
    for src in (path, files["mp4"], io.BytesIO(files["mp4"])):
        media = open_media(src)
        assert media.kind == MediaKind.VIDEO and media.image is None
        assert isinstance(media.video, VideoDecoder)
        np.testing.assert_array_equal(media.video.get_frames([9, 0]), frames[[9, 0]])
        media.close()
        with pytest.raises(ValueError, match="closed"):
            media.video.get_frames([0])


def test_renamed_files_are_opened_by_content(tmp_path, files, frames):
    fake_jpg = tmp_path / "really_a_video.jpg"
    fake_jpg.write_bytes(files["mp4"])
    assert open_media(fake_jpg).kind == MediaKind.VIDEO
    fake_mp4 = tmp_path / "really_a_photo.mp4"
    fake_mp4.write_bytes(files["PNG"])
    np.testing.assert_array_equal(open_media(fake_mp4).image, frames[0])


def test_arrays_and_decoders(frames):
    media = open_media(frames, fps=12.5)
    assert media.kind == MediaKind.VIDEO and isinstance(media.video, ArrayDecoder)
    assert media.video.fps == 12.5 and media.video.num_frames == T
    decoder = open_video(frames)
    assert open_media(decoder).video is decoder
    assert open_media(frames[0]).kind == MediaKind.IMAGE


def test_forced_kind(tmp_path, files):
    path = tmp_path / "clip.mp4"
    path.write_bytes(files["mp4"])
    with pytest.raises(UnsupportedMediaError):
        open_media(path, kind="image")  # an mp4 is no image
    assert open_media(path, kind=MediaKind.VIDEO, max_side=32).video.info.width == 32


@pytest.mark.timeout(30)
def test_bad_inputs_name_the_input(tmp_path, files):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.bin"
    noise.write_bytes(np.random.default_rng(3).integers(0, 256, 10_000, dtype=np.uint8).tobytes())
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(files["mp4"][:400])  # moov at the end: gone
    cases = [
        (empty, DecodeError),
        (noise, UnsupportedMediaError),
        (truncated, DecodeError),
        (tmp_path / "missing.png", MediaNotFoundError),
        (tmp_path, UnsupportedMediaError),
    ]
    for path, error in cases:
        with pytest.raises(error) as info:
            open_media(path)
        assert isinstance(info.value, MediaError) and str(path) in str(info.value)
    with pytest.raises(DecodeError, match="<bytes>: empty"):
        open_media(b"")
    with pytest.raises(UnsupportedMediaError, match="<bytes>"):
        open_media(b"\x13\x37" * 100)
    with pytest.raises(UnsupportedMediaError, match="invalid path"):
        open_media("clip\x00.mp4")
    with pytest.raises(TypeError):
        open_media(12345)


def test_media_is_a_context_manager(tmp_path, files):
    path = tmp_path / "clip.mkv"
    path.write_bytes(files["mkv"])
    with open_media(path) as media:
        assert isinstance(media, Media) and media.video.num_frames == T
    with pytest.raises(ValueError, match="closed"):
        media.video.get_frames([0])


@pytest.mark.data
def test_development_media_open_and_backends_agree(shared_data, manifest_rows):
    videos = [r for r in manifest_rows if r["kind"] == "video"][:3]
    images = [r for r in manifest_rows if r["kind"] == "image"][:3]
    for row in images:
        media = open_media(shared_data / row["path"])
        assert media.kind == MediaKind.IMAGE and media.image.ndim == 3 and media.image.shape[2] == 3
    for row in videos:
        path = shared_data / row["path"]
        with open_media(path) as media:
            # The third data batch has clips of 16 frames (GIF-sourced generations): 8 is the floor
            # a subnet challenge can have; the frame count must match what PyAV counts.
            assert media.kind == MediaKind.VIDEO and media.video.num_frames >= 8
            indices = np.linspace(0, media.video.num_frames - 1, 5).astype(int)
            via_auto = media.video.get_frames(indices)
        via_pyav = open_video(path, backend="pyav").get_frames(indices)
        assert np.abs(via_auto.astype(int) - via_pyav).mean() < 1.0  # same frames, maybe other scaler
