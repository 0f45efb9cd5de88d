"""BitMind wire formats: exact or near-exact round trips, and every malformed payload fails typed."""

from __future__ import annotations

import base64
import io
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vidfake.preprocessing.decoders import MediaLimits, open_video
from vidfake.preprocessing.errors import (
    DecodeError,
    MediaTooLargeError,
    UnsupportedMediaError,
    WireFormatError,
)
from vidfake.preprocessing.wire import (
    WireVideo,
    b85decode,
    b85encode,
    decode_image_b64,
    decode_video_b85,
    decode_video_mp4,
    encode_image_b64,
    encode_video_b85,
    encode_video_mp4,
    split_jpeg_stream,
)
from vidfake.preprocessing.writers import write_video

T, H, W = 12, 64, 80


def pattern_frames(t: int = T, h: int = H, w: int = W) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([
        np.dstack([(xx * 3 + i * 9) % 256, (yy * 4 + i * 2) % 256, ((xx + yy) * 2 + i * 5) % 256])
        for i in range(t)
    ]).astype(np.uint8)


def jpeg(image: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=75, **options)
    return buffer.getvalue()


def b85_payload(chunks: list[bytes]) -> str:
    return base64.b85encode(zlib.compress(b"".join(chunks))).decode("ascii")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return pattern_frames()


# -- images ----------------------------------------------------------------------------------------


def test_image_png_round_trip_is_exact(frames):
    np.testing.assert_array_equal(decode_image_b64(encode_image_b64(frames[0], fmt="PNG")), frames[0])


def test_image_jpeg_round_trip(frames):
    text = encode_image_b64(frames[0])
    assert text.isascii() and base64.b64decode(text)[:3] == b"\xff\xd8\xff"
    decoded = decode_image_b64(text)
    assert decoded.shape == (H, W, 3) and np.abs(decoded.astype(int) - frames[0]).mean() < 4
    # Transport variants of the same payload decode identically.
    wrapped = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    np.testing.assert_array_equal(decode_image_b64(wrapped.encode()), decoded)
    np.testing.assert_array_equal(decode_image_b64("data:image/jpeg;base64," + text), decoded)


def test_image_bad_payloads():
    for payload, error, words in [
        ("", WireFormatError, "empty"),
        ("not*base64!", WireFormatError, "invalid base64"),
        ("abc", WireFormatError, "invalid base64"),  # bad padding
        ("ÿØÿ", WireFormatError, "non-ASCII"),
        (base64.b64encode(b"hello world, no image").decode(), UnsupportedMediaError, "not an image"),
        (base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 40).decode(), DecodeError, "JPEG"),
    ]:
        with pytest.raises(error, match=words) as info:
            decode_image_b64(payload, source="img#7")
        assert "img#7" in str(info.value)


# -- videos, base85 --------------------------------------------------------------------------------


def test_b85_round_trip_matches_the_image_path(frames):
    video = decode_video_b85(encode_video_b85(frames))
    assert isinstance(video, WireVideo)
    assert video.frames.shape == (T, H, W, 3) and video.num_corrupt == 0 and video.warnings == ()
    assert np.abs(video.frames.astype(int) - frames).mean() < 6
    for i in (0, T - 1):  # the same JPEG decoded by both wire paths is the same array
        np.testing.assert_array_equal(video.frames[i], decode_image_b64(encode_image_b64(frames[i])))


def test_corrupt_frame_is_skipped_and_counted(frames):
    chunks = [jpeg(f) for f in frames]
    broken = bytearray(chunks[4])
    broken[2:40] = np.random.default_rng(1).integers(0, 256, 38, dtype=np.uint8).tobytes()
    chunks[4] = bytes(broken)
    chunks[7] = chunks[7][: len(chunks[7]) // 2] + b"\xff\xd9"  # entropy data cut short
    video = decode_video_b85(b85_payload(chunks))
    assert video.num_corrupt >= 1 and len(video.frames) == T - video.num_corrupt
    assert any("frame 4" in w for w in video.warnings)
    np.testing.assert_array_equal(video.frames[:4], decode_video_b85(b85_payload(chunks[:4])).frames)
    with pytest.raises(WireFormatError, match="frame 4"):
        decode_video_b85(b85_payload(chunks), on_corrupt="raise")


def test_payload_with_only_corrupt_frames_fails():
    with pytest.raises(WireFormatError, match="none of the 2"):
        decode_video_b85(b85_payload([b"\xff\xd8\xff\xe0garbage\xff\xd9", b"\xff\xd8\xff\xdbjunk\xff\xd9"]))


@pytest.mark.timeout(20)
def test_malformed_payloads_raise_wire_format_errors():
    cases = [
        ("", "empty"),
        ("this is { not ~ base85", "invalid base85"),
        (base64.b85encode(b"definitely not zlib").decode(), "invalid zlib"),
        (base64.b85encode(zlib.compress(b"x" * 500)[:-6]).decode(), "truncated zlib"),
        (b85_payload([b"no jpeg markers in here at all"]), "no JPEG frame"),
    ]
    for payload, words in cases:
        with pytest.raises(WireFormatError, match=words) as info:
            decode_video_b85(payload, source="vid#3")
        assert "vid#3" in str(info.value)


@pytest.mark.timeout(20)
def test_zlib_bomb_is_stopped_at_the_limit():
    bomb = base64.b85encode(zlib.compress(b"\x00" * (64 * 1024 * 1024), 9)).decode()  # 64 MiB from 64 KiB
    with pytest.raises(MediaTooLargeError, match="expands beyond"):
        decode_video_b85(bomb, limits=MediaLimits(max_decompressed_bytes=8 * 1024 * 1024))


def test_frame_count_and_memory_limits(frames):
    payload = encode_video_b85(frames)
    with pytest.raises(MediaTooLargeError, match="frames"):
        decode_video_b85(payload, limits=MediaLimits(max_frames=T - 1))
    with pytest.raises(MediaTooLargeError, match="GiB"):
        decode_video_b85(payload, limits=MediaLimits(max_decoded_bytes=H * W * 3 * (T - 1)))


def test_split_handles_nested_thumbnails_progressive_files_and_stray_bytes(frames):
    thumb = jpeg(frames[1][::8, ::8].copy())
    main = jpeg(frames[0])
    # APP1 (EXIF) segment holding a whole JPEG: a naive FF D8 / FF D9 search cuts the frame there.
    app1_body = b"Exif\x00\x00" + thumb
    app1 = b"\xff\xe1" + (len(app1_body) + 2).to_bytes(2, "big") + app1_body
    with_thumb = main[:2] + app1 + main[2:]
    progressive = jpeg(frames[2], progressive=True)
    blob = b"junk" + with_thumb + b"\x00\x00" + progressive + main
    parts = split_jpeg_stream(blob)
    assert parts == [with_thumb, progressive, main]
    video = decode_video_b85(base64.b85encode(zlib.compress(blob)))
    assert len(video.frames) == 3 and video.num_corrupt == 0
    np.testing.assert_array_equal(video.frames[0], video.frames[2])  # thumbnail did not leak in
    assert any("6 bytes outside" in w for w in video.warnings)


def test_frames_of_another_size_are_corrupt(frames):
    chunks = [jpeg(frames[0]), jpeg(frames[1][:32]), jpeg(frames[2])]
    video = decode_video_b85(b85_payload(chunks))
    assert len(video.frames) == 2 and video.num_corrupt == 1
    assert "differs" in video.warnings[-1]


def claiming_size(frame_jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its SOF0 header claiming ``width`` x ``height`` (the data stays as it was)."""
    sof = frame_jpeg.index(b"\xff\xc0")  # Pillow writes baseline JPEG; no 0xFF byte precedes SOF0's
    size = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return frame_jpeg[: sof + 5] + size + frame_jpeg[sof + 9 :]


def test_a_frame_claiming_an_impossible_size_is_skipped_and_counted(frames):
    chunks = [jpeg(f) for f in frames]
    chunks[3] = claiming_size(chunks[3], 60000, 60000)  # beyond any limit: a decompression bomb header
    chunks[6] = claiming_size(chunks[6], 4 * W, 4 * H)  # within the limits, but not the video's size
    video = decode_video_b85(b85_payload(chunks), source="vid#7")
    assert len(video.frames) == T - 2 and video.num_corrupt == 2
    keep = [k for k in range(T) if k not in (3, 6)]
    expected = decode_video_b85(b85_payload([chunks[k] for k in keep])).frames
    np.testing.assert_array_equal(video.frames, expected)
    assert "2 of 12 frames corrupt" in video.warnings[-1]
    assert "frame 3: larger than the first frame's 80x64" in video.warnings[-1]
    assert "frame 6: larger than the first frame's 80x64" in video.warnings[-1]
    with pytest.raises(WireFormatError, match="frame 3"):
        decode_video_b85(b85_payload(chunks), on_corrupt="raise")


def test_an_impossible_first_frame_or_all_impossible_frames_fail_naming_the_source(frames):
    chunks = [jpeg(f) for f in frames[:4]]
    first_bad = [claiming_size(chunks[0], 60000, 60000), *chunks[1:]]
    all_bad = [claiming_size(c, 60000, 60000) for c in chunks]
    for payload in (first_bad, all_bad):
        with pytest.raises(MediaTooLargeError) as info:
            decode_video_b85(b85_payload(payload), source="vid#7")
        assert str(info.value).startswith("vid#7[frame 0]: ") and "3600000000 pixels" in str(info.value)


# -- videos, mp4 (v3) ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_mp4_payload_lossless_equals_source_and_path(tmp_path, frames, backend):
    data = encode_video_mp4(frames, fps=30.0, lossless=True)
    video = decode_video_mp4(data, backend=backend)
    assert video.source == "<wire:mp4>" and video.fps == pytest.approx(30.0)
    np.testing.assert_array_equal(video.get_frames(range(T)), frames)
    path = tmp_path / "same.mp4"
    path.write_bytes(data)
    np.testing.assert_array_equal(open_video(path, backend=backend).get_frames([5, 0]), frames[[5, 0]])


def test_mp4_payload_like_validators_send(frames):
    data = encode_video_mp4(frames)  # Motion-JPEG, q 7
    video = decode_video_mp4(data)
    assert video.info.codec == "mjpeg" and video.num_frames == T
    got = video.get_frames(range(T))
    assert np.abs(got.astype(int) - frames).mean() < 6
    coarse = decode_video_mp4(encode_video_mp4(frames, qscale=31)).get_frames(range(T))
    assert np.abs(coarse.astype(int) - frames).mean() > np.abs(got.astype(int) - frames).mean()


def test_mp4_payload_errors(tmp_path, frames):
    with pytest.raises(WireFormatError, match="bytes"):
        decode_video_mp4("not bytes")
    with pytest.raises(DecodeError, match="<wire:mp4>"):
        decode_video_mp4(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    path = tmp_path / "clip.mp4"
    write_video(path, frames)
    truncated = path.read_bytes()[:-500]  # index at the end: nothing decodable remains
    with pytest.raises(DecodeError):
        decode_video_mp4(truncated)


# -- base85: vectorised, equal to the standard library ---------------------------------------------

_ALPHABET = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~"


def _stdlib_or_error(text: bytes) -> bytes | str:
    try:
        return base64.b85decode(text)
    except ValueError as e:
        return str(e)


def _ours_or_error(text: bytes) -> bytes | str:
    try:
        return b85decode(text)
    except ValueError as e:
        return str(e)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_b85_round_trip_equals_the_standard_library(data):
    assert b85encode(data) == base64.b85encode(data)
    assert b85decode(base64.b85encode(data)) == data


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(_ALPHABET) + [ord(" "), ord("\n"), ord('"'), 0xFF]), max_size=40))
def test_b85decode_of_any_text_equals_the_standard_library(chars):
    """Same bytes, or the same error naming the same position (bad characters, overflowing hunks)."""
    text = bytes(chars)
    assert _ours_or_error(text) == _stdlib_or_error(text)


@pytest.mark.parametrize(
    "text",
    [b"", b"0", b"~~~~~", b"|NsC0~~~~~", b"~~~~~ab c", b"ab c~~~~~", b"|NsC1", b"abcd\x00", b"0123456789"],
)
def test_b85decode_edge_cases_equal_the_standard_library(text):
    assert _ours_or_error(text) == _stdlib_or_error(text)


def test_b85_payload_error_names_the_position():
    payload = b85_payload([jpeg(pattern_frames(1)[0])])
    broken = payload[:100] + " " + payload[101:]
    with pytest.raises(WireFormatError, match="invalid base85 \\(bad base85 character at position 100\\)"):
        decode_video_b85(broken)
