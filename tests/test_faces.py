"""Face detection, landmarks and tracking on the astronaut photo (mediapipe's bundled models, offline)."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from vidfake.preprocessing.errors import BackendUnavailableError
from vidfake.preprocessing.faces import (
    NUM_LANDMARKS,
    FaceTrack,
    FaceTracker,
    crop_faces,
    face_box_square,
    landmark_boxes,
)

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def tracker():
    with FaceTracker() as t:
        yield t


def _shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)


def _moving(image: np.ndarray, count: int, step: tuple[float, float] = (2.0, 1.0)) -> np.ndarray:
    return np.stack([_shifted(image, k * step[0], k * step[1]) for k in range(count)])


def test_astronaut_face_found(tracker, astronaut):
    (track,) = tracker.detect_image(astronaut)
    assert track.track_id == 0 and len(track) == 1 and track.present.all()
    assert track.landmarks.shape == (1, NUM_LANDMARKS, 2) and track.landmarks.dtype == np.float32
    x0, y0, x1, y1 = track.boxes[0]
    # Her face spans about x 179-271, y 70-177 of the 512x512 photo (forehead to chin, ear to ear).
    assert 160 < x0 < 195 and 255 < x1 < 290 and 50 < y0 < 90 and 160 < y1 < 195
    lm = track.landmarks[0]
    assert lm[33, 0] < lm[133, 0] < lm[362, 0] < lm[263, 0], "eye corners out of order"
    eyes_y = lm[[33, 133, 362, 263], 1].mean()
    assert eyes_y < lm[2, 1] < lm[13, 1] < lm[152, 1], "eyes, nose, mouth, chin not top to bottom"
    assert 35 < np.linalg.norm(lm[61] - lm[291]) < 55
    assert 0.5 < track.scores[0] <= 1.0
    assert track.coverage == 1.0 and 90 < track.mean_size < 110


def test_two_faces_give_two_tracks(tracker, astronaut):
    face = astronaut[40:200, 140:300]
    canvas = np.full((300, 640, 3), 90, np.uint8)
    canvas[60:220, 60:220] = face
    canvas[80:240, 380:540] = face
    tracks = tracker.detect_image(canvas)
    assert len(tracks) == 2
    centres = sorted(
        ((t.boxes[0, 0] + t.boxes[0, 2]) / 2, (t.boxes[0, 1] + t.boxes[0, 3]) / 2) for t in tracks
    )
    # The face's centre sits about (85, 85) into the pasted 160x160 patch.
    assert abs(centres[0][0] - 145) < 20 and abs(centres[1][0] - 465) < 20
    assert abs(centres[1][1] - centres[0][1] - 20) < 8
    assert sorted(t.track_id for t in tracks) == [0, 1]


def test_two_faces_tracked_separately_through_a_video(tracker, astronaut):
    face = astronaut[40:200, 140:300]
    frames = np.full((12, 300, 640, 3), 90, np.uint8)
    for k in range(12):
        frames[k, 60:220, 40 + 3 * k : 200 + 3 * k] = face
        frames[k, 80:240, 420 - 3 * k : 580 - 3 * k] = face
    tracks = tracker.track(frames)
    assert len(tracks) == 2 and all(t.coverage == 1.0 for t in tracks)
    left, right = sorted(tracks, key=lambda t: t.boxes[0, 0])
    assert np.all(np.diff(left.boxes[:, 0]) > 0) and np.all(np.diff(right.boxes[:, 0]) < 0)
    moved = (left.boxes[-1, 0] - left.boxes[0, 0], right.boxes[0, 0] - right.boxes[-1, 0])
    assert moved == pytest.approx((33, 33), abs=4)


def test_new_face_is_picked_up_at_the_next_detection(astronaut):
    """Once a face is tracked the detector runs every ``detect_every`` frames: here at 0, 3, 6, 9."""
    face = astronaut[40:200, 140:300]
    frames = np.full((10, 300, 640, 3), 90, np.uint8)
    frames[:, 60:220, 60:220] = face
    frames[4:, 80:240, 380:540] = face  # a second person steps in at frame 4
    with FaceTracker(detect_every=3) as tracker:
        tracks = tracker.track(frames)
    assert len(tracks) == 2
    first, second = sorted(tracks, key=lambda t: t.boxes[0, 0])
    assert first.present.all()
    assert second.present.tolist() == [False] * 6 + [True] * 4
    assert np.array_equal(second.landmarks[0], second.landmarks[6]), "held before it was first seen"


def test_no_face_gives_empty_list(tracker):
    noise = np.random.default_rng(0).integers(0, 256, (5, 240, 320, 3), dtype=np.uint8)
    assert tracker.track(noise) == []
    assert tracker.detect_image(np.zeros((64, 64, 3), np.uint8)) == []


def test_contiguous_frames_follow_the_motion(tracker, astronaut):
    frames = _moving(astronaut, 16)
    (track,) = tracker.track(frames)
    assert track.present.all() and track.frame_indices.tolist() == list(range(16))
    nose = track.landmarks[:, 1]
    # The face moves by (2, 1) px a frame; smoothing a linear motion leaves it linear.
    assert nose[-1] - nose[0] == pytest.approx((30, 15), abs=2.5)
    assert np.abs(np.diff(nose[:, 0]) - 2).max() < 1.5


def test_sparse_non_contiguous_frames_are_one_track(tracker, astronaut):
    indices = [0, 1, 2, 3, 20, 21, 22, 23, 40, 41, 42, 43]
    frames = np.stack([_shifted(astronaut, 1.5 * i, 0.5 * i) for i in indices])
    (track,) = tracker.track(frames, indices)
    assert track.frame_indices.tolist() == indices and track.coverage == 1.0
    x_centre = (track.boxes[:, 0] + track.boxes[:, 2]) / 2
    assert x_centre[-1] - x_centre[0] == pytest.approx(1.5 * 43, abs=4)


def test_missing_frame_is_interpolated_and_marked(tracker, astronaut):
    frames = _moving(astronaut, 9)
    frames[4] = 128  # face gone for one frame
    (track,) = tracker.track(frames)
    assert track.present.tolist() == [True] * 4 + [False] + [True] * 4
    assert track.scores[4] == 0.0 and track.scores[0] > 0.5
    midway = (track.landmarks[3] + track.landmarks[5]) / 2
    assert np.abs(track.landmarks[4] - midway).max() < 1e-3
    assert track.coverage == pytest.approx(8 / 9)


def test_track_take_and_rows(tracker, astronaut):
    frames = _moving(astronaut, 6)
    (track,) = tracker.track(frames, [10, 11, 12, 13, 14, 15])
    part = track.take([12, 13])
    assert isinstance(part, FaceTrack) and part.frame_indices.tolist() == [12, 13]
    assert np.array_equal(part.landmarks, track.landmarks[2:4])
    with pytest.raises(KeyError):
        track.rows([9])
    with pytest.raises(KeyError):
        track.rows([16])


def _same_tracks(a: list[FaceTrack], b: list[FaceTrack]) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x.frame_indices, y.frame_indices)
        and np.array_equal(x.landmarks, y.landmarks)
        and np.array_equal(x.present, y.present)
        and np.array_equal(x.scores, y.scores)
        for x, y in zip(a, b, strict=True)
    )


def test_result_does_not_depend_on_the_number_of_workers(astronaut):
    """Pieces are cut by the frame indices alone and each graph is cleared before it follows a new
    face, so one worker and three give the same tracks bit for bit, call after call."""
    face = astronaut[40:200, 140:300]
    frames = np.full((40, 300, 640, 3), 90, np.uint8)
    for k in range(40):
        frames[k, 60:220, 40 + 2 * k : 200 + 2 * k] = face
        frames[k, 80:240, 440 - 2 * k : 600 - 2 * k] = face
    indices = [*range(0, 4), *range(10, 14), *range(16, 36), *range(40, 44), *range(50, 62)]
    frames = frames[[i % 40 for i in indices]]
    with FaceTracker(workers=1, max_run=8) as one, FaceTracker(workers=3, max_run=8) as three:
        first = one.track(frames, indices)
        assert len(first) == 2 and all(t.coverage == 1.0 for t in first)
        assert _same_tracks(first, three.track(frames, indices))
        three.track(frames[::-1].copy())  # other faces in between must leave no trace
        assert _same_tracks(first, three.track(frames, indices))


def test_long_runs_are_cut_and_linked_into_one_track(astronaut):
    frames = _moving(astronaut, 24)
    with FaceTracker(max_run=5) as cut, FaceTracker(max_run=32) as whole:
        (a,) = cut.track(frames)
        (b,) = whole.track(frames)
    assert a.coverage == 1.0 and a.frame_indices.tolist() == list(range(24))
    # Across the cuts (a fresh detection and a static-mode mesh) the points agree with uncut
    # tracking to a small fraction of the ~100 px face.
    assert np.abs(a.landmarks - b.landmarks).max() < 3.0
    nose = a.landmarks[:, 1]
    assert np.abs(np.diff(nose[:, 0]) - 2).max() < 1.5


def test_bad_input_raises(tracker):
    with pytest.raises(ValueError):
        tracker.track(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError):
        tracker.track(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError):
        tracker.track(np.zeros((2, 32, 32, 3), np.uint8), [3, 3])
    with pytest.raises(ValueError):
        tracker.track(np.zeros((2, 32, 32, 3), np.uint8), [0, 1, 2])
    with pytest.raises(ValueError):
        FaceTracker(max_faces=0)
    with pytest.raises(ValueError):
        FaceTracker(workers=0)
    with pytest.raises(ValueError):
        FaceTracker(max_run=0)


def test_missing_mediapipe_is_a_typed_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    with pytest.raises(BackendUnavailableError, match="mediapipe"):
        FaceTracker().track(np.zeros((1, 32, 32, 3), np.uint8))


def test_face_box_square():
    box = face_box_square([10, 20, 50, 100], scale=1.5)
    assert box.tolist() == [-30.0, 0.0, 90.0, 120.0]
    boxes = face_box_square(np.array([[0, 0, 10, 10], [0, 0, 4, 2]]), 1.0)
    assert boxes.shape == (2, 4) and boxes[1].tolist() == [0.0, -1.0, 4.0, 3.0]


def test_landmark_boxes():
    pts = np.array([[[1, 5], [3, 2], [2, 9]]], np.float32)
    assert landmark_boxes(pts).tolist() == [[1, 2, 3, 9]]


def test_crop_off_the_frame_is_padded():
    frame = np.arange(60 * 80 * 3, dtype=np.uint32).reshape(60, 80, 3).astype(np.uint8)
    frame[:] = 200
    boxes = np.array([[-10, -10, 10, 10]], np.float32)  # face at the top-left corner
    crops = crop_faces(frame[None], boxes, scale=1.0, size=20)
    assert crops.images.shape == (1, 20, 20, 3) and crops.boxes.tolist() == [[-10, -10, 10, 10]]
    image = crops.images[0]
    assert (image[:10] == 0).all() and (image[:, :10] == 0).all() and (image[10:, 10:] == 200).all()
    edge = crop_faces(frame[None], boxes, scale=1.0, size=20, pad="edge").images[0]
    assert (edge == 200).all()
    inside = crop_faces(frame[None], np.array([[20, 10, 40, 30]], np.float32), scale=1.3, size=26)
    assert inside.boxes.tolist() == [[17, 7, 43, 33]] and (inside.images == 200).all()


def test_crop_faces_resizes_exact_content():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[40:60, 40:60] = (255, 0, 0)
    crops = crop_faces(frame[None], np.array([[40, 40, 60, 60]], np.float32), scale=2.0, size=80)
    assert crops.boxes.tolist() == [[30, 30, 70, 70]]
    image = crops.images[0]
    assert (image[22:58, 22:58] == (255, 0, 0)).all() and (image[:18] == 0).all()
    with pytest.raises(ValueError):
        crop_faces(frame[None], np.zeros((2, 4)), scale=1.3, size=80)


# -- development data ----------------------------------------------------------------------------

DATA_VIDEOS = (
    # (file name fragment, faces expected): the DeepFaceLive clip shows two people of nearly equal size.
    ("iperov__DeepFaceLive__doc_celebs_Tim_Chrys_Tim_Chrys_2.mp4", 2),
    ("AliaksandrSiarohin__first-order-model__demo_old_00.mp4", 1),
    ("Kedreamix__Linly-Talker__examples_example_video_example_answer1.mp4", 1),
)


@pytest.mark.data
@pytest.mark.parametrize(("name", "faces"), DATA_VIDEOS)
def test_dev_videos_faces_and_mouths(shared_data, manifest_rows, tracker, name, faces):
    from vidfake.preprocessing.decoders import open_video
    from vidfake.preprocessing.mouth import mouth_rois
    from vidfake.preprocessing.samplers import lip_windows, tall_clips, union_indices

    rows = [r for r in manifest_rows if r["path"].endswith(name)]
    if not rows:
        pytest.skip(f"{name} is not in this copy of the development data")
    with open_video(shared_data / rows[0]["path"]) as video:
        clips = tall_clips(video.num_frames, 8, 4)
        window = lip_windows(video.num_frames, 25, num_windows=1)[0]
        indices = union_indices([*clips, window])
        frames = video.get_frames(indices)
    tracks = tracker.track(frames, indices)
    assert len(tracks) >= faces
    for track in tracks[:faces]:
        assert track.coverage >= 0.9, f"track {track.track_id} found in only {track.coverage:.0%} of frames"
    main = tracks[0].take(window.indices)
    first = int(np.searchsorted(indices, window.start))
    rois = mouth_rois(frames[first : first + len(window.indices)], main.landmarks)
    assert rois.rois.shape == (25, 88, 88) and rois.rois.dtype == np.uint8
    assert 10 < rois.native_mouth_width < 300
    assert rois.rois.std() > 5, "a flat ROI: the crop missed the face"


def test_sample_videos_are_tracked(tracker, samples_dir):
    from vidfake.preprocessing.decoders import open_video
    from vidfake.preprocessing.mouth import mouth_rois

    for name in ("real_face.mp4", "fake_face.mp4"):
        path = samples_dir / name
        if not path.is_file():
            pytest.skip(f"{path} missing: run samples/make_samples.py")
        with open_video(path) as video:
            frames = video.get_frames(np.arange(0, video.num_frames, 2))
        (track,) = tracker.track(frames, np.arange(0, len(frames) * 2, 2))
        assert track.coverage == 1.0 and 85 < track.mean_size < 115
        rois = mouth_rois(frames[:8], track.landmarks[:8])
        assert 35 < rois.native_mouth_width < 50


# --------------------------------------------------------------------------- people, not fragments
def _canvas_with_faces(astronaut, count: int, places: dict[int, list[tuple[int, int, float]]]) -> np.ndarray:
    """``count`` grey 360x720 frames; ``places[k]`` lists ``(x, y, scale)`` of the face in frame k."""
    face = astronaut[40:200, 140:300]
    frames = np.full((count, 360, 720, 3), 90, np.uint8)
    for k, faces in places.items():
        for x, y, scale in faces:
            f = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale != 1 else face
            frames[k, y : y + f.shape[0], x : x + f.shape[1]] = f
    return frames


def test_fragments_of_one_person_are_joined_across_a_cut(tracker, astronaut):
    """A cut moves the person far across the frame: the position rule cannot join the two shots, the
    landmark layout (same face, same pose) does, and the clip has one person, not two."""
    places = {k: [(40, 60, 1.0)] for k in range(10)} | {k: [(500, 150, 1.0)] for k in range(13, 24)}
    (track,) = tracker.track(_canvas_with_faces(astronaut, 24, places))
    assert track.present.tolist() == [True] * 10 + [False] * 3 + [True] * 11


def test_passers_by_are_dropped_and_people_capped_at_max_faces(astronaut):
    # Person A all along; B (smaller) in 2 frames only: dropped. Then three time-disjoint faces of
    # sizes too different to be one person: the two seen longest are kept.
    places = {k: [(40, 60, 1.0)] for k in range(30)}
    for k in (5, 6):
        places[k] = [*places[k], (450, 40, 0.7)]
    sparse = list(range(0, 60, 2))  # every frame a gap: the detector runs on each and sees B
    with FaceTracker(max_faces=2, workers=1) as t:
        tracks = t.track(_canvas_with_faces(astronaut, 30, places), sparse)
    assert len(tracks) == 1 and tracks[0].present.all()

    places = {k: [(60, 60, 1.0)] for k in range(0, 12)} | {k: [(300, 40, 1.6)] for k in range(14, 22)} \
        | {k: [(450, 100, 0.6)] for k in range(24, 30)}
    with FaceTracker(max_faces=2, workers=1) as t:
        tracks = t.track(_canvas_with_faces(astronaut, 30, places))
    assert [int(tr.present.sum()) for tr in tracks] == [12, 8]


def test_tracking_a_subset_of_rows_equals_tracking_a_copy(tracker, astronaut):
    """``rows`` tracks part of the decoded frames in place (no copy of a 720p clip's frames)."""
    frames = _moving(astronaut, 12)
    rows = [0, 1, 2, 3, 8, 9, 10, 11]
    indices = [0, 1, 2, 3, 20, 21, 22, 23]
    (a,) = tracker.track(frames, indices, rows=rows)
    (b,) = tracker.track(frames[rows], indices)
    assert np.array_equal(a.landmarks, b.landmarks) and np.array_equal(a.present, b.present)
    with pytest.raises(ValueError, match="rows"):
        tracker.track(frames, [0], rows=[12])


def test_face_probe(tracker, astronaut):
    blank = np.full((2, 512, 512, 3), 90, np.uint8)
    assert [tracker.has_face(f[None]) for f in np.concatenate([astronaut[None], blank])] == [True, False, False]
    assert tracker.has_face(np.concatenate([blank, astronaut[None]])) and not tracker.has_face(blank)
