"""Preprocessing latency: decode, sampling, face tracking, mouth ROIs and TALL layouts, per stage.

Two inputs, both synthesised from scikit-image's astronaut photo (a real face):

(a) a 10 s 1280x720 H.264 clip (25 fps, the face panning and zooming), written to a temporary folder
    and run through TALL's 8 clips x 4 frames plus LipForensics' 25-frame mouth windows: all 10
    non-overlapping windows (every frame is tracked), and the 2 windows ``vidfake.detector`` uses by
    default;
(b) a 129-frame 256x256 wire payload (base85 + zlib of JPEG q75 frames, as BitMind validators sent
    video), run through the same stages with all 5 windows (125 of its frames) and with 2.

    python benchmarks/preprocess.py             # 5 timed runs each, medians
    python benchmarks/preprocess.py --runs 9

The face tracker is built once and warmed up before timing (the miner and the CLI keep one); its
cold start is reported separately. Prints a table and writes ``benchmarks/results/preprocess.json``.
Targets on the 2-core development machine: wire payload < 1 s, 10 s 720p clip < 2 s. Timings on a
shared machine vary from run to run: compare medians taken side by side.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from vidfake.detector import DETECTOR_FILE, DetectorConfig, shipped_weights_dir
from vidfake.preprocessing.decoders import open_video
from vidfake.preprocessing.faces import FaceTracker, crop_faces
from vidfake.preprocessing.layout import tall_layout
from vidfake.preprocessing.mouth import mouth_rois, normalize_rois
from vidfake.preprocessing.samplers import ClipSpan, lip_windows, tall_clips, union_indices
from vidfake.preprocessing.wire import decode_video_b85, encode_video_b85
from vidfake.preprocessing.writers import write_video

# The shipped detector's sampling and crops, from its model configs.
CONFIG = DetectorConfig.from_file(shipped_weights_dir() / DETECTOR_FILE)
TALL, LIP = CONFIG.branch("tall"), CONFIG.branch("lip")

OUT = Path(__file__).resolve().parent / "results" / "preprocess.json"
STAGES = ("open", "sample", "decode", "faces", "mouth", "tall", "total")


def _astronaut() -> np.ndarray:
    from skimage.data import astronaut

    return astronaut()


def synth_frames(count: int, width: int, height: int, face_px: float) -> np.ndarray:
    """The astronaut panning and zooming across a ``width`` x ``height`` frame.

    Returns:
        ``(count, height, width, 3) uint8`` frames with her face about ``face_px`` pixels wide.
    """
    photo = _astronaut()
    frames = np.empty((count, height, width, 3), np.uint8)
    for k in range(count):
        t = k / max(count - 1, 1)
        scale = face_px / 100.0 * (1.0 + 0.15 * np.sin(2 * np.pi * t))  # her face is ~100 px in the photo
        cx = width * (0.35 + 0.3 * t)
        cy = height * (0.45 + 0.05 * np.sin(4 * np.pi * t))
        matrix = np.float32([[scale, 0, cx - 225 * scale], [0, scale, cy - 124 * scale]])
        frames[k] = cv2.warpAffine(
            photo, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
    return frames


def _rows(indices: np.ndarray, span: ClipSpan) -> slice | np.ndarray:
    """Rows of ``span``'s frames in the decoded array: a slice (a view, no copy) when they are adjacent."""
    rows = np.searchsorted(indices, np.asarray(span.indices))
    return slice(int(rows[0]), int(rows[-1]) + 1) if np.all(np.diff(rows) == 1) else rows


def _analyse(
    frames: np.ndarray,
    indices: np.ndarray,
    clips: list[ClipSpan],
    windows: list[ClipSpan],
    tracker: FaceTracker,
    times: dict[str, float],
) -> None:
    """Face tracking, mouth ROIs and TALL layouts on decoded frames; stage times added to ``times``."""
    t0 = time.perf_counter()
    tracks = tracker.track(frames, indices)
    if not tracks:
        raise RuntimeError("no face tracked in the benchmark clip")
    track = tracks[0]
    t1 = time.perf_counter()
    for window in windows:
        rois = mouth_rois(frames[_rows(indices, window)], track.landmarks[track.rows(window.indices)])
        normalize_rois(rois.rois)
    t2 = time.perf_counter()
    for clip in clips:
        crops = crop_faces(frames[_rows(indices, clip)], track.boxes[track.rows(clip.indices)],
                           scale=TALL.crop_scale, size=TALL.thumb_size)
        tall_layout(crops.images)
    t3 = time.perf_counter()
    times.update(faces=t1 - t0, mouth=t2 - t1, tall=t3 - t2)


def run_clip(path: Path, tracker: FaceTracker, num_windows: int | None) -> dict[str, float]:
    times: dict[str, float] = {}
    start = time.perf_counter()
    with open_video(path) as video:
        t_open = time.perf_counter()
        clips = tall_clips(video.num_frames, CONFIG.num_clips, TALL.frames_per_sample)
        windows = lip_windows(video.num_frames, LIP.frames_per_sample, num_windows=num_windows)
        indices = union_indices([*clips, *windows])
        t_sample = time.perf_counter()
        frames = video.get_frames(indices)
        t_decode = time.perf_counter()
    times.update(open=t_open - start, sample=t_sample - t_open, decode=t_decode - t_sample)
    _analyse(frames, indices, clips, windows, tracker, times)
    times["total"] = time.perf_counter() - start
    times["frames"] = float(len(indices))
    return times


def run_wire(payload: str, tracker: FaceTracker, num_windows: int | None) -> dict[str, float]:
    times: dict[str, float] = {"open": 0.0}
    start = time.perf_counter()
    wire = decode_video_b85(payload)
    t_decode = time.perf_counter()
    num_frames = len(wire.frames)
    clips = tall_clips(num_frames, CONFIG.num_clips, TALL.frames_per_sample)
    windows = lip_windows(num_frames, LIP.frames_per_sample, num_windows=num_windows)
    indices = union_indices([*clips, *windows])
    frames = wire.frames[indices]
    t_sample = time.perf_counter()
    times.update(decode=t_decode - start, sample=t_sample - t_decode)
    _analyse(frames, indices, clips, windows, tracker, times)
    times["total"] = time.perf_counter() - start
    times["frames"] = float(len(indices))
    return times


def _medians(run: Callable[[], dict[str, float]], runs: int) -> dict[str, float]:
    samples = [run() for _ in range(runs)]
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (median reported)")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    with tempfile.TemporaryDirectory() as tmp:
        clip_path = Path(tmp) / "astronaut_720p.mp4"
        write_video(clip_path, synth_frames(250, 1280, 720, face_px=220), 25.0, lossless=False)
        payload = encode_video_b85(synth_frames(129, 256, 256, face_px=90), quality=75)

        t = time.perf_counter()
        tracker = FaceTracker()
        tracker.detect_image(_astronaut())  # builds the mediapipe graphs
        cold_start = time.perf_counter() - t
        run_clip(clip_path, tracker, None)  # warm-up: caches, first-call allocations
        cases = {
            "720p_10s_tall8x4_lip10x25": _medians(lambda: run_clip(clip_path, tracker, None), args.runs),
            "720p_10s_tall8x4_lip2x25": _medians(lambda: run_clip(clip_path, tracker, 2), args.runs),
            "wire_129x256_tall8x4_lip5x25": _medians(lambda: run_wire(payload, tracker, None), args.runs),
            "wire_129x256_tall8x4_lip2x25": _medians(lambda: run_wire(payload, tracker, 2), args.runs),
        }
        tracker.close()

    targets = {name: 1.0 if name.startswith("wire") else 2.0 for name in cases}
    header = f"{'case':30s} {'frames':>6s} " + " ".join(f"{s:>7s}" for s in STAGES) + "  target"
    print(f"median of {args.runs} runs, seconds; face tracker cold start {cold_start:.2f} s (not included)")
    print(header)
    for name, times in cases.items():
        row = f"{name:30s} {int(times['frames']):6d} " + " ".join(f"{times[s]:7.3f}" for s in STAGES)
        verdict = "ok" if times["total"] < targets[name] else "MISSED"
        print(f"{row}  <{targets[name]:.0f} {verdict}")
    for name, times in cases.items():
        per_frame = times["faces"] / times["frames"] * 1000
        print(f"{name}: face tracking {per_frame:.1f} ms/frame")

    result = {
        "unit": "seconds (median)",
        "runs": args.runs,
        "tracker_cold_start_s": cold_start,
        "targets_s": targets,
        "cases": cases,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            # Other work on a shared machine slows every stage: a load above the core count voids targets.
            "load_avg_1m_start": load_start,
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
