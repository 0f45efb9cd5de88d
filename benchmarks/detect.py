"""End-to-end ``Detector.detect`` latency with the shipped weights, after warm-up.

Rows (targets on a quiet 2-core machine, issue 3): a 256x256 subnet image (< 100 ms), a 129-frame
256x256 wire video (base85+zlib JPEG frames, decoded as the miner does; < 3 s), a 10 s 720p h264 clip
(< 5 s). These media are made from the project's own sample (samples/real_face.mp4). Scene path
(issue 15: < 1.5 s and < 3 s): the same wire video and 10 s 720p clip of drifting shapes, no face. Real footage
(issue 13, < 5 s): a 10 s 720p clip with two real people side by side, and one with a cut from one
person to another, built at run time from ``../shared/data`` dev clips (``benchmarks/footage.py``;
skipped, with the reason, where the data is absent).

    python benchmarks/detect.py [--runs 5] [--threads 2] [--weights default]

Prints a table (median and min per stage) and writes benchmarks/results/detect.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import vidfake

vidfake.use_offline_hubs()

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "detect.json"


def _sample_frames(n: int, size: tuple[int, int]) -> np.ndarray:
    """``n`` frames of the bundled real-face sample, looped and resized to ``size`` (w, h)."""
    import cv2

    from vidfake.preprocessing.decoders import open_video

    with open_video(REPO / "samples" / "real_face.mp4") as v:
        frames = v.get_frames(list(range(v.num_frames)))
    idx = np.arange(n) % len(frames)
    return np.stack([cv2.resize(frames[i], size, interpolation=cv2.INTER_LINEAR) for i in idx])


def _scene_frames(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``n`` faceless frames (w, h): soft coloured shapes drifting over a gradient, like a generated scene."""
    import cv2

    rng = np.random.default_rng(seed)
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xs / w * 180 + 40, ys / h * 120 + 60, (xs + ys) / (w + h) * 90 + 80], -1)
    shapes = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.15) * w, rng.uniform(-3, 3, 2),
               rng.uniform(0, 255, 3)) for _ in range(5)]
    frames = np.empty((n, h, w, 3), np.uint8)
    for k in range(n):
        f = base.copy()
        for x, y, r, v, c in shapes:
            cv2.circle(f, (int(x + v[0] * k) % w, int(y + v[1] * k) % h), int(r), c.tolist(), -1, cv2.LINE_AA)
        frames[k] = np.clip(cv2.GaussianBlur(f, (0, 0), 1.5), 0, 255).astype(np.uint8)
    return frames


def _time(fn, runs: int) -> dict:
    fn()  # warm-up
    out, totals, stages = None, [], {}
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        totals.append((time.perf_counter() - t) * 1000)
        for k, v in out.timings_ms.items():
            stages.setdefault(k, []).append(v)
    return {"median_ms": round(statistics.median(totals), 1), "min_ms": round(min(totals), 1), "runs": runs,
            "stages_median_ms": {k: round(statistics.median(v), 1) for k, v in stages.items()},
            "frames_used": out.frames_used, "faces": out.faces_found,
            "tracks_scored": len({f.track for f in out.frames if f.face_found}),
            "p_fake": round(out.probability_fake, 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", default="default")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    from vidfake.detector import Detector
    from vidfake.preprocessing.images import subnet_image
    from vidfake.preprocessing.wire import (
        decode_image_b64,
        decode_video_b85,
        encode_image_b64,
        encode_video_b85,
    )
    from vidfake.preprocessing.writers import write_video

    det = Detector.from_pretrained(args.weights, threads=args.threads)
    image_b64 = encode_image_b64(subnet_image(_sample_frames(1, (384, 384))[0]))
    wire = encode_video_b85(_sample_frames(129, (256, 256)), quality=75)
    rows = {}
    rows["image 256 (wire b64)"] = _time(lambda: det.detect(decode_image_b64(image_b64), source="img"), args.runs)
    rows["video 129x256 (wire b85)"] = _time(
        lambda: det.detect(decode_video_b85(wire).frames, kind="video", source="wire"), args.runs)
    scene_wire = encode_video_b85(_scene_frames(129, (256, 256)), quality=75)
    rows["scene 129x256 (wire b85)"] = _time(
        lambda: det.detect(decode_video_b85(scene_wire).frames, kind="video", source="scene"), args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip720.mp4"
        write_video(clip, _sample_frames(250, (1280, 720)), fps=25.0, lossless=False)
        rows["10 s 720p h264 clip"] = _time(lambda: det.detect(clip), args.runs)
        scene = Path(tmp) / "scene720.mp4"
        write_video(scene, _scene_frames(250, (1280, 720)), fps=25.0, lossless=False)
        rows["10 s 720p scene clip"] = _time(lambda: det.detect(scene), args.runs)
        import footage

        if footage.available():
            for name, make in (("10 s 720p two people", footage.two_people), ("10 s 720p with a cut", footage.cut)):
                path = Path(tmp) / f"{make.__name__}.mp4"
                write_video(path, make(), fps=25.0, lossless=False)
                rows[name] = _time(lambda path=path: det.detect(path), args.runs)
        else:
            print(f"real-footage rows skipped: {footage.DATA} does not hold {footage.PEOPLE}")
    load = os.getloadavg()[0]
    print(f"Detector.detect, weights={args.weights}, threads={args.threads}, load average {load:.1f}")
    print(f"{'input':<28}{'median ms':>11}{'min ms':>9}{'frames':>8}{'faces':>7}{'P(fake)':>9}  stages (median ms)")
    for name, r in rows.items():
        stages = ", ".join(f"{k} {v:.0f}" for k, v in r["stages_median_ms"].items() if k != "total")
        print(f"{name:<28}{r['median_ms']:>11.0f}{r['min_ms']:>9.0f}{r['frames_used']:>8}{r['faces']:>7}"
              f"{r['p_fake']:>9.3f}  {stages}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"weights": args.weights, "threads": args.threads, "load_average": load,
                                    "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
