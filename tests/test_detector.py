"""The one library call, end to end on real decoded media (tiny random-init models: plumbing only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vidfake.preprocessing.errors import MediaError
from vidfake.result import valid_three_class


@pytest.fixture(scope="module")
def tiny():
    from vidfake.detector import Detector

    det = Detector.from_pretrained("tiny")
    yield det
    det.close()


def _check_common(res):
    assert 0.0 <= res.probability_fake <= 1.0
    assert valid_three_class(res.three_class)
    assert res.verdict == ("fake" if res.probability_fake >= res.threshold else "real")
    json.loads(res.to_json())  # JSON-serialisable as it is
    assert res.timings_ms["total"] > 0


def test_image_from_array_path_and_bytes(tiny, samples_dir):
    from skimage.data import astronaut

    res = tiny.detect(astronaut(), source="astronaut")
    _check_common(res)
    assert res.kind == "image" and res.frames_used == 1
    assert res.branch("tall").probability is None and "still image" in res.branch("tall").status
    path = samples_dir / "real_photo.jpg"
    by_path = tiny.detect(path)
    by_bytes = tiny.detect(path.read_bytes(), source="bytes")
    assert by_path.probability_fake == pytest.approx(by_bytes.probability_fake, abs=1e-6)


def test_video_runs_all_branches_on_a_face_clip(tiny, samples_dir):
    res = tiny.detect(samples_dir / "real_face.mp4")
    _check_common(res)
    assert res.kind == "video" and res.faces_found >= 1
    assert res.num_frames >= 50 and res.fps and res.fps > 0
    ran = {b.name for b in res.branches if b.probability is not None}
    assert ran == {"image2d", "tall", "lip"}
    assert {c.branch for c in res.clips} == {"tall", "lip"}
    tall = [c for c in res.clips if c.branch == "tall"]
    assert len(tall) == tiny.config.num_clips
    assert all(c.end_frame - c.start_frame == 3 for c in tall)
    assert len(res.frames) == tiny.config.num_frames
    assert res.mouth_roi_native_px and res.mouth_roi_native_px > 5
    # The fused probability is the fusion of the branch logits (all present -> weights reported).
    assert all(b.weight != 0 for b in res.branches if b.probability is not None)


def test_short_clip_reports_missing_lip_branch(tiny):
    from skimage.data import astronaut

    frames = np.stack([astronaut()[::2, ::2]] * 10)  # 10 frames < one 25-frame lip window
    res = tiny.detect(frames, kind="video", source="short")
    _check_common(res)
    lip = res.branch("lip")
    assert lip.probability is None and lip.status.startswith("skipped")
    assert any("lip" in w for w in res.warnings)


def test_no_face_falls_back_to_whole_frames(tiny):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(30, 96, 128, 3), dtype=np.uint8)
    res = tiny.detect(frames, kind="video", source="noise")
    _check_common(res)
    assert res.faces_found == 0
    assert res.branch("lip").status == "skipped: no face tracked"
    assert res.branch("tall").probability is not None
    assert any("no face" in w for w in res.warnings)
    assert not any(f.face_found for f in res.frames)


def test_branch_selection_and_bad_branch(tiny, samples_dir):
    res = tiny.detect(samples_dir / "fake_face.mp4", branches=["image2d"], num_frames=3)
    assert res.branch("tall").status == "skipped: not requested"
    assert len(res.frames) == 3
    with pytest.raises(ValueError, match="unknown branches"):
        tiny.detect(samples_dir / "fake_face.mp4", branches=["nope"])


def test_bad_input_is_a_typed_error_naming_it(tiny, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    with pytest.raises(MediaError) as e:
        tiny.detect(bad)
    assert "broken.mp4" in str(e.value)
    with pytest.raises(MediaError):
        tiny.detect(b"", source="empty")


def test_face_workers_reach_the_tracker_and_are_checked():
    from vidfake.detector import Detector

    with Detector.from_pretrained("tiny", face_workers=1) as det:
        assert det.tracker.workers == 1
    with pytest.raises(ValueError, match="face_workers"):
        Detector.from_pretrained("tiny", face_workers=0)


def test_threshold_changes_only_the_verdict(tiny, samples_dir):
    a = tiny.detect(samples_dir / "real_photo.jpg", threshold=0.0)
    b = tiny.detect(samples_dir / "real_photo.jpg", threshold=1.0)
    assert a.probability_fake == b.probability_fake
    assert a.verdict == "fake"
    assert b.verdict == ("fake" if b.probability_fake >= 1.0 else "real")


def test_same_input_same_answer_after_other_videos(tiny, samples_dir):
    # The face tracker is reused across calls; its video-mode state must not leak between videos.
    first = tiny.detect(samples_dir / "fake_face.mp4")
    tiny.detect(samples_dir / "real_face.mp4")
    again = tiny.detect(samples_dir / "fake_face.mp4")
    assert [b.probability for b in first.branches] == [b.probability for b in again.branches]
    assert first.probability_fake == again.probability_fake


class _FlakyDecoder:
    """An ArrayDecoder whose listed frames fail as a damaged file's would, or that runs out of time."""

    @staticmethod
    def make(frames, *, damaged=(), timeout=False):
        from vidfake.preprocessing.decoders import ArrayDecoder
        from vidfake.preprocessing.errors import DecodeError, DecodeTimeoutError

        class Flaky(ArrayDecoder):
            calls = 0

            def _decode_sorted(self, indices):
                Flaky.calls += 1
                if timeout:
                    raise DecodeTimeoutError(self.source, "decoding took over 120 s")
                bad = sorted(set(indices.tolist()) & set(damaged))
                if bad:
                    raise DecodeError(self.source, f"frame {bad[0]} is damaged")
                return super()._decode_sorted(indices)

        return Flaky(frames, source="flaky.mp4")


def test_damaged_frames_are_left_out_and_reported(tiny):
    from skimage.data import astronaut

    frames = np.stack([astronaut()[::2, ::2]] * 40)
    whole = tiny.detect(frames, kind="video")
    video = _FlakyDecoder.make(frames, damaged=range(10, 20))
    res = tiny.detect(video)
    _check_common(res)
    (warning,) = [w for w in res.warnings if "failed to decode" in w]
    lost = json.loads(warning[warning.index("["):])
    assert lost and set(lost) <= set(range(10, 20))
    assert res.frames_used == whole.frames_used - len(lost)


def test_decode_timeout_is_not_retried_frame_by_frame(tiny):
    from skimage.data import astronaut

    from vidfake.preprocessing.errors import DecodeTimeoutError

    video = _FlakyDecoder.make(np.stack([astronaut()[::2, ::2]] * 40), timeout=True)
    with pytest.raises(DecodeTimeoutError, match="flaky.mp4"):
        tiny.detect(video)
    assert type(video).calls == 1


def test_a_person_who_leaves_is_not_scored_where_absent(tiny):
    """Two people, then one walks out: no frame of the leaver's track after that is scored as a face,
    and neither are TALL clips or lip windows that reach past the exit."""
    import cv2
    from skimage.data import astronaut

    face = astronaut()[40:200, 140:300]
    frames = np.full((80, 320, 640, 3), 90, np.uint8)
    for k in range(80):
        frames[k, 60:220, 40 + k : 200 + k] = face
        if k < 40:
            right = cv2.resize(face, None, fx=0.8, fy=0.8)
            frames[k, 80 : 80 + right.shape[0], 440 : 440 + right.shape[1]] = right
    res = tiny.detect(frames, kind="video", source="leaves.mp4", num_frames=16, num_clips=8)
    assert res.faces_found == 2
    assert res.frames and all(f.face_found for f in res.frames)
    leaver = {f.track for f in res.frames if f.frame_index >= 45}
    assert len(leaver) == 1  # only the person who stays is scored after the exit
    gone = ({0, 1} - leaver).pop()
    assert all(f.frame_index < 40 for f in res.frames if f.track == gone)
    assert all(c.end_frame < 40 for c in res.clips if c.track == gone)
    assert any(c.track == gone for c in res.clips if c.branch == "tall")


def test_a_faceless_clip_takes_the_scene_path_without_tracking(monkeypatch):
    """With the scene branch configured, a clip whose probe frames hold no face is scored by the scene
    branch and the tracker never runs; the face branches say why they did not."""
    from vidfake.branches import BRANCHES
    from vidfake.detector import PROBE_FRAMES, Detector

    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(60, 200, (1, 96, 128, 3), dtype=np.uint8), 40, axis=0)
    frames[:, :, :] = np.roll(frames, 3, axis=2)
    with Detector.from_pretrained("tiny", branches=(*BRANCHES, "scene"), face_workers=1) as det:
        monkeypatch.setattr(det.tracker, "track", lambda *a, **k: pytest.fail("tracked a faceless clip"))
        res = det.detect(frames, kind="video", source="scene.mp4")
    assert res.branch("scene").status == "ok" and 0.0 <= res.branch("scene").probability <= 1.0
    assert all(res.branch(b).status == "skipped: no usable face (scene path)" for b in BRANCHES)
    assert res.branch("scene").weight == 1.0 and res.faces_found == 0
    assert any(f"no face in {PROBE_FRAMES} evenly spread frames" in w for w in res.warnings)
    assert [c.branch for c in res.clips] == ["scene"]
