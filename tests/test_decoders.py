"""Video decoding: exact frames from lossless files on both backends, awkward files, bounded failure.

Every video here is written by the test (``write_video``) from synthetic frames, so a decoded frame
can be compared with the exact frame that went in.
"""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from vidfake.preprocessing.decoders import (
    ArrayDecoder,
    Backend,
    DecordDecoder,
    FrameIndexError,
    MediaLimits,
    MediaNotFoundError,
    PyAVDecoder,
    VideoDecoder,
    open_video,
)
from vidfake.preprocessing.errors import (
    BackendUnavailableError,
    DecodeError,
    DecodeTimeoutError,
    MediaTooLargeError,
    UnsupportedMediaError,
)
from vidfake.preprocessing.writers import write_video

BACKENDS = ["pyav", "decord", "auto"]
T, H, W = 40, 48, 64
GOP = 8  # keyframe interval of the test files, so seeking is exercised


def pattern_frames(t: int, h: int = H, w: int = W) -> np.ndarray:
    """Distinct frames: moving gradients plus the frame number in binary blocks along the top."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i, ..., 0] = (xx * 4 + i * 7) % 256
        frames[i, ..., 1] = (yy * 5 + i * 3) % 256
        frames[i, ..., 2] = ((xx + yy) * 2 + i) % 256
        for bit in range(min(8, w // 8)):
            frames[i, :4, bit * 8:(bit + 1) * 8] = 255 if (i >> bit) & 1 else 0
    return frames


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return pattern_frames(T)


@pytest.fixture(scope="module")
def videos(tmp_path_factory, frames) -> dict[str, str]:
    """Lossless files in every container, plus the awkward ones."""
    root = tmp_path_factory.mktemp("videos")
    out = {}
    for ext in ("mp4", "mov", "mkv", "webm", "avi"):
        path = root / f"clip.{ext}"
        write_video(path, frames, 25.0, options={"g": str(GOP)})
        out[ext] = str(path)
    path = root / "mjpeg.avi"
    write_video(path, frames, 25.0, lossless=False)
    out["avi-mjpeg"] = str(path)
    path = root / "faststart.mp4"
    write_video(path, frames, 25.0, faststart=True, options={"g": str(GOP)})
    out["faststart"] = str(path)
    return out


# -- exact frames -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_frames_in_requested_order(videos, frames, backend):
    indices = [17, 3, 3, 39, 0, 22, 8, 8, 31]
    with open_video(videos["mp4"], backend=backend) as video:
        assert video.num_frames == T
        np.testing.assert_array_equal(video.get_frames(indices), frames[indices])
        # Going backwards after forward decoding must seek back, not return stale frames.
        np.testing.assert_array_equal(video.get_frames([5, 1, 38]), frames[[5, 1, 38]])
        np.testing.assert_array_equal(video.get_frames(np.arange(T)), frames)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("as_", ["bytes", "file"])
def test_exact_frames_from_bytes_and_file_objects(videos, frames, backend, as_):
    data = open(videos["mp4"], "rb").read()
    src = data if as_ == "bytes" else io.BytesIO(data)
    video = open_video(src, backend=backend)
    np.testing.assert_array_equal(video.get_frames([30, 2, 2]), frames[[30, 2, 2]])
    assert video.source == ("<bytes>" if as_ == "bytes" else "<BytesIO>")


@pytest.mark.parametrize("backend", BACKENDS)
def test_info(videos, backend):
    video = open_video(videos["mp4"], backend=backend)
    info = video.info
    assert (info.num_frames, info.width, info.height, info.rotation) == (T, W, H, 0)
    assert (info.native_width, info.native_height) == (W, H)
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(T / 25.0)
    assert info.codec == "h264"
    assert info.backend == ("pyav" if backend == "pyav" else "decord")
    np.testing.assert_allclose(video.frame_times([0, 1, 39]), [0.0, 0.04, 1.56], atol=1e-9)


def test_empty_index_list(videos):
    video = open_video(videos["mp4"])
    assert video.get_frames([]).shape == (0, H, W, 3)


@pytest.mark.parametrize("container", ["mov", "mkv", "webm", "avi"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_other_containers_exact(videos, frames, container, backend):
    video = open_video(videos[container], backend=backend)
    assert video.num_frames == T
    np.testing.assert_array_equal(video.get_frames([39, 2, 17, 17]), frames[[39, 2, 17, 17]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_lossy_mjpeg_avi_close_and_backends_agree(videos, frames, backend):
    got = open_video(videos["avi-mjpeg"], backend=backend).get_frames([0, 20, 39])
    assert got.shape == (3, H, W, 3)
    assert np.abs(got.astype(int) - frames[[0, 20, 39]]).mean() < 6
    reference = open_video(videos["avi-mjpeg"], backend="pyav").get_frames([0, 20, 39])
    assert np.abs(got.astype(int) - reference).max() <= 2  # same FFmpeg decoder, maybe other scaler


def test_decord_row_padding_is_repaired(tmp_path):
    # decord 0.6.0 reports a 48 px wide frame as (h, 48, 4); the decoder must still give exact frames.
    narrow = pattern_frames(6, h=24, w=48)
    path = tmp_path / "narrow.mp4"
    write_video(path, narrow)
    got = open_video(path, backend="decord").get_frames([5, 0, 3])
    np.testing.assert_array_equal(got, narrow[[5, 0, 3]])


# -- rotation, variable frame rate, size --------------------------------------------------------------


@pytest.mark.parametrize("rotation", [90, 180, 270])
@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_rotation_metadata_gives_upright_frames(tmp_path, frames, rotation, backend):
    path = tmp_path / "rotated.mp4"
    write_video(path, frames[:10], rotation=rotation)
    video = open_video(path, backend=backend)
    upright = np.rot90(frames[:10], rotation // 90, axes=(1, 2))
    assert video.info.rotation == rotation
    assert (video.info.height, video.info.width) == upright.shape[1:3]
    np.testing.assert_array_equal(video.get_frames([9, 0, 4]), upright[[9, 0, 4]])


def test_rotation_agrees_with_opencv(tmp_path, frames):
    # An independent reader: OpenCV's FFmpeg backend applies the display matrix itself.
    import cv2

    path = tmp_path / "phone.mp4"
    write_video(path, frames[:2], rotation=-90)  # stored landscape, shown portrait (rotate tag 90)
    capture = cv2.VideoCapture(str(path))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    ours = open_video(path).get_frames([0])[0]
    assert ours.shape == bgr.shape == (W, H, 3)
    assert np.abs(ours.astype(int) - bgr[..., ::-1]).mean() < 2


def test_decord_refuses_quarter_turns_but_handles_half_turn(tmp_path, frames):
    quarter, half = tmp_path / "q.mp4", tmp_path / "h.mp4"
    write_video(quarter, frames[:4], rotation=90)
    write_video(half, frames[:4], rotation=180)
    with pytest.raises(UnsupportedMediaError, match="rotated"):
        DecordDecoder(quarter)
    assert open_video(quarter).info.backend == "pyav"
    np.testing.assert_array_equal(DecordDecoder(half).get_frames([3]), np.rot90(frames[[3]], 2, axes=(1, 2)))


@pytest.mark.parametrize("container", ["mp4", "mkv", "webm"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_frame_rate_times_follow_pts(tmp_path, frames, container, backend):
    gaps = np.array([0.04, 0.04, 0.1, 0.02, 0.2] + [0.04] * (T - 6))
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    path = tmp_path / f"vfr.{container}"
    write_video(path, frames, 25.0, timestamps=times)
    video = open_video(path, backend=backend)
    np.testing.assert_allclose(video.frame_times(np.arange(T)), times, atol=1e-3)
    np.testing.assert_array_equal(video.get_frames([5, 4, 3]), frames[[5, 4, 3]])
    assert video.duration == pytest.approx(times[-1] + 1 / video.fps, abs=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_side_decodes_smaller(tmp_path, backend):
    big = pattern_frames(6, h=96, w=128)
    path = tmp_path / "big.mp4"
    write_video(path, big)
    video = open_video(path, backend=backend, max_side=64)
    assert (video.info.width, video.info.height) == (64, 48)
    assert (video.info.native_width, video.info.native_height) == (128, 96)
    got = video.get_frames([0, 5])
    assert got.shape == (2, 48, 64, 3)
    import cv2

    expected = np.stack([cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA) for f in big[[0, 5]]])
    assert np.abs(got.astype(int) - expected).mean() < 8  # a faithful downscale, not a crop
    assert open_video(path, backend=backend, max_side=1000).info.width == 128  # never enlarged


def test_max_side_with_rotation(tmp_path, frames):
    path = tmp_path / "rot.mp4"
    write_video(path, frames[:3], rotation=90)
    video = open_video(path, backend="pyav", max_side=32)
    assert video.get_frames([0]).shape == (1, 32, 24, 3)


# -- damaged and hostile files ------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_truncated_file_clamps_frame_count(tmp_path, videos, frames, backend):
    data = open(videos["faststart"], "rb").read()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) * 6 // 10])  # index first, so the header still lists 40 frames
    video = open_video(path, backend=backend)
    assert 0 < video.num_frames < T
    assert video.info.backend == "pyav"  # decord cannot read it; auto fell back
    last = video.num_frames - 1
    np.testing.assert_array_equal(video.get_frames([last, 0]), frames[[last, 0]])
    with pytest.raises(FrameIndexError):
        video.get_frames([T - 1])
    if backend == "auto":
        assert any("decord" in w for w in video.warnings)


@pytest.mark.timeout(60)
def test_damaged_packets_give_partial_result_and_named_errors(tmp_path, videos, frames):
    data = bytearray(open(videos["mp4"], "rb").read())
    start, end = len(data) // 2, len(data) * 9 // 10
    data[start:end] = bytes(end - start)  # packets still listed, their bytes zeroed
    video = open_video(bytes(data), source="zeroed.mp4")
    assert video.num_frames == T
    np.testing.assert_array_equal(video.get_frames([0, 5]), frames[[0, 5]])
    decodable = broken = 0
    for i in range(T):
        try:
            video.get_frames([i])
            decodable += 1
        except DecodeError as e:
            assert f"frame {i}" in str(e) and "zeroed.mp4" in str(e)
            broken += 1
    assert decodable >= 10 and broken >= 5
    assert video.info.backend == "pyav" and video.warnings


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", BACKENDS)
def test_one_frame_video(tmp_path, frames, backend):
    path = tmp_path / "one.mp4"
    write_video(path, frames[:1])
    video = open_video(path, backend=backend)
    assert video.num_frames == 1
    np.testing.assert_array_equal(video.get_frames([0, 0]), frames[[0, 0]])
    with pytest.raises(FrameIndexError):
        video.get_frames([1])


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs_raise_typed_errors_naming_the_input(tmp_path, backend):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    cases = [
        (empty, DecodeError),
        (noise, DecodeError),
        (tmp_path / "missing.mp4", MediaNotFoundError),
        (tmp_path, UnsupportedMediaError),
    ]
    for path, error in cases:
        with pytest.raises(error) as info:
            open_video(path, backend=backend)
        assert str(path) in str(info.value)
    with pytest.raises(DecodeError, match="<bytes>"):
        open_video(b"", backend=backend)
    with pytest.raises(FileNotFoundError):  # MediaNotFoundError is also the builtin
        open_video(tmp_path / "missing.mp4")


def test_zero_size_frames_rejected():
    with pytest.raises(DecodeError, match="zero-size"):
        ArrayDecoder(np.zeros((3, 0, 8, 3), np.uint8))
    with pytest.raises(DecodeError, match="no frames"):
        ArrayDecoder(np.zeros((0, 8, 8, 3), np.uint8))


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_errors(videos, backend):
    video = open_video(videos["mp4"], backend=backend)
    for bad in ([T], [-1], [0, T + 5]):
        with pytest.raises(FrameIndexError) as info:
            video.get_frames(bad)
        assert isinstance(info.value, IndexError)
    with pytest.raises(TypeError):
        video.get_frames([0.5, 1.0])
    with pytest.raises(FrameIndexError):
        video.frame_times([T])


def test_limits_stop_oversized_input(videos):
    with pytest.raises(MediaTooLargeError, match="pixels"):
        open_video(videos["mp4"], limits=MediaLimits(max_pixels_per_frame=W * H - 1))
    with pytest.raises(MediaTooLargeError, match="frames"):
        open_video(videos["mkv"], limits=MediaLimits(max_frames=T - 1))
    with pytest.raises(MediaTooLargeError, match="bytes"):
        open_video(videos["mp4"], limits=MediaLimits(max_bytes=1000))
    with pytest.raises(MediaTooLargeError, match="duration"):
        open_video(videos["mp4"], limits=MediaLimits(max_duration_s=1.0))
    video = open_video(videos["mp4"], limits=MediaLimits(max_decoded_bytes=3 * H * W * 3))
    assert video.get_frames([0, 1, 2]).shape[0] == 3
    with pytest.raises(MediaTooLargeError, match="max_side"):
        video.get_frames([0, 1, 2, 3])
    with pytest.raises(ValueError):
        MediaLimits(max_frames=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_timeout(videos, backend):
    video = open_video(videos["mp4"], backend=backend, limits=MediaLimits(decode_timeout_s=1e-9))
    with pytest.raises(DecodeTimeoutError, match="took over"):
        video.get_frames([30])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_long_video_decodes_only_what_is_asked(tmp_path_factory, backend):
    # A "30-minute" video: 7200 tiny frames at 4 fps, keyframe every 100 frames.
    path = tmp_path_factory.getbasetemp() / "long.mp4"
    n = 7200
    if not path.exists():
        frames = np.zeros((n, 32, 32, 3), np.uint8)
        frames[..., 0] = (np.arange(n) % 256)[:, None, None]
        frames[..., 1] = (np.arange(n) // 256)[:, None, None]
        write_video(path, frames, 4.0, options={"g": "100"})
    video = open_video(path, backend=backend)
    assert video.num_frames == n and video.duration == pytest.approx(1800.0)
    got = video.get_frames([0, 3600, 7199, 5])
    assert [(int(f[0, 0, 0]), int(f[0, 0, 1])) for f in got] == [(0, 0), (3600 % 256, 3600 // 256),
                                                                 (7199 % 256, 7199 // 256), (5, 0)]
    # 0..5, then keyframe 3600 itself, then 7100..7199: about 107 frames, never the whole stream.
    assert video.decoded_frames <= 3 * 100 + 10


# -- backends -----------------------------------------------------------------------------------------


def test_auto_falls_back_to_pyav_when_decord_fails_mid_stream(videos, frames, monkeypatch):
    def broken(self, indices):
        raise DecodeError(self.source, "simulated decord failure")

    monkeypatch.setattr(DecordDecoder, "_decode_sorted", broken)
    video = open_video(videos["mp4"])
    assert video.info.backend == "decord"
    np.testing.assert_array_equal(video.get_frames([12, 1]), frames[[12, 1]])
    assert video.info.backend == "pyav"
    assert any("simulated decord failure" in w for w in video.warnings)


def test_auto_uses_pyav_when_decord_count_disagrees(videos, frames, monkeypatch):
    import decord

    monkeypatch.setattr(decord.VideoReader, "__len__", lambda self: T + 91)  # an over-reporting header
    video = open_video(videos["mp4"])
    assert video.info.backend == "pyav" and video.num_frames == T
    assert any("counts" in w for w in video.warnings)
    explicit = open_video(videos["mp4"], backend="decord")  # explicit decord: clamped, not trusted
    assert explicit.num_frames == T
    np.testing.assert_array_equal(explicit.get_frames([T - 1]), frames[[T - 1]])


def test_missing_backend_says_what_to_install(videos, frames, monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` fail
    with pytest.raises(BackendUnavailableError, match="pip install decord"):
        open_video(videos["mp4"], backend=Backend.DECORD)
    video = open_video(videos["mp4"])  # auto still works, with PyAV
    assert isinstance(video, PyAVDecoder)
    np.testing.assert_array_equal(video.get_frames([7]), frames[[7]])
    with pytest.raises(ValueError, match="unknown backend"):
        open_video(videos["mp4"], backend="opencv")


def test_array_decoder(frames):
    video = open_video(frames)
    assert isinstance(video, ArrayDecoder) and isinstance(video, VideoDecoder)
    np.testing.assert_array_equal(video.get_frames([3, 1, 3]), frames[[3, 1, 3]])
    small = ArrayDecoder(frames, 10.0, "clip", max_side=32, timestamps=np.arange(T) * 0.5 + 2.0)
    assert small.get_frames([0]).shape == (1, 24, 32, 3)
    np.testing.assert_allclose(small.frame_times([0, 2]), [0.0, 1.0])
    with pytest.raises(UnsupportedMediaError):
        ArrayDecoder(frames.astype(np.float32))
    with pytest.raises(UnsupportedMediaError):
        ArrayDecoder(frames[0])


def test_closed_decoder_refuses_work(videos):
    video = open_video(videos["mp4"])
    video.close()
    with pytest.raises(ValueError, match="closed"):
        video.get_frames([0])


def test_writer_rejects_what_it_cannot_honour(tmp_path, frames):
    with pytest.raises(ValueError, match="faststart"):
        write_video(io.BytesIO(), frames, faststart=True)
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", frames[:, :47], lossless=False)
    with pytest.raises(ValueError, match="avi"):
        write_video(tmp_path / "r.avi", frames, rotation=90)
    with pytest.raises(ValueError, match="increasing"):
        write_video(tmp_path / "v.mp4", frames[:3], timestamps=[0.0, 0.1, 0.1])
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", frames.astype(np.float32))
